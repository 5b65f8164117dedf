"""Shared snapshot inputs stored once: `cm_blob` (hash -> canonical JSON).

Existing snapshots are not rewritten (their ids are held by clients): they stay
version "1" documents and replay as before; new snapshots are version "2" and name
their shared inputs by hash. This revision only adds the table.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cm_blob",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("document", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cm_blob")
