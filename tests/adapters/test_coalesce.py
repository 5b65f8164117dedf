"""Coalescing at the seam (adapters/coalesce.py), against the devnet's real anvil:
independent concurrent callers at one pin share multicalls and each gets exactly its own
results; a revert, a failed chunk or a cancelled caller stays that caller's business;
different pins never share a multicall; concurrent pins are one request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from unittest.mock import patch

import aiohttp
import pytest
from adapter_helpers import fast_chain
from fault_proxy import FaultProxy

from adapters import calls as c
from adapters import rpc
from adapters.calls import Call, CallResult
from adapters.coalesce import WINDOW_S, CoalescingReader
from adapters.evm import BlockPin, EvmAdapter
from adapters.rpc import hex_result
from crossmargin.core.config import Config
from crossmargin.core.errors import RpcError

CHAIN = "ethereum"


def caller_calls(config: Config, accounts: list[str], shared: bool = False) -> list[Call]:
    """What one caller might read: every configured token of its accounts, and ETH;
    `shared`: first the tokens' decimals(), which every such caller asks for."""
    tokens = [
        r.address
        for r in config.representations
        if r.chain == CHAIN and not r.is_native and r.standard == "erc20" and not r.protocol
    ]
    assert tokens
    out: list[Call] = [c.decimals(t) for t in tokens] if shared else []
    for a in accounts:
        out.append(c.eth_balance(a))
        out += [c.balance_of(t, a) for t in tokens]
    return out


def callers(config: Config, devnet: Any, n: int, shared: bool = False) -> list[list[Call]]:
    """n disjoint call lists: demo accounts (real balances) then made-up ones."""
    demo = list(devnet.demo_accounts.values())
    lists = []
    for i in range(n):
        mine = [demo[i % len(demo)]] if i < len(demo) else []
        mine.append(c.checksum(f"0x{0xC0A1E5CE0000 + i:040x}"))
        lists.append(caller_calls(config, mine, shared))
    return lists


def eth_calls(proxy: FaultProxy) -> list[dict[str, Any]]:
    return [p for p in proxy.payloads if isinstance(p, dict) and p["method"] == "eth_call"]


@dataclass
class Rig:
    """A coalescing reader behind a fault proxy, with what a plain adapter read at `pin`
    for each caller (`expected`); the proxy's payloads start empty."""

    proxy: FaultProxy
    plain: EvmAdapter
    reader: CoalescingReader
    pin: BlockPin
    expected: list[list[CallResult]]


@asynccontextmanager
async def rig(
    config: Config, lists: list[list[Call]], window_s: float = WINDOW_S, **tuning: Any
) -> AsyncIterator[Rig]:
    async with FaultProxy(config.chain(CHAIN).rpc_urls[0]) as proxy:
        chain = fast_chain(config.chain(CHAIN), [proxy.url], **tuning)
        async with aiohttp.ClientSession() as session:
            plain = EvmAdapter(chain, session)
            pin = await plain.pin()
            expected = [await plain.read(calls, pin) for calls in lists]
            reader = CoalescingReader(chain, session, window_s=window_s)
            await reader.verify_chain_id()
            proxy.payloads.clear()
            yield Rig(proxy, plain, reader, pin, expected)


@pytest.mark.asyncio
async def test_concurrent_callers_share_multicalls_and_get_their_own_results(
    devnet: Any,
) -> None:
    config: Config = devnet.config
    chain = config.chain(CHAIN)
    lists = callers(config, devnet, 50, shared=True)
    async with aiohttp.ClientSession() as session:
        plain = EvmAdapter(chain, session)
        pin = await plain.pin()
        expected = [await plain.read(calls, pin) for calls in lists]
        assert plain.rpc.requests >= 50 + 1
        reader = CoalescingReader(chain, session)
        await reader.verify_chain_id()
        before = reader.rpc.requests
        shortcut: list[bool] = []

        def spy(raw: bytes, rid: int) -> bytes | None:
            data = hex_result(raw, rid)
            shortcut.append(data is not None)
            return data

        with patch.object(rpc, "hex_result", spy):
            got = await asyncio.gather(*(reader.read(calls, pin) for calls in lists))
    assert got == expected
    assert shortcut == [True]  # anvil's reply goes past json.loads (rpc.hex_result)
    assert any(r.data.strip(b"\x00") for rs in got for r in rs)  # real balances among them
    total = sum(map(len, lists))
    distinct = len({call for calls in lists for call in calls})
    assert distinct < total  # every caller asked for the decimals: sent once
    assert total <= chain.max_calls_per_batch
    assert reader.rpc.requests - before == 1  # 50 callers, one aggregate3
    stats = reader.stats
    assert (stats.callers, stats.flushes, stats.calls, stats.sent) == (50, 1, total, distinct)


