"""The aiohttp application: v1 operations (api/handlers.py), /openapi.json generated
from their pydantic models, /metrics, and the web page (api/web.py).

Middlewares, outermost first: metrics (latency of every answer, errors included), then
problems (RFC 9457 bodies for every error, the request deadline); errors aiohttp makes
outside them are problems too (`api.problems.serve_protocol_errors`). Authentication,
rate limits and input validation are per operation (`api.openapi.bind`); a request
body is at most MAX_BODY_BYTES and, as JSON, at most `api.openapi.MAX_JSON_DEPTH` deep.

Lifecycle: the snapshot store is opened (alembic upgrade to head) and the Engine's HTTP
session and adapters are started with the app, and closed with it.

One of several worker processes (`crossmargin serve --workers N`, `Worker`): rate limits
are divided by N, so a key's rate does not multiply; only worker 0 runs the watcher of
the stored watches and the webhook deliverer (they must run once); the others follow
only their own live listeners' accounts. Every answer names its worker (`X-Worker`),
and /metrics (per worker) its pid.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web

from adapters.evm import EvmAdapter
from api.docs import add_docs_routes
from api.handlers import ENGINE, SERVICE, operations
from api.metrics import Metrics
from api.openapi import Operation, bind, spec
from api.peers import Peers
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

__all__ = ["ENGINE", "SERVICE", "WATCHER", "Worker", "create_app"]

WATCHER = web.AppKey("watcher", Watcher)

MAX_BODY_BYTES = 256 * 1024
WORKER_HEADER = "X-Worker"


@dataclass(frozen=True, slots=True)
class Worker:
    """This process is worker `index` (0-based) of `count` serving one port."""

    index: int
    count: int

    @property
    def primary(self) -> bool:
        """Runs what must run once: the stored watches' watcher and webhook delivery."""
        return self.index == 0


def _version() -> str:
    try:
        return version("crossmargin")
    except PackageNotFoundError:
        return "0"


def api_operations(config: Config) -> list[Operation]:
    """Every operation the API serves (and documents): reports, audit, log, watches."""
    return operations(config) + watch_operations(config)


def create_app(
    config: Config,
    *,
    database: str | None = None,
    history: HistoryStore | None = None,
    worker: Worker | None = None,
    peers: Peers | None = None,
) -> web.Application:
    """The whole API for `config`. `database` overrides the snapshot store's URL (else
    $CROSSMARGIN_DATABASE_URL, else `api.database_url`); `history`, the price-history
    store, makes sigma and rho estimates from it (METHOD.md §6) instead of config.
    `worker`: this app is one of several processes on one port (module docstring);
    `peers`: the other processes, which share computed results (api/peers.py)."""
    app: web.Application

    def adapters() -> Mapping[str, EvmAdapter]:
        return app[SERVICE].adapters if SERVICE in app else {}

    metrics = Metrics(adapters, worker=None if worker is None else worker.index)
    problems = error_middleware(Scrubber(config), config.api.request_timeout_s)
    app = web.Application(
        middlewares=[metrics.middleware, problems], client_max_size=MAX_BODY_BYTES
    )
    serve_protocol_errors(app)
    if worker is not None:
        name = str(worker.index)

        async def name_worker(_: web.Request, response: web.StreamResponse) -> None:
            response.headers[WORKER_HEADER] = name

        app.on_response_prepare.append(name_worker)
    gate = Gate(config.api, share=1 if worker is None else worker.count)
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
                service = Service(config, engine, adapters, store, metrics, peers)
                app[SERVICE] = service
                app[WATCH_STORE] = watches = WatchStore(store)
                try:
                    await service.start()
                    primary = worker is None or worker.primary
                    async with _watching(config, service, watches, app, primary=primary):
                        yield
                finally:
                    await service.close()
        finally:
            await asyncio.to_thread(store.close)

    app.cleanup_ctx.append(lifecycle)
    return app


@asynccontextmanager
async def _watching(
    config: Config,
    service: Service,
    watches: WatchStore,
    app: web.Application,
    *,
    primary: bool = True,
) -> AsyncIterator[None]:
    """The watcher and the webhook deliverer (METHOD.md §14) run with the app when
    `watch.enabled`: `crossmargin serve` and `up` watch without another process. A
    worker other than the primary runs a watcher of its own live listeners only (their
    events come from the process that holds their stream), with no alerts to deliver."""
    if not config.watch.enabled:
        yield
        return
    deliverer = Deliverer(config.watch, watches) if primary else None
    wake = None if deliverer is None else deliverer.wake
    watcher = Watcher(service, watches, app[HUB], wake, live_only=not primary)
    app[WATCHER] = watcher
    app[ON_CHANGE] = [watcher.reload_soon]
    app[HUB].on_new_account = watcher.reload_soon
    tasks = [asyncio.create_task(watcher.run())]
    if deliverer is not None:
        tasks.append(asyncio.create_task(deliverer.run()))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
