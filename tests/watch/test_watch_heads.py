"""New heads over the websocket wake the watcher (anvil serves `eth_subscribe` on its
HTTP port), which is told when the subscription starts and ends; an endpoint without
websockets leaves only polling, quietly."""

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
    live: list[bool] = []
    task = asyncio.create_task(follow_heads(chain, woken.set, live.append))
    try:
        await asyncio.sleep(1.0)  # subscribed
        assert live == [True]
        assert not woken.is_set()
        rpc(own_devnet.rpc_url("arbitrum"), "evm_mine")
        async with asyncio.timeout(10):
            await woken.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert live == [True, False]  # no longer announced: the watcher polls again