@pytest.mark.asyncio
async def test_full_chunks_go_at_once_and_callers_span_chunks(devnet: Any) -> None:
    """Chunk size 16: 30 callers of odd sizes are packed into full aggregate3s, a caller
    straddling two of them gets its results in order."""
    config: Config = devnet.config
    lists = callers(config, devnet, 30, shared=True)
    async with rig(config, lists, max_calls_per_batch=16) as r:
        got = await asyncio.gather(*(r.reader.read(calls, r.pin) for calls in lists))
    assert got == r.expected
    sent = eth_calls(r.proxy)
    sizes = sorted(int(p["params"][0]["data"][74:138], 16) for p in sent)  # Call3[] length
    assert sizes[1:] == [16] * (len(sent) - 1)  # packed: every multicall full but one
    assert sum(sizes) == r.reader.stats.sent < r.reader.stats.calls  # decimals once per chunk
    pinned = {"blockHash": r.pin.hash, "requireCanonical": True}
    assert all(p["params"][1] == pinned for p in sent)


@pytest.mark.asyncio
async def test_a_reverting_call_is_only_its_callers_result(devnet: Any) -> None:
    config: Config = devnet.config
    chain = config.chain(CHAIN)
    lists = callers(config, devnet, 5)
    token = lists[0][1].target
    bad = Call(token, bytes.fromhex("deadbeef"))  # no such function: the token reverts
    lists[2] = [*lists[2][:1], bad, *lists[2][1:]]
    async with aiohttp.ClientSession() as session:
        plain = EvmAdapter(chain, session)
        pin = await plain.pin()
        expected = [await plain.read(calls, pin) for calls in lists]
        reader = CoalescingReader(chain, session)
        got = await asyncio.gather(*(reader.read(calls, pin) for calls in lists))
    assert got == expected
    assert got[2][1].success is False
    assert all(r.success for i, rs in enumerate(got) for r in rs if i != 2)
    assert reader.stats.flushes == 1


@pytest.mark.asyncio
async def test_a_failed_chunk_fails_only_its_callers(devnet: Any) -> None:
    """Chunk size 10, callers of 10 calls each: one caller per chunk. The node refuses
    one request outright (an error that is not retried): that caller gets the same error
    as a lone EvmAdapter would, the others their results."""
    config: Config = devnet.config
    flat = [call for calls in callers(config, devnet, 12) for call in calls]
    lists = [flat[i : i + 10] for i in range(0, 60, 10)]
    assert len(lists[-1]) == 10
    async with rig(config, lists, max_calls_per_batch=10) as r:
        r.proxy.inject("rpc_error", method="eth_call")
        with pytest.raises(RpcError) as lone:
            await r.plain.read(lists[0], r.pin)
        r.proxy.inject("rpc_error", method="eth_call")
        got = await asyncio.gather(
            *(r.reader.read(calls, r.pin) for calls in lists), return_exceptions=True
        )
    expected, reader = r.expected, r.reader
    failed = [g for g in got if isinstance(g, BaseException)]
    assert len(failed) == 1
    assert type(failed[0]) is type(lone.value)
    assert str(failed[0]) == str(lone.value)
    assert [g for g in got if not isinstance(g, BaseException)] == [
        e for g, e in zip(got, expected, strict=True) if not isinstance(g, BaseException)
    ]
    assert reader.stats.flushes == len(lists)


