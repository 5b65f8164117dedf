"""Errors as RFC 9457 problem+json, and the request deadline.

Every 4xx/5xx the API sends is a problem with a stable `code` (what a client branches
on) and a human `detail`, whoever made it:

- handlers and the security layer raise `ApiProblem`, and `error_middleware` renders it
  (and aiohttp's own HTTP errors raised under it: 404, 405, 413, ...);
- `serve_protocol_errors` covers the rest, which no middleware sees: what aiohttp
  rejects before routing (a bad request line or header, oversized headers, a bad
  Content-Length), its answer to an unknown `Expect`, an exception escaping the
  middlewares; and it replaces aiohttp's `Server` banner (library and Python versions).

No stack trace, RPC URL, key or library repr reaches a response: unexpected exceptions
are logged server-side and answered with a generic 500; every detail and string field
passes `Scrubber`, which replaces any configured endpoint (URL, host:port, host) and any
IP address with `<rpc endpoint>`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web, web_protocol
from sqlalchemy.exc import SQLAlchemyError

from api.store import StoreError
from crossmargin.core.config import Config
from crossmargin.core.errors import AsOfUnavailable, InputConflict, InputError, Refused

log = logging.getLogger("api")

PROBLEM = "application/problem+json"
SERVER = "crossmargin"  # the `Server` header: no library or Python version
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Not Computed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    504: "Gateway Timeout",
}
# `code` of a problem whose type does not name one (types "/problems/x-y" give "x_y")
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "refused",
    429: "rate_limited",
    500: "internal_error",
    504: "timeout",
}
# the human sentence of an error whose raiser gave none worth showing
DETAILS = {
    400: "the request is not valid HTTP/1.1 (request line, a header, or the body framing)",
    404: "nothing is served at this path",
    405: "this method is not allowed here (see the Allow header)",
    413: "the request body is too large",
    417: "only `Expect: 100-continue` is understood",
    500: "the server failed to answer this request; the failure is logged on the server",
    504: "the server did not answer within its deadline",
}
INTERNAL = DETAILS[500]
STORE_DOWN = "the snapshot store cannot take a report now, and none is served unstored"
KEEP_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")
SERVES_PROBLEMS = web.AppKey("serves_problems", bool)


def as_of_type(exc: AsOfUnavailable) -> str:
    """The problem type of a past time that cannot be answered (§15): its `code` is the
    error's (`as_of_in_future`, `before_genesis`, `state_unavailable`)."""
    return "/problems/" + exc.error_code.replace("_", "-")


