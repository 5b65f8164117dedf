"""aiohttp application: thin handlers over the Engine; errors as RFC 9457 problem+json.

No stack trace, RPC URL or key ever reaches a response body: unexpected exceptions are
logged server-side and answered with a generic 500 problem.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from crossmargin.config import Config
from crossmargin.engine import Engine
from crossmargin.errors import InputError, Refused

log = logging.getLogger(__name__)

ENGINE = web.AppKey("engine", Engine)
PROBLEM = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, title: str, detail: str, type_: str = "about:blank") -> web.Response:
    body = {"type": type_, "title": title, "status": status, "detail": detail}
    return web.json_response(body, status=status, content_type=PROBLEM)


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except InputError as exc:
        return problem(400, "Bad request", str(exc), "/problems/bad-input")
    except Refused as exc:
        return problem(422, "Not computed", str(exc), "/problems/refused")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem(exc.status, exc.reason, exc.text or exc.reason)
    except Exception:
        log.exception("unhandled error serving %s", request.path)
        return problem(500, "Internal Server Error", "the server failed; see its log")


async def margin(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    report = await engine.margin(request.match_info["address"], request.query.get("target_chain"))
    return web.json_response(text=report.model_dump_json())


async def capacity(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    report = await engine.capacity(
        request.match_info["address"],
        request.query.get("target_chain"),
        request.query.get("asset") or None,
    )
    return web.json_response(text=report.model_dump_json())


async def stress(request: web.Request) -> web.Response:
    report = await request.app[ENGINE].stress(request.match_info["address"])
    return web.json_response(text=report.model_dump_json())


def create_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[problems])

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        async with Engine(config) as engine:
            app[ENGINE] = engine
            yield

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/v1/accounts/{address}/margin", margin)
    app.router.add_get("/v1/accounts/{address}/capacity", capacity)
    app.router.add_get("/v1/accounts/{address}/stress", stress)
    static = Path(__file__).parent / "static"
    if static.is_dir():
        app.router.add_static("/static", static)
    return app
