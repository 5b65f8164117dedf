"""Snapshot-store benchmark: bulk appends of version "2" documents vs one append each.

    .venv/bin/python bench/snapshots.py [--snapshots 1000] [--pg URL]

One process, one devnet of its own (4 anvil chains). It reads `--snapshots` accounts
(the demo accounts, with and without debt, and the rest empty) at one pin per chain,
computes their margin reports once, and then stores the same snapshots four ways, each
into a fresh store, per database (SQLite file; PostgreSQL if `--pg` or
$CROSSMARGIN_TEST_PG names a server):

  (a) v1 single  one `Store.append` per snapshot of a version "1" document (every input
                 inline): what the API stored before blobs.
  (b) v2 single  one `Store.append` per snapshot of a version "2" document.
  (c) v2 bulk    one `Store.append_many` of all of them: one transaction.
Building the documents is timed too (appends build them on the account's head).

It prints the bytes per snapshot (an empty and a demo account's document; v2 also
counts the blobs they name, shared by all) and the database bytes for the
snapshots, and asserts that every store holds the same chains (same ids for v2
single and bulk) and that `audit verify` passes on the bulk store. Last line:
`snapshots: bulk N/s, Mx single (sqlite), ...; empty account A -> B bytes`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text

from api.audit import verify
from api.store import Item, Store, normalise_url
from crossmargin.core.config import Config, config_hash, risk_document
from crossmargin.engine import Engine
from crossmargin.pipeline import snapshot as s
from crossmargin.pipeline.figures import Request, compute

Make = Callable[[str], s.Built | str]


def workload(config: Config, demo: list[str], n: int) -> list[tuple[Request, Make, Make]]:
    """(request, v1 build, v2 build) per account, all read at one pin per chain."""
    accounts = [*demo, *(f"0x{i:040x}" for i in range(1, n - len(demo) + 1))][:n]

    async def read() -> dict[str, Any]:
        async with Engine.connect(config) as engine:
            return dict(zip(accounts, await engine.read(accounts), strict=True))

    states = asyncio.run(read())
    out = []
    for account in accounts:
        req = Request("margin", account, "base")
        st = states[account]
        report = compute(config, st, req)

        def v1(prev: str, st: Any = st, req: Request = req, report: Any = report) -> str:
            return s.document_v1(config, req, st, report, prev)

        def v2(prev: str, st: Any = st, req: Request = req, report: Any = report) -> s.Built:
            return s.document(config, req, st, report, prev)

        out.append((req, v1, v2))
    return out


def db_bytes(url: str) -> int:
    """Bytes the snapshot tables take (SQLite: the file after a checkpoint)."""
    engine = create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
                size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
                return int(pages) * int(size)
            q = "select coalesce(sum(pg_total_relation_size(c.oid)), 0) from pg_class c "
            q += "join pg_namespace n on n.oid = c.relnamespace where n.nspname = "
            q += "current_schema() and c.relname in ('cm_snapshot', 'cm_blob', 'cm_account_head')"
            return int(conn.execute(text(q)).scalar_one())
    finally:
        engine.dispose()


def timed_store(url: str, config: Config, run: Callable[[Store], list[Any]]) -> tuple[float, Any]:
    store = Store.open(url)
    try:
        store.put_config(config_hash(config), risk_document(config))
        t = time.perf_counter()
        out = run(store)
        return time.perf_counter() - t, out
    finally:
        store.close()


def measure(
    name: str, urls: Callable[[str], str], config: Config, work: list[Any]
) -> tuple[float, float]:
    n = len(work)

    def single(which: int) -> Callable[[Store], list[Any]]:
        def run(st: Store) -> list[Any]:
            return [st.append(w[0].account, w[0].kind, w[which], target=w[0].target) for w in work]

        return run

    t1, _ = timed_store(urls("v1"), config, single(1))
    t2, one = timed_store(urls("v2single"), config, single(2))
    items = [Item(r.account, r.kind, v2, target=r.target) for r, _, v2 in work]
    tb, bulk = timed_store(urls("v2bulk"), config, lambda st: st.append_many(items))
    assert [x.id for x in one] == [x.id for x in bulk]  # the same snapshots, the same chains
    store = Store.open(urls("v2bulk"), migrate=False)
    try:
        report = verify(store)
    finally:
        store.close()
    assert report is not None
    assert report.ok, report.findings
    assert report.snapshots == n
    b1, b2 = db_bytes(urls("v1")), db_bytes(urls("v2bulk"))
    print(
        f"{name:>10}: v1 single {n / t1:8.0f}/s  v2 single {n / t2:8.0f}/s  "
        f"v2 bulk {n / tb:8.0f}/s ({t2 / tb:.1f}x single)   "
        f"db bytes for {n}: v1 {b1:,} -> v2 {b2:,} ({b1 / b2:.1f}x smaller)"
    )
    return t2 / tb, n / tb


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--snapshots", type=int, default=1000)
    p.add_argument("--pg", default=os.environ.get("CROSSMARGIN_TEST_PG"))
    args = p.parse_args(argv)
    try:
        return run(args)
    finally:
        _drop_schemas(args.pg)


def run(args: argparse.Namespace) -> int:
    from devnet import BackgroundDevnet

    with (
        tempfile.TemporaryDirectory() as tmp,
        BackgroundDevnet(state_dir=Path(tmp) / "devnet", keeper=False) as net,
    ):
        config = net.config
        demo = list(net.demo_accounts.values())
        work = workload(config, demo, args.snapshots)
        sizes = {}
        for label, (_, v1, v2) in (("demo", work[0]), ("empty", work[-1])):
            built = v2(s.GENESIS)
            assert isinstance(built, s.Built)
            sizes[label] = (
                len(v1(s.GENESIS)),
                len(built.text),
                sum(map(len, built.blobs.values())),
            )
            print(
                f"{label:>10} account: v1 {sizes[label][0]:,} bytes -> v2 {sizes[label][1]:,} "
                f"bytes (+ {sizes[label][2]:,} bytes of blobs it shares with every account)"
            )
        results = []
        sq = Path(tmp)
        results.append(
            ("sqlite", *measure("sqlite", lambda k: f"sqlite:///{sq / k}.db", config, work))
        )
        if args.pg:
            results.append(
                ("postgresql", *measure("postgresql", lambda k: pg_url(args.pg, k), config, work))
            )
        else:
            print("postgresql: skipped (no --pg and no $CROSSMARGIN_TEST_PG)")
    parts = ", ".join(f"bulk {rate:.0f}/s, {x:.1f}x single ({db})" for db, x, rate in results)
    e1, e2, _ = sizes["empty"]
    print(f"snapshots: {parts}; empty account {e1:,} -> {e2:,} bytes")
    return 0


_SCHEMAS: list[str] = []


def pg_url(base: str, key: str) -> str:
    """A fresh schema per store on the server (dropped at exit)."""
    from sqlalchemy.engine import make_url

    schema = f"cm_bench_{os.getpid()}_{key}"
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if schema not in _SCHEMAS:
                conn.execute(text(f'drop schema if exists "{schema}" cascade'))
                conn.execute(text(f'create schema "{schema}"'))
                _SCHEMAS.append(schema)
    finally:
        admin.dispose()
    url = make_url(normalise_url(base)).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def _drop_schemas(base: str | None) -> None:
    if not base or not _SCHEMAS:
        return
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for schema in _SCHEMAS:
                conn.execute(text(f'drop schema if exists "{schema}" cascade'))
    finally:
        admin.dispose()


if __name__ == "__main__":
    sys.exit(main())
