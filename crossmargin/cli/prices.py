"""`crossmargin prices sync`: fill the price-history store from the feeds' rounds.

    crossmargin prices sync [--config FILE] [--db URL]

The database is `--db`, else $CROSSMARGIN_DATABASE_URL, else the config's
`api.database_url` (one database per deployment; the oracle's tables are its own,
oracle/store.py). Progress goes to stderr (rich), the summary to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from adapters.evm import ChainReader
from crossmargin.core.config import Config
from oracle.history import SyncReport, sync_history
from oracle.store import HistoryStore

ENV_URL = "CROSSMARGIN_DATABASE_URL"


def add_arguments(parser: argparse.ArgumentParser, default_config: str) -> None:
    parser.add_argument("--config", help=f"config file (default: {default_config})")
    parser.add_argument("--db", help=f"database URL (default: ${ENV_URL}, then api.database_url)")


def database_url(explicit: str | None, config: Config, env: Mapping[str, str] = os.environ) -> str:
    return explicit or env.get(ENV_URL) or config.api.database_url


async def sync_with_progress(
    config: Config, readers: Mapping[str, ChainReader], store: HistoryStore, console: Console
) -> SyncReport:
    """Run the sync with one progress bar per chain (days of history settled)."""
    columns = (
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bars:
        tasks = {name: bars.add_task(name, total=None) for name in readers}
        seen: set[str] = set()

        def update(chain: str, done: int, total: int) -> None:
            seen.add(chain)
            if total == 0:  # nothing to walk: up to date
                done = total = 1
            bars.update(tasks[chain], completed=done, total=total)

        report = await sync_history(config, readers, store, update)
        for name in set(tasks) - seen:  # nothing to walk there (or it failed)
            bars.update(tasks[name], total=1, completed=0 if name in report.errors else 1)
    return report


def run(args: argparse.Namespace, config: Config) -> int:
    from crossmargin.engine import open_adapters

    url = database_url(args.db, config)
    store = HistoryStore.open(url)
    err = Console(stderr=True)

    async def go() -> tuple[SyncReport, dict[str, int]]:
        async with open_adapters(config) as adapters:
            readers: dict[str, ChainReader] = dict(adapters)
            report = await sync_with_progress(config, readers, store, err)
            requests = {
                name: sum(s.requests for s in a.rpc.stats.values()) for name, a in adapters.items()
            }
        return report, requests

    try:
        report, requests = asyncio.run(go())
    finally:
        store.close()
    table = Table(title=f"price history in {make_safe(url)}")
    for col in ("chain", "asset", "feed", "closes written", "backfill", "note"):
        table.add_column(col)
    for f in report.feeds:
        note = f.skipped or ("history rewritten: stored again" if f.reset else "")
        table.add_row(
            f.chain,
            f.asset,
            f.feed,
            str(f.closes_written),
            "done" if f.backfill_done else "partial",
            note,
        )
    out = Console()
    out.print(table)
    for name in readers_order(config):
        if name in report.errors:
            out.print(f"{name}: FAILED: {report.errors[name]}")
        else:
            out.print(
                f"{name}: {report.multicalls.get(name, 0)} multicalls, "
                f"{requests.get(name, 0)} RPC requests"
            )
    return 1 if report.errors else 0


def readers_order(config: Config) -> list[str]:
    return [c.name for c in config.chains]


def make_safe(url: str) -> str:
    """The URL without its password, for printing."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
