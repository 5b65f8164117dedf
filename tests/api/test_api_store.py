"""The snapshot store on SQLite and PostgreSQL: migrations (and the upgrade of a store of
version "1" documents), bulk appends in one transaction with shared blobs stored once,
and one linear hash chain per account however many threads and processes append at once."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

import pytest
from api_helpers import SHARED_BLOBS, append_batches, append_many, built_doc
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from api.audit import verify
from api.store import Item, Store
from api.store.db import BLOB, HEAD
from api.store.tables import update_rows
from crossmargin.core.canonical import digest
from crossmargin.core.config import config_hash, risk_document
from crossmargin.engine import Engine
from crossmargin.pipeline import snapshot as s
from crossmargin.pipeline.figures import Request, compute
from crossmargin.pipeline.snapshot import GENESIS


def doc(tag: str) -> Callable[[str], str]:
    return lambda prev: json.dumps({"prev": prev, "tag": tag})


def assert_linear(store: Store, account: str, n: int) -> None:
    rows, head = store.chain_rows(account)
    assert len(rows) == n
    prev = GENESIS
    for height, (row, text) in enumerate(rows):
        assert (row.height, row.prev_id) == (height, prev)
        assert digest(text) == row.id
        prev = row.id
    assert head == (prev, n - 1)


def test_migrations_run_once_and_reopen(database: str) -> None:
    first = Store.open(database)
    try:
        first.put_config("c" * 64, "{}")
        first.put_config("c" * 64, "{}")  # idempotent
        assert first.get_config("c" * 64) == "{}"
        assert first.get_config("d" * 64) is None
    finally:
        first.close()
    again = Store.open(database)  # upgrade to head on an up-to-date schema: no-op
    try:
        assert again.get_config("c" * 64) == "{}"
    finally:
        again.close()


def test_linear_under_concurrent_threads(database: str) -> None:
    store = Store.open(database)
    try:

        def writer(k: int) -> None:
            for i in range(8):
                store.append(f"0xacc{k % 2}", "margin", doc(f"{k}-{i}"))

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert_linear(store, "0xacc0", 24)
        assert_linear(store, "0xacc1", 24)
    finally:
        store.close()


def test_linear_across_processes(database: str) -> None:
    # forkserver: api.store is imported once, then every writer forks from that process
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["api.store", "api_helpers"])
    with ctx.Pool(4) as pool:  # every process migrates too: they race on a fresh database
        pool.starmap(append_many, [(database, "0xshared", f"p{k}", 12) for k in range(4)])
    store = Store.open(database)
    try:
        assert_linear(store, "0xshared", 48)
    finally:
        store.close()


def test_cache_key_lookup_and_pages(database: str) -> None:
    store = Store.open(database)
    try:
        ids = [
            store.append("0xpage", "stress", doc(str(i)), cache_key=f"k{i % 3}").id
            for i in range(7)
        ]
        found = store.find_cached("k1", "0xpage")
        assert found is not None
        assert found[0] == ids[4]  # the newest with that key
        assert digest(found[1]) == found[0]
        assert store.find_cached("nope", "0xpage") is None
        assert store.find_cached("k1", "0xother") is None  # keys are per account
        # the batch form: one query, the same answers
        many = store.find_cached_many([("k1", "0xpage"), ("nope", "0xpage"), ("k2", "0xother")])
        assert many == {"k1": found}
        keys = [(f"k{i}", "0xpage") for i in range(3)] * 400  # > one chunk of keys
        assert store.find_cached_many(keys) == {
            f"k{i}": store.find_cached(f"k{i}", "0xpage") for i in range(3)
        }
        first = store.page("0xpage", 3)
        assert [r.height for r in first] == [6, 5, 4]
        rest = store.page("0xpage", 10, below=first[-1].height)
        assert [r.id for r in rest] == ids[3::-1]
        got = store.get(ids[2])
        assert got is not None
        assert got[0].prev_id == ids[1]
        assert store.get("f" * 64) is None
    finally:
        store.close()


def blob_count(store: Store) -> int:
    return len(list(store.all_blobs()))


def test_only_serving_reads_blobs_from_memory(database: str) -> None:
    """A blob changed in the database after it was read: serving (`remembered`) keeps
    the text it read (its hash still names it), an audit's read sees the change."""
    store = Store.open(database)
    try:
        store.append_many([Item("0xblob", "margin", lambda prev: built_doc(prev, "b"))])
        sha = digest(SHARED_BLOBS[0])
        assert store.blobs([sha], remembered=True) == {sha: SHARED_BLOBS[0]}
        with store.engine.begin() as conn:
            update_rows(conn, BLOB, ("document",), ("hash",), [("{}", sha)])
        assert store.blobs([sha], remembered=True) == {sha: SHARED_BLOBS[0]}
        assert store.blobs([sha]) == {sha: "{}"}
    finally:
        store.close()


