"""A bounded LRU of finished results in front of single-flight computations.

Concurrent `get`s of one key share one computation; each waiter awaits it through
`asyncio.shield`, so a waiter that gives up (its request deadline) does not cancel the
work the others wait for. Only results `cacheable` accepts are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Literal, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Outcome = Literal["hit", "coalesced", "miss"]


class Coalescer(Generic[K, V]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._done: OrderedDict[K, V] = OrderedDict()
        self._running: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._done)

    def __contains__(self, key: K) -> bool:
        return key in self._done or key in self._running

    def put(self, key: K, value: V) -> None:
        """Store a result computed elsewhere (a batch read)."""
        if self.capacity > 0:
            self._done[key] = value
            self._done.move_to_end(key)
            while len(self._done) > self.capacity:
                self._done.popitem(last=False)

    async def get(
        self,
        key: K,
        compute: Callable[[], Awaitable[V]],
        cacheable: Callable[[V], bool] = lambda _: True,
    ) -> tuple[V, Outcome]:
        if key in self._done:
            self._done.move_to_end(key)
            return self._done[key], "hit"
        task = self._running.get(key)
        if task is not None:
            return await asyncio.shield(task), "coalesced"
        task = asyncio.ensure_future(self._run(key, compute, cacheable))
        self._running[key] = task
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task), "miss"

    async def _run(
        self, key: K, compute: Callable[[], Awaitable[V]], cacheable: Callable[[V], bool]
    ) -> V:
        try:
            value = await compute()
            if cacheable(value):
                self.put(key, value)
            return value
        finally:
            self._running.pop(key, None)

    async def close(self) -> None:
        """Cancel what is still running (server shutdown)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _retrieve(task: asyncio.Task[object]) -> None:
    """Mark an exception as seen: waiters may all have left before it was raised."""
    if not task.cancelled():
        task.exception()
