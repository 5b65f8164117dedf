"""Price history (oracle/store.py): daily closes and per-feed sync cursors.

The oracle owns these two tables' definitions; this revision makes the API's schema
include them, so one `upgrade head` prepares the whole deployment database. It creates
them only where missing: `crossmargin prices sync` may have created them first.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

from oracle.store import METADATA, TABLES

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    METADATA.create_all(op.get_bind(), tables=TABLES, checkfirst=True)


def downgrade() -> None:
    METADATA.drop_all(op.get_bind(), tables=TABLES, checkfirst=True)
