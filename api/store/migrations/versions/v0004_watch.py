"""Watches, their per-account alert state, and the alert outbox (METHOD.md §14).

- `cm_watch`: one subscription, owned by an API key's name (a key sees only its own);
  `secret` signs its webhooks and is never served back.
- `cm_watch_account`: the accounts of a watch.
- `cm_watch_state`: per (watch, account, condition) whether the threshold is crossed,
  so an alert is raised once per crossing, also across restarts.
- `cm_alert`: the outbox. An alert is stored (with the snapshot it came from) in the
  transaction that moves its state, before any delivery; `status` is pending,
  delivered or dead, with the attempts so far and when the next one is due.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cm_watch",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False, index=True),
        sa.Column("name", sa.String(64), nullable=True),
        sa.Column("target", sa.String(40), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("thresholds", sa.Text, nullable=False),
        sa.Column("webhook_url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )
    op.create_table(
        "cm_watch_account",
        sa.Column("watch_id", sa.String(32), primary_key=True),
        sa.Column("account", sa.String(42), primary_key=True),
    )
    op.create_table(
        "cm_watch_state",
        sa.Column("watch_id", sa.String(32), primary_key=True),
        sa.Column("account", sa.String(42), primary_key=True),
        sa.Column("condition", sa.String(24), primary_key=True),
        sa.Column("breached", sa.Boolean, nullable=False),
        sa.Column("snapshot_id", sa.String(64), nullable=True),
    )
    op.create_table(
        "cm_alert",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("watch_id", sa.String(32), nullable=False, index=True),
        sa.Column("owner", sa.String(64), nullable=False, index=True),
        sa.Column("account", sa.String(42), nullable=False),
        sa.Column("condition", sa.String(24), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("snapshot_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("delivered_at", sa.String(32), nullable=True),
    )


def downgrade() -> None:
    for table in ("cm_alert", "cm_watch_state", "cm_watch_account", "cm_watch"):
        op.drop_table(table)
