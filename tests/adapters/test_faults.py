"""Fault injection: a proxy in front of the devnet's anvil lies, stalls, refuses and
rate-limits; every read either equals the clean read at the same pinned block or is a
flagged failure with no number in it. Never a wrong number.

Reads cover the demo accounts on ethereum: native coin, tokens, debt tokens, price
feeds, all in one pinned computation (crossmargin.pipeline.read.read_chain_many).
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from adapter_helpers import assert_flagged, dead_url, fast_chain, figures, read_states, truth
from fault_proxy import FaultProxy

from adapters import rpc
from adapters.evm import EvmAdapter
from crossmargin.core.config import Config
from crossmargin.core.errors import ChainIdMismatch

CHAIN = "ethereum"


def setup(devnet: Any) -> tuple[Config, list[str], str]:
    config: Config = devnet.config
    return config, list(devnet.demo_accounts.values()), config.chain(CHAIN).rpc_urls[0]


async def assert_right(config: Config, chain: Any, accounts: list[str], states: Any) -> None:
    assert all(s.available for s in states), [s.error for s in states]
    pin = states[0].pin
    assert all(s.pin == pin for s in states)
    assert figures(states) == figures(await truth(config, chain, accounts, pin))
    assert any(b.raw_amount for s in states for b in s.balances)  # something real was read


# Each fault once, on the request it targets; the read must come out exactly right.
RECOVERED = [
    pytest.param("http429", None, {}, id="429-no-retry-after"),
    pytest.param("rpc_limit", "eth_call", {"backoff": 0.1}, id="-32005-backoff_seconds"),
    pytest.param("body_limit", "eth_call", {}, id="rate-limit-in-200-body"),
    pytest.param("http413", "eth_call", {}, id="413"),
    pytest.param("anvil_large", "eth_call", {}, id="200+-32600-like-anvil-over-2MiB"),
    pytest.param("http5xx", None, {"status": 502}, id="502"),
    pytest.param("http5xx", "eth_call", {"status": 503}, id="503"),
    pytest.param("reset", "eth_call", {}, id="connection-reset"),
    pytest.param("timeout", "eth_call", {"delay": 1.5}, id="timeout"),
    pytest.param("truncate", "eth_call", {}, id="truncated-body"),
    pytest.param("cut", "eth_call", {}, id="connection-dies-mid-body"),
    pytest.param("garbage_result", "eth_call", {}, id="damaged-multicall-data"),
    pytest.param("shuffle", "eth_chainId", {}, id="batch-out-of-order"),
    pytest.param("drop_id", "eth_chainId", {}, id="batch-missing-id"),
    pytest.param("wrong_id", "eth_call", {}, id="wrong-reply-id"),
    pytest.param("header_not_found", "eth_call", {}, id="header-not-found"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("kind", "method", "args"), RECOVERED)
async def test_single_fault_is_recovered_exactly(
    devnet: Any, kind: str, method: str | None, args: dict[str, Any]
) -> None:
    config, accounts, upstream = setup(devnet)
    async with FaultProxy(upstream) as proxy:
        proxy.inject(kind, method=method, **args)
        chain = fast_chain(config.chain(CHAIN), [proxy.url])
        states = await read_states(config, chain, accounts)
        assert not proxy.faults, "the fault was never triggered"
    await assert_right(config, chain, accounts, states)
    if kind != "shuffle":  # an out-of-order batch is simply fine
        assert len(proxy.log) >= 3  # pin, the faulted request, its retry (or halves)


@pytest.mark.asyncio
async def test_oversized_and_slow_batches_are_split_and_the_chunk_adapts(devnet: Any) -> None:
    config, accounts, upstream = setup(devnet)
    async with FaultProxy(upstream) as proxy, aiohttp.ClientSession() as session:
        chain = fast_chain(config.chain(CHAIN), [proxy.url], max_calls_per_batch=16)
        adapter = EvmAdapter(chain, session)
        ep = adapter.rpc.endpoints[0]
        proxy.inject("http413", method="eth_call")
        proxy.inject("timeout", method="eth_call", delay=1.0)
        states = await read_states(config, chain, accounts, adapter=adapter)
        assert ep.stats.shrinks == 2  # 16 -> 8 (413) -> 4 (timeout), growing back after
        calls = [p for p in proxy.payloads if isinstance(p, dict) and p["method"] == "eth_call"]
        sizes = [len(p["params"][0]["data"]) for p in calls]
        assert min(sizes) < max(sizes)
        for _ in range(10):  # healthy again: the chunk size grows back to the maximum
            await read_states(config, chain, accounts, adapter=adapter)
        assert ep.chunk == 16
        assert all(p["params"][0]["gas"] == hex(chain.call_gas) for p in calls)
    await assert_right(config, chain, accounts, states)


@pytest.mark.asyncio
async def test_real_anvil_refusing_a_body_over_2_mib(
    devnet: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No proxy: anvil itself answers 200 + -32600 (and drops the connection)."""
    config, accounts, upstream = setup(devnet)
    many = [f"0x{i:040x}" for i in range(1, 1200)] + accounts  # ~7,000 calls, ~3 MiB
    monkeypatch.setattr(rpc, "MAX_BODY_BYTES", 64 * 1024 * 1024)  # let it through
    async with aiohttp.ClientSession() as session:
        chain = fast_chain(config.chain(CHAIN), [upstream], max_calls_per_batch=5000)
        adapter = EvmAdapter(chain, session)
        states = await read_states(config, chain, many, adapter=adapter)
        assert adapter.rpc.endpoints[0].stats.shrinks >= 1
    monkeypatch.undo()
    await assert_right(config, chain, many, states)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "args", "delay"),
    [
        pytest.param("http429", {"retry_after": "1"}, 1.0, id="429-Retry-After"),
        pytest.param("rpc_limit", {"backoff": 0.6}, 0.6, id="-32005-backoff_seconds"),
    ],
)
async def test_rate_limit_back_off_is_honoured(
    devnet: Any, kind: str, args: dict[str, Any], delay: float
) -> None:
    config, accounts, upstream = setup(devnet)
    async with FaultProxy(upstream) as proxy:
        proxy.inject(kind, method="eth_call", **args)
        chain = fast_chain(config.chain(CHAIN), [proxy.url])
        t0 = time.monotonic()
        states = await read_states(config, chain, accounts)
        assert time.monotonic() - t0 >= delay
    await assert_right(config, chain, accounts, states)


