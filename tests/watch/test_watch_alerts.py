"""Alerts end to end on a devnet (METHOD.md §14): the API's watcher follows the chains,
a transfer that drops health below the threshold raises one alert naming the right
snapshot, signed with the watch's secret and re-delivered after the receiver answers
500 twice; a price round that restores health raises the "recovered" alert."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from watch_helpers import Receiver, move_price, payloads, rpc, transfer, verify

from api.app import WATCHER, create_app
from api.security import new_key
from api.watch.delivery import ID_HEADER, SIGNATURE_HEADER, TIME_HEADER
from api.watch.watcher import Watcher
from crossmargin.core.config import ApiKeyConfig, Config
from devnet import Devnet

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "a-webhook-secret-of-some-length"
FAST = {"poll_s": 0.1, "retry_base_s": 0.2, "retry_max_s": 1.0, "sweep_s": 3600.0}


def watch_config(net: Devnet, key_digest: str) -> Config:
    cfg = net.config
    api = cfg.api.model_copy(update={"keys": [ApiKeyConfig(name="k", sha256=key_digest)]})
    return cfg.model_copy(update={"api": api, "watch": cfg.watch.model_copy(update=FAST)})


async def until(watcher: Watcher, pred: Any, within_s: float = 60.0) -> None:
    """Wait, step by step of the watcher, until `pred()`."""
    stepped = asyncio.Event()
    watcher.on_step = lambda _: stepped.set()
    async with asyncio.timeout(within_s):
        while not pred():
            stepped.clear()
            await stepped.wait()


async def test_transfer_alerts_once_signed_retried_then_recovered(
    own_devnet: Devnet, tmp_path: Path
) -> None:
    net = own_devnet
    bob = net.demo_accounts["bob"]
    eth = net.rpc_url("ethereum")
    rpc(eth, "anvil_setBalance", bob, hex(10**17))  # gas for bob's own transfer, below
    key, digest = new_key()
    headers = {"X-API-Key": key}
    receiver = await Receiver(script=[500, 500]).start()
    app = create_app(watch_config(net, digest), database=f"sqlite:///{tmp_path / 'w.db'}")
    try:
        async with TestClient(TestServer(app)) as c:
            before = await (await c.get(f"/v1/accounts/{bob}/margin")).json()
            health = Decimal(before["totals"]["health"])
            threshold = float(health * Decimal("0.8"))
            body = {
                "accounts": [bob],
                "thresholds": {"health_below": threshold},
                "webhook_url": receiver.url,
                "secret": SECRET,
            }
            resp = await c.post("/v1/watches", json=body, headers=headers)
            assert resp.status == 200, await resp.text()
            wid = (await resp.json())["id"]
            watcher = app[WATCHER]
            await until(watcher, lambda: any(g for g, a in watcher.computed if a == bob))
            assert receiver.hits == []  # above the threshold: nothing to say

            # bob sends away 1 of his 1.5 WBTC on ethereum: health drops below 0.8x
            block = transfer(net, "ethereum", "WBTC", bob, "0x" + "11" * 20, 10**8)
            await receiver.wait_for(lambda r: len(r.acknowledged()) == 1)
            assert [h.status for h in receiver.hits] == [500, 500, 200]
            ids = {h.headers[ID_HEADER] for h in receiver.hits}
            assert len(ids) == 1  # the same alert, re-sent
            assert len({h.body for h in receiver.hits}) == 1  # byte for byte
            for hit in receiver.hits:
                stamp, sig = hit.headers[TIME_HEADER], hit.headers[SIGNATURE_HEADER]
                assert verify(SECRET, stamp, hit.body, sig)
                assert not verify("another-secret-entirely", stamp, hit.body, sig)
            (alert,) = payloads(receiver.hits[-1:])
            assert alert["id"] == ids.pop()
            assert alert["kind"] == "breached"
            assert alert["condition"] == "health_below"
            assert Decimal(alert["value"]) < Decimal(str(threshold))
            # the snapshot it names is stored, is bob's, and is at or after the transfer
            snap = await c.get(f"/v1/snapshots/{alert['snapshot_id']}")
            assert snap.status == 200, await snap.text()
            stored = await snap.json()
            assert stored["account"] == bob
            assert stored["kind"] == "margin"
            assert alert["value"] in str(stored["document"]) + str(stored["blobs"])
            eth_pin = next(b for b in alert["as_of"] if b["name"] == "ethereum")
            assert eth_pin["block_number"] >= block

            listed = await (await c.get("/v1/alerts", headers=headers)).json()
            (row,) = listed["alerts"]
            assert row["status"] == "delivered"
            assert row["attempts"] == 3
            assert row["snapshot_id"] == alert["snapshot_id"]
            assert row["watch_id"] == wid

            # more blocks, still below: no second alert
            for _ in range(3):
                rpc(eth, "evm_mine")
            await asyncio.sleep(1.0)
            assert len(receiver.hits) == 3

            # BTC up 4x on every chain: bob's health comes back above the threshold
            move_price(net, "BTC", 4.0)
            await receiver.wait_for(lambda r: len(r.acknowledged()) == 2)
            recovered = payloads(receiver.acknowledged())[-1]
            assert recovered["kind"] == "recovered"
            assert recovered["condition"] == "health_below"
            assert Decimal(recovered["value"]) >= Decimal(str(threshold))
            assert recovered["snapshot_id"] != alert["snapshot_id"]
    finally:
        await receiver.stop()
