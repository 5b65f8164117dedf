"""Helpers for the browser tests: the API (with the page) served on a free loopback port
from a helper thread, and a config whose chain points at a dead port."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

from aiohttp import web

from api.app import create_app
from api.web import MANIFEST
from crossmargin.core.config import Config

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "web"


class ServedApp:
    """An aiohttp app on 127.0.0.1:<free port>, run by its own event loop in a thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="web-app", daemon=True)

    def __enter__(self) -> ServedApp:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the app did not start in 30 s")
        if self._error is not None:
            raise RuntimeError(f"the app failed to start: {self._error!r}") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def _run(self) -> None:
        loop = self._loop
        runner = web.AppRunner(self.app)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            host, port = runner.addresses[0][:2]
            self.url = f"http://{host}:{port}"
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()


def dead_url() -> str:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def with_dead_chain(config: Config, name: str) -> Config:
    chains = [
        c.model_copy(update={"rpc_urls": [dead_url()], "retries": 1, "timeout_s": 2.0})
        if c.name == name
        else c
        for c in config.chains
    ]
    return config.model_copy(update={"chains": chains})


def with_unpriced_asset(config: Config, symbol: str) -> Config:
    """Every feed of `symbol` bounded below its answer: each reading is out_of_bounds, so
    the asset is unpriced (METHOD.md §3) and debt in it cannot be valued (§4)."""
    assets = [
        a.model_copy(update={"feeds": [f.model_copy(update={"max_answer": 1}) for f in a.feeds]})
        if a.symbol == symbol
        else a
        for a in config.assets
    ]
    return config.model_copy(update={"assets": assets})


def serve(config: Config, manifest: Path, database: Path) -> ServedApp:
    app = create_app(config, database=f"sqlite:///{database}")
    app[MANIFEST] = manifest
    return ServedApp(app)
