"""METHOD.md §10 end to end: what the API serves is stored, replays byte for byte, and
`crossmargin audit verify` reports any tampering with the stored trail (exit 1)."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import create_engine, text

from api.app import create_app
from api.audit import verify
from api.store import Store, normalise_url
from crossmargin.cli import main as cli
from crossmargin.core.canonical import canonical, digest
from crossmargin.pipeline.stored import expand, replay, replay_config


@dataclass
class Trail:
    url: str
    served: dict[str, bytes]  # snapshot id -> body the API answered with
    alice: list[str]  # alice's snapshot ids, oldest first


def fill(devnet: Any, url: str) -> Trail:
    alice, bob, carol = (devnet.demo_accounts[n] for n in ("alice", "bob", "carol"))
    paths = [
        f"/v1/accounts/{alice}/margin?target_chain=arbitrum",
        f"/v1/accounts/{alice}/margin?target_chain=base&method=es",
        f"/v1/accounts/{alice}/capacity?asset=USDC",
        f"/v1/accounts/{alice}/stress",
        f"/v1/accounts/{bob.lower()}/margin",
    ]

    async def run() -> dict[str, bytes]:
        served = {}
        async with TestClient(TestServer(create_app(devnet.config, database=url))) as c:
            for path in paths:
                resp = await c.get(path)
                assert resp.status == 200, await resp.text()
                served[resp.headers["Snapshot-Id"]] = await resp.read()
            resp = await c.post(
                "/v1/margin:batch", json={"accounts": [alice, bob, carol], "target_chain": "10"}
            )
            assert resp.status == 200
            for item in (await resp.json())["results"]:
                served[item["snapshot_id"]] = json.dumps(item["margin"]).encode()
        return served

    served = asyncio.run(run())
    store = Store.open(url)
    try:
        rows, _ = store.chain_rows(alice)
    finally:
        store.close()
    return Trail(url, served, [r.id for r, _ in rows])


@pytest.fixture
def trail(devnet: Any, database: str) -> Trail:
    return fill(devnet, database)


def audit(url: str, *args: str) -> int:
    return cli(["audit", "verify", *args, "--database", url])


def sql(url: str, statement: str, **params: Any) -> None:
    engine = create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


def document(url: str, sid: str) -> str:
    store = Store.open(url)
    try:
        found = store.get(sid)
    finally:
        store.close()
    assert found is not None
    return found[1]


def test_untouched_trail_verifies(trail: Trail, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit(trail.url, "--all") == 0
    out = capsys.readouterr().out
    assert "8 snapshots in 3 account(s) checked, 8 replayed: OK" in out
    assert audit(trail.url, trail.alice[2]) == 0
    assert "1 replayed: OK" in capsys.readouterr().out
    assert audit(trail.url, "e" * 64) == 1


def test_served_results_replay_byte_identically(trail: Trail) -> None:
    store = Store.open(trail.url)
    try:
        for sid, body in trail.served.items():
            found = store.get(sid)
            assert found is not None
            text_ = found[1]
            assert digest(text_) == sid
            doc = expand(json.loads(text_), store.blobs_for(text_))
            config_text = store.get_config(doc["inputs"]["parameters"]["config_hash"])
            assert config_text is not None
            params, outputs = replay(replay_config(config_text), doc)  # expanded already
            assert outputs == canonical(doc["outputs"]) == canonical(json.loads(body))
            assert params == canonical(doc["inputs"]["parameters"])
    finally:
        store.close()


def _edit(text_: str, section: str) -> str:
    """Change the last digit of the first non-zero raw balance in `section` (inputs: an
    account's own balance, `["<raw>",error,shares]`; outputs: a position's raw_amount)."""
    start = text_.index(f'"{section}":')
    pattern = r'\["([0-9]+)",' if section == "inputs" else r'"raw_amount":"([0-9]+)"'
    m = next(m for m in re.finditer(pattern, text_[start:]) if int(m.group(1)))
    i = start + m.end(1) - 1
    return text_[:i] + str((int(text_[i]) + 1) % 10) + text_[i + 1 :]


Tamper = Callable[[Trail], None]


def rewrite(sid: str, section: str, *, new_id: bool) -> Tamper:
    """Change a digit of a stored document; with `new_id`, also give the row (and the
    head, if it is the newest) the sha256 of the changed document, as a careful forger
    would."""

    def run(t: Trail) -> None:
        target = t.alice[int(sid)] if sid.isdigit() else sid
        changed = _edit(document(t.url, target), section)
        sql(t.url, "update cm_snapshot set document = :d where id = :i", d=changed, i=target)
        if new_id:
            new = digest(changed)
            sql(t.url, "update cm_snapshot set id = :n where id = :o", n=new, o=target)
            sql(
                t.url, "update cm_account_head set head_id = :n where head_id = :o", n=new, o=target
            )

    return run


def delete(index: int) -> Tamper:
    return lambda t: sql(t.url, "delete from cm_snapshot where id = :i", i=t.alice[index])


def cut_out(t: Trail) -> None:
    """Delete a snapshot and splice the chain around it (links and heights)."""
    sql(t.url, "delete from cm_snapshot where id = :i", i=t.alice[1])
    sql(t.url, "update cm_snapshot set prev_id = :p where id = :i", p=t.alice[0], i=t.alice[2])
    for sid in t.alice[2:]:
        sql(t.url, "update cm_snapshot set height = height - 1 where id = :i", i=sid)
    sql(t.url, "update cm_account_head set height = height - 1 where head_id = :i", i=t.alice[-1])


def blob_of(t: Trail, index: int, pick: Callable[[dict[str, Any]], str]) -> str:
    return pick(json.loads(document(t.url, t.alice[index])))


def chain_state(doc: dict[str, Any]) -> str:
    return str(doc["inputs"]["chains"][0]["state"])


def alter_blob(t: Trail) -> None:
    """A shared input changed in place (its hash kept): a feed's answer."""
    sha = blob_of(t, 1, chain_state)
    change = "update cm_blob set document = replace(document, :a, :b) where hash = :h"
    sql(t.url, change, a='"answer":"', b='"answer":"1', h=sha)


