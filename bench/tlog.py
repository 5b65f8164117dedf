"""Transparency-log benchmark: what the log adds to an append, and what proofs cost.

    .venv/bin/python bench/tlog.py [--snapshots 20000] [--batch 100] [--pg URL]

Per database (SQLite file; PostgreSQL if `--pg` or $CROSSMARGIN_TEST_PG names a
server), the same `--snapshots` stand-in documents (64 accounts, ~2 KB each) are
appended in batches of `--batch` with `Store.append_many` twice, into fresh stores: at
revision 0003 (no log: the baseline, measured in the same run) and at head (the log).
Then, on the logged store: the time of a signed-tree-head read, of an inclusion proof
and of a consistency proof (each a few stored nodes, whatever the size), proof sizes,
and `audit verify --tree-head` over the whole store. Last line:
`tlog: append X.XXx without the log (sqlite), ...; proofs <= H hashes at n=N`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text

from api.store import Item, Store, normalise_url
from api.tlog.audit import verify_head
from api.tlog.heads import Signer, TreeHead, generate_key

PAD = "x" * 2000


def _items(start: int, batch: int) -> list[Item]:
    return [
        Item(f"0xbench{k % 64:02d}", "margin", lambda p, k=k: json.dumps([p, k, PAD]))
        for k in range(start, start + batch)
    ]


def _fill(url: str, revision: str, n: int, batch: int) -> float:
    store = Store.open(url, revision=revision)
    try:
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            store.append_many(_items(start, min(batch, n - start)))
        return time.perf_counter() - t0
    finally:
        store.close()


def _timed(f: object, reps: int = 200) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        f()  # type: ignore[operator]
    return (time.perf_counter() - t0) / reps


def _bench(name: str, urls: tuple[str, str], n: int, batch: int, key: Path) -> tuple[str, int]:
    base = _fill(urls[0], "0003", n, batch)
    logged = _fill(urls[1], "head", n, batch)
    store = Store.open(urls[1])
    try:
        size, root = store.log.head()
        assert size == n
        sid = next(iter(store.log.leaves(n // 3, n // 3 + 1)))[1]
        found = store.log.inclusion(sid, n)
        assert found is not None
        cons = store.log.consistency(n // 3, n)
        t_head = _timed(store.log.head)
        t_incl = _timed(lambda: store.log.inclusion(sid, n))
        t_cons = _timed(lambda: store.log.consistency(n // 3, n))
        signer = Signer.load(key)
        sth = signer.sign(TreeHead(size, root, int(time.time() * 1000)))
        t0 = time.perf_counter()
        report = verify_head(store, sth, signer.public_key)
        t_audit = time.perf_counter() - t0
        assert report.ok, report.findings
    finally:
        store.close()
    ratio = logged / base
    print(
        f"{name}: {n} snapshots in batches of {batch}: without the log {n / base:,.0f}/s, "
        f"with it {n / logged:,.0f}/s ({ratio:.2f}x the time, "
        f"{(logged - base) / n * 1e6:.0f} us per snapshot)"
    )
    print(
        f"{name}: tree head {t_head * 1e3:.2f} ms, inclusion proof {len(found[1])} hashes "
        f"({32 * len(found[1])} bytes) {t_incl * 1e3:.2f} ms, consistency proof "
        f"{len(cons)} hashes {t_cons * 1e3:.2f} ms; audit --tree-head {n / t_audit:,.0f}/s"
    )
    return f"append {ratio:.2f}x without the log ({name})", max(len(found[1]), len(cons))


def _pg_pair(base: str) -> tuple[list[str], list[str]]:
    """Two fresh schemas on the server (URLs), and their names to drop afterwards."""
    engine = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    names = [f"cm_bench_tlog_{os.getpid()}_{i}" for i in range(2)]
    with engine.connect() as conn:
        for s in names:
            conn.execute(text(f'drop schema if exists "{s}" cascade; create schema "{s}"'))
    engine.dispose()
    from sqlalchemy.engine import make_url

    urls = [
        make_url(normalise_url(base))
        .update_query_dict({"options": f"-csearch_path={s}"})
        .render_as_string(hide_password=False)
        for s in names
    ]
    return urls, names


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--snapshots", type=int, default=20000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--pg", default=os.environ.get("CROSSMARGIN_TEST_PG"))
    args = p.parse_args()
    parts, longest = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        key = generate_key(Path(tmp) / "key.pem")
        sqlite = (f"sqlite:///{tmp}/base.db", f"sqlite:///{tmp}/log.db")
        part, h = _bench("sqlite", sqlite, args.snapshots, args.batch, key)
        parts.append(part)
        longest = max(longest, h)
        if args.pg:
            urls, names = _pg_pair(args.pg)
            try:
                part, h = _bench("postgresql", (urls[0], urls[1]), args.snapshots, args.batch, key)
                parts.append(part)
                longest = max(longest, h)
            finally:
                engine = create_engine(normalise_url(args.pg), isolation_level="AUTOCOMMIT")
                with engine.connect() as conn:
                    for s in names:
                        conn.execute(text(f'drop schema if exists "{s}" cascade'))
                engine.dispose()
    print(f"tlog: {', '.join(parts)}; proofs <= {longest} hashes at n={args.snapshots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