@pytest.mark.asyncio
async def test_back_off_beyond_the_budget_gives_up_at_once(devnet: Any) -> None:
    config, accounts, upstream = setup(devnet)
    async with FaultProxy(upstream) as proxy:
        proxy.inject("http429", retry_after="3600", times=None)
        chain = fast_chain(config.chain(CHAIN), [proxy.url])
        t0 = time.monotonic()
        states = await read_states(config, chain, accounts)
        assert time.monotonic() - t0 < 1.0
        assert len(proxy.log) == 1
    assert_flagged(states, "rate_limited")


@pytest.mark.asyncio
async def test_rate_limited_endpoint_fails_over_to_the_next(devnet: Any) -> None:
    config, accounts, upstream = setup(devnet)
    async with FaultProxy(upstream) as limited, FaultProxy(upstream) as spare:
        limited.inject("http429", retry_after="60", times=None)
        chain = fast_chain(config.chain(CHAIN), [limited.url, spare.url])
        t0 = time.monotonic()
        states = await read_states(config, chain, accounts)
        assert time.monotonic() - t0 < 1.0
        assert len(limited.log) == 1
    await assert_right(config, chain, accounts, states)


PERSISTENT = [
    pytest.param("http5xx", {"status": 503}, "node_unreachable", id="5xx"),
    pytest.param("reset", {}, "node_unreachable|bad_response", id="connection-reset"),
    pytest.param("timeout", {"delay": 1.0}, "node_timeout", id="timeout"),
    pytest.param("truncate", {}, "bad_response", id="truncated-body"),
    pytest.param("garbage_result", {}, "bad_response", id="damaged-multicall-data"),
    pytest.param("header_not_found", {}, "block_unavailable", id="header-not-found"),
    pytest.param("body_limit", {}, "rate_limited", id="rate-limit-in-200-body"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("kind", "args", "reason"), PERSISTENT)
async def test_persistent_fault_is_flagged_never_a_number(
    devnet: Any, kind: str, args: dict[str, Any], reason: str
) -> None:
    config, accounts, upstream = setup(devnet)
    async with FaultProxy(upstream) as proxy:
        proxy.inject(kind, method="eth_call", times=None, **args)
        chain = fast_chain(config.chain(CHAIN), [proxy.url], retries=2, retry_budget_s=3.0)
        t0 = time.monotonic()
        states = await read_states(config, chain, accounts)
        assert time.monotonic() - t0 < 6.0
    assert_flagged(states, *reason.split("|"))


@pytest.mark.asyncio
async def test_pin_the_node_cannot_serve_fails_over(devnet: Any) -> None:
    config, accounts, upstream = setup(devnet)
    async with FaultProxy(upstream) as lagging, FaultProxy(upstream) as good:
        lagging.inject("header_not_found", method="eth_call", times=None)
        chain = fast_chain(config.chain(CHAIN), [lagging.url, good.url])
        states = await read_states(config, chain, accounts)
        assert any("eth_call" in m for m in good.log)
    await assert_right(config, chain, accounts, states)


@pytest.mark.asyncio
async def test_wrong_chain_id_is_refused(devnet: Any) -> None:
    config, accounts, upstream = setup(devnet)
    async with FaultProxy(upstream) as impostor, FaultProxy(upstream) as good:
        impostor.inject("chain_id", chain_id=5, times=None)
        alone = fast_chain(config.chain(CHAIN), [impostor.url])
        flagged = await read_states(config, alone, accounts)
        assert_flagged(flagged, "wrong_chain_id")
        assert "serves chain id 5" in str(flagged[0].error)
        assert all("eth_call" not in m for m in impostor.log)  # nothing read from it

        both = fast_chain(config.chain(CHAIN), [impostor.url, good.url])
        async with aiohttp.ClientSession() as session:
            adapter = EvmAdapter(both, session)
            states = await read_states(config, both, accounts, adapter=adapter)
            again = await read_states(config, both, accounts, adapter=adapter)
            bad = adapter.rpc.endpoints[0]
            assert isinstance(bad.refused, ChainIdMismatch)
            assert bad.refused.got == 5
        assert sum(1 for m in impostor.log if "eth_chainId" in m) == 2  # once per client
        assert all("eth_call" not in m for m in impostor.log)
    await assert_right(config, both, accounts, states)
    await assert_right(config, both, accounts, again)


@pytest.mark.asyncio
async def test_head_going_backwards_is_never_used(devnet: Any) -> None:
    config, accounts, upstream = setup(devnet)
    async with (
        FaultProxy(upstream) as flaky,
        FaultProxy(upstream) as good,
        aiohttp.ClientSession() as session,
    ):
        chain = fast_chain(config.chain(CHAIN), [flaky.url, good.url])
        adapter = EvmAdapter(chain, session)
        first = await read_states(config, chain, accounts, adapter=adapter)
        head = first[0].pin
        assert head is not None
        assert head.number >= 2
        # the first endpoint now reports an older head, for good
        flaky.inject("head_back", number=head.number - 1, times=None)
        second = await read_states(config, chain, accounts, adapter=adapter)
        assert second[0].pin == head  # from the second endpoint, not the old block
        assert any("eth_getBlockByNumber" in m for m in good.log)

        alone = fast_chain(config.chain(CHAIN), [flaky.url], retries=1)
        solo = EvmAdapter(alone, session)
        solo._high = head.number  # as if this process had pinned the head before
        assert_flagged(await read_states(config, alone, accounts, adapter=solo), "head_behind")
        # a lag that clears up is waited out on the same endpoint
        flaky.faults.clear()
        flaky.inject("head_back", number=head.number - 1, times=2)
        alone3 = fast_chain(config.chain(CHAIN), [flaky.url], retries=3)
        third = await read_states(
            config, alone3, accounts, adapter=_with_high(EvmAdapter(alone3, session), head.number)
        )
        assert third[0].pin == head
    await assert_right(config, chain, accounts, second)


def _with_high(adapter: EvmAdapter, high: int) -> EvmAdapter:
    adapter._high = high
    return adapter


@pytest.mark.asyncio
async def test_one_chain_fully_down_leaves_the_others_exact(devnet: Any) -> None:
    config, accounts, _ = setup(devnet)
    down = fast_chain(config.chain(CHAIN), [dead_url(), dead_url()], retries=2)
    t0 = time.monotonic()
    assert_flagged(await read_states(config, down, accounts), "node_unreachable")
    assert time.monotonic() - t0 < 3.0
    for other in ("arbitrum", "base"):
        chain = config.chain(other)
        states = await read_states(config, chain, accounts)
        await assert_right(config, chain, accounts, states)


@pytest.mark.asyncio
async def test_throttle_and_concurrency_bounds_hold(devnet: Any) -> None:
    config, accounts, upstream = setup(devnet)
    async with FaultProxy(upstream) as proxy:
        chain = fast_chain(
            config.chain(CHAIN),
            [proxy.url],
            max_calls_per_batch=1,
            max_concurrency=2,
            rate_limit_rps=20,
        )
        t0 = time.monotonic()
        states = await read_states(config, chain, accounts)
        elapsed = time.monotonic() - t0
        requests = len(proxy.log)
        assert proxy.max_inflight <= 2
    assert requests > 20
    assert elapsed >= (requests - 20) / 20 * 0.9  # at most 20 per second after the first 20
    await assert_right(config, chain, accounts, states)
