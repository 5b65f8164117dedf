"""The typed client against a running API on the devnet: every operation round-trips
(the model it returns is the JSON the server sent), problems become `ApiError` with the
server's code, 429 is retried after Retry-After within bounds, and a dead server is
`Unreachable`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from client_helpers import OPS, free_url, make_key, snake, with_api

from api.app import create_app
from api.watch.rules import Thresholds
from crossmargin.client import ApiError, Client, RateLimited, Retry, Unreachable

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def raw(url: str, **params: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(url, params=params) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_every_operation_round_trips(served: str, devnet: Any) -> None:
    alice, bob = devnet.demo_accounts["alice"], devnet.demo_accounts["bob"]
    called: set[str] = set()

    def used(name: str) -> None:
        called.add(name)

    async with Client(served) as api:
        used("get_chains")
        chains = await api.get_chains()
        assert chains.model_dump(mode="json") == await raw(f"{served}/v1/chains")
        used("get_assets")
        assets = await api.get_assets()
        assert assets.model_dump(mode="json") == await raw(f"{served}/v1/assets")
        used("get_liveness")
        assert (await api.get_liveness()).status == "live"
        used("get_health")
        assert (await api.get_health()).status in ("ok", "degraded")

        used("get_margin")
        margin = await api.get_margin(alice.lower(), target_chain="base", method="es")
        assert margin.report.account == alice
        assert margin.report.method == "es"
        assert margin.report.target_chain.name == "base"
        again = await raw(f"{served}/v1/accounts/{alice}/margin", target_chain="base", method="es")
        assert margin.report.model_dump(mode="json") == again  # the cached, same report
        used("get_capacity")
        cap = await api.get_capacity(alice, target_chain=8453, asset="USDC", method="es")
        assert [c.asset for c in cap.report.capacities] == ["USDC"]
        assert cap.report.free_margin_usd == margin.report.totals.free_margin_usd
        used("get_stress")
        stress = await api.get_stress(alice)
        assert stress.report.scenarios

        used("get_snapshot")
        snap = await api.get_snapshot(margin.snapshot_id)
        assert snap.id == margin.snapshot_id
        assert snap.kind == "margin"
        assert snap.model_dump(mode="json") == await raw(f"{served}/v1/snapshots/{snap.id}")

        used("post_margin_batch")
        batch = await api.post_margin_batch([alice, bob], target_chain="base", method="es")
        assert [i.account for i in batch.results] == [alice, bob]
        assert batch.results[0].snapshot_id == margin.snapshot_id  # served from the cache
        assert batch.results[0].margin == margin.report

        used("list_snapshots")
        page = await api.list_snapshots(alice, kind="margin", limit=1)
        assert [i.id for i in page.items] == [margin.snapshot_id]
        figures = page.items[0].figures
        assert figures is not None
        assert figures.method == "es"
        assert figures.health == margin.report.totals.health
        assert figures.free_margin_usd == margin.report.totals.free_margin_usd
        assert figures.unavailable_chains == []
        every = await api.list_snapshots(alice)
        assert {i.kind for i in every.items} == {"margin", "capacity", "stress"}
        assert page.next_cursor is None or page.next_cursor.isdigit()

        used("get_log_key")
        key = await api.get_log_key()
        assert key.model_dump(mode="json") == await raw(f"{served}/v1/log/key")
        used("get_tree_head")
        head = await api.get_tree_head()
        assert head.key_id == key.key_id
        assert head.tree_size >= 4  # margin, capacity, stress and the batch's bob at least
        used("get_inclusion_proof")
        proof = await api.get_inclusion_proof(margin.snapshot_id, tree_size=head.tree_size)
        assert (proof.snapshot_id, proof.tree_size) == (margin.snapshot_id, head.tree_size)
        assert proof.root_hash == head.root_hash
        assert proof.leaf_index == snap.leaf_index
        used("get_consistency_proof")
        consistent = await api.get_consistency_proof(first=1, second=head.tree_size)
        assert consistent.second_root == head.root_hash
        assert consistent.model_dump(mode="json") == await raw(
            f"{served}/v1/log/consistency", first="1", second=str(head.tree_size)
        )
    assert called == {snake(op["operationId"]) for *_, op in OPS} - WATCH_OPS


WATCH_OPS = {snake(op["operationId"]) for *_, op in OPS if "watch" in op.get("tags", ())}


async def test_watch_operations_round_trip(devnet: Any, tmp_path: Path) -> None:
    """The keyed watch operations (§14): create, list, get, update, delete, alerts; the
    secret is never echoed; another key sees none of it."""
    key, entry = make_key("watcher", rate_per_s=1e4, burst=10_000)
    other, other_entry = make_key("other", rate_per_s=1e4, burst=10_000)
    config = with_api(devnet, anonymous=False, keys=[entry, other_entry])
    config = config.model_copy(update={"watch": config.watch.model_copy(update={"enabled": False})})
    app = create_app(config, database=f"sqlite:///{tmp_path / 'watch.db'}")
    alice, bob = devnet.demo_accounts["alice"], devnet.demo_accounts["bob"]
    called: set[str] = set()
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("")).rstrip("/")
        async with Client(url, key=key) as api, Client(url, key=other) as stranger:
            called.add("create_watch")
            made = await api.create_watch(
                [alice, bob],
                thresholds=Thresholds(health_below=1.2, liquidatable=True),
                webhook_url="http://127.0.0.1:9/hook",
                secret="s" * 32,
                name="desk",
                target_chain=42161,
            )
            assert (made.name, made.target_chain, set(made.accounts)) == (
                "desk",
                "arbitrum",
                {alice, bob},
            )
            assert made.thresholds.health_below == 1.2
            assert "secret" not in made.model_dump()
            called.add("list_watches")
            assert [w.id for w in (await api.list_watches()).watches] == [made.id]
            assert (await stranger.list_watches()).watches == []
            called.add("get_watch")
            assert await api.get_watch(made.id) == made
            with pytest.raises(ApiError) as hidden:
                await stranger.get_watch(made.id)
            assert hidden.value.status == 404
            called.add("update_watch")
            changed = await api.update_watch(made.id, accounts=[bob], name="bob only")
            assert (changed.accounts, changed.name, changed.thresholds) == (
                [bob],
                "bob only",
                made.thresholds,
            )
            called.add("list_alerts")
            assert (await api.list_alerts(watch_id=made.id, limit=10)).alerts == []
            called.add("delete_watch")
            gone = await api.delete_watch(made.id)
            assert (gone.id, gone.deleted) == (made.id, True)
            assert (await api.list_watches()).watches == []
    assert called == WATCH_OPS


async def test_problems_are_typed(served: str) -> None:
    async with Client(served) as api:
        with pytest.raises(ApiError) as bad:
            await api.get_margin("0x1234")
        assert (bad.value.status, bad.value.code) == (400, "bad_input")
        assert "0x" in bad.value.detail
        assert "bad_input" in str(bad.value)
        with pytest.raises(ApiError) as missing:
            await api.get_snapshot("0" * 64)
        assert (missing.value.status, missing.value.code) == (404, "not_found")


async def test_keys_and_retry_after(devnet: Any, tmp_path: Path) -> None:
    """A keyed deployment: no key is 401 `unauthorized`; with the key, a 429 is waited out
    (Retry-After: 1) and the call succeeds; a caller unwilling to wait gets RateLimited."""
    key, entry = make_key("client", rate_per_s=1.0, burst=1)
    config = with_api(devnet, anonymous=False, keys=[entry])
    app = create_app(config, database=f"sqlite:///{tmp_path / 'keyed.db'}")
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("")).rstrip("/")
        async with Client(url) as anonymous:
            with pytest.raises(ApiError) as denied:
                await anonymous.get_chains()
            assert (denied.value.status, denied.value.code) == (401, "unauthorized")
        async with Client(url, key=key) as api:
            await api.get_chains()  # the bucket's one token
            start = time.monotonic()
            await api.get_assets()  # 429, Retry-After: 1, then served
            assert time.monotonic() - start >= 0.9
        async with Client(url, key=key, retry=Retry(max_wait_s=0.1)) as impatient:
            with pytest.raises(RateLimited) as limited:  # the bucket is empty again
                await impatient.get_chains()
            assert limited.value.status == 429
            assert limited.value.retry_after == 1.0


async def test_unreachable_server() -> None:
    async with Client(free_url(), timeout_s=5) as api:
        with pytest.raises(Unreachable, match=r"cannot reach http://127\.0\.0\.1:\d+"):
            await api.get_liveness()