def test_append_many_in_one_transaction(database: str) -> None:
    store = Store.open(database)
    try:
        assert store.append_many([]) == []
        accounts = [f"0xbatch{i:03}" for i in range(300)]
        items = [Item(a, "margin", lambda prev, a=a: built_doc(prev, a)) for a in accounts]
        again = Item(accounts[7], "stress", lambda prev: built_doc(prev, "again"), cache_key="k")
        out = store.append_many([*items, again])
        assert [o.account for o in out] == [*accounts, accounts[7]]
        assert all((o.height, o.prev_id) == (0, GENESIS) for o in out[:-1])
        assert (out[-1].height, out[-1].prev_id) == (1, out[7].id)  # in order, same batch
        assert blob_count(store) == len(SHARED_BLOBS)  # named 301 times, stored once
        assert store.blobs([digest(SHARED_BLOBS[0]), "f" * 64]) == {
            digest(SHARED_BLOBS[0]): SHARED_BLOBS[0]
        }

        second = store.append_many(items[:5])  # onto the heads
        assert [(o.height, o.prev_id) for o in second] == [(1, o.id) for o in out[:5]]
        assert_linear(store, accounts[0], 2)
        assert_linear(store, accounts[7], 2)
        assert_linear(store, accounts[299], 1)
        found = store.find_cached("k", accounts[7])
        assert found is not None
        assert found[0] == out[-1].id

        def broken(prev: str) -> s.Built:
            raise RuntimeError("a document that cannot be built")

        with pytest.raises(RuntimeError):  # all or nothing: the batch is one transaction
            store.append_many(
                [Item("0xnew", "margin", lambda p: built_doc(p)), Item("0xb", "margin", broken)]
            )
        assert store.chain_rows("0xnew") == ([], None)
    finally:
        store.close()


def test_a_head_swap_counts_only_the_heads_it_moved(database: str) -> None:
    """Rows go to the driver as tuples (api/store/tables.py): the compare-and-swap of a
    batch's heads counts only the rows whose head was still the one read, so a head
    another writer moved meanwhile fails the batch (which is then retried)."""
    store = Store.open(database)
    try:
        a, b = (store.append(x, "margin", lambda prev, x=x: built_doc(prev, x)) for x in "ab")
        cols, keys = ("head_id", "height"), ("account", "head_id")
        with store.connect() as conn, conn.begin():
            stale = [("1" * 64, 1, "a", a.id), ("2" * 64, 1, "b", "f" * 64)]
            assert update_rows(conn, HEAD, cols, keys, stale) == 1
            assert update_rows(conn, HEAD, cols, keys, [("3" * 64, 2, "a", "1" * 64)]) == 1
            assert update_rows(conn, HEAD, cols, keys, []) == 0
            with pytest.raises(IntegrityError, match="head moved"):
                store._move_heads(conn, {"b": ("f" * 64, 0)}, {"b": ("4" * 64, 1)})
        assert store.chain_rows("a")[1] == ("3" * 64, 2)
        assert store.chain_rows("b")[1] == (b.id, 0)
    finally:
        store.close()


