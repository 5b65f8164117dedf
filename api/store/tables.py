"""Tables of the audit trail (METHOD.md §10). The schema itself is created by the
alembic migrations in `api/store/migrations/`, never by `metadata.create_all`.

- `cm_snapshot`: one row per served computation; `document` is the canonical JSON whose
  sha256 is `id`. `(account, prev_id)` and `(account, height)` are unique, so each
  account's record stays one linear hash chain however many processes write.
- `cm_account_head`: the newest snapshot of each account (compare-and-swap on append),
  so a deleted newest snapshot is noticed too.
- `cm_config`: the risk configuration a snapshot was computed with, keyed by its hash.
- `cm_blob`: inputs many snapshots share (a chain's pin and feeds, the parameters, the
  §6 estimates), each stored once as canonical JSON under its sha256; version "2"
  documents name them by hash (crossmargin/pipeline/snapshot.py).
- `cm_tlog_leaf`, `cm_tlog_node`, `cm_tlog_size`: the transparency log (METHOD.md §10,
  api/store/tlog.py): every snapshot id by leaf index in the order stored, the hash of
  every complete perfect subtree of the Merkle tree, and the tree's size (one row, the
  lock that serialises appends).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from sqlalchemy import (
    Connection,
    Dialect,
    LargeBinary,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    insert,
    update,
)
from sqlmodel import Field, SQLModel


class SnapshotRow(SQLModel, table=True):
    __tablename__ = "cm_snapshot"
    __table_args__ = (
        UniqueConstraint("account", "prev_id", name="uq_cm_snapshot_account_prev"),
        UniqueConstraint("account", "height", name="uq_cm_snapshot_account_height"),
    )

    id: str = Field(primary_key=True, max_length=64)
    account: str = Field(max_length=42)
    height: int
    prev_id: str = Field(max_length=64)
    kind: str = Field(max_length=16)
    target: str | None = Field(default=None, max_length=40)
    asset: str | None = Field(default=None, max_length=16)
    cache_key: str | None = Field(default=None, max_length=64, index=True)
    created_at: str = Field(max_length=32)
    document: str = Field(sa_type=Text)


class HeadRow(SQLModel, table=True):
    __tablename__ = "cm_account_head"

    account: str = Field(primary_key=True, max_length=42)
    head_id: str = Field(max_length=64)
    height: int


class ConfigRow(SQLModel, table=True):
    __tablename__ = "cm_config"

    hash: str = Field(primary_key=True, max_length=64)
    document: str = Field(sa_type=Text)


class BlobRow(SQLModel, table=True):
    __tablename__ = "cm_blob"

    hash: str = Field(primary_key=True, max_length=64)
    document: str = Field(sa_type=Text)


class TlogLeafRow(SQLModel, table=True):
    __tablename__ = "cm_tlog_leaf"

    idx: int = Field(primary_key=True)
    snapshot_id: str = Field(max_length=64, unique=True)


class TlogNodeRow(SQLModel, table=True):
    __tablename__ = "cm_tlog_node"

    level: int = Field(primary_key=True)
    idx: int = Field(primary_key=True)
    hash: bytes = Field(sa_type=LargeBinary)


class TlogSizeRow(SQLModel, table=True):
    __tablename__ = "cm_tlog_size"

    id: int = Field(primary_key=True)
    size: int


# ---------------------------------------------------------------- bulk inserts


def _mark(dialect: Dialect) -> str | None:
    """The driver's positional placeholder (sqlite3 `?`, psycopg `%s`), None for another."""
    return {"qmark": "?", "format": "%s", "pyformat": "%s"}.get(dialect.paramstyle)


@functools.lru_cache(maxsize=64)
def _insert_sql(dialect: Dialect, table: Table, columns: tuple[str, ...]) -> str | None:
    """`INSERT INTO table (columns) VALUES (?, ...)` in the driver's placeholders."""
    mark = _mark(dialect)
    if mark is None:
        return None
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c) for c in columns)
    return f"INSERT INTO {quote(table.name)} ({names}) VALUES ({', '.join([mark] * len(columns))})"


@functools.lru_cache(maxsize=64)
def _update_sql(
    dialect: Dialect, table: Table, columns: tuple[str, ...], where: tuple[str, ...]
) -> str | None:
    """`UPDATE table SET column = ?, ... WHERE key = ? AND ...` in the driver's placeholders."""
    mark = _mark(dialect)
    if mark is None:
        return None
    quote = dialect.identifier_preparer.quote
    values = ", ".join(f"{quote(c)} = {mark}" for c in columns)
    keys = " AND ".join(f"{quote(c)} = {mark}" for c in where)
    return f"UPDATE {quote(table.name)} SET {values} WHERE {keys}"


def insert_rows(
    conn: Connection, table: Table, columns: tuple[str, ...], rows: Sequence[tuple[object, ...]]
) -> None:
    """Insert rows (tuples of `columns`' values: str, int, None, bytes, which sqlite3 and
    psycopg take as they are) in one executemany, straight to the driver: SQLAlchemy's
    per-row parameter processing was most of an append's own CPU (a batch of 256
    accounts inserts ~1,300 rows: snapshots, heads, log leaves and nodes)."""
    if not rows:
        return
    sql = _insert_sql(conn.dialect, table, columns)
    if sql is None:
        conn.execute(insert(table), [dict(zip(columns, r, strict=True)) for r in rows])
    else:
        conn.exec_driver_sql(sql, list(rows))


def update_rows(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    where: tuple[str, ...],
    rows: Sequence[tuple[object, ...]],
) -> int:
    """Set `columns` where every `where` column equals its value, per row (the new
    values, then the keys'), in one executemany as `insert_rows`; the rows changed
    (sqlite3 and psycopg sum an executemany's counts)."""
    if not rows:
        return 0
    sql = _update_sql(conn.dialect, table, columns, where)
    if sql is not None:
        return int(conn.exec_driver_sql(sql, list(rows)).rowcount)
    names = [f"v_{c}" for c in columns] + [f"k_{c}" for c in where]
    stmt = (
        update(table)
        .where(*(table.c[c] == bindparam(f"k_{c}") for c in where))
        .values({c: bindparam(f"v_{c}") for c in columns})
    )
    return int(conn.execute(stmt, [dict(zip(names, r, strict=True)) for r in rows]).rowcount)
