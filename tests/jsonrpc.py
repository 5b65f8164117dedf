"""One plain JSON-RPC call over HTTP for tests: no web3, no multicall, nothing of the
code under test, so a test's setup and its independent checks cannot share a bug with it."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def rpc_call(url: str, method: str, *params: Any) -> Any:
    """The call's result; a JSON-RPC error raises (naming the method, not the URL)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]
