"""/v1/health is something a load balancer can trust: it answers within about 1.5 s
from what the process last learned, even while a node hangs (a real anvil, SIGSTOPped)
or the database holds its write lock; it says `down` (503) when the snapshot store
cannot write (a PostgreSQL role without INSERT), since no report could be served then.
/v1/health/live only says the process answers."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_helpers import with_chain
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api import handlers
from api.app import create_app

Client = TestClient[Any, Any]
BOUND_S = 2.0  # what a load balancer may wait for; the handler's own bound is 1.5 s
FAST = {"timeout_s": 1.0, "retries": 1, "retry_budget_s": 3.0, "cooldown_s": 0.5}


async def timed_health(client: Client) -> tuple[int, dict[str, Any]]:
    t0 = time.monotonic()
    resp = await client.get("/v1/health")
    doc = await resp.json()
    assert time.monotonic() - t0 < BOUND_S
    return resp.status, doc


async def until(
    client: Client, done: Callable[[int, dict[str, Any]], bool]
) -> tuple[int, dict[str, Any]]:
    """Ask /v1/health until `done` holds (within 15 s); every answer within the bound."""
    deadline = time.monotonic() + 15.0
    while True:
        status, doc = await timed_health(client)
        if done(status, doc):
            return status, doc
        assert time.monotonic() < deadline, doc
        await asyncio.sleep(0.3)


def chain(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in doc["chains"] if c["name"] == name)


@pytest.mark.asyncio
async def test_health_is_bounded_while_a_node_hangs(
    devnet: Any, anvils: Any, tmp_path: Path
) -> None:
    ethereum = devnet.config.chain("ethereum")
    node = anvils.replica(ethereum.rpc_urls[0], ethereum.chain_id)  # same chain, own process
    config = with_chain(devnet.config, "ethereum", rpc_urls=[node.url], **FAST)
    app = create_app(config, database=f"sqlite:///{tmp_path / 's.db'}")
    async with TestClient(TestServer(app)) as client:
        status, doc = await timed_health(client)
        assert (status, doc["status"]) == (200, "ok")
        assert doc["store"]["writable"] is True
        before = chain(doc, "ethereum")
        assert before["status"] == "ok"
        assert before["error_code"] is None

        node.pause()  # SIGSTOP: connections are accepted, nothing answers
        await asyncio.sleep(config.api.pin_ttl_s + 0.1)  # the next health re-pins
        status, doc = await timed_health(client)
        eth = chain(doc, "ethereum")
        assert (status, doc["status"], eth["status"]) == (200, "degraded", "stale")
        assert eth["pinned_block"] == before["pinned_block"]  # the last known state
        assert eth["head_block"] == before["head_block"]
        assert eth["known_age_s"] >= config.api.pin_ttl_s
        assert all(c["status"] == "ok" for c in doc["chains"] if c["name"] != "ethereum")
        live = await client.get("/v1/health/live")
        assert (live.status, await live.json()) == (200, {"status": "live"})

        # the re-pin gives up (1 s timeout, one retry): the chain is then unavailable
        status, doc = await until(client, lambda s, d: chain(d, "ethereum")["status"] != "stale")
        eth = chain(doc, "ethereum")
        assert (status, doc["status"], eth["status"]) == (200, "degraded", "unavailable")
        assert eth["error_code"] == "node_timeout"
        assert eth["error"] == "node_timeout: no endpoint of chain ethereum answered in time"
        assert eth["pinned_block"] == before["pinned_block"]
        assert eth["endpoints"][0]["failures"] >= 2

        node.resume()
        status, doc = await until(client, lambda s, d: d["status"] == "ok")
        assert chain(doc, "ethereum")["known_age_s"] < BOUND_S


@pytest.mark.asyncio
async def test_health_is_bounded_while_the_store_is_locked(
    devnet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer holds SQLite's write lock (the store waits up to 30 s for it)."""
    monkeypatch.setattr(handlers, "STORE_CHECK_S", 0.2)  # probe on every health call
    path = tmp_path / "s.db"
    app = create_app(devnet.config, database=f"sqlite:///{path}")
    async with TestClient(TestServer(app)) as client:
        status, doc = await timed_health(client)
        assert (status, doc["store"]["writable"]) == (200, True)
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            await asyncio.sleep(0.3)
            status, doc = await timed_health(client)
            assert (status, doc["status"]) == (503, "down")
            assert doc["store"]["writable"] is False
            assert doc["store"]["error_code"] == "store_timeout"
            assert all(c["status"] == "ok" for c in doc["chains"])  # the chains are fine
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        status, doc = await until(client, lambda s, d: d["store"]["writable"])
        assert (status, doc["status"]) == (200, "ok")


@pytest.mark.asyncio
async def test_a_store_that_refuses_writes_is_down(devnet: Any, pg_database: str) -> None:
    """PostgreSQL: a role that may read the schema but not write it. The API starts (the
    schema is at head, the configs are stored), but no report could be stored, so none
    could be served: health must say so, not `ok`."""
    alice = devnet.demo_accounts["alice"]
    async with TestClient(TestServer(create_app(devnet.config, database=pg_database))) as owner:
        status, doc = await timed_health(owner)  # migrates and stores the configs
        assert (status, doc["store"]["writable"]) == (200, True)

    url = make_url(pg_database)
    schema = str(url.query["options"]).removeprefix("-csearch_path=")
    role = f"cmt_ro_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'create role "{role}" login'))
        conn.execute(text(f'grant usage on schema "{schema}" to "{role}"'))
        conn.execute(text(f'grant select on all tables in schema "{schema}" to "{role}"'))
    try:
        reader = url.set(username=role).render_as_string(hide_password=False)
        async with TestClient(TestServer(create_app(devnet.config, database=reader))) as client:
            status, doc = await timed_health(client)
            assert (status, doc["status"]) == (503, "down")
            assert doc["store"]["writable"] is False
            assert doc["store"]["error_code"] == "store_not_writable"
            assert all(c["status"] == "ok" for c in doc["chains"])
            body = await (await client.get("/v1/health")).text()
            for secret in (role, schema, "permission", "psycopg", "127.0.0.1"):
                assert secret not in body
            margin = await client.get(f"/v1/accounts/{alice}/margin")
            assert margin.status == 503  # what health warned of
            body = await margin.json()
            assert body["code"] == "store_unavailable", body
            status, doc = await timed_health(client)
            assert (status, doc["store"]["error_code"]) == (503, "store_not_writable")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'drop owned by "{role}"'))
            conn.execute(text(f'drop role "{role}"'))
        admin.dispose()