@pytest.mark.asyncio
async def test_payload_too_large_still_splits_and_retries(devnet: Any) -> None:
    config: Config = devnet.config
    lists = callers(config, devnet, 8)
    async with rig(config, lists) as r:
        r.proxy.inject("http413", method="eth_call")
        got = await asyncio.gather(*(r.reader.read(calls, r.pin) for calls in lists))
        assert r.reader.rpc.endpoints[0].stats.shrinks == 1
    assert got == r.expected
    assert r.reader.stats.flushes == 1  # one chunk, split in two by EvmAdapter.read


@pytest.mark.asyncio
async def test_different_pins_never_share_a_multicall(devnet: Any, json_rpc: Any) -> None:
    config: Config = devnet.config
    lists = callers(config, devnet, 6)
    async with FaultProxy(config.chain(CHAIN).rpc_urls[0]) as proxy:
        chain = fast_chain(config.chain(CHAIN), [proxy.url], confirmations=0)
        async with aiohttp.ClientSession() as session:
            plain = EvmAdapter(chain, session)
            first = await plain.pin()
            json_rpc(config.chain(CHAIN).rpc_urls[0], "evm_mine")
            second = await plain.pin()
            assert second.number > first.number
            pins = [first if i % 2 else second for i in range(len(lists))]
            expected = [await plain.read(calls, p) for calls, p in zip(lists, pins, strict=True)]
            reader = CoalescingReader(chain, session)
            await reader.verify_chain_id()
            proxy.payloads.clear()
            got = await asyncio.gather(
                *(reader.read(calls, p) for calls, p in zip(lists, pins, strict=True))
            )
    assert got == expected
    sent = eth_calls(proxy)
    assert sorted(p["params"][1]["blockHash"] for p in sent) == sorted([first.hash, second.hash])


@pytest.mark.asyncio
async def test_a_cancelled_caller_does_not_break_the_others(devnet: Any) -> None:
    """Cancelled while queued, and while its multicall is in flight (a slow node)."""
    config: Config = devnet.config
    lists = callers(config, devnet, 6)
    async with rig(config, lists) as r:
        for in_flight in (False, True):
            if in_flight:
                r.proxy.inject("timeout", method="eth_call", delay=0.2)  # under timeout_s
            tasks = [asyncio.ensure_future(r.reader.read(calls, r.pin)) for calls in lists]
            await asyncio.sleep(0.1 if in_flight else 0)
            assert bool(r.proxy.inflight) is in_flight
            tasks[1].cancel()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert isinstance(done[1], asyncio.CancelledError)
            assert [d for i, d in enumerate(done) if i != 1] == [
                e for i, e in enumerate(r.expected) if i != 1
            ]
    assert r.reader.stats.flushes == 2


@pytest.mark.asyncio
async def test_a_caller_arriving_while_a_multicall_is_in_flight_waits_for_it(
    devnet: Any,
) -> None:
    """Nagle's rule: after the window, a partial queue waits for the in-flight multicall
    of its pin and goes out when it returns, with everything that arrived meanwhile."""
    config: Config = devnet.config
    lists = callers(config, devnet, 10)
    async with rig(config, lists, window_s=0.001) as r:
        r.proxy.inject("timeout", method="eth_call", delay=0.2)
        tasks = [asyncio.ensure_future(r.reader.read(lists[0], r.pin))]
        for calls in lists[1:]:  # one by one, each well after the window
            await asyncio.sleep(0.01)
            tasks.append(asyncio.ensure_future(r.reader.read(calls, r.pin)))
        got = await asyncio.gather(*tasks)
    assert got == r.expected
    assert len(eth_calls(r.proxy)) == 2  # the first caller's, then the nine others'
    assert r.reader.stats.flushes == 2


@pytest.mark.asyncio
async def test_concurrent_pins_are_one_request(devnet: Any) -> None:
    config: Config = devnet.config
    async with FaultProxy(config.chain(CHAIN).rpc_urls[0]) as proxy:
        chain = fast_chain(config.chain(CHAIN), [proxy.url])
        async with aiohttp.ClientSession() as session:
            reader = CoalescingReader(chain.model_copy(update={"confirmations": 0}), session)
            pins = await asyncio.gather(*(reader.pin() for _ in range(20)))
            assert len(proxy.log) == 1  # identity and head in one batch, one request
            assert len(set(pins)) == 1
            again = await reader.pin()  # later: a fresh request
    assert len(proxy.log) == 2
    assert again.number >= pins[0].number
