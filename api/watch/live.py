"""Live figures for the page: server-sent events per account.

`GET /v1/accounts/{address}/events` (a stream, so outside /openapi.json) keeps the
account in the watcher's set while a client listens; every new computation of it is
one `margin` event whose data is {"snapshot_id": .., "margin": <the margin report>}.
A comment line every KEEPALIVE_S keeps proxies from closing the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from aiohttp import web

from api.openapi import _validate_path
from api.security import Gate

KEEPALIVE_S = 15.0
QUEUE = 16  # events a slow client may lag behind; older ones are dropped


class Hub:
    """Account -> listening queues. The watcher publishes, the stream handler reads."""

    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[bytes]]] = {}
        self.on_new_account: Callable[[], None] | None = None

    def accounts(self) -> list[str]:
        return list(self._queues)

    def subscribe(self, account: str) -> asyncio.Queue[bytes]:
        q: asyncio.Queue[bytes] = asyncio.Queue(QUEUE)
        new = account not in self._queues
        self._queues.setdefault(account, set()).add(q)
        if new and self.on_new_account is not None:
            self.on_new_account()
        return q

    def unsubscribe(self, account: str, q: asyncio.Queue[bytes]) -> None:
        queues = self._queues.get(account)
        if queues is not None:
            queues.discard(q)
            if not queues:
                del self._queues[account]

    def publish(self, account: str, snapshot_id: str, body: bytes) -> None:
        queues = self._queues.get(account)
        if not queues:
            return
        data = b'{"snapshot_id":"' + snapshot_id.encode() + b'","margin":' + body + b"}"
        event = b"event: margin\ndata: " + data + b"\n\n"
        for q in queues:
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(event)


HUB = web.AppKey("watch_hub", Hub)


def add_live_routes(app: web.Application, gate: Gate) -> None:
    async def events(request: web.Request) -> web.StreamResponse:
        principal = gate.authenticate(request)
        gate.admit(principal)
        account = _validate_path(request)["address"]
        hub = request.app[HUB]
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        q = hub.subscribe(account)
        try:
            await resp.write(b": watching\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                except TimeoutError:
                    event = b": keep-alive\n\n"
                await resp.write(event)
        except ConnectionResetError:
            pass
        finally:
            hub.unsubscribe(account, q)
        return resp

    app.router.add_get("/v1/accounts/{address}/events", events)
