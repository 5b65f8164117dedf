"""The snapshot store on SQLite and PostgreSQL: migrations, and one linear hash chain per
account however many threads and processes append at once."""

from __future__ import annotations

import json
import multiprocessing
import threading
from collections.abc import Callable

from api_helpers import append_many

from api.store import Store
from crossmargin.pipeline.snapshot import GENESIS, digest


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
