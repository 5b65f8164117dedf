"""A fault-injecting JSON-RPC proxy (aiohttp) to put in front of an anvil.

    async with FaultProxy(upstream_url) as proxy:
        proxy.inject("http429", retry_after="1")          # next request gets a 429
        proxy.inject("header_not_found", method="eth_call", times=2)
        ...  # point a ChainConfig's rpc_urls at proxy.url

Faults are consumed in order: a request takes the first queued fault whose `method`
(None: any) is among the methods it carries; `times=None` never runs out. Requests
with no matching fault are forwarded untouched. `proxy.log` records the methods of
every request that reached the proxy (one list per HTTP request), `payloads` the
requests themselves, `max_inflight` the most requests it held at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web


@dataclass
class Fault:
    kind: str
    method: str | None = None
    times: int | None = 1
    args: dict[str, Any] = field(default_factory=dict)


def _error(rid: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": rid, "error": err}


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.log: list[list[str]] = []
        self.payloads: list[Any] = []
        self.inflight = 0
        self.max_inflight = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def inject(
        self, kind: str, *, method: str | None = None, times: int | None = 1, **args: Any
    ) -> None:
        self.faults.append(Fault(kind, method, times, args))

    def _take(self, methods: list[str]) -> Fault | None:
        for fault in self.faults:
            if fault.method is None or fault.method in methods:
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    async def _forward(self, payload: Any) -> Any:
        assert self._session is not None
        async with self._session.post(self.upstream, json=payload) as resp:
            return await resp.json(content_type=None)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            return await self._answer(request)
        finally:
            self.inflight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        payload = json.loads(raw)
        items = payload if isinstance(payload, list) else [payload]
        methods = [str(i.get("method")) for i in items]
        self.log.append(methods)
        self.payloads.append(payload)
        fault = self._take(methods)
        if fault is None:
            return web.json_response(await self._forward(payload))
        answer = _ANSWERS.get(fault.kind)
        if answer is None:
            raise AssertionError(f"unknown fault {fault.kind}")
        return await answer(self, _Asked(request, payload, items, fault.args))


@dataclass
class _Asked:
    """A request that drew a fault, and the fault's arguments."""

    request: web.Request
    payload: Any
    items: list[Any]
    args: dict[str, Any]

    @property
    def first_id(self) -> Any:
        return self.items[0].get("id")


Answer = Callable[[FaultProxy, _Asked], Awaitable[web.StreamResponse]]


async def _http429(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    retry_after = q.args.get("retry_after")
    headers = {"Retry-After": retry_after} if retry_after else {}
    return web.Response(status=429, text="Too Many Requests", headers=headers)


async def _rpc_limit(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    """Infura-style -32005 with backoff_seconds, HTTP 200."""
    data = {"backoff_seconds": q.args.get("backoff", 0.3)}
    return web.json_response(_error(q.first_id, -32005, "daily request count exceeded", data))


async def _body_limit(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    """A rate limit told only in the message of a 200 answer."""
    return web.json_response(_error(q.first_id, -32000, "rate limit exceeded, slow down"))


async def _http413(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    return web.Response(status=413, text="Request Entity Too Large")


async def _anvil_large(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    """What anvil answers for a body over 2 MiB."""
    return web.json_response(_error(None, -32600, "Invalid request"))


async def _http5xx(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    return web.Response(status=q.args.get("status", 502), text="Bad Gateway")


async def _reset(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    assert q.request.transport is not None
    q.request.transport.abort()
    return web.Response()


async def _timeout(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    await asyncio.sleep(q.args.get("delay", 5.0))
    return web.json_response(await proxy._forward(q.payload))


async def _truncate(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    """A shorter body, consistently framed: not JSON."""
    body = json.dumps(await proxy._forward(q.payload)).encode()
    return web.Response(body=body[: len(body) // 2], content_type="application/json")


async def _cut(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    """The connection dies mid-body."""
    body = json.dumps(await proxy._forward(q.payload)).encode()
    resp = web.StreamResponse(headers={"Content-Length": str(len(body))})
    await resp.prepare(q.request)
    await resp.write(body[: len(body) // 2])
    assert q.request.transport is not None
    q.request.transport.abort()
    return resp


async def _garbage_result(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    """Well-formed JSON-RPC, damaged eth_call data."""
    reply = await proxy._forward(q.payload)
    reply["result"] = reply["result"][: len(reply["result"]) // 2]
    return web.json_response(reply)


def _mangle(kind: str) -> Answer:
    """Replies forwarded, then reordered, cut short, mislabelled or re-chained."""

    async def answer(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
        reply = await proxy._forward(q.payload)
        replies = reply if isinstance(reply, list) else [reply]
        if kind == "shuffle":
            replies.reverse()
        elif kind == "drop_id":
            replies.pop()
        elif kind == "wrong_id":
            replies[0]["id"] = 987654321
        else:
            for req, rep in zip(q.items, replies, strict=False):
                if req.get("method") == "eth_chainId":
                    rep["result"] = hex(q.args["chain_id"])
        return web.json_response(replies if isinstance(reply, list) else replies[0])

    return answer


async def _head_back(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    """The endpoint reports an older head."""
    for item in q.items:
        if item.get("method") == "eth_getBlockByNumber" and not str(item["params"][0]).startswith(
            "0x"
        ):
            item["params"][0] = hex(q.args["number"])
    return web.json_response(await proxy._forward(q.payload))


async def _header_not_found(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    return web.json_response(_error(q.first_id, -32000, "header not found"))


async def _rpc_error(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    """The node answers with an error that is none of the retried kinds."""
    return web.json_response(_error(q.first_id, -32603, "internal error"))


async def _rewrite(proxy: FaultProxy, q: _Asked) -> web.StreamResponse:
    """A node that lies: `request(item)` may change each JSON-RPC request before it is
    forwarded (an eth_call with a state override), `reply(item, answer)` each answer."""
    change_request = q.args.get("request")
    change_reply = q.args.get("reply")
    if change_request is not None:
        for item in q.items:
            change_request(item)
    reply = await proxy._forward(q.payload)
    replies = reply if isinstance(reply, list) else [reply]
    if change_reply is not None:
        by_id = {item.get("id"): item for item in q.items}
        for answer in replies:
            change_reply(by_id.get(answer.get("id"), {}), answer)
    return web.json_response(reply)


_ANSWERS: dict[str, Answer] = {
    "rewrite": _rewrite,
    "http429": _http429,
    "rpc_limit": _rpc_limit,
    "body_limit": _body_limit,
    "http413": _http413,
    "anvil_large": _anvil_large,
    "http5xx": _http5xx,
    "reset": _reset,
    "timeout": _timeout,
    "truncate": _truncate,
    "cut": _cut,
    "garbage_result": _garbage_result,
    **{kind: _mangle(kind) for kind in ("shuffle", "drop_id", "wrong_id", "chain_id")},
    "head_back": _head_back,
    "header_not_found": _header_not_found,
    "rpc_error": _rpc_error,
}
