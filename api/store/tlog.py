"""The transparency log in the store (METHOD.md §10): snapshot ids as the leaves of an
RFC 9162 Merkle tree, in the order stored (api/tlog/merkle.py).

The leaf of a snapshot is its id's 32 bytes. `append` runs inside the snapshot append's
transaction, after its other writes: it locks the size row (`SELECT ... FOR UPDATE` on
PostgreSQL; SQLite's BEGIN IMMEDIATE already serialises writers), gives the new ids the
next leaf indices, and stores the hash of every perfect subtree they complete. So two
processes on one database grow one tree, with no gap and no fork (the leaf index is a
primary key besides), and the tree commits or rolls back with its snapshots. Taking the
lock last keeps it short, and no transaction holding it waits for anything else.

Reads fetch only the stored nodes a root or a proof is made of: O(log n) rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager

from sqlalchemy import Connection, and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from api.store.tables import SnapshotRow, TlogLeafRow, TlogNodeRow, TlogSizeRow, insert_rows
from api.tlog.merkle import (
    EMPTY_ROOT,
    CompactRange,
    Node,
    consistency_ranges,
    cover,
    inclusion_ranges,
    leaf_hash,
    needed,
    range_hash,
)

LEAF = TlogLeafRow.__table__  # type: ignore[attr-defined]
NODE = TlogNodeRow.__table__  # type: ignore[attr-defined]
SIZE = TlogSizeRow.__table__  # type: ignore[attr-defined]
SNAP = SnapshotRow.__table__  # type: ignore[attr-defined]
CHUNK = 400  # (level, index) pairs (two parameters each) or ids per query


def leaf_of(snapshot_id: str) -> bytes:
    """The leaf hash of a snapshot id (64 hex digits)."""
    return leaf_hash(bytes.fromhex(snapshot_id))


def size(conn: Connection, *, lock: bool = False) -> int:
    q = select(SIZE.c.size).where(SIZE.c.id == 1)
    return int(conn.execute(q.with_for_update() if lock else q).scalar_one())


def nodes(conn: Connection, keys: Iterable[Node]) -> dict[Node, bytes]:
    wanted = sorted(set(keys))
    found: dict[Node, bytes] = {}
    for i in range(0, len(wanted), CHUNK):
        # OR of equalities, not a row-value IN: SQLite answers that one by a full scan
        q = select(NODE.c.level, NODE.c.idx, NODE.c.hash).where(
            or_(*(and_(NODE.c.level == lv, NODE.c.idx == ix) for lv, ix in wanted[i : i + CHUNK]))
        )
        found.update({(int(lv), int(ix)): bytes(h) for lv, ix, h in conn.execute(q)})
    return found


def append(conn: Connection, ids: Sequence[str], *, lock: bool) -> int:
    """Give `ids` the next leaf indices, in order; the first one's index."""
    n = size(conn, lock=lock)
    frontier = cover(0, n)
    stored = nodes(conn, frontier)
    tree = CompactRange(n, [stored[k] for k in frontier])
    made: list[tuple[object, ...]] = []
    for sid in ids:
        made += [(lv, ix, h) for (lv, ix), h in tree.push(leaf_of(sid))]
    insert_rows(conn, LEAF, ("idx", "snapshot_id"), list(enumerate(ids, n)))
    insert_rows(conn, NODE, ("level", "idx", "hash"), made)
    moved = conn.execute(
        update(SIZE).where(SIZE.c.id == 1, SIZE.c.size == n).values(size=n + len(ids))
    )
    if moved.rowcount != 1:  # cannot happen under the lock; never fork if it does
        raise IntegrityError("log size moved", None, Exception("log size moved"))
    return n


def root(conn: Connection, n: int) -> bytes:
    """MTH of the first n leaves (n >= 1, n <= size)."""
    return range_hash((0, n), nodes(conn, cover(0, n)))


def leaf_index(conn: Connection, snapshot_id: str) -> int | None:
    found = conn.execute(select(LEAF.c.idx).where(LEAF.c.snapshot_id == snapshot_id)).first()
    return None if found is None else int(found[0])


def leaf_indices(conn: Connection, ids: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(0, len(ids), CHUNK):
        q = select(LEAF.c.snapshot_id, LEAF.c.idx).where(LEAF.c.snapshot_id.in_(ids[i : i + CHUNK]))
        out.update({str(s): int(x) for s, x in conn.execute(q)})
    return out


def inclusion(conn: Connection, index: int, n: int) -> list[bytes]:
    """The audit path of leaf `index` in the tree of the first n leaves."""
    ranges = inclusion_ranges(index, n)
    stored = nodes(conn, needed(ranges))
    return [range_hash(r, stored) for r in ranges]


def consistency(conn: Connection, old: int, n: int) -> list[bytes]:
    """The proof that the tree of the first `old` leaves is a prefix of that of n."""
    ranges = consistency_ranges(old, n)
    stored = nodes(conn, needed(ranges))
    return [range_hash(r, stored) for r in ranges]


def leaves(conn: Connection, begin: int, end: int) -> Iterator[tuple[int, str]]:
    """(index, snapshot id) of the stored leaves in [begin, end), by index."""
    q = (
        select(LEAF.c.idx, LEAF.c.snapshot_id)
        .where(LEAF.c.idx >= begin, LEAF.c.idx < end)
        .order_by(LEAF.c.idx)
    )
    for ix, sid in conn.execute(q):
        yield int(ix), str(sid)


class Log:
    """Reads of the log, each in one read transaction of the store (`Store.log`)."""

    def __init__(self, tx: Callable[[], AbstractContextManager[Connection]]) -> None:
        self._tx = tx

    def head(self, n: int | None = None) -> tuple[int, bytes]:
        """(size, root) of the tree now, or of its first n leaves (n <= size)."""
        with self._tx() as conn:
            now = size(conn)
            n = now if n is None else n
            if not 0 <= n <= now:
                raise ValueError(f"tree size {n} is not in 0..{now}")
            return n, (root(conn, n) if n else EMPTY_ROOT)

    def size(self) -> int:
        with self._tx() as conn:
            return size(conn)

    def leaf_index(self, snapshot_id: str) -> int | None:
        with self._tx() as conn:
            return leaf_index(conn, snapshot_id)

    def leaf_indices(self, ids: Sequence[str]) -> dict[str, int]:
        with self._tx() as conn:
            return leaf_indices(conn, ids)

    def inclusion(self, snapshot_id: str, n: int) -> tuple[int, list[bytes]] | None:
        """(leaf index, audit path) of a snapshot in the tree of size n; None if the
        snapshot is not a leaf of that tree."""
        with self._tx() as conn:
            index = leaf_index(conn, snapshot_id)
            if index is None or index >= n or n > size(conn):
                return None
            return index, inclusion(conn, index, n)

    def consistency(self, old: int, n: int) -> list[bytes]:
        with self._tx() as conn:
            return consistency(conn, old, n)

    def leaves(self, begin: int, end: int) -> Iterator[tuple[int, str]]:
        with self._tx() as conn:
            yield from leaves(conn, begin, end)

    def documents(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored documents of these snapshot ids (a missing one is absent)."""
        out: dict[str, str] = {}
        with self._tx() as conn:
            for i in range(0, len(ids), CHUNK):
                q = select(SNAP.c.id, SNAP.c.document).where(SNAP.c.id.in_(ids[i : i + CHUNK]))
                out.update({str(s): str(d) for s, d in conn.execute(q)})
        return out