def test_documents_built_outside_the_write_lock_are_rebuilt_on_a_moved_head(
    database: str,
) -> None:
    """A batch's documents are built before its write transaction, on the heads read
    then: another writer appending to one of its accounts in between makes the batch
    build again on the new head, so the chain stays linear (no fork, no lost snapshot)."""
    store, other = Store.open(database), Store.open(database)
    try:
        first = store.append("0xmoved", "margin", doc("first"))
        calls: list[str] = []

        def build(prev: str) -> str:
            calls.append(prev)
            if len(calls) == 1:  # another writer moves the head between build and write
                other.append("0xmoved", "margin", doc("between"))
            return json.dumps({"prev": prev, "tag": "batch"})

        out = store.append_many(
            [Item("0xmoved", "margin", build), Item("0xfresh", "margin", doc("f"))]
        )
        between = store.chain_rows("0xmoved")[0][1][0]
        assert calls == [first.id, between.id]  # built on the head read, then on the moved one
        assert (out[0].prev_id, out[0].height) == (between.id, 2)
        assert_linear(store, "0xmoved", 3)
        assert (out[1].prev_id, out[1].height) == (GENESIS, 0)
    finally:
        other.close()
        store.close()


def test_bulk_appends_stay_linear_under_concurrent_threads(database: str) -> None:
    store = Store.open(database)
    accounts = [f"0xshared{i}" for i in range(20)]
    try:
        threads = [
            threading.Thread(target=append_batches, args=(database, accounts, f"t{k}", 5))
            for k in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for account in accounts:
            assert_linear(store, account, 20)
        assert blob_count(store) == len(SHARED_BLOBS)
    finally:
        store.close()


def test_bulk_appends_stay_linear_across_processes(database: str) -> None:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["api.store", "api_helpers"])
    accounts = [f"0xproc{i}" for i in range(30)]
    with ctx.Pool(3) as pool:  # each migrates a fresh database too, at once
        pool.starmap(append_batches, [(database, accounts[k:], f"p{k}", 4) for k in range(3)])
    store = Store.open(database)
    try:
        assert_linear(store, accounts[0], 4)
        assert_linear(store, accounts[1], 8)
        for account in accounts[2:]:
            assert_linear(store, account, 12)
        assert blob_count(store) == len(SHARED_BLOBS)
    finally:
        store.close()


def test_upgrade_of_a_store_of_version_1_documents(devnet: Any, database: str) -> None:
    """A store of the previous revision holding real version "1" snapshots: after the
    upgrade they verify as they stand, and version "2" snapshots chain onto them."""
    config = devnet.config
    alice, bob = devnet.demo_accounts["alice"], devnet.demo_accounts["bob"]

    async def read() -> dict[str, Any]:
        async with Engine.connect(config) as engine:
            got = await engine.read([alice, bob])
            return dict(zip((alice, bob), got, strict=True))

    states = asyncio.run(read())
    requests = [
        Request("margin", alice, "base"),
        Request("stress", alice),
        Request("capacity", bob, "arbitrum", "USDC"),
    ]

    def append(store: Store, req: Request, v1: bool) -> Any:
        st = states[req.account]
        report = compute(config, st, req)
        make = s.document_v1 if v1 else s.document
        return store.append(
            req.account,
            req.kind,
            lambda prev: make(config, req, st, report, prev),
            target=req.target,
            asset=req.asset,
        )

    old = Store.open(database, revision="0002")
    try:
        assert "cm_blob" not in inspect(old.engine).get_table_names()
        old.put_config(config_hash(config), risk_document(config))
        before = [append(old, req, v1=True) for req in requests]
    finally:
        old.close()

    store = Store.open(database)  # upgrades to head
    try:
        assert "cm_blob" in inspect(store.engine).get_table_names()
        for sid in (b.id for b in before):  # ids unchanged: the documents were not touched
            found = store.get(sid)
            assert found is not None
            assert json.loads(found[1])["v"] == "1"
        report = verify(store)
        assert report is not None
        assert report.ok, report.findings
        assert (report.snapshots, report.replayed, report.blobs) == (3, 3, 0)

        after = [append(store, req, v1=False) for req in requests]
        assert after[0].prev_id == before[1].id  # alice's head was her stress snapshot
        assert after[1].prev_id == after[0].id
        assert (after[2].prev_id, after[2].height) == (before[2].id, 1)
        report = verify(store)
        assert report is not None
        assert report.ok, report.findings
        assert (report.snapshots, report.replayed, report.unreferenced) == (6, 6, 0)
        assert report.blobs > 0
    finally:
        store.close()
