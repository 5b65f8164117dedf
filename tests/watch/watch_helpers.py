"""Helpers of the watch tests: chain actions on the devnet (an impersonated token
transfer, a price round) and a real local webhook receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devnet import Devnet
from devnet.evm import DEPLOYER, calldata
from tests.jsonrpc import rpc_call as rpc


def send(url: str, sender: str, to: str, data: str) -> int:
    """One transaction, mined in its own block; the block number."""
    rpc(url, "anvil_impersonateAccount", sender)
    tx = rpc(url, "eth_sendTransaction", {"from": sender, "to": to, "data": data, "gas": "0x7a120"})
    rpc(url, "evm_mine")
    receipt = rpc(url, "eth_getTransactionReceipt", tx)
    assert receipt["status"] == "0x1", receipt
    return int(receipt["blockNumber"], 16)


def token(net: Devnet, chain: str, symbol: str) -> str:
    for r in net.config.representations:
        if r.chain == chain and r.symbol == symbol:
            return str(r.address)
    raise KeyError(symbol)


def transfer(net: Devnet, chain: str, symbol: str, sender: str, to: str, raw: int) -> int:
    url = net.rpc_url(chain)
    data = calldata("transfer(address,uint256)", to, raw)
    return send(url, sender, token(net, chain, symbol), data)


def feed_answer(net: Devnet, chain: str, feed: str) -> int:
    raw = rpc(
        net.rpc_url(chain), "eth_call", {"to": feed, "data": calldata("latestAnswer()")}, "latest"
    )
    value = int(raw, 16)
    return value - (1 << 256) if value >> 255 else value


def move_price(net: Devnet, asset: str, factor: float) -> list[int]:
    """A new round on every feed of `asset` (MockV3Aggregator.updateAnswer), the answer
    times `factor`; the blocks they were mined in."""
    blocks = []
    for a in net.config.assets:
        if a.symbol != asset:
            continue
        for f in a.feeds:
            answer = int(feed_answer(net, f.chain, f.address) * factor)
            data = calldata("updateAnswer(int256)", answer)
            blocks.append(send(net.rpc_url(f.chain), DEPLOYER, f.address, data))
    return blocks


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (README, "Verifying a webhook")."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("v1=" + mac.hexdigest(), signature)


@dataclass
class Hit:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A webhook endpoint: answers the statuses in `script` in turn, then 200."""

    script: list[int] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        status = self.script.pop(0) if self.script else 200
        self.hits.append(Hit(dict(request.headers), await request.read(), status))
        self._arrived.set()
        return web.Response(status=status)

    def acknowledged(self) -> list[Hit]:
        return [h for h in self.hits if 200 <= h.status < 300]

    async def wait_for(self, pred: Any, within_s: float = 60.0) -> None:
        async with asyncio.timeout(within_s):
            while not pred(self):
                self._arrived.clear()
                await self._arrived.wait()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def payloads(hits: Sequence[Hit]) -> list[dict[str, Any]]:
    return [json.loads(h.body) for h in hits]
