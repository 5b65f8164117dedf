"""Alembic environment: always run by `api.store.db.migrate` on a connection it opened
(and locked), never from the alembic command line with an ini file."""

from __future__ import annotations

from alembic import context

VERSION_TABLE = "crossmargin_api_version"

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
