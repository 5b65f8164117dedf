"""Transparency log (METHOD.md §10): leaf index per snapshot id, the hashes of the
Merkle tree's complete perfect subtrees, and the tree's size (api/store/tlog.py).

Snapshots stored before this revision become the first leaves, in the order they were
stored: by `created_at`, then account and height (one batch's rows share a time and
were inserted in that order; an account's heights always ascend), so the tree starts
from the existing trail without changing any snapshot or its id.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from api.tlog.merkle import CompactRange, leaf_hash

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade() -> None:
    leaf = op.create_table(
        "cm_tlog_leaf",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("snapshot_id", sa.String(64), nullable=False, unique=True),
    )
    node = op.create_table(
        "cm_tlog_node",
        sa.Column("level", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    size = op.create_table(
        "cm_tlog_size",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    bind = op.get_bind()
    snap = sa.table(
        "cm_snapshot",
        sa.column("id"),
        sa.column("created_at"),
        sa.column("account"),
        sa.column("height"),
    )
    order = (snap.c.created_at, snap.c.account, snap.c.height)
    tree = CompactRange()
    leaves: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    for (sid,) in bind.execute(sa.select(snap.c.id).order_by(*order)).all():
        leaves.append({"idx": tree.size, "snapshot_id": sid})
        for (lv, ix), h in tree.push(leaf_hash(bytes.fromhex(sid))):
            nodes.append({"level": lv, "idx": ix, "hash": h})
        if len(leaves) >= BATCH:
            bind.execute(sa.insert(leaf), leaves)
            bind.execute(sa.insert(node), nodes)
            leaves, nodes = [], []
    if leaves:
        bind.execute(sa.insert(leaf), leaves)
        bind.execute(sa.insert(node), nodes)
    bind.execute(sa.insert(size), [{"id": 1, "size": tree.size}])


def downgrade() -> None:
    op.drop_table("cm_tlog_size")
    op.drop_table("cm_tlog_node")
    op.drop_table("cm_tlog_leaf")
