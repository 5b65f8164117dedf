"""`CoalescingReader`: one chain's reads from independent callers, shared at the seam.

A `ChainReader` like `EvmAdapter` (it is one), so the engine and the pipeline need no
change; what it adds is that calls issued concurrently by independent callers (API
requests, batches, scan workers) for the same pinned block go out together:

- Per pin (the BlockPin itself: chain, number and hash), a queue of calls. A caller's
  calls are appended and it awaits its own slice of the results. Different pins never
  share a multicall.
- Flush when the queue reaches the endpoint's adaptive chunk size (at once, as a full
  `aggregate3`), or when `window_s` has passed since the queue's first call and no
  multicall of that pin is in flight; while one is, a partial queue keeps filling and
  goes out when the last in-flight multicall returns (Nagle's rule). So an idle service
  pays `window_s` of latency, a loaded one at most one multicall's round trip, and the
  busier it is the fuller each multicall (dank_mids keys pending calls by block and
  starts a batch early when full the same way; it leans on a loop-interval timer where
  this leans on in-flight completion).
- A flushed chunk is read by `EvmAdapter.read`, so the adaptive chunking, the
  split-and-retry on "payload too large" and timeouts, and the retry/failover table of
  adapters/rpc.py apply unchanged. A chunk that cannot be read fails exactly the callers
  with calls in it, each with that chunk's error (the same error object, the same error
  tree as a lone `EvmAdapter.read`); a call that reverts is `success=False` in its own
  caller's results (aggregate3 allowFailure), nobody else's business.
- A caller cancelled while waiting leaves the others untouched: its calls still go out
  (they may share a multicall already sent) and its results are dropped.
- `pin()` called concurrently makes one request; every caller gets the same BlockPin.

`window_s` default (WINDOW_S): bench/adapters.py measures 50 concurrent callers at 0,
1 and 2 ms; callers started together coalesce fully at 0 (next loop turn), and API
requests, which reach the reader a few loop turns apart (parsing, cache look-ups in
threads), need a timer: 2 ms matches the service's former READ_WINDOW_S and costs an
idle request 2 ms against a multicall's own ~3-10 ms on anvil.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp

from adapters.calls import Call, CallResult
from adapters.evm import BlockPin, EvmAdapter
from crossmargin.core.config import ChainConfig

WINDOW_S = 0.002


@dataclass
class CoalesceStats:
    """What coalescing did, for benchmarks and tests (HTTP requests: `rpc.requests`)."""

    callers: int = 0  # read() calls with at least one call
    calls: int = 0  # calls they asked for
    flushes: int = 0  # chunks sent to EvmAdapter.read (one aggregate3 unless split)


@dataclass(eq=False)
class _Queue:
    """The calls waiting for one pin, and who waits for which slice."""

    calls: list[Call] = field(default_factory=list)
    waiters: list[tuple[asyncio.Future[list[CallResult]], int, int]] = field(default_factory=list)
    timer: asyncio.Handle | None = None
    due: bool = False  # the window has passed: flush as soon as nothing is in flight


class CoalescingReader(EvmAdapter):
    """An EvmAdapter whose concurrent reads at one pin share multicalls."""

    def __init__(
        self, chain: ChainConfig, session: aiohttp.ClientSession, *, window_s: float = WINDOW_S
    ) -> None:
        super().__init__(chain, session)
        self.window_s = window_s
        self.stats = CoalesceStats()
        self._queues: dict[BlockPin, _Queue] = {}
        self._inflight: dict[BlockPin, int] = {}
        self._pinning: asyncio.Future[BlockPin] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ pinning

    async def pin(self) -> BlockPin:
        """Concurrent callers share one pin request (and its outcome, error included)."""
        pinning = self._pinning
        if pinning is None:
            pinning = self._pinning = asyncio.ensure_future(super().pin())
            pinning.add_done_callback(self._pinned)
        return await asyncio.shield(pinning)

    def _pinned(self, task: asyncio.Future[BlockPin]) -> None:
        if self._pinning is task:
            self._pinning = None
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have been cancelled

    # ------------------------------------------------------------------ reading

    async def read(self, calls: list[Call], pin: BlockPin) -> list[CallResult]:
        """Results in call order, all at `pin`; fails if a chunk holding any of them does."""
        if pin.chain_id != self.chain.chain_id:
            raise ValueError(f"pin of chain {pin.chain_id} used on chain {self.chain.chain_id}")
        if not calls:
            return []
        self.stats.callers += 1
        self.stats.calls += len(calls)
        parts = self._enqueue(calls, pin)
        if len(parts) == 1:
            return await parts[0]
        out: list[CallResult] = []
        for part in await asyncio.gather(*parts):
            out += part
        return out

    def _enqueue(self, calls: list[Call], pin: BlockPin) -> list[asyncio.Future[list[CallResult]]]:
        """Append `calls` to the pin's queue, one future per slice; full chunks go now."""
        loop = asyncio.get_running_loop()
        parts: list[asyncio.Future[list[CallResult]]] = []
        lo, n = 0, len(calls)
        while lo < n:
            queue = self._queues.get(pin)
            if queue is None:
                queue = self._queues[pin] = _Queue()
            size = self.rpc.chunk_size()
            hi = min(n, lo + max(1, size - len(queue.calls)))
            future: asyncio.Future[list[CallResult]] = loop.create_future()
            start = len(queue.calls)
            queue.calls += calls[lo:hi]
            queue.waiters.append((future, start, len(queue.calls)))
            parts.append(future)
            lo = hi
            if len(queue.calls) >= size:
                self._flush(pin)
        queue = self._queues.get(pin)
        if queue is not None and queue.timer is None and not queue.due:
            if self.window_s > 0:
                queue.timer = loop.call_later(self.window_s, self._window_over, pin, queue)
            else:
                queue.timer = loop.call_soon(self._window_over, pin, queue)
        return parts

    def _window_over(self, pin: BlockPin, queue: _Queue) -> None:
        queue.timer = None
        if self._queues.get(pin) is not queue:
            return  # already flushed full
        queue.due = True
        if not self._inflight.get(pin):
            self._flush(pin)

    def _flush(self, pin: BlockPin) -> None:
        queue = self._queues.pop(pin)
        if queue.timer is not None:
            queue.timer.cancel()
        self.stats.flushes += 1
        self._inflight[pin] = self._inflight.get(pin, 0) + 1
        task = asyncio.ensure_future(self._send(pin, queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, pin: BlockPin, queue: _Queue) -> None:
        """Read one chunk; hand each waiter its slice, or the chunk's error."""
        try:
            results = await EvmAdapter.read(self, queue.calls, pin)
        except asyncio.CancelledError:
            for future, _, _ in queue.waiters:
                future.cancel()
            raise
        except Exception as exc:  # delivered to exactly the callers of this chunk
            for future, _, _ in queue.waiters:
                if not future.done():
                    future.set_exception(exc)
        else:
            for future, lo, hi in queue.waiters:
                if not future.done():
                    future.set_result(results[lo:hi])
        finally:
            self._landed(pin)

    def _landed(self, pin: BlockPin) -> None:
        """A multicall of `pin` returned: a due partial queue of that pin goes now."""
        left = self._inflight[pin] - 1
        if left:
            self._inflight[pin] = left
            return
        del self._inflight[pin]
        queue = self._queues.get(pin)
        if queue is not None and queue.due:
            self._flush(pin)

    async def close(self) -> None:
        """Cancel reads still in flight (their callers get CancelledError)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
