"""Audit trail: snapshots, account heads, configs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cm_snapshot",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("prev_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(40), nullable=True),
        sa.Column("asset", sa.String(16), nullable=True),
        sa.Column("cache_key", sa.String(64), nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.UniqueConstraint("account", "prev_id", name="uq_cm_snapshot_account_prev"),
        sa.UniqueConstraint("account", "height", name="uq_cm_snapshot_account_height"),
    )
    op.create_index("ix_cm_snapshot_cache_key", "cm_snapshot", ["cache_key"])
    op.create_table(
        "cm_account_head",
        sa.Column("account", sa.String(42), primary_key=True),
        sa.Column("head_id", sa.String(64), nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
    )
    op.create_table(
        "cm_config",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cm_config")
    op.drop_table("cm_account_head")
    op.drop_index("ix_cm_snapshot_cache_key", "cm_snapshot")
    op.drop_table("cm_snapshot")
