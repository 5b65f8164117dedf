"""METHOD.md §10, the serving side: a document found in the store by a request's cache
key is served only if its id is the sha256 of its content and its request is the one
being answered. A tampered or foreign document is ignored, counted and logged, and the
API answers with a fresh computation."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import create_engine, text

from api.app import create_app
from api.service import stored_check
from api.store import Store, normalise_url
from crossmargin.core.canonical import canonical, digest
from crossmargin.core.config import config_hash
from crossmargin.core.errors import SnapshotError
from crossmargin.engine import Engine
from crossmargin.pipeline.figures import Request, compute
from crossmargin.pipeline.snapshot import Built, document
from crossmargin.pipeline.stored import compact, expand


def ask(devnet: Any, url: str, path: str) -> tuple[str, str, bytes, dict[str, float]]:
    """One request to a freshly started API (empty memory cache, like another process):
    snapshot id, X-Cache, body, and the store-rejection counters by reason."""

    async def run() -> tuple[str, str, bytes, dict[str, float]]:
        async with TestClient(TestServer(create_app(devnet.config, database=url))) as c:
            resp = await c.get(path)
            body = await resp.read()
            assert resp.status == 200, body
            metrics = await (await c.get("/metrics")).text()
        rejected = {
            m[1]: float(m[2])
            for m in re.finditer(
                r'^crossmargin_store_rejected_total\{reason="(\w+)"\} (\S+)$', metrics, re.M
            )
        }
        return resp.headers["Snapshot-Id"], resp.headers["X-Cache"], body, rejected

    return asyncio.run(run())


def row(url: str, snapshot_id: str) -> dict[str, Any]:
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("select * from cm_snapshot where id = :id"), {"id": snapshot_id}
            ).first()
    finally:
        engine.dispose()
    assert found is not None
    return dict(found._mapping)


def rewrite(url: str, snapshot_id: str, document_text: str) -> None:
    engine = create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(
                text("update cm_snapshot set document = :d where id = :id"),
                {"d": document_text, "id": snapshot_id},
            )
    finally:
        engine.dispose()


def foreign_document(devnet: Any, req: Request) -> Callable[[str], Built]:
    """A valid snapshot document of `req`, read and computed now (to be planted)."""

    async def read() -> Any:
        async with Engine.connect(devnet.config) as engine:
            return (await engine.read([req.account]))[0]

    states = asyncio.run(read())
    report = compute(devnet.config, states, req)
    return lambda prev: document(devnet.config, req, states, report, prev)


def test_tampered_and_foreign_documents_are_not_served(devnet: Any, database: str) -> None:
    alice, bob = devnet.demo_accounts["alice"], devnet.demo_accounts["bob"]
    path = f"/v1/accounts/{alice}/margin?target_chain=arbitrum"
    first, source, body, _ = ask(devnet, database, path)
    assert source == "miss"
    key = row(database, first)["cache_key"]
    assert key

    # a result stored by another process is served from the store, as it stands
    again, source, same, rejected = ask(devnet, database, path)
    assert (again, source, rejected) == (first, "store", {})
    assert json.loads(same) == json.loads(body)

    # one byte of the stored document changed: its id no longer matches its content
    stored = row(database, first)["document"]
    i = stored.index('"collateral_usd":"') + len('"collateral_usd":"')
    rewrite(database, first, stored[:i] + str((int(stored[i]) + 1) % 10) + stored[i + 1 :])
    fresh, source, answer, rejected = ask(devnet, database, path)
    assert source == "miss"
    assert fresh != first
    assert json.loads(answer) == json.loads(body)
    assert rejected == {"id_mismatch": 1.0}
    again, source, _, rejected = ask(devnet, database, path)  # the fresh one serves now
    assert (again, source, rejected) == (fresh, "store", {})

    # valid documents of another account, or of another target, under this request's key
    store = Store.open(database)
    try:
        for other in (Request("margin", bob, "arbitrum"), Request("margin", alice, "base")):
            planted = store.append(alice, "margin", foreign_document(devnet, other), cache_key=key)
            served, source, answer, rejected = ask(devnet, database, path)
            assert source == "miss"
            assert served not in (planted.id, first, fresh)
            assert json.loads(answer) == json.loads(body)
            assert rejected == {"request_mismatch": 1.0}
    finally:
        store.close()


Stored = tuple[str, Any, dict[str, str]]


@pytest.fixture(scope="module")
def stored(devnet: Any, tmp_path_factory: pytest.TempPathFactory) -> Stored:
    """A snapshot document the API stored (bob's margin, target base), its pins as the
    service keys them, and the blobs it names."""
    url = f"sqlite:///{tmp_path_factory.mktemp('served') / 'snapshots.db'}"
    bob = devnet.demo_accounts["bob"]
    sid, _, _, _ = ask(devnet, url, f"/v1/accounts/{bob}/margin?target_chain=base")
    doc = row(url, sid)["document"]
    store = Store.open(url)
    try:
        blobs = store.blobs_for(doc)
    finally:
        store.close()
    pins = tuple(
        (c["chain"], int(c["pin"]["number"]), c["pin"]["hash"])
        for c in expand(json.loads(doc), blobs)["inputs"]["chains"]
    )
    return doc, pins, blobs


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        node = doc
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value

    return change


CHAIN0 = ("inputs", "chains", 0)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (None, None),
        (_set(("kind",), "stress"), "request_mismatch"),
        (_set(("account",), "0x" + "ab" * 20), "request_mismatch"),
        (_set(("request", "target_chain"), "arbitrum"), "request_mismatch"),
        (_set(("request", "asset"), "USDC"), "request_mismatch"),
        (_set(("inputs", "parameters", "config_hash"), "0" * 64), "request_mismatch"),
        (_set((*CHAIN0, "pin", "number"), "1"), "pins_mismatch"),
        (_set((*CHAIN0, "pin", "hash"), "0x" + "00" * 32), "pins_mismatch"),
        (_set((*CHAIN0, "pin"), None), "pins_mismatch"),
        (lambda doc: doc["inputs"]["chains"].pop(), "pins_mismatch"),
        (_set(("inputs", "estimates"), {"sigma": []}), "estimates_mismatch"),
        (_set(("inputs",), []), "malformed"),
        (_set(("request",), None), "malformed"),
    ],
)
def test_what_a_stored_document_must_match(
    devnet: Any,
    stored: Stored,
    change: Callable[[dict[str, Any]], None] | None,
    reason: str | None,
) -> None:
    text_, pins, blobs = stored
    doc = json.loads(text_)
    req = Request("margin", doc["account"], "base")
    cfg_hash = config_hash(devnet.config)
    if change is not None:
        full = expand(doc, blobs)  # changed where the figure is, then stored consistently
        change(full)
        try:
            built = compact(full)
        except SnapshotError:  # not even a document's shape: stored as it stands
            built = Built(canonical(full), blobs)
        text_, blobs = built.text, built.blobs  # a well-formed document with a correct id
    got, _ = stored_check(digest(text_), text_, req, cfg_hash, pins, "config", blobs)
    assert got == reason


def test_a_document_must_be_its_id_and_canonical(devnet: Any, stored: Stored) -> None:
    text_, pins, blobs = stored
    req = Request("margin", json.loads(text_)["account"], "base")
    cfg_hash = config_hash(devnet.config)

    def mismatch(sid: str, text_: str, cfg: str, est: str, blobs: dict[str, str]) -> str | None:
        return stored_check(sid, text_, req, cfg, pins, est, blobs)[0]

    assert mismatch(digest(text_), text_, cfg_hash, "config", blobs) is None
    # what is served from: the document as expand gives it, expanded once for both
    _, served = stored_check(digest(text_), text_, req, cfg_hash, pins, "config", blobs)
    assert served == expand(json.loads(text_), blobs)
    assert mismatch("f" * 64, text_, cfg_hash, "config", blobs) == "id_mismatch"
    spaced = json.dumps(json.loads(text_), sort_keys=True)  # same content, not canonical
    assert mismatch(digest(spaced), spaced, cfg_hash, "config", blobs) == "malformed"
    risk_es = devnet.config.risk.model_copy(update={"method": "es"})
    es = config_hash(devnet.config.model_copy(update={"risk": risk_es}))
    assert mismatch(digest(text_), text_, es, "config", blobs) == "request_mismatch"
    assert mismatch(digest(text_), text_, cfg_hash, "e" * 64, blobs) == "estimates_mismatch"
    # the blobs it names: each must be there and be what its hash says
    some = sorted(blobs)[0]
    assert mismatch(digest(text_), text_, cfg_hash, "config", {}) == "malformed"
    fewer = {k: v for k, v in blobs.items() if k != some}
    assert mismatch(digest(text_), text_, cfg_hash, "config", fewer) == "malformed"
    changed = {**blobs, some: blobs[some].replace('"', "'", 1)}
    assert mismatch(digest(text_), text_, cfg_hash, "config", changed) == "malformed"
