"""Webhook delivery from the outbox: at least once, signed, with back-off.

Each pending alert is POSTed as its stored JSON body (the same bytes every attempt)
with the headers

    Crossmargin-Alert-Id: <alert id>           (de-duplicate on it)
    Crossmargin-Timestamp: <unix seconds>      (of this attempt)
    Crossmargin-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>

A 2xx answer acknowledges it (`delivered`, never sent again). Anything else (another
status, a refused or timed-out connection) is a failed attempt: the next one is due
after retry_base_s * 2^(attempts-1), capped at retry_max_s, times a random factor in
[0.5, 1] (jitter, so a receiver coming back is not hit by every alert at once); after
`max_attempts` failures the alert is `dead`. The state lives in the database, so a
restarted process goes on where the last one stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable

import aiohttp

from api.watch.store import Outgoing, WatchStore
from crossmargin.core.config import WatchConfig

log = logging.getLogger("api.watch")

ID_HEADER = "Crossmargin-Alert-Id"
TIME_HEADER = "Crossmargin-Timestamp"
SIGNATURE_HEADER = "Crossmargin-Signature"
BATCH = 64


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=` and hex HMAC-SHA256 over `timestamp.body` with the watch's secret."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def backoff(cfg: WatchConfig, attempts: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds before attempt `attempts + 1` (exponential, capped, with jitter)."""
    base = min(cfg.retry_max_s, cfg.retry_base_s * 2.0 ** max(0, attempts - 1))
    return float(base * (0.5 + 0.5 * rand()))


class Deliverer:
    """Sends due alerts until closed; `wake()` when new alerts were recorded."""

    def __init__(self, cfg: WatchConfig, store: WatchStore) -> None:
        self.cfg = cfg
        self.store = store
        self._wake = asyncio.Event()
        self._limit = asyncio.Semaphore(cfg.delivery_concurrency)
        self.sent = 0  # acknowledged deliveries (for the bench and tests)
        self.on_delivered: Callable[[str], None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.cfg.delivery_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                self._wake.clear()
                due = await asyncio.to_thread(self.store.due, time.time(), BATCH)
                if due:
                    await asyncio.gather(*(self._send(session, o) for o in due))
                    continue
                nxt = await asyncio.to_thread(self.store.next_due)
                wait = 5.0 if nxt is None else max(0.0, min(5.0, nxt - time.time()))
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass

    async def _send(self, session: aiohttp.ClientSession, out: Outgoing) -> None:
        attempts = out.attempts + 1
        if out.webhook_url is None or out.secret is None:
            await asyncio.to_thread(
                self.store.failed, out.id, attempts, 0.0, "the watch was deleted", True
            )
            return
        body = out.body.encode()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            ID_HEADER: out.id,
            TIME_HEADER: stamp,
            SIGNATURE_HEADER: signature(out.secret, stamp, body),
        }
        error: str | None = None
        async with self._limit:
            try:
                async with session.post(out.webhook_url, data=body, headers=headers) as resp:
                    await resp.read()
                    if not 200 <= resp.status < 300:
                        error = f"the webhook answered HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                # never the URL or the library's text: they may hold internals
                error = f"the webhook could not be reached ({type(exc).__name__})"
        if error is None:
            await asyncio.to_thread(self.store.delivered, out.id, attempts)
            self.sent += 1
            if self.on_delivered is not None:
                self.on_delivered(out.id)
            return
        dead = attempts >= self.cfg.max_attempts
        next_at = time.time() + backoff(self.cfg, attempts)
        log.info("alert %s: attempt %d failed: %s", out.id, attempts, error)
        await asyncio.to_thread(self.store.failed, out.id, attempts, next_at, error, dead)
