"""Helpers of the API tests: a real server in a thread, config variants, API keys."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from aiohttp import web

from api.security import new_key
from api.store import Store
from crossmargin.config import ApiKeyConfig


class ServerThread:
    """An aiohttp app served on 127.0.0.1:<free port> from a helper thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="api-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(self.app)
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert isinstance(server, asyncio.Server)
            self.port = server.sockets[0].getsockname()[1]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            await runner.cleanup()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"API server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def api_config(devnet: Any, **api: Any) -> Any:
    """The devnet config with some `[api]` settings replaced."""
    config = devnet.config
    return config.model_copy(update={"api": config.api.model_copy(update=api)})


def with_chain(config: Any, name: str, **update: Any) -> Any:
    """`config` with some settings of one chain replaced."""
    chains = [c.model_copy(update=update) if c.name == name else c for c in config.chains]
    return config.model_copy(update={"chains": chains})


def make_key(name: str, rate_per_s: float, burst: int) -> tuple[str, ApiKeyConfig]:
    key, digest = new_key()
    return key, ApiKeyConfig(name=name, sha256=digest, rate_per_s=rate_per_s, burst=burst)


def append_many(url: str, account: str, tag: str, n: int) -> None:
    """A writer process of the store tests."""
    store = Store.open(url)
    try:
        for i in range(n):
            store.append(account, "margin", lambda prev, i=i: json.dumps([prev, tag, i]))
    finally:
        store.close()
