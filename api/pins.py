"""The blocks computations are pinned at, shared by concurrent requests.

Pinning a chain costs an RPC round trip; a pin (or the error that stopped it) is
reused for `api.pin_ttl_s` seconds and concurrent requests wait for one pinning call,
so a burst of cached requests costs no RPC at all. A pin reused for t seconds is the
pin a request t seconds earlier would have had: every result still names its blocks.

Health reads what was last learned per chain (`Known`: pin, head, when, the latest
failure) and only starts a refresh (`refresh`), so a hanging node cannot hold a
/v1/health answer. A failure is kept in its public form (crossmargin/core/errors.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from adapters.evm import BlockPin, EvmAdapter
from crossmargin.core.errors import ChainError, DecodeError

T = TypeVar("T")
Pinned = BlockPin | str  # the pin, or why the chain could not be pinned


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    at: float
    value: T


class _Ttl(Generic[T]):
    """Per-key value computed at most once per `ttl` seconds; concurrent callers share it."""

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, _Entry[T]] = {}
        self._running: dict[str, asyncio.Task[T]] = {}

    def peek(self, key: str) -> _Entry[T] | None:
        return self._entries.get(key)

    def running(self, key: str) -> bool:
        return key in self._running

    def start(self, key: str, fetch: Callable[[], Awaitable[T]]) -> asyncio.Task[T] | None:
        """Make sure a fetch is under way unless the value is fresh; do not wait for it."""
        if self.fresh(key) is not None:
            return None
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(key, fetch))
            self._running[key] = task
        return task

    def fresh(self, key: str) -> _Entry[T] | None:
        entry = self._entries.get(key)
        return entry if entry is not None and self._clock() - entry.at < self.ttl else None

    async def get(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        task = self.start(key, fetch)
        if task is None:
            entry = self.fresh(key)
            assert entry is not None
            return entry.value
        return await asyncio.shield(task)

    async def _fetch(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        started = self._clock()
        try:
            value = await fetch()
            self._entries[key] = _Entry(started, value)
            return value
        finally:
            self._running.pop(key, None)

    async def close(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)


@dataclass(frozen=True, slots=True)
class Known:
    """The last state of one chain this process learned (times: time.monotonic())."""

    pin: BlockPin | None = None
    pin_at: float | None = None
    head: int | None = None
    error: str | None = None  # the latest pinning failed: why (public form); else None
    error_code: str | None = None


class Pins:
    """Pinned blocks (for computations) and heads (for /v1/health), per chain name."""

    def __init__(
        self,
        adapters: Mapping[str, EvmAdapter],
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.adapters = adapters
        self._pins: _Ttl[Pinned] = _Ttl(ttl, clock)
        self._heads: _Ttl[int | str] = _Ttl(max(ttl, 1.0), clock)
        self._clock = clock
        self._known: dict[str, Known] = {name: Known() for name in adapters}

    async def current(self) -> dict[str, Pinned]:
        fresh = {n: self._pins.fresh(n) for n in self.adapters}
        if all(v is not None for v in fresh.values()):  # the common case: no task, no I/O
            return {n: v.value for n, v in fresh.items() if v is not None}
        names = list(self.adapters)
        got = await asyncio.gather(*(self._pins.get(n, self._pinner(n)) for n in names))
        return dict(zip(names, got, strict=True))

    def last(self, name: str) -> Pinned | None:
        entry = self._pins.peek(name)
        return None if entry is None else entry.value

    def known(self, name: str) -> Known:
        return self._known[name]

    def pinning(self, name: str) -> bool:
        """A pin of the chain is being fetched right now."""
        return self._pins.running(name)

    def refresh(self) -> list[asyncio.Future[Any]]:
        """Start fetching every pin and head that is not fresh; return what is under way
        (for a caller that waits a bounded time: the fetches go on without it)."""
        tasks: list[asyncio.Future[Any] | None] = []
        for name in self.adapters:
            tasks.append(self._pins.start(name, self._pinner(name)))
            tasks.append(self._heads.start(name, self._header(name)))
        return [t for t in tasks if t is not None]

    def _pinner(self, name: str) -> Callable[[], Awaitable[Pinned]]:
        async def pin() -> Pinned:
            try:
                got = await self.adapters[name].pin()
            except (ChainError, DecodeError) as exc:
                reason = exc.public(name)
                self._note(name, error=reason, error_code=exc.error_code)
                return reason
            self._note(name, pin=got, pin_at=self._clock(), error=None, error_code=None)
            return got

        return pin

    def _note(self, name: str, **changes: Any) -> None:
        self._known[name] = replace(self._known[name], **changes)

    def _header(self, name: str) -> Callable[[], Awaitable[int | str]]:
        async def fetch() -> int | str:
            try:
                raw = await self.adapters[name].rpc.request("eth_blockNumber", [])
                head = int(raw, 16)
            except (ChainError, DecodeError) as exc:
                return exc.public(name)
            except (TypeError, ValueError):
                return f"bad_response: chain {name} answered eth_blockNumber with no number"
            self._note(name, head=head)
            return head

        return fetch

    async def close(self) -> None:
        await self._pins.close()
        await self._heads.close()
