"""Two processes hammering `Store.append_many` on one store at once (as the workers of
`crossmargin serve --workers 2` do), on SQLite and PostgreSQL: one linear transparency
log (every snapshot exactly once, no gap, the root the independent verifier computes)
and one linear chain per account, whose order the log keeps."""

from __future__ import annotations

import multiprocessing
import time

from api_helpers import hammer, linear_chain, logged
from tlog_verifier import mth

from api.store import Store

ACCOUNTS = [f"0xhammer{i}" for i in range(12)]
BATCHES = 40


def test_two_processes_hammering_append_many(database: str) -> None:
    Store.open(database).close()  # migrated once, as the supervisor does
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["api.store", "api_helpers"])
    with ctx.Pool(2) as pool:
        start_at = time.time() + 3.0  # both writers opened their store by then
        jobs = [(database, ACCOUNTS, tag, BATCHES, start_at) for tag in ("w0", "w1")]
        spans = pool.starmap(hammer, jobs)
    # the writers really ran at once (which one the database lets in is its business:
    # SQLite's busy handler may let one writer run many batches in a row)
    assert max(b for b, _, _ in spans) < min(e for _, e, _ in spans)
    store = Store.open(database)
    try:
        ids = logged(store)
        n = len(ids)
        assert store.log.head() == (n, mth([bytes.fromhex(s) for s in ids]))
        position = {sid: i for i, sid in enumerate(ids)}
        total = 0
        for account in ACCOUNTS:
            chain = linear_chain(store, account)
            order = [position[sid] for sid in chain]  # the log keeps each chain's order
            assert order == sorted(order)
            total += len(chain)
        assert total == n == sum(c for _, _, c in spans)  # every append, once
    finally:
        store.close()
