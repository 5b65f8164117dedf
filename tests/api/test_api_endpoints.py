"""The v1 endpoints on the devnet: batch, reference data, health, snapshots and paging,
caching and coalescing, /metrics and /openapi.json."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from api_helpers import api_config
from eth_utils.address import to_checksum_address
from sqlalchemy.exc import OperationalError

from api.app import SERVICE, create_app
from api.service import Served, _Pending
from crossmargin.core.canonical import canonical, digest
from crossmargin.core.errors import Refused
from crossmargin.engine import Engine, Result
from crossmargin.pipeline.stored import blob_refs

pytestmark = pytest.mark.asyncio(loop_scope="session")
Client = TestClient[Any, Any]


@pytest_asyncio.fixture(loop_scope="session")
async def client(devnet: Any, database: str) -> AsyncIterator[Client]:
    config = api_config(devnet, max_batch=8, anonymous_rate_per_s=1e4, anonymous_burst=10_000)
    app = create_app(config, database=database)
    async with TestClient(TestServer(app)) as c:
        yield c


def fresh() -> str:
    return to_checksum_address("0x" + secrets.token_hex(20))


def rpc_requests(c: Client) -> int:
    service = c.server.app[SERVICE]
    return sum(ep.stats.requests for a in service.adapters.values() for ep in a.rpc.endpoints)


async def test_batch_matches_single_requests(client: Client, devnet: Any) -> None:
    accounts = list(devnet.demo_accounts.values())
    resp = await client.post(
        "/v1/margin:batch",
        json={"accounts": [accounts[0].lower(), *accounts[1:]], "target_chain": "base"},
    )
    assert resp.status == 200
    batch = await resp.json()
    assert batch["target_chain"] == {"chain_id": 8453, "name": "base"}
    assert batch["count"] == len(accounts)
    assert [r["account"] for r in batch["results"]] == accounts  # order kept, checksummed
    for item in batch["results"]:
        assert item["error"] is None
        single = await client.get(f"/v1/accounts/{item['account']}/margin?target_chain=8453")
        assert single.headers["X-Cache"] == "hit"  # the batch computed and cached it
        assert single.headers["Snapshot-Id"] == item["snapshot_id"]
        assert await single.json() == item["margin"]


async def test_batch_limits(client: Client, devnet: Any) -> None:
    too_many = [fresh() for _ in range(9)]
    resp = await client.post("/v1/margin:batch", json={"accounts": too_many})
    assert resp.status == 400
    assert "at most 8" in (await resp.json())["detail"]
    alice = devnet.demo_accounts["alice"]
    resp = await client.post("/v1/margin:batch", json={"accounts": [alice, alice.lower()]})
    assert resp.status == 400
    assert "listed twice" in (await resp.json())["detail"]
    resp = await client.post("/v1/margin:batch", json={"accounts": [alice], "extra": 1})
    assert resp.status == 400


async def test_batch_errors_are_inline(
    client: Client, devnet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob, carol = devnet.demo_accounts["bob"], devnet.demo_accounts["carol"]
    real = Engine.evaluate

    def evaluate(self: Engine, req: Any, states: Any, est: Any, method: Any = None) -> Any:
        if req.account == carol:
            return Result(
                req, states, None, Refused("capacity is not defined for these parameters")
            )
        return real(self, req, states, est, method)

    real_many = Engine.evaluate_many

    def evaluate_many(self: Engine, reqs: Any, states: Any, est: Any, method: Any = None) -> Any:
        got = real_many(self, reqs, states, est, method)
        return [evaluate(self, r.request, r.states, est, method) if r.request.account == carol
                else r for r in got]  # fmt: skip

    monkeypatch.setattr(Engine, "evaluate", evaluate)
    monkeypatch.setattr(Engine, "evaluate_many", evaluate_many)
    body = {"accounts": [bob, carol], "target_chain": "optimism", "method": "es"}  # not cached
    resp = await client.post("/v1/margin:batch", json=body)
    assert resp.status == 200
    ok, failed = (await resp.json())["results"]
    assert ok["margin"]["account"] == bob
    assert failed["margin"] is None
    assert failed["snapshot_id"] is None
    assert failed["error"]["status"] == 422


async def test_batch_reads_accounts_together(client: Client) -> None:
    accounts = [fresh() for _ in range(8)]
    before = rpc_requests(client)
    resp = await client.post("/v1/margin:batch", json={"accounts": accounts})
    assert resp.status == 200
    assert all(r["error"] is None for r in (await resp.json())["results"])
    # one pin and one shared multicall per chain, not one read per account and chain
    assert rpc_requests(client) - before <= 2 * 4


async def test_concurrent_batches_share_passes_and_transactions(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent batches and single requests are computed and stored by one batcher:
    fewer appends than requests, each snapshot stored once and found there again; a
    store that fails fails the batches it holds (503), and nothing failed is cached."""
    store = client.app[SERVICE].store
    real = type(store).append_many
    sizes: list[int] = []

    def append_many(self: Any, items: Any) -> Any:
        sizes.append(len(items))
        return real(self, items)

    monkeypatch.setattr(type(store), "append_many", append_many)
    groups = [[fresh() for _ in range(5)] for _ in range(4)]
    single = fresh()
    resps = await asyncio.gather(
        *(client.post("/v1/margin:batch", json={"accounts": g}) for g in groups),
        client.get(f"/v1/accounts/{single}/margin"),
    )
    assert [r.status for r in resps] == [200] * 5
    ids = [i["snapshot_id"] for r in resps[:4] for i in (await r.json())["results"]]
    assert len(set(ids)) == 20
    assert None not in ids
    assert sum(sizes) == 21
    assert len(sizes) < 5  # one batcher: passes and transactions shared
    client.app[SERVICE].results._done.clear()  # this process forgot: the store answers
    resp = await client.post("/v1/margin:batch", json={"accounts": groups[0]})
    assert [i["snapshot_id"] for i in (await resp.json())["results"]] == ids[:5]
    assert sum(sizes) == 21  # nothing computed nor stored again

    def refuse(self: Any, items: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(type(store), "append_many", refuse)
    failed = [fresh() for _ in range(3)]
    resp = await client.post("/v1/margin:batch", json={"accounts": failed})
    assert resp.status == 503
    assert (await resp.json())["type"].endswith("/problems/store-unavailable")
    monkeypatch.setattr(type(store), "append_many", real)
    resp = await client.post("/v1/margin:batch", json={"accounts": failed})
    assert resp.status == 200  # computed afresh, not a cached failure
    assert all(i["snapshot_id"] is not None for i in (await resp.json())["results"])


async def test_concurrent_reads_share_multicalls(client: Client) -> None:
    """Concurrent requests share multicalls at the seam (CoalescingReader). A wide window
    makes the test independent of how the machine schedules the 12 requests: each
    chain flushes once, or twice when a caller arrives while the first is in flight."""
    accounts = [fresh() for _ in range(12)]
    await client.get("/v1/health")  # fresh pins
    readers = list(client.app[SERVICE].adapters.values())
    windows = [r.window_s for r in readers]
    flushes = [r.stats.flushes for r in readers]
    before = rpc_requests(client)
    try:
        for r in readers:
            r.window_s = 0.2
        responses = await asyncio.gather(
            *(client.get(f"/v1/accounts/{a}/margin") for a in accounts)
        )
    finally:
        for r, w in zip(readers, windows, strict=True):
            r.window_s = w
    assert {r.status for r in responses} == {200}
    for r, f in zip(readers, flushes, strict=True):
        assert r.stats.flushes - f <= 2, r.stats
    # 12 accounts x 4 chains read one by one would be 48 multicalls
    assert rpc_requests(client) - before <= 2 * 4 + 4  # (+ a re-pin per chain)


async def test_concurrent_single_requests_read_together(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Single requests arriving together are read in one `Engine.read` of them all; an
    account asked twice with different §1 addresses is read twice, each as asked."""
    calls: list[list[str]] = []
    real = Engine.read

    async def read(self: Engine, accounts: Any, pins: Any = None, addresses: Any = None) -> Any:
        calls.append(list(accounts))
        return await real(self, accounts, pins, addresses)

    monkeypatch.setattr(Engine, "read", read)
    accounts = [fresh() for _ in range(12)]
    other = fresh()
    await client.get("/v1/health")  # fresh pins
    paths = [f"/v1/accounts/{a}/margin" for a in accounts]
    paths.append(f"/v1/accounts/{accounts[0]}/margin?addresses=base:{other.lower()}")
    responses = await asyncio.gather(*(client.get(p) for p in paths))
    assert [r.status for r in responses] == [200] * 13
    reports = [await r.json() for r in responses]
    assert sorted(a for c in calls for a in c) == sorted([*accounts, accounts[0]])
    assert len(calls) < 13  # read together, not one by one
    assert all(len(set(c)) == len(c) for c in calls)  # an account once per read
    base = [c for c in reports[12]["chains"] if c["name"] == "base"]
    assert base[0]["address"] == other  # each read and computed with its own addresses
    assert all(c.get("address") in (None, accounts[0]) for c in reports[0]["chains"])


async def test_one_pass_keeps_each_requests_addresses(client: Client) -> None:
    """One account asked with and without §1 addresses, computed in one batcher pass:
    each report is computed from its own states."""
    svc = client.app[SERVICE]
    account, other = fresh(), fresh()
    pins = await svc.pins.current()
    plain = svc.request("margin", account, "base", None)
    mapped = svc.request("margin", account, "base", None, addresses=[("base", other)])
    states = [(await svc._read_many([r], pins))[account] for r in (plain, mapped)]
    items = [
        _Pending("var", r, st, None, None) for r, st in zip((plain, mapped), states, strict=True)
    ]
    served = await asyncio.to_thread(svc._compute_and_store_many, items)
    reports = [json.loads(s.body) for s in served if isinstance(s, Served)]
    on_base = [next(c for c in r["chains"] if c["name"] == "base") for r in reports]
    assert [c.get("address") for c in on_base] == [None, other]


async def test_identical_requests_coalesce(client: Client) -> None:
    account = fresh()
    await client.get("/v1/health")  # pins are fresh: what follows is one read
    before = rpc_requests(client)
    responses = await asyncio.gather(
        *(client.get(f"/v1/accounts/{account}/stress") for _ in range(25))
    )
    assert {r.status for r in responses} == {200}
    assert len({r.headers["Snapshot-Id"] for r in responses}) == 1
    sources = sorted(r.headers["X-Cache"] for r in responses)
    assert sources.count("miss") == 1
    assert set(sources) <= {"miss", "coalesced", "hit"}
    assert rpc_requests(client) - before <= 4 + 4  # one read per chain (+ a re-pin)
    page = await (await client.get(f"/v1/accounts/{account}/snapshots")).json()
    assert len(page["items"]) == 1  # one computation, one snapshot


async def test_snapshot_pages_and_documents(client: Client, devnet: Any) -> None:
    carol = devnet.demo_accounts["carol"]
    served = []
    for query in (
        "margin?target_chain=1",
        "margin?target_chain=10",
        "capacity",
        "stress",
        "margin?method=es",
    ):
        resp = await client.get(f"/v1/accounts/{carol}/{query}")
        assert resp.status == 200
        served.append(resp.headers["Snapshot-Id"])
    ids, cursor = [], None
    while True:
        url = f"/v1/accounts/{carol.lower()}/snapshots?limit=2"
        page = await (await client.get(url + (f"&cursor={cursor}" if cursor else ""))).json()
        assert page["account"] == carol
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert ids[: len(served)] == served[::-1]  # newest first
    snap = await (await client.get(f"/v1/snapshots/{served[2]}")).json()
    assert snap["kind"] == "capacity"
    assert snap["prev_id"] == served[1]
    assert digest(canonical(snap["document"])) == served[2]  # anyone can check the id
    assert snap["document"]["prev"] == served[1]
    assert set(snap["document"]["inputs"]) == {"chains", "estimates", "parameters"}
    assert set(snap["blobs"]) == set(blob_refs(snap["document"]))  # served with it ...
    assert all(digest(canonical(b)) == h for h, b in snap["blobs"].items())  # ... checkable


async def test_reference_data_and_health(client: Client, devnet: Any) -> None:
    chains = await (await client.get("/v1/chains")).json()
    config = devnet.config
    assert [c["name"] for c in chains["chains"]] == [c.name for c in config.chains]
    assert chains["settlement_chain"] == config.settlement_chain
    assert "rpc" not in json.dumps(chains).lower()  # endpoints are counted, not shown
    assets = await (await client.get("/v1/assets")).json()
    assert [a["symbol"] for a in assets["assets"]] == [a.symbol for a in config.assets]
    usdc = next(a for a in assets["assets"] if a["symbol"] == "USDC")
    assert {r["symbol"] for r in usdc["representations"]} >= {"USDC", "USDC.e"}
    health = await (await client.get("/v1/health")).json()
    assert health["status"] == "ok"
    for chain in health["chains"]:
        assert chain["status"] == "ok"
        assert chain["head_block"] >= chain["pinned_block"] >= 0
        assert chain["lag_blocks"] == chain["head_block"] - chain["pinned_block"]
        assert chain["endpoints"][0]["index"] == 0
        assert chain["endpoints"][0]["state"] == "ok"


async def test_metrics(client: Client, devnet: Any) -> None:
    alice = devnet.demo_accounts["alice"]
    for _ in range(2):
        await client.get(f"/v1/accounts/{alice}/margin")
    await client.get("/v1/accounts/0x12/margin")
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    route = 'route="/v1/accounts/{address}/margin"'
    assert (
        f'crossmargin_http_request_duration_seconds_bucket{{le="0.01",method="GET",{route},status="200"}}'
        in text
    )
    assert f'method="GET",{route},status="400"' in text
    assert 'crossmargin_rpc_requests_total{chain="ethereum",endpoint="0",outcome="ok"}' in text
    assert 'crossmargin_cache_lookups_total{layer="result",outcome="hit"}' in text
    assert "crossmargin_snapshots_stored_total" in text
    assert "127.0.0.1:" not in text  # no endpoint URL in labels


async def test_openapi_document(client: Client) -> None:
    spec = await (await client.get("/openapi.json")).json()
    assert spec["openapi"] == "3.1.0"
    ops = {(m, p) for p, item in spec["paths"].items() for m in item}
    assert ops == {
        ("get", "/v1/accounts/{address}/margin"),
        ("get", "/v1/accounts/{address}/capacity"),
        ("get", "/v1/accounts/{address}/stress"),
        ("post", "/v1/margin:batch"),
        ("get", "/v1/chains"),
        ("get", "/v1/assets"),
        ("get", "/v1/health"),
        ("get", "/v1/health/live"),
        ("get", "/v1/snapshots/{id}"),
        ("get", "/v1/accounts/{address}/snapshots"),
        ("get", "/v1/log/tree-head"),
        ("get", "/v1/log/key"),
        ("get", "/v1/log/inclusion/{id}"),
        ("get", "/v1/log/consistency"),
        ("post", "/v1/watches"),
        ("get", "/v1/watches"),
        ("get", "/v1/watches/{watch_id}"),
        ("patch", "/v1/watches/{watch_id}"),
        ("delete", "/v1/watches/{watch_id}"),
        ("get", "/v1/alerts"),
    }
    schemas = spec["components"]["schemas"]
    text = json.dumps(spec)
    assert "$defs" not in text
    for ref in {r.split('"')[0] for r in text.split('"$ref": "')[1:]}:
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[1] in schemas
    margin = spec["paths"]["/v1/accounts/{address}/margin"]["get"]
    target = next(p for p in margin["parameters"] if p["name"] == "target_chain")
    assert "arbitrum" in target["schema"]["enum"]
    assert "42161" in target["schema"]["enum"]
    assert margin["responses"]["200"]["headers"]["Snapshot-Id"]["required"] is True
    assert "application/problem+json" in margin["responses"]["429"]["content"]
