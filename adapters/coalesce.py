"""`CoalescingReader`: one chain's reads from independent callers, shared at the seam.

A `ChainReader` like `EvmAdapter` (it is one), so the engine and the pipeline need no
change; what it adds is that calls issued concurrently by independent callers (API
requests, batches, scan workers) for the same pinned block go out together:

- Per pin (the BlockPin itself: chain, number and hash), a queue of distinct calls. A
  caller's calls are added (one already queued, such as a token's decimals() or a feed
  every caller asks for, is sent once) and it awaits its own results, in its order.
  Different pins never share a multicall.
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
  with theirs and its results are dropped; a chunk nobody waits for any more is not sent.
- `pin()` called concurrently makes one request; every caller gets the same BlockPin.

`window_s` default (WINDOW_S, 2 ms), measured by bench/adapters.py (d): 50 callers of
one account each arriving over 20 ms at 4 chains make 200 requests plain and 8 coalesced
at any window from 0 (next loop turn) to 5 ms, because Nagle's rule does the work under
load. The window matters for a burst arriving at an idle reader (its first caller would
otherwise go alone): 2 ms, the service's former READ_WINDOW_S, is below one multicall's
own ~3-10 ms on anvil, so an idle request pays little for it.
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
    sent: int = 0  # distinct calls sent (callers asking the same thing share it)
    flushes: int = 0  # chunks flushed: one aggregate3 each, unless split (or nobody waits)


Where = list[int] | range  # a waiter's results: their slots in the chunk, in its order
Waiter = tuple[asyncio.Future[list[CallResult]], Where]


@dataclass(eq=False)
class _Queue:
    """The distinct calls waiting for one pin, and where each waiter's results are."""

    calls: list[Call] = field(default_factory=list)
    index: dict[Call, int] = field(default_factory=dict)
    waiters: list[Waiter] = field(default_factory=list)
    timer: asyncio.Handle | None = None
    due: bool = False  # the window has passed: flush as soon as nothing is in flight

    def add(self, calls: list[Call], lo: int, size: int) -> tuple[Where, int]:
        """Take calls from `lo`, as many as the queue has room for (it holds at most
        `size` distinct ones); a call already queued (a token's decimals(), a feed,
        asked by every caller) is not sent twice. Returns where each taken call's result
        will be, and where taking stopped.

        The usual caller (one plan of distinct calls, none queued yet) is indexed by
        dict operations alone, no Python code per call; the rest call by call."""
        index, mine = self.index, self.calls
        base = len(mine)
        hi = min(len(calls), lo + size - base)
        taken = calls[lo:hi]
        fresh = dict(zip(taken, range(base, base + len(taken)), strict=True))
        if len(fresh) == len(taken) and index.keys().isdisjoint(fresh):
            index.update(fresh)
            mine += taken
            return range(base, base + len(taken)), hi
        where: list[int] = []
        for call in taken:
            j = index.get(call)
            if j is None:
                j = index[call] = len(mine)
                mine.append(call)
            where.append(j)
        return where, hi


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
            if len(queue.calls) >= size:  # the chunk size shrank since it filled
                self._flush(pin)
                continue
            where, lo = queue.add(calls, lo, size)
            future: asyncio.Future[list[CallResult]] = loop.create_future()
            queue.waiters.append((future, where))
            parts.append(future)
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
        self.stats.sent += len(queue.calls)
        self._inflight[pin] = self._inflight.get(pin, 0) + 1
        task = asyncio.ensure_future(self._send(pin, queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, pin: BlockPin, queue: _Queue) -> None:
        """Read one chunk; hand each waiter its slice, or the chunk's error. A chunk whose
        callers have all gone (cancelled: a request timed out) is not sent."""
        try:
            if all(future.done() for future, _ in queue.waiters):
                return
            results = await self._read_chunk(queue.calls, pin)
        except asyncio.CancelledError:
            for future, _ in queue.waiters:
                future.cancel()
            raise
        except Exception as exc:  # delivered to exactly the callers of this chunk
            for future, _ in queue.waiters:
                if not future.done():
                    future.set_exception(exc)
        else:
            for future, where in queue.waiters:
                if not future.done():
                    if isinstance(where, range):
                        future.set_result(results[where.start : where.stop])
                    else:
                        future.set_result([results[j] for j in where])
        finally:
            self._landed(pin)

    async def _read_chunk(self, calls: list[Call], pin: BlockPin) -> list[CallResult]:
        """One flushed chunk, read as a lone EvmAdapter would (the seam tests replace it)."""
        return await EvmAdapter.read(self, calls, pin)

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
