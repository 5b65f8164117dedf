"""The watch tables as SQLAlchemy Core objects (the schema is made by the alembic
migration 0004 (v0004_watch.py), never by `create_all`)."""

from __future__ import annotations

import sqlalchemy as sa

META = sa.MetaData()

WATCH = sa.Table(
    "cm_watch",
    META,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("name", sa.String(64)),
    sa.Column("target", sa.String(40), nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("thresholds", sa.Text, nullable=False),
    sa.Column("webhook_url", sa.Text, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

WATCH_ACCOUNT = sa.Table(
    "cm_watch_account",
    META,
    sa.Column("watch_id", sa.String(32), primary_key=True),
    sa.Column("account", sa.String(42), primary_key=True),
)

STATE = sa.Table(
    "cm_watch_state",
    META,
    sa.Column("watch_id", sa.String(32), primary_key=True),
    sa.Column("account", sa.String(42), primary_key=True),
    sa.Column("condition", sa.String(24), primary_key=True),
    sa.Column("breached", sa.Boolean, nullable=False),
    sa.Column("snapshot_id", sa.String(64)),
)

ALERT = sa.Table(
    "cm_alert",
    META,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("watch_id", sa.String(32), nullable=False),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("account", sa.String(42), nullable=False),
    sa.Column("condition", sa.String(24), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("snapshot_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_at", sa.Float, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", sa.String(32)),
)
