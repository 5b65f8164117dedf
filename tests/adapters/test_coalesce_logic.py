"""The queueing of adapters/coalesce.py without a node (no anvil): chunk reads replaced by
a pure function of the call, so any interleaving of callers, chunk sizes, repeated calls
and failing chunks can be checked exactly (hypothesis)."""

from __future__ import annotations

import asyncio
import hashlib

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.calls import Call, CallResult
from adapters.coalesce import CoalescingReader
from adapters.evm import BlockPin
from crossmargin.core.config import ChainConfig
from crossmargin.core.errors import RpcError

CHAIN = ChainConfig(name="test", chain_id=1, rpc_urls=["http://a"])
PINS = [BlockPin(1, n, "0x" + f"{n:064x}", 1_700_000_000 + n) for n in (7, 8)]
UNIVERSE = [Call(f"0x{i % 5:040x}", bytes([i]) * (1 + i % 3)) for i in range(40)]


def answer(call: Call, pin: BlockPin) -> CallResult:
    """What the fake node returns: a function of the call and the block, so a result
    delivered to the wrong caller, slot or pin shows."""
    digest = hashlib.sha256(call.target.encode() + call.data + pin.hash.encode()).digest()
    return CallResult(digest[0] % 7 != 0, digest)


class FakeChunks(CoalescingReader):
    """Reads chunks by `answer`, after a turn of the loop; chunks numbered in `failing`
    fail with a node error."""

    def __init__(self, session: aiohttp.ClientSession, size: int, failing: set[int]) -> None:
        super().__init__(CHAIN, session, window_s=0)
        self.size = size
        self.failing = failing
        self.chunks: list[tuple[BlockPin, list[Call]]] = []
        self.rpc.chunk_size = lambda: self.size  # type: ignore[method-assign]

    async def _read_chunk(self, calls: list[Call], pin: BlockPin) -> list[CallResult]:
        number = len(self.chunks)
        self.chunks.append((pin, list(calls)))
        await asyncio.sleep(0)
        if number in self.failing:
            raise RpcError(1, -32603, f"chunk {number}")
        return [answer(c, pin) for c in calls]


callers_st = st.lists(
    st.tuples(
        st.lists(st.sampled_from(UNIVERSE), min_size=0, max_size=30),
        st.sampled_from(PINS),
        st.integers(min_value=0, max_value=3),  # loop turns before it asks
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    callers=callers_st,
    size=st.integers(min_value=1, max_value=25),
    failing=st.sets(st.integers(min_value=0, max_value=6), max_size=2),
)
def test_every_caller_gets_exactly_its_own_results(
    callers: list[tuple[list[Call], BlockPin, int]], size: int, failing: set[int]
) -> None:
    async def run() -> None:
        async with aiohttp.ClientSession() as session:
            reader = FakeChunks(session, size, failing)

            async def one(calls: list[Call], pin: BlockPin, turns: int) -> list[CallResult]:
                for _ in range(turns):
                    await asyncio.sleep(0)
                return await reader.read(calls, pin)

            got = await asyncio.gather(*(one(*c) for c in callers), return_exceptions=True)
        chunks = reader.chunks
        for _, calls in chunks:
            assert 0 < len(calls) <= size
            assert len(set(calls)) == len(calls)  # a call asked twice is sent once per chunk
        failed = [chunks[i] for i in failing if i < len(chunks)]
        for (calls, pin, _), result in zip(callers, got, strict=True):
            if isinstance(result, BaseException):
                assert isinstance(result, RpcError), result
                # only a failed chunk of its pin, holding one of its calls, fails a caller
                assert any(p == pin and set(calls) & set(cs) for p, cs in failed)
            else:
                assert result == [answer(c, pin) for c in calls]
        assert sum(len(cs) for _, cs in chunks) <= sum(len(c) for c, _, _ in callers)

    asyncio.run(run())


@pytest.mark.asyncio
async def test_full_queue_goes_without_waiting_for_the_window() -> None:
    async with aiohttp.ClientSession() as session:
        reader = FakeChunks(session, 4, set())
        reader.window_s = 3600.0  # a window that never ends in this test
        got = await reader.read(UNIVERSE[:8], PINS[0])  # two full chunks: no wait
        assert got == [answer(c, PINS[0]) for c in UNIVERSE[:8]]
        assert [len(c) for _, c in reader.chunks] == [4, 4]
        stuck = asyncio.ensure_future(reader.read(UNIVERSE[:3], PINS[0]))
        await asyncio.sleep(0.05)
        assert not stuck.done()  # a partial queue waits for its window
        stuck.cancel()
        await reader.close()


@pytest.mark.asyncio
async def test_a_chunk_nobody_waits_for_is_not_sent() -> None:
    async with aiohttp.ClientSession() as session:
        reader = FakeChunks(session, 100, set())
        reader.window_s = 0.01
        gone = asyncio.ensure_future(reader.read(UNIVERSE[:3], PINS[0]))
        await asyncio.sleep(0)
        gone.cancel()
        kept = await reader.read(UNIVERSE[3:5], PINS[1])
        await asyncio.sleep(0.05)
        assert kept == [answer(c, PINS[1]) for c in UNIVERSE[3:5]]
        assert [pin for pin, _ in reader.chunks] == [PINS[1]]
        assert reader.stats.flushes == 2
