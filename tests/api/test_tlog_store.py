"""The transparency log in the store (METHOD.md §10), on SQLite and PostgreSQL: writer
processes grow one tree (no gap, no fork), an old store's snapshots become its first
leaves on upgrade, and `crossmargin audit verify --tree-head` detects every tampering
of the store against a tree head taken before it. Roots and proofs are checked by the
independent verifier in tlog_verifier.py."""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from api_helpers import append_batches, append_many
from sqlalchemy import Connection, create_engine, text
from tlog_verifier import consistency_ok, inclusion_ok, mth

from api.store import Item, Store, normalise_url, tlog
from api.tlog.heads import Signer, TreeHead, generate_key
from crossmargin.cli import main as cli
from crossmargin.cli.main import EXIT_ERROR
from crossmargin.core.canonical import digest

ACCOUNTS = ["0xtl0", "0xtl1", "0xtl2"]


def _leaf_ids(store: Store) -> list[str]:
    return [sid for _, sid in store.log.leaves(0, store.log.size())]


def _check_tree(store: Store, expected: int) -> list[str]:
    """Leaves 0..n-1 with no gap, each a stored snapshot once; the stored root and proofs
    agree with the independent verifier."""
    ids = _leaf_ids(store)
    assert len(ids) == expected == store.log.size()
    assert [i for i, _ in store.log.leaves(0, expected)] == list(range(expected))
    assert len(set(ids)) == expected
    assert set(store.log.documents(ids)) == set(ids)
    leaves = [bytes.fromhex(s) for s in ids]
    n, root = store.log.head()
    assert root == mth(leaves)
    for sid in (ids[0], ids[n // 2], ids[-1]):
        found = store.log.inclusion(sid, n)
        assert found is not None
        assert inclusion_ok(found[0], n, bytes.fromhex(sid), found[1], root)
    for m in (1, n // 3 or 1, n - 1 or 1):
        assert consistency_ok(m, n, mth(leaves[:m]), root, store.log.consistency(m, n))
    return ids


def test_one_tree_across_processes(database: str) -> None:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["api.store", "api_helpers"])
    with ctx.Pool(4) as pool:  # single appends on one account, batches over three
        singles = pool.starmap_async(append_many, [(database, "0xone", f"p{k}", 8) for k in (0, 1)])
        batches = pool.starmap_async(
            append_batches, [(database, ACCOUNTS, f"b{k}", 4) for k in (0, 1)]
        )
        singles.get(timeout=300)
        batches.get(timeout=300)
    store = Store.open(database)
    try:
        ids = _check_tree(store, 2 * 8 + 2 * 4 * len(ACCOUNTS))
        # the log's order agrees with every account's chain
        for account in ["0xone", *ACCOUNTS]:
            rows, _ = store.chain_rows(account)
            chain = [r.id for r, _ in rows]
            assert [s for s in ids if s in set(chain)] == chain
    finally:
        store.close()


def test_upgrade_puts_old_snapshots_first(database: str) -> None:
    old = Store.open(database, revision="0003")
    try:
        assert not old.has_log
        before: list[str] = []
        for i in range(3):
            for a in ACCOUNTS:
                build = lambda prev, a=a, i=i: json.dumps([prev, a, i])  # noqa: E731
                before.append(old.append(a, "margin", build).id)
                # the upgrade orders by created_at (milliseconds), then account: appends
                # in one millisecond would come back by account, not as appended
                time.sleep(0.002)
    finally:
        old.close()
    store = Store.open(database)
    try:
        assert store.has_log
        assert _leaf_ids(store) == before  # in the order stored
        new = store.append_many([Item("0xtl0", "margin", lambda p: json.dumps([p, "new"]))])
        assert new[0].leaf_index == len(before)
        _check_tree(store, len(before) + 1)
    finally:
        store.close()


# ---------------------------------------------------------------- tampering


def _sql(url: str, *statements: str) -> None:
    engine = create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            for s in statements:
                conn.execute(text(s))
    finally:
        engine.dispose()


def _rewrite(conn: Connection) -> None:
    """Rewrite the whole history with every hash recomputed: new documents, ids, prev
    links, heads, leaves and subtree hashes: everything but the kept tree head."""
    rows = conn.execute(text("select id, document from cm_snapshot")).all()
    for old_id, doc in rows:
        new_doc = doc.replace('"b0"', '"forged"')
        new_id = digest(new_doc)
        for stmt in (
            "update cm_snapshot set id = :n, document = :d where id = :o",
            "update cm_snapshot set prev_id = :n where prev_id = :o",
            "update cm_account_head set head_id = :n where head_id = :o",
            "update cm_tlog_leaf set snapshot_id = :n where snapshot_id = :o",
        ):
            conn.execute(text(stmt), {"n": new_id, "d": new_doc, "o": old_id})


def _rewrite_history(url: str) -> None:
    engine = create_engine(normalise_url(url))
    try:
        with engine.begin() as conn:
            _rewrite(conn)
            conn.execute(text("delete from cm_tlog_node"))
            conn.execute(text("update cm_tlog_size set size = 0"))
            ids = [
                r[0]
                for r in conn.execute(text("select snapshot_id from cm_tlog_leaf order by idx"))
            ]
            conn.execute(text("delete from cm_tlog_leaf"))
    finally:
        engine.dispose()
    store = Store.open(url)  # the forger rebuilds a consistent log over the new ids
    try:
        with store._tx(write=True) as conn:
            tlog.append(conn, ids, lock=not store.is_sqlite)
    finally:
        store.close()


TAMPER: dict[str, Callable[[str, list[str]], None]] = {
    "one byte of a document": lambda url, ids: _sql(
        url,
        f"update cm_snapshot set document = replace(document, 'b0', 'b9') where id = '{ids[4]}'",
    ),
    "a deleted middle snapshot": lambda url, ids: _sql(
        url, f"delete from cm_snapshot where id = '{ids[5]}'"
    ),
    "a deleted newest snapshot with its leaf": lambda url, ids: _sql(
        url,
        f"delete from cm_snapshot where id = '{ids[-1]}'",
        f"delete from cm_tlog_leaf where snapshot_id = '{ids[-1]}'",
        "update cm_tlog_size set size = size - 1",
    ),
    "a truncated tail": lambda url, ids: _sql(
        url,
        f"delete from cm_snapshot where id in ('{ids[-1]}', '{ids[-2]}')",
        f"delete from cm_tlog_leaf where idx >= {len(ids) - 2}",
        "delete from cm_tlog_node",
        f"update cm_tlog_size set size = {len(ids) - 2}",
    ),
    "a deleted account": lambda url, ids: _sql(
        url,
        "delete from cm_tlog_leaf where snapshot_id in "
        "(select id from cm_snapshot where account = '0xtl1')",
        "delete from cm_snapshot where account = '0xtl1'",
        "delete from cm_account_head where account = '0xtl1'",
    ),
    "two snapshots swapped in the log": lambda url, ids: _sql(
        url,
        f"update cm_tlog_leaf set snapshot_id = 'x' where snapshot_id = '{ids[1]}'",
        f"update cm_tlog_leaf set snapshot_id = '{ids[1]}' where snapshot_id = '{ids[2]}'",
        f"update cm_tlog_leaf set snapshot_id = '{ids[2]}' where snapshot_id = 'x'",
    ),
    "a rewritten and re-hashed history": lambda url, ids: _rewrite_history(url),
}


def _kept_head(url: str, key: Path, tmp_path: Path) -> tuple[list[str], Path, Path]:
    """A store of 3 accounts x 4 snapshots, a tree head taken of it, the key pinned."""
    append_batches(url, ACCOUNTS, "b0", 4)
    signer = Signer.load(generate_key(key))
    store = Store.open(url)
    try:
        ids = _leaf_ids(store)
        size, root = store.log.head()
    finally:
        store.close()
    sth = signer.sign(TreeHead(size, root, int(time.time() * 1000)))
    head = tmp_path / "head.json"
    head.write_text(json.dumps(sth.to_json()))
    pub = tmp_path / "key.hex"
    pub.write_text(signer.public_key.hex())
    return ids, head, pub


def _verify(url: str, head: Path, pub: Path) -> int:
    return cli(["audit", "verify", "--tree-head", str(head), "--public-key", str(pub), "--db", url])


@pytest.mark.parametrize("tampering", list(TAMPER))
def test_tampering_is_detected(
    database: str, tmp_path: Path, tampering: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ids, head, pub = _kept_head(database, tmp_path / "k.pem", tmp_path)
    assert _verify(database, head, pub) == 0
    assert "12 checked: OK" in capsys.readouterr().out
    TAMPER[tampering](database, ids)
    assert _verify(database, head, pub) == 1
    out = capsys.readouterr().out
    assert "TAMPERED (log)" in out
    assert "FAILED" in out


def test_growth_forged_signature_and_newer_head(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids, head, pub = _kept_head(database, tmp_path / "k.pem", tmp_path)
    append_batches(database, ACCOUNTS, "later", 2)  # the store grows: the old head holds
    assert _verify(database, head, pub) == 0
    capsys.readouterr()
    other = tmp_path / "other.hex"  # a head signed by another key
    other.write_text(Signer.load(generate_key(tmp_path / "o.pem")).public_key.hex())
    assert _verify(database, head, other) == 1
    assert "signature does not verify" in capsys.readouterr().out
    sth = json.loads(head.read_text())
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(sth | {"tree_size": 1000}))
    assert _verify(database, newer, pub) == 1
    assert "newer than the store" in capsys.readouterr().out
    newer.write_text("{}")
    assert _verify(database, newer, pub) == EXIT_ERROR  # one line on stderr, no traceback
    err = capsys.readouterr().err
    assert err.startswith("crossmargin: error: not a signed tree head")
    assert len(ids) == 12
