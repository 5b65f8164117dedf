"""JSON-RPC over aiohttp: the one place where bytes leave the process.

Transport faults (connection, timeout, 5xx, 429, malformed bodies) are retried with
jittered exponential back-off across the chain's endpoints; a JSON-RPC error that is not
a rate limit is the node's answer and is raised at once. Library exceptions are mapped
here, once, into the project's tree.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from dataclasses import dataclass
from typing import Any

import aiohttp
from asyncio_throttle.throttler import Throttler

from crossmargin.config import ChainConfig
from crossmargin.errors import ChainError, RpcError, TransportError

RATE_LIMIT_CODES = frozenset({-32005, 429})


@dataclass
class EndpointStats:
    """Counted per endpoint so benchmarks and /metrics can report RPC use honestly."""

    requests: int = 0
    failures: int = 0


class JsonRpcClient:
    """Throttled, retrying JSON-RPC client for one chain's endpoints (in config order)."""

    def __init__(self, chain: ChainConfig, session: aiohttp.ClientSession) -> None:
        self.chain = chain
        self._session = session
        self._throttle = Throttler(rate_limit=max(1, int(chain.rate_limit_rps)), period=1.0)
        self._ids = itertools.count(1)
        self.stats = {url: EndpointStats() for url in chain.rpc_urls}

    async def request(self, method: str, params: list[Any]) -> Any:
        """One call; retried over endpoints on transport faults and rate limits."""
        last: ChainError | None = None
        for attempt in range(self.chain.retries + 1):
            url = self.chain.rpc_urls[attempt % len(self.chain.rpc_urls)]
            try:
                return await self._send(url, method, params)
            except RpcError as exc:
                if exc.code not in RATE_LIMIT_CODES:
                    raise
                last = exc
            except TransportError as exc:
                last = exc
            self.stats[url].failures += 1
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
        assert last is not None
        raise last

    async def _send(self, url: str, method: str, params: list[Any]) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        timeout = aiohttp.ClientTimeout(total=self.chain.timeout_s)
        cid = self.chain.chain_id
        async with self._throttle:
            self.stats[url].requests += 1
            try:
                async with self._session.post(url, json=body, timeout=timeout) as resp:
                    text = await resp.text()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise TransportError(cid, f"{type(exc).__name__} talking to endpoint") from exc
        if status == 429:
            raise RpcError(cid, 429, "rate limited (HTTP 429)")
        if status != 200:
            raise TransportError(cid, f"HTTP {status}")
        try:
            reply = json.loads(text)
        except ValueError as exc:
            raise TransportError(cid, "response body is not JSON") from exc
        if not isinstance(reply, dict):
            raise TransportError(cid, "response is not a JSON-RPC object")
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            raise RpcError(cid, int(err.get("code", 0)), str(err.get("message", "")))
        if reply.get("id") != body["id"] or "result" not in reply:
            raise TransportError(cid, "response id or result missing")
        return reply["result"]
