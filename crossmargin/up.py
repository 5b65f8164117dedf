"""`crossmargin up` (what `make run` runs): the devnet and the API in one process.

One event loop owns every child: Ctrl-C or SIGTERM stops the API, then every anvil.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from api.app import create_app
from api.store import database_url
from api.web import MANIFEST
from crossmargin.config import Config
from crossmargin.devnet.cli import print_summary
from crossmargin.devnet.net import Devnet
from crossmargin.engine import Engine
from crossmargin.errors import CrossmarginError
from oracle.history import sync_history
from oracle.store import HistoryStore


async def _sync(config: Config, history: HistoryStore) -> None:
    """Daily closes from the devnet's feed rounds, so sigma and rho are estimated (§6)."""
    async with Engine(config) as engine:
        report = await sync_history(config, engine.adapters, history)
    written = sum(f.closes_written for f in report.feeds)
    failed = ", ".join(sorted(report.errors)) or "none"
    print(f"price history: {written} daily closes stored (failed chains: {failed})", flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crossmargin up", description=__doc__.splitlines()[0])
    p.add_argument("--host", help="API host (default: from the devnet config, 127.0.0.1)")
    p.add_argument("--port", type=int, help="API port (default: from the devnet config, 8080)")
    p.add_argument("--state-dir", help="devnet state directory (default: .devnet/)")
    return p


async def _up(args: argparse.Namespace) -> int:
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
            url = database_url(None, f"sqlite:///{state / 'crossmargin.db'}")
            history = HistoryStore.open(url)
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
                base = f"http://{host}:{port}"
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
