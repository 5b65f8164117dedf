"""A watch without the API (`crossmargin watch`): the same store, watcher and deliverer
as `crossmargin serve`, for one local subscription.

The local watch is the store's watch owned by LOCAL_OWNER; it is created on the first
run and updated to the command line's settings on later ones (unchanged thresholds
keep their alert state), so a restarted `crossmargin watch` neither loses an alert
nor re-sends an acknowledged one.
"""

from __future__ import annotations

import asyncio
from typing import Any

from api.metrics import Metrics
from api.service import Service
from api.store import Store
from api.watch.delivery import Deliverer
from api.watch.store import WatchRow, WatchStore
from api.watch.watcher import Step, Watcher
from crossmargin.core.config import Config
from crossmargin.engine import Engine, open_adapters
from oracle.store import HistoryStore

LOCAL_OWNER = "local"


def upsert_local(watches: WatchStore, fields: dict[str, Any]) -> WatchRow:
    """The local watch with these settings (only what differs is changed)."""
    mine = watches.owned(LOCAL_OWNER)
    if not mine:
        return watches.create(LOCAL_OWNER, fields)
    row = mine[0]
    current = {
        "accounts": row.accounts,
        "target": row.target,
        "method": row.method,
        "thresholds": row.thresholds,
        "webhook_url": row.webhook_url,
        "secret": row.secret,
    }
    changed = {k: v for k, v in fields.items() if k in current and current[k] != v}
    if "accounts" in changed and sorted(changed["accounts"]) == row.accounts:
        del changed["accounts"]
    if not changed:
        return row
    updated = watches.update(LOCAL_OWNER, row.id, changed)
    assert updated is not None
    return updated


async def watch_locally(
    config: Config,
    url: str,
    fields: dict[str, Any],
    stop: asyncio.Event,
    history: HistoryStore | None = None,
    on_step: Any = None,
) -> None:
    """Run the local watch until `stop` is set."""
    store = await asyncio.to_thread(Store.open, url)
    try:
        watches = WatchStore(store)
        await asyncio.to_thread(upsert_local, watches, fields)
        async with open_adapters(config) as adapters:
            engine = Engine(config, adapters, history)
            service = Service(config, engine, adapters, store, Metrics(lambda: adapters))
            await service.start()
            deliverer = Deliverer(config.watch, watches)
            watcher = Watcher(service, watches, None, deliverer.wake)
            watcher.on_step = on_step
            tasks = [asyncio.create_task(deliverer.run()), asyncio.create_task(watcher.run())]
            try:
                await stop.wait()
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await service.close()
    finally:
        await asyncio.to_thread(store.close)


__all__ = ["LOCAL_OWNER", "Step", "upsert_local", "watch_locally"]
