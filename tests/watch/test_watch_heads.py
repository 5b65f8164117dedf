"""New heads over the websocket wake the watcher (anvil serves `eth_subscribe` on its
HTTP port); an endpoint without websockets leaves only polling, quietly."""

from __future__ import annotations

import asyncio

import pytest
from watch_helpers import rpc

from api.watch.heads import follow_heads, ws_url
from devnet import Devnet


def test_ws_url_of_an_rpc_url() -> None:
    assert ws_url("http://127.0.0.1:8545") == "ws://127.0.0.1:8545"
    assert ws_url("https://x.example/v2/key") == "wss://x.example/v2/key"
    assert ws_url("wss://x.example") == "wss://x.example"
    assert ws_url("ipc:///tmp/x") is None


@pytest.mark.asyncio(loop_scope="session")
async def test_a_mined_block_wakes_the_follower(own_devnet: Devnet) -> None:
    chain = own_devnet.config.chain("arbitrum")
    woken = asyncio.Event()
    task = asyncio.create_task(follow_heads(chain, woken.set))
    try:
        await asyncio.sleep(1.0)  # subscribed
        assert not woken.is_set()
        rpc(own_devnet.rpc_url("arbitrum"), "evm_mine")
        async with asyncio.timeout(10):
            await woken.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