def delete_blob(t: Trail) -> None:
    sql(
        t.url, "delete from cm_blob where hash = :h", h=blob_of(t, 3, lambda d: d["shared_outputs"])
    )


def plant_blob(t: Trail) -> None:
    """A blob no snapshot names, whose content is not what its name says."""
    sql(t.url, "insert into cm_blob (hash, document) values (:h, '{}')", h="ab" * 32)


def alter_config(t: Trail) -> None:
    old, new = '"kappa":0.5', '"kappa":0.1'
    sql(t.url, "update cm_config set document = replace(document, :a, :b)", a=old, b=new)


@pytest.mark.parametrize(
    ("tamper", "finding"),
    [
        (rewrite("1", "inputs", new_id=False), "id is not the sha256 of the stored document"),
        (rewrite("0", "outputs", new_id=False), "id is not the sha256 of the stored document"),
        (
            rewrite("4", "inputs", new_id=True),
            "replayed outputs differ",
        ),  # the newest: no later link
        (rewrite("4", "outputs", new_id=True), "replayed outputs differ from the stored outputs"),
        (rewrite("1", "outputs", new_id=True), "is missing (deleted link)"),
        (delete(2), "is missing (deleted link)"),
        (delete(4), "head record points to a missing snapshot"),
        (delete(0), "is missing (deleted link)"),
        (cut_out, "row's prev_id disagrees with its document"),
        (alter_config, "is altered"),
        (alter_blob, "does not hash to its name (changed)"),
        (delete_blob, "is missing"),
        (plant_blob, "stored blob does not hash to its name"),
    ],
    ids=[
        "input-byte",
        "output-byte",
        "input-byte-new-id",
        "output-byte-new-id",
        "middle-output-new-id",
        "deleted-link",
        "deleted-newest",
        "deleted-first",
        "cut-out-and-spliced",
        "config",
        "blob-changed",
        "blob-deleted",
        "blob-planted",
    ],
)
def test_tampering_is_detected(
    trail: Trail, tamper: Tamper, finding: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    tamper(trail)
    assert audit(trail.url, "--all") == 1
    out = capsys.readouterr().out
    assert "TAMPERED" in out
    assert finding in out
    assert "FAILED" in out


def test_any_changed_byte_is_detected(trail: Trail) -> None:
    """Random single-byte changes anywhere in inputs or outputs, one at a time."""
    rng = random.Random(2024)
    sid = trail.alice[1]
    original = document(trail.url, sid)
    for _ in range(12):
        pos = rng.randrange(original.index('"inputs":'), original.index(',"prev":'))
        ch = original[pos]
        new = rng.choice([c for c in '0123456789abcdef"{},:' if c != ch])
        changed = original[:pos] + new + original[pos + 1 :]
        sql(trail.url, "update cm_snapshot set document = :d where id = :i", d=changed, i=sid)
        store = Store.open(trail.url)
        try:
            report = verify(store)
        finally:
            store.close()
        assert report is not None
        assert not report.ok, f"byte {pos} {ch!r} -> {new!r} went unnoticed"
    sql(trail.url, "update cm_snapshot set document = :d where id = :i", d=original, i=sid)
    assert audit(trail.url, "--all") == 0
