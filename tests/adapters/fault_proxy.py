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

    async def _answer(self, request: web.Request) -> web.StreamResponse:  # noqa: C901
        raw = await request.read()
        payload = json.loads(raw)
        items = payload if isinstance(payload, list) else [payload]
        methods = [str(i.get("method")) for i in items]
        self.log.append(methods)
        self.payloads.append(payload)
        fault = self._take(methods)
        if fault is None:
            return web.json_response(await self._forward(payload))
        kind, args = fault.kind, fault.args
        first_id = items[0].get("id")
        if kind == "http429":
            headers = {"Retry-After": args["retry_after"]} if args.get("retry_after") else {}
            return web.Response(status=429, text="Too Many Requests", headers=headers)
        if kind == "rpc_limit":  # Infura-style -32005 with backoff_seconds, HTTP 200
            data = {"backoff_seconds": args.get("backoff", 0.3)}
            return web.json_response(_error(first_id, -32005, "daily request count exceeded", data))
        if kind == "body_limit":  # a rate limit told only in the message of a 200 answer
            return web.json_response(_error(first_id, -32000, "rate limit exceeded, slow down"))
        if kind == "http413":
            return web.Response(status=413, text="Request Entity Too Large")
        if kind == "anvil_large":  # what anvil answers for a body over 2 MiB
            return web.json_response(_error(None, -32600, "Invalid request"))
        if kind == "http5xx":
            return web.Response(status=args.get("status", 502), text="Bad Gateway")
        if kind == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if kind == "timeout":
            await asyncio.sleep(args.get("delay", 5.0))
            return web.json_response(await self._forward(payload))
        if kind in ("truncate", "cut"):
            body = json.dumps(await self._forward(payload)).encode()
            if kind == "truncate":  # a shorter body, consistently framed: not JSON
                return web.Response(body=body[: len(body) // 2], content_type="application/json")
            resp = web.StreamResponse(headers={"Content-Length": str(len(body))})
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
            assert request.transport is not None
            request.transport.abort()  # the connection dies mid-body
            return resp
        if kind == "garbage_result":  # well-formed JSON-RPC, damaged eth_call data
            reply = await self._forward(payload)
            reply["result"] = reply["result"][: len(reply["result"]) // 2]
            return web.json_response(reply)
        if kind in ("shuffle", "drop_id", "wrong_id", "chain_id"):
            reply = await self._forward(payload)
            replies = reply if isinstance(reply, list) else [reply]
            if kind == "shuffle":
                replies.reverse()
            elif kind == "drop_id":
                replies.pop()
            elif kind == "wrong_id":
                replies[0]["id"] = 987654321
            else:
                for req, rep in zip(items, replies, strict=False):
                    if req.get("method") == "eth_chainId":
                        rep["result"] = hex(args["chain_id"])
            return web.json_response(replies if isinstance(reply, list) else replies[0])
        if kind == "head_back":  # the endpoint reports an older head
            for item in items:
                if item.get("method") == "eth_getBlockByNumber" and not str(
                    item["params"][0]
                ).startswith("0x"):
                    item["params"][0] = hex(args["number"])
            return web.json_response(await self._forward(payload))
        if kind == "header_not_found":
            return web.json_response(_error(first_id, -32000, "header not found"))
        raise AssertionError(f"unknown fault {kind}")
