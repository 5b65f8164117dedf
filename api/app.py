"""The aiohttp application: v1 operations (api/handlers.py), /openapi.json generated
from their pydantic models, /metrics, and the web page (api/web.py).

Middlewares, outermost first: metrics (latency of every answer, errors included), then
problems (RFC 9457 bodies for every error, the request deadline); errors aiohttp makes
outside them are problems too (`api.problems.serve_protocol_errors`). Authentication,
rate limits and input validation are per operation (`api.openapi.bind`); a request
body is at most MAX_BODY_BYTES and, as JSON, at most `api.openapi.MAX_JSON_DEPTH` deep.

Lifecycle: the snapshot store is opened (alembic upgrade to head) and the Engine's HTTP
session and adapters are started with the app, and closed with it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from adapters.evm import EvmAdapter
from api.docs import add_docs_routes
from api.handlers import ENGINE, SERVICE, operations
from api.metrics import Metrics
from api.openapi import Operation, bind, spec
from api.problems import Scrubber, error_middleware, serve_protocol_errors
from api.security import Gate
from api.service import Service
from api.store import Store, database_url
from api.tlog.heads import Signer
from api.tlog.routes import SIGNER
from api.watch.delivery import Deliverer
from api.watch.handlers import ON_CHANGE, WATCH_STORE
from api.watch.handlers import operations as watch_operations
from api.watch.live import HUB, Hub, add_live_routes
from api.watch.store import WatchStore
from api.watch.watcher import Watcher
from api.web import add_web_routes
from crossmargin.core.config import Config
from crossmargin.engine import Engine, open_adapters
from oracle.store import HistoryStore

__all__ = ["ENGINE", "SERVICE", "WATCHER", "create_app"]

WATCHER = web.AppKey("watcher", Watcher)

MAX_BODY_BYTES = 256 * 1024


def _version() -> str:
    try:
        return version("crossmargin")
    except PackageNotFoundError:
        return "0"


def api_operations(config: Config) -> list[Operation]:
    """Every operation the API serves (and documents): reports, audit, log, watches."""
    return operations(config) + watch_operations(config)


def create_app(
    config: Config, *, database: str | None = None, history: HistoryStore | None = None
) -> web.Application:
    """The whole API for `config`. `database` overrides the snapshot store's URL (else
    $CROSSMARGIN_DATABASE_URL, else `api.database_url`); `history`, the price-history
    store, makes sigma and rho estimates from it (METHOD.md §6) instead of config."""
    app: web.Application

    def adapters() -> Mapping[str, EvmAdapter]:
        return app[SERVICE].adapters if SERVICE in app else {}

    metrics = Metrics(adapters)
    problems = error_middleware(Scrubber(config), config.api.request_timeout_s)
    app = web.Application(
        middlewares=[metrics.middleware, problems], client_max_size=MAX_BODY_BYTES
    )
    serve_protocol_errors(app)
    gate = Gate(config.api)
    ops = api_operations(config)
    for op in ops:
        if op.method == "GET":
            app.router.add_get(op.path, bind(op, gate))
        else:
            app.router.add_route(op.method, op.path, bind(op, gate))
    document = json.dumps(spec(ops, anonymous=config.api.anonymous, version=_version())).encode()

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/metrics", metrics.handler)
    add_web_routes(app)  # the web page (api/web.py): `/`, /static/*, /v1/web/context
    add_docs_routes(app)  # the API reference (api/docs.py): /docs, offline
    app[HUB] = Hub()
    add_live_routes(app, gate, config)  # server-sent events per account (api/watch/live.py)

    url = database_url(database, config.api.database_url)
    if config.api.tlog_key is not None:  # a bad key stops the start, in one line
        app[SIGNER] = Signer.load(config.api.tlog_key)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store = await asyncio.to_thread(Store.open, url)
        try:
            async with open_adapters(config) as adapters:
                # The read seam: every computation reads through the engine's readers;
                # a coalescing reader (adapters/) wraps `adapters` here, in this one line.
                app[ENGINE] = engine = Engine(config, adapters, history)
                service = Service(config, engine, adapters, store, metrics)
                app[SERVICE] = service
                app[WATCH_STORE] = watches = WatchStore(store)
                try:
                    await service.start()
                    async with _watching(config, service, watches, app):
                        yield
                finally:
                    await service.close()
        finally:
            await asyncio.to_thread(store.close)

    app.cleanup_ctx.append(lifecycle)
    return app


@asynccontextmanager
async def _watching(
    config: Config, service: Service, watches: WatchStore, app: web.Application
) -> AsyncIterator[None]:
    """The watcher and the webhook deliverer (METHOD.md §14) run with the app when
    `watch.enabled`: `crossmargin serve` and `up` watch without another process."""
    if not config.watch.enabled:
        yield
        return
    deliverer = Deliverer(config.watch, watches)
    watcher = Watcher(service, watches, app[HUB], deliverer.wake)
    app[WATCHER] = watcher
    app[ON_CHANGE] = [watcher.reload_soon]
    app[HUB].on_new_account = watcher.reload_soon
    tasks = [asyncio.create_task(deliverer.run()), asyncio.create_task(watcher.run())]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
