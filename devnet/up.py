"""`crossmargin up` (what `make run` runs): the devnet and the API in one process.

One event loop owns every child: Ctrl-C or SIGTERM stops the API, then every anvil.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

from aiohttp import web
from sqlalchemy.engine import make_url

from api.app import create_app
from api.web import MANIFEST
from crossmargin.cli.main import bound_urls, database, open_store
from crossmargin.cli.prices import ENV_URL
from crossmargin.core.config import Config, load_config
from crossmargin.core.errors import CrossmarginError
from crossmargin.engine import open_adapters
from devnet.cli import print_summary
from devnet.net import Devnet
from oracle.history import sync_history
from oracle.store import HistoryStore


async def _sync(config: Config, history: HistoryStore) -> None:
    """Daily closes from the devnet's feed rounds, so sigma and rho are estimated (§6)."""
    async with open_adapters(config) as adapters:
        report = await sync_history(config, adapters, history)
    written = sum(f.closes_written for f in report.feeds)
    failed = ", ".join(sorted(report.errors)) or "none"
    print(f"price history: {written} daily closes stored (failed chains: {failed})", flush=True)


def record_database(config_path: Path, url: str) -> None:
    """Write the API's database URL into the generated config (`api.database_url`), so the
    CLI beside it (margin, scan, audit, prices sync) reads the same database from any
    directory. A password is left out: it stays in $CROSSMARGIN_DATABASE_URL."""
    parsed = make_url(url)
    if parsed.password is not None:
        url = parsed._replace(password=None).render_as_string(hide_password=False)
    text = config_path.read_text(encoding="utf-8")
    line = f"database_url = {json.dumps(url)}"  # a JSON string is a TOML basic string
    text, found = re.subn(r"(?m)^database_url\s*=.*$", lambda _: line, text, count=1)
    if not found:
        header = r"(?m)^\[api\][ \t]*$"
        text, found = re.subn(header, lambda m: f"{m.group(0)}\n{line}", text, count=1)
    if not found:
        text += f"\n[api]\n{line}\n"
    config_path.write_text(text, encoding="utf-8")
    if load_config(config_path, env={}).api.database_url != url:
        raise CrossmarginError(f"{config_path}: could not record api.database_url")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crossmargin up", description=__doc__.splitlines()[0])
    p.add_argument("--host", help="API host (default: from the devnet config, 127.0.0.1)")
    p.add_argument("--port", type=int, help="API port (default: from the devnet config, 8080)")
    p.add_argument("--state-dir", help="devnet state directory (default: .devnet/)")
    return p


async def _up(args: argparse.Namespace) -> int:
    # $CROSSMARGIN_DATABASE_URL, if set, is checked before any chain starts.
    given = database(None, None) if os.environ.get(ENV_URL) else None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Devnet.start(state_dir=args.state_dir, keeper=True) as net:
            config = net.config
            host = args.host or config.api.host
            port = args.port if args.port is not None else config.api.port
            state = net.state_dir
            url, source = given or (
                f"sqlite:///{(state / 'crossmargin.db').resolve()}",
                "the devnet's database",
            )
            history = open_store(url, source)
            record_database(net.config_path, url)
            await _sync(config, history)
            app = create_app(config, database=url, history=history)
            app[MANIFEST] = net.manifest_path
            runner = web.AppRunner(app)
            await runner.setup()
            try:
                try:
                    await web.TCPSite(runner, host, port).start()
                except OSError as exc:
                    raise CrossmarginError(
                        f"cannot listen on {host}:{port}: {exc.strerror}"
                    ) from exc
                print_summary(net)
                demo = next(iter(net.demo_accounts.values()))
                base = bound_urls(runner)[0]
                print(f"\nAPI and web page: {base}/", flush=True)
                print(f"try:  curl -s '{base}/v1/accounts/{demo}/margin?target_chain=arbitrum'\n")
                keeper = asyncio.create_task(net.wait())
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait({keeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
                for task in (keeper, stopper):
                    task.cancel()
                await asyncio.gather(keeper, stopper, return_exceptions=True)
                print("stopping the API and the devnet", flush=True)
            finally:
                await runner.cleanup()
                history.close()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_up(args))
    except KeyboardInterrupt:
        return 130
    except CrossmarginError as exc:
        print(f"crossmargin up: error: {exc}", file=sys.stderr)
        return 1
