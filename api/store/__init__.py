"""Snapshot storage (METHOD.md §10): sqlmodel tables, alembic migrations, the store."""

from api.store.db import Item, Store, Stored, StoreError, Summary, database_url, normalise_url

__all__ = ["Item", "Store", "StoreError", "Stored", "Summary", "database_url", "normalise_url"]