class ApiProblem(Exception):
    """Raised by handlers and the security layer; rendered by the middleware."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        type_: str = "about:blank",
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.type = type_
        self.headers = dict(headers or {})
        self.extra = extra


# network addresses in the forms libraries print them: ('10.0.0.1', 8545[, ...]),
# 10.0.0.1[:8545], [::1][:8545]; in an error they can only be an endpoint's
_NETWORK = re.compile(
    r"\(\s*'[^']*'\s*,\s*\d{1,5}(?:\s*,\s*\d+)*\s*\)"
    r"|(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])"
    r"|\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\](?::\d{1,5})?"
)


class Scrubber:
    """Removes every configured RPC endpoint (URL, host:port, host) from a text (URLs
    may carry keys), and any IP address, with or without a port: a name that resolved
    to an address shows up as the address."""

    def __init__(self, config: Config) -> None:
        needles: set[str] = set()
        for chain in config.chains:
            for url in chain.rpc_urls:
                parts = urlsplit(url)
                needles.update(x for x in (url, url.rstrip("/"), parts.netloc) if x)
                if parts.hostname and parts.hostname not in ("localhost", "127.0.0.1"):
                    needles.add(parts.hostname)
        self._needles = sorted(needles, key=len, reverse=True)  # longest first

    def __call__(self, text: str) -> str:
        for needle in self._needles:
            if needle in text:
                text = text.replace(needle, "<rpc endpoint>")
        return _NETWORK.sub("<rpc endpoint>", text)

    def deep(self, value: Any) -> Any:
        """Every string in a JSON-like value scrubbed (a problem's extra fields)."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, Mapping):
            return {k: self.deep(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(v) for v in value]
        return value


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Client Error" if status < 500 else "Server Error"


def problem_code(status: int, type_: str) -> str:
    """The stable `code` of a problem: from its type if it names one, else its status."""
    if type_.startswith("/problems/"):
        return type_.removeprefix("/problems/").replace("-", "_")
    return CODES.get(status) or _phrase(status).lower().replace(" ", "_").replace("-", "_")


def problem_body(status: int, detail: str, type_: str = "about:blank", **extra: Any) -> bytes:
    body = {
        "type": type_,
        "title": TITLES.get(status) or _phrase(status),
        "status": status,
        "code": problem_code(status, type_),
        "detail": detail,
        **extra,
    }
    return json.dumps(body).encode()


def problem(
    status: int,
    detail: str,
    type_: str = "about:blank",
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    return web.Response(
        body=problem_body(status, detail, type_, **extra),
        status=status,
        content_type=PROBLEM,
        headers=dict(headers or {}),
    )


def _http_error(exc: web.HTTPException, request: web.Request) -> web.Response:
    """aiohttp's own HTTP errors (no route, method, body size) as problems."""
    kept = {k: v for k in KEEP_HEADERS if (v := exc.headers.get(k)) is not None}
    detail = DETAILS.get(exc.status, exc.reason)
    if exc.status == 405 and "Allow" in kept:
        detail = f"{request.method} is not allowed here; allowed: {kept['Allow']}"
    return problem(exc.status, detail, headers=kept)


def domain_problem(exc: InputError | Refused | AsOfUnavailable, scrub: Scrubber) -> web.Response:
    """Our own errors about a request: bad input 400, a self-contradiction 409, a time
    the chains cannot serve (§15) 409, refused by the method's assumptions 422."""
    detail = scrub(str(exc))
    if isinstance(exc, AsOfUnavailable):
        return problem(409, detail, as_of_type(exc), chain=exc.chain)
    if isinstance(exc, InputConflict):
        return problem(409, detail, "/problems/conflict")
    if isinstance(exc, InputError):
        return problem(400, detail, "/problems/bad-input")
    return problem(422, detail, "/problems/refused")


def error_middleware(scrub: Scrubber, deadline_s: float) -> Any:
    """Maps every error to a problem response and enforces the request deadline."""

    @web.middleware
    async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
        timeout = asyncio.timeout(deadline_s)
        try:
            async with timeout:
                return await handler(request)
        except TimeoutError:
            if not timeout.expired():  # something below timed out: logged, not shown
                log.exception("timeout serving %s %s", request.method, request.path)
                return problem(504, DETAILS[504])
            return problem(504, f"no answer within the {deadline_s:g} s request deadline")
        except ApiProblem as exc:
            extra = scrub.deep(exc.extra)
            return problem(exc.status, scrub(exc.detail), exc.type, exc.headers, **extra)
        except (InputError, Refused, AsOfUnavailable) as exc:
            return domain_problem(exc, scrub)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _http_error(exc, request)
        except (StoreError, SQLAlchemyError):
            # No report is served unstored (§10): the store failing is the service being
            # unavailable, as /v1/health says, not a bug in the request.
            log.exception("the snapshot store failed serving %s %s", request.method, request.path)
            return problem(503, STORE_DOWN, "/problems/store-unavailable")
        except Exception:
            log.exception("unhandled error serving %s %s", request.method, request.path)
            return problem(500, INTERNAL)

    return problems


# ---------------------------------------------------------------- outside the middlewares

_aiohttp_finish_response = web_protocol.RequestHandler.finish_response

# Set on a response whose error status carries a documented body of its own (the
# health document's 503, which a load balancer reads), so it is not made a problem.
DOCUMENTED_ERROR = web.ResponseKey("documented_error", bool)


def _ours(handler: web_protocol.RequestHandler) -> bool:
    """Whether this connection is served by an app that asked for problems."""
    app = getattr(getattr(handler._manager, "request_handler", None), "__self__", None)
    return isinstance(app, web.Application) and app.get(SERVES_PROBLEMS, False)


def final_response(resp: web.StreamResponse) -> web.StreamResponse:
    """What is sent instead of `resp`: our `Server` header, and a problem for an error
    response that is not one yet."""
    if resp.prepared:
        return resp
    if (
        isinstance(resp, web.Response)
        and resp.status >= 400
        and resp.content_type != PROBLEM
        and not resp.get(DOCUMENTED_ERROR, False)
    ):
        kept = {k: v for k in KEEP_HEADERS if (v := resp.headers.get(k)) is not None}
        detail = DETAILS.get(resp.status) or _phrase(resp.status)
        replaced = problem(resp.status, detail, headers=kept)
        if resp.keep_alive is False:
            replaced.force_close()
        resp = replaced
    resp.headers["Server"] = SERVER
    return resp


async def _finish_response(
    self: web_protocol.RequestHandler,
    request: web.BaseRequest,
    resp: web.StreamResponse,
    start_time: float | None,
) -> tuple[web.StreamResponse, bool]:
    if _ours(self):
        resp = final_response(resp)
    return await _aiohttp_finish_response(self, request, resp, start_time)


def serve_protocol_errors(app: web.Application) -> None:
    """Make every error response of `app` a problem, and drop aiohttp's `Server` banner.

    Some errors never meet a middleware: what aiohttp rejects before routing (a bad
    request line or header, oversized headers, a bad Content-Length: its parser's
    message, quoting the request bytes, as text), an unknown `Expect` (answered before
    the middlewares run), an exception escaping them. Every response, those included,
    goes out through `RequestHandler.finish_response`, and aiohttp gives an application
    no hook there; so that method is wrapped, once per process, and the wrapper applies
    `final_response` on connections of an app marked here. Other aiohttp servers in the
    process keep aiohttp's behaviour."""
    app[SERVES_PROBLEMS] = True
    if web_protocol.RequestHandler.finish_response is _aiohttp_finish_response:
        web_protocol.RequestHandler.finish_response = _finish_response  # type: ignore[method-assign]
