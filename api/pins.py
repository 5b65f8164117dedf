"""The blocks computations are pinned at, shared by concurrent requests.

Pinning a chain costs an RPC round trip; a pin (or the error that stopped it) is
reused for `api.pin_ttl_s` seconds and concurrent requests wait for one pinning call,
so a burst of cached requests costs no RPC at all. A pin reused for t seconds is the
pin a request t seconds earlier would have had: every result still names its blocks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from adapters.evm import BlockPin, EvmAdapter
from crossmargin.errors import ChainError, DecodeError

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

    def fresh(self, key: str) -> _Entry[T] | None:
        entry = self._entries.get(key)
        return entry if entry is not None and self._clock() - entry.at < self.ttl else None

    async def get(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        entry = self.fresh(key)
        if entry is not None:
            return entry.value
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fetch(key, fetch))
            self._running[key] = task
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


def _reason(exc: ChainError | DecodeError) -> str:
    return str(exc)


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

    def _pinner(self, name: str) -> Callable[[], Awaitable[Pinned]]:
        async def pin() -> Pinned:
            try:
                return await self.adapters[name].pin()
            except (ChainError, DecodeError) as exc:
                return _reason(exc)

        return pin

    async def head(self, name: str) -> int | str:
        """The chain's latest block number (health only), or why it is unknown."""

        async def fetch() -> int | str:
            try:
                raw = await self.adapters[name].rpc.request("eth_blockNumber", [])
                return int(raw, 16)
            except (ChainError, DecodeError) as exc:
                return _reason(exc)
            except (TypeError, ValueError):
                return "eth_blockNumber answer is not a hex number"

        return await self._heads.get(name, fetch)

    async def close(self) -> None:
        await self._pins.close()
        await self._heads.close()
