"""Plain JSON-RPC for the devnet tests: urllib + eth_abi, nothing from devnet,
so the checks read the chains independently of the code that set them up."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak


class RpcFailure(AssertionError):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"JSON-RPC error: {error}")
        self.error = error


def _post(url: str, body: Any) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def rpc(url: str, method: str, *params: Any) -> Any:
    reply = _post(url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    if "error" in reply:
        raise RpcFailure(reply["error"])
    return reply["result"]


def send(url: str, spec: tuple[str, list[Any]]) -> Any:
    """One (method, params) pair, as call_spec builds them."""
    return rpc(url, spec[0], *spec[1])


def batch(url: str, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    out: list[Any] = []
    for start in range(0, len(calls), 200):
        chunk = calls[start : start + 200]
        body = [
            {"jsonrpc": "2.0", "id": start + i, "method": m, "params": p}
            for i, (m, p) in enumerate(chunk)
        ]
        replies = {r["id"]: r for r in _post(url, body)}
        for i in range(len(chunk)):
            reply = replies[start + i]
            if "error" in reply:
                raise RpcFailure(reply["error"])
            out.append(reply["result"])
    return out


def data(signature: str, types: list[str] | None = None, args: list[Any] | None = None) -> str:
    body = encode(types, args) if types else b""
    return "0x" + (keccak(text=signature)[:4] + body).hex()


def eth_call(
    url: str,
    to: str,
    signature: str,
    out: list[str],
    *args: Any,
    arg_types: list[str] | None = None,
    sender: str | None = None,
) -> tuple[Any, ...]:
    tx: dict[str, str] = {"to": to, "data": data(signature, arg_types, list(args))}
    if sender is not None:
        tx["from"] = sender
    return tuple(decode(out, bytes.fromhex(rpc(url, "eth_call", tx, "latest")[2:])))


def call_spec(
    to: str, signature: str, types: list[str] | None = None, args: list[Any] | None = None
) -> tuple[str, list[Any]]:
    return ("eth_call", [{"to": to, "data": data(signature, types, args)}, "latest"])


def dec(out: list[str], raw: str) -> tuple[Any, ...]:
    return tuple(decode(out, bytes.fromhex(raw[2:])))


ROUND = ["uint80", "int256", "uint256", "uint256", "uint80"]
