"""New-head notifications: a websocket `eth_subscribe("newHeads")` where the endpoint
offers one, to wake the watcher as soon as a block is mined.

Only a wake-up: the watcher still pins every chain itself (with the reads' failover)
and still polls every `watch.poll_s`, so a chain without websockets, or a subscription
that drops, costs latency, never a block. `live` is told when a subscription starts
and ends: while every chain has one, the watcher need not poll between slices of
recomputation (api/watch/watcher.py). The websocket URL is the chain's first RPC
URL with `http` replaced by `ws` (anvil, and most providers, serve both on one URL);
an endpoint that does not upgrade is left alone and retried after a while. Nothing
about an endpoint (its URL may hold a key) is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

import aiohttp

from crossmargin.core.config import ChainConfig

log = logging.getLogger("api.watch")
RETRY_S = 30.0


def ws_url(http: str) -> str | None:
    if http.startswith("https://"):
        return "wss://" + http[len("https://") :]
    if http.startswith("http://"):
        return "ws://" + http[len("http://") :]
    if http.startswith(("ws://", "wss://")):
        return http
    return None


async def follow_heads(
    chain: ChainConfig, wake: Callable[[], None], live: Callable[[bool], None] | None = None
) -> None:
    """Call `wake()` on every new head of `chain` until cancelled; `live(True)` once
    subscribed, `live(False)` when the subscription ends."""
    url = ws_url(chain.rpc_urls[0])
    if url is None:
        return
    timeout = aiohttp.ClientWSTimeout(ws_close=5.0)
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, ValueError):
                async with session.ws_connect(url, timeout=timeout, heartbeat=30.0) as ws:
                    sub = {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe"}
                    await ws.send_str(json.dumps({**sub, "params": ["newHeads"]}))
                    try:
                        async for msg in ws:
                            if msg.type != aiohttp.WSMsgType.TEXT:
                                break
                            data = json.loads(msg.data)
                            if data.get("method") == "eth_subscription":
                                wake()
                            elif data.get("id") == 1 and "result" in data and live is not None:
                                live(True)
                    finally:
                        if live is not None:
                            live(False)
            log.debug("no newHeads subscription on %s for now", chain.name)
            await asyncio.sleep(RETRY_S)
