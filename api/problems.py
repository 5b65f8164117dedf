"""Errors as RFC 9457 problem+json, and the request deadline.

No stack trace, RPC URL or API key reaches a response body: unexpected exceptions are
logged server-side and answered with a generic 500; every detail passes `Scrubber`,
which replaces any configured endpoint (URL, host:port, host) with `<rpc endpoint>`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from crossmargin.config import Config
from crossmargin.errors import InputError, Refused

log = logging.getLogger("api")

PROBLEM = "application/problem+json"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Not Computed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    504: "Gateway Timeout",
}
KEEP_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


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


class Scrubber:
    """Removes every configured RPC endpoint from a text (URLs may carry keys)."""

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
        return text


def problem_body(status: int, detail: str, type_: str = "about:blank", **extra: Any) -> bytes:
    body = {
        "type": type_,
        "title": TITLES.get(status, "Error"),
        "status": status,
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


def error_middleware(scrub: Scrubber, deadline_s: float) -> Any:
    """Maps every error to a problem response and enforces the request deadline."""

    @web.middleware
    async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
        timeout = asyncio.timeout(deadline_s)
        try:
            async with timeout:
                return await handler(request)
        except TimeoutError:
            if not timeout.expired():
                raise
            return problem(504, f"no answer within the {deadline_s:g} s request deadline")
        except ApiProblem as exc:
            return problem(exc.status, scrub(exc.detail), exc.type, exc.headers, **exc.extra)
        except InputError as exc:
            return problem(400, scrub(str(exc)), "/problems/bad-input")
        except Refused as exc:
            return problem(422, scrub(str(exc)), "/problems/refused")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            kept = {k: v for k in KEEP_HEADERS if (v := exc.headers.get(k)) is not None}
            return problem(exc.status, exc.reason, headers=kept)
        except Exception:
            log.exception("unhandled error serving %s %s", request.method, request.path)
            return problem(500, "the server failed; see its log")

    return problems
