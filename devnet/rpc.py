"""A small JSON-RPC client for the local nodes: single calls and size-capped batches.

anvil answers a request body over 2 MiB with HTTP 200 and one non-array -32600 error,
so batches are split by encoded size (and count) well below that.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from crossmargin.core.errors import RpcError, TransportError
from devnet.errors import DevnetError

Call = tuple[str, list[Any]]

MAX_BODY_BYTES = 512 * 1024
MAX_BATCH = 400
RECEIPT_TIMEOUT_S = 30.0


class Rpc:
    """One endpoint; the aiohttp session is the caller's (it is opened and closed there)."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, chain_id: int, timeout_s: float = 30.0
    ) -> None:
        self.session = session
        self.url = url
        self.chain_id = chain_id
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._ids = itertools.count(1)

    async def call(self, method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        reply = await self._post([body], single=True)
        return self._result(reply[0], method)

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Results in call order; the first JSON-RPC error raises RpcError."""
        results: list[Any] = []
        for chunk in _chunks(calls):
            bodies = [
                {"jsonrpc": "2.0", "id": next(self._ids), "method": m, "params": p}
                for m, p in chunk
            ]
            replies = {r.get("id"): r for r in await self._post(bodies, single=False)}
            for body, (method, _) in zip(bodies, chunk, strict=True):
                reply = replies.get(body["id"])
                if reply is None:
                    raise TransportError(self.chain_id, f"batch reply lacks id {body['id']}")
                results.append(self._result(reply, method))
        return results

    async def _post(self, bodies: list[dict[str, Any]], *, single: bool) -> list[dict[str, Any]]:
        payload = bodies[0] if single else bodies
        try:
            async with self.session.post(self.url, json=payload, timeout=self.timeout) as resp:
                if resp.status != 200:
                    raise TransportError(self.chain_id, f"HTTP {resp.status} from {self.url}")
                data = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError) as exc:
            raise TransportError(self.chain_id, f"{self.url}: {exc!r}") from exc
        if single:
            data = [data]
        elif isinstance(data, dict):  # the node refused the whole batch
            self._result(data, "batch")
        if not isinstance(data, list):
            raise TransportError(self.chain_id, f"unexpected reply: {str(data)[:200]}")
        return data

    def _result(self, reply: dict[str, Any], method: str) -> Any:
        if "error" in reply:
            err = reply["error"]
            code = int(err.get("code", 0)) if isinstance(err, dict) else 0
            msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
            raise RpcError(self.chain_id, code, f"{method}: {msg}")
        if "result" not in reply:
            raise TransportError(self.chain_id, f"{method}: reply has no result")
        return reply["result"]


def _chunks(calls: Sequence[Call]) -> list[list[Call]]:
    chunks: list[list[Call]] = []
    size = 0
    for call in calls:
        n = len(json.dumps(call[1])) + 80
        if not chunks or len(chunks[-1]) >= MAX_BATCH or size + n > MAX_BODY_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(call)
        size += n
    return chunks


async def wait_receipts(rpc: Rpc, hashes: Sequence[str]) -> list[dict[str, Any]]:
    """Receipts in `hashes` order, polling until every transaction is mined.

    anvil's automine mines one block per arrival; transactions that did not fit in
    that block's gas limit wait for the next arrival, so a poll without progress
    mines a block (evm_mine) to move them along.
    """
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + RECEIPT_TIMEOUT_S
    while True:
        missing = [h for h in hashes if h not in found]
        if not missing:
            return [found[h] for h in hashes]
        if time.monotonic() > deadline:
            raise DevnetError(f"chain {rpc.chain_id}: {len(missing)} transactions not mined")
        replies = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in missing])
        new = {h: r for h, r in zip(missing, replies, strict=True) if r is not None}
        found.update(new)
        if len(found) < len(hashes) and not new:
            await rpc.call("evm_mine", [])
