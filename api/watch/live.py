"""Live figures for the page: server-sent events per account.

`GET /v1/accounts/{address}/events[?target_chain=..]` (a stream, so outside
/openapi.json; same key and rate limit as the other account operations) keeps the
account in the watcher's set while a client listens; every new computation of it is
one `margin` event whose data is {"snapshot_id": .., "margin": <the margin report>}.
A comment line every KEEPALIVE_S keeps proxies from closing the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from aiohttp import web

from api.openapi import _invalid, _validate_path
from api.security import Gate
from crossmargin.core.config import Config

KEEPALIVE_S = 15.0
QUEUE = 16  # events a slow client may lag behind; older ones are dropped
CLOSE = b""  # the app is stopping
Key = tuple[str, str]  # (account, target chain)


class Hub:
    """(account, target) -> listening queues. The watcher publishes, streams read."""

    def __init__(self) -> None:
        self._queues: dict[Key, set[asyncio.Queue[bytes]]] = {}
        self.on_new_account: Callable[[], None] | None = None

    def keys(self) -> list[Key]:
        return list(self._queues)

    def subscribe(self, key: Key) -> asyncio.Queue[bytes]:
        q: asyncio.Queue[bytes] = asyncio.Queue(QUEUE)
        new = key not in self._queues
        self._queues.setdefault(key, set()).add(q)
        if new and self.on_new_account is not None:
            self.on_new_account()
        return q

    def unsubscribe(self, key: Key, q: asyncio.Queue[bytes]) -> None:
        queues = self._queues.get(key)
        if queues is not None:
            queues.discard(q)
            if not queues:
                del self._queues[key]

    def publish(self, key: Key, snapshot_id: str, body: bytes) -> None:
        queues = self._queues.get(key)
        if not queues:
            return
        data = b'{"snapshot_id":"' + snapshot_id.encode() + b'","margin":' + body + b"}"
        self._put(queues, b"event: margin\ndata: " + data + b"\n\n")

    def close(self) -> None:
        for queues in self._queues.values():
            self._put(queues, CLOSE)

    @staticmethod
    def _put(queues: set[asyncio.Queue[bytes]], event: bytes) -> None:
        for q in queues:
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(event)


HUB = web.AppKey("watch_hub", Hub)


def add_live_routes(app: web.Application, gate: Gate, config: Config) -> None:
    async def events(request: web.Request) -> web.StreamResponse:
        gate.admit(gate.authenticate(request))
        account = _validate_path(request)["address"]
        wanted = request.query.get("target_chain") or config.settlement_chain
        try:
            target = config.chain(wanted).name
        except KeyError:
            detail = f"unknown chain {wanted[:40]!r}"
            raise _invalid([{"location": "query.target_chain", "detail": detail}]) from None
        hub = request.app[HUB]
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        key = (account, target)
        q = hub.subscribe(key)
        try:
            await resp.write(b": watching\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(q.get(), KEEPALIVE_S)
                except TimeoutError:
                    event = b": keep-alive\n\n"
                if event == CLOSE:
                    break
                await resp.write(event)
        except ConnectionResetError:
            pass
        finally:
            hub.unsubscribe(key, q)
        return resp

    async def closing(app: web.Application) -> None:
        app[HUB].close()

    app.router.add_get("/v1/accounts/{address}/events", events)
    app.on_shutdown.append(closing)
