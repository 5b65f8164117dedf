"""METHOD.md §3 on the devnet, through `Engine.margin`: every reason a feed reading is
rejected, driven on real chains (anvil time, MockV3Aggregator answers, bounds, the L2
sequencer feed, an incomplete round, rounds from the future and rounds that do not
exist, a Pyth-style feed), and what each does to the asset's price, the positions'
values and the warnings.

This module runs its own devnet; every test starts from the same chain state (an
evm_snapshot per chain, reverted after the test, time included).

The account is carol: WETH 8 on ethereum, WETH 2 on arbitrum, USDC debt on ethereum.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
from oracle_chain import Chain

from adapters.balances import BalancePlan
from crossmargin.core.config import Config, PythFeedConfig
from crossmargin.engine import Engine
from crossmargin.pipeline.report import MarginReport, PriceSource, fixed6
from devnet import BackgroundDevnet, Devnet

ETH_ID = "0xff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace"
CHAIN_IDS = {"ethereum": 1, "arbitrum": 42161, "optimism": 10, "base": 8453}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with BackgroundDevnet(state_dir=tmp_path_factory.mktemp("oracle-devnet"), keeper=False) as n:
        yield n


@pytest.fixture(scope="module")
def chains(net: Devnet) -> dict[str, Chain]:
    return {c.name: Chain(net.rpc_url(c.name)) for c in net.config.chains}


@pytest.fixture(autouse=True)
def clean(chains: dict[str, Chain]) -> Iterator[None]:
    snaps = {name: c.snapshot() for name, c in chains.items()}
    yield
    for name, c in chains.items():
        c.revert(snaps[name])


def margin(config: Config, account: str, requests: dict[str, int] | None = None) -> MarginReport:
    async def run() -> MarginReport:
        async with Engine.connect(config) as engine:
            report = await engine.margin(account, "ethereum")
            if requests is not None:
                for name, adapter in engine.readers.items():
                    requests[name] = sum(s.requests for s in adapter.rpc.stats.values())
            return report

    return asyncio.run(run())


def balances_only_requests(config: Config, account: str) -> dict[str, int]:
    """RPC requests per chain to pin and read the same balances without any feed call."""

    async def run() -> dict[str, int]:
        async with Engine.connect(config) as engine:
            for name, adapter in engine.readers.items():
                reps = [r for r in config.representations if r.chain == name]
                calls = BalancePlan(reps, [account]).calls  # what reading.py sends, minus feeds
                await adapter.read(calls, await adapter.pin())
            return {
                name: sum(s.requests for s in a.rpc.stats.values())
                for name, a in engine.readers.items()
            }

    return asyncio.run(run())


def carol(net: Devnet) -> str:
    return net.demo_accounts["carol"]


def feed(config: Config, asset: str, chain: str) -> str:
    return next(f.address for f in config.asset(asset).feeds if f.chain == chain)


def sources(report: MarginReport, asset: str) -> dict[int, PriceSource]:
    price = next(p for p in report.prices if p.asset == asset)
    return {s.chain_id: s for s in price.sources if s.kind == "chainlink"}


def reasons(report: MarginReport, asset: str) -> dict[int, str | None]:
    return {cid: s.reason for cid, s in sources(report, asset).items()}


def codes(report: MarginReport) -> list[str]:
    return [w.code for w in report.warnings]


def valid_answers(report: MarginReport, asset: str) -> list[Fraction]:
    price = next(p for p in report.prices if p.asset == asset)
    return [Fraction(int(s.answer), 10**s.decimals) for s in price.sources if s.valid and s.answer]


def weth(report: MarginReport, chain: str) -> Any:
    return next(
        p for p in report.positions if p.chain_id == CHAIN_IDS[chain] and p.symbol == "WETH"
    )


def assert_eth_priced_from(report: MarginReport, chains: set[str]) -> None:
    """ETH collateral is the min over exactly the valid feeds of `chains`; carol's WETH
    positions are valued at it."""
    valid = {cid for cid, s in sources(report, "ETH").items() if s.valid}
    assert valid == {CHAIN_IDS[c] for c in chains}
    low = min(valid_answers(report, "ETH"))
    eth = next(p for p in report.prices if p.asset == "ETH")
    assert eth.collateral_usd == fixed6(low)
    for chain, units in (("ethereum", 8), ("arbitrum", 2)):
        pos = weth(report, chain)
        assert pos.status == "ok"
        assert pos.price_usd == fixed6(low)
        assert pos.value_usd == fixed6(units * low)


def test_all_feeds_valid_at_start(net: Devnet) -> None:
    requests: dict[str, int] = {}
    report = margin(net.config, carol(net), requests)
    assert report.status == "ok", report.warnings
    assert codes(report) == []
    assert_eth_priced_from(report, set(CHAIN_IDS))
    # Feeds ride in the balances' multicall: no request beyond reading the balances.
    assert requests == balances_only_requests(net.config, carol(net))


def test_stale_feeds_when_chain_time_moves_past_the_heartbeat(
    net: Devnet, chains: dict[str, Chain]
) -> None:
    chains["ethereum"].advance(3601)  # ETH and BTC heartbeats: 3600 s; USDC: 86400 s
    report = margin(net.config, carol(net))
    assert reasons(report, "ETH")[1] == "stale"
    assert reasons(report, "BTC")[1] == "stale"
    assert reasons(report, "USDC")[1] is None
    assert_eth_priced_from(report, {"arbitrum", "optimism", "base"})
    stale = [w.detail for w in report.warnings if w.code == "stale"]
    assert len(stale) == 2
    assert any(feed(net.config, "ETH", "ethereum") in d for d in stale)
    assert "time_skew" in codes(report)  # ethereum's pinned block is an hour ahead


def test_every_feed_stale_leaves_eth_unpriced(net: Devnet, chains: dict[str, Chain]) -> None:
    for c in chains.values():
        c.advance(3601)
    report = margin(net.config, carol(net))
    assert set(reasons(report, "ETH").values()) == {"stale"}
    eth = next(p for p in report.prices if p.asset == "ETH")
    assert (eth.collateral_usd, eth.debt_usd) == (None, None)
    assert {weth(report, c).status for c in ("ethereum", "arbitrum")} == {"unpriced"}
    assert {weth(report, c).value_usd for c in ("ethereum", "arbitrum")} == {None}
    assert report.totals.collateral_usd == "0.000000"  # unpriced collateral counts 0
    assert report.totals.debt_usd != "0.000000"  # the USDC debt is still priced
    assert "unpriced" in codes(report)
    assert report.totals.liquidatable is True


def test_zero_and_negative_answers(net: Devnet, chains: dict[str, Chain]) -> None:
    chains["base"].transact(feed(net.config, "ETH", "base"), "updateAnswer(int256)", 0)
    chains["optimism"].transact(feed(net.config, "ETH", "optimism"), "updateAnswer(int256)", -1)
    report = margin(net.config, carol(net))
    r = reasons(report, "ETH")
    assert (r[8453], r[10]) == ("non_positive", "non_positive")
    assert sources(report, "ETH")[10].answer == "-1"  # reported as read
    assert_eth_priced_from(report, {"ethereum", "arbitrum"})
    assert codes(report).count("non_positive") == 2


def _with_feed(config: Config, asset: str, chain: str, **update: Any) -> Config:
    a = config.asset(asset)
    feeds = [f.model_copy(update=update) if f.chain == chain else f for f in a.feeds]
    assets = [
        x.model_copy(update={"feeds": feeds}) if x.symbol == asset else x for x in config.assets
    ]
    return config.model_copy(update={"assets": assets})


def test_answers_outside_the_configured_bounds(net: Devnet, chains: dict[str, Chain]) -> None:
    cfg = net.config
    eth_l1 = chains["ethereum"].latest_answer(feed(cfg, "ETH", "ethereum"))
    eth_arb = chains["arbitrum"].latest_answer(feed(cfg, "ETH", "arbitrum"))
    cfg = _with_feed(cfg, "ETH", "ethereum", max_answer=eth_l1 - 1)
    cfg = _with_feed(cfg, "ETH", "arbitrum", min_answer=eth_arb + 1)
    cfg = _with_feed(cfg, "ETH", "base", min_answer=1, max_answer=10**15)  # inside: valid
    report = margin(cfg, carol(net))
    r = reasons(report, "ETH")
    assert (r[1], r[42161], r[8453]) == ("out_of_bounds", "out_of_bounds", None)
    assert_eth_priced_from(report, {"optimism", "base"})


def _set_sequencer(chains: dict[str, Chain], cfg: Config, round_id: int, answer: int) -> int:
    arb = chains["arbitrum"]
    now = arb.now()
    address = cfg.chain("arbitrum").sequencer_uptime_feed
    assert address is not None
    arb.transact(
        address, "updateRoundData(uint80,int256,uint256,uint256)", round_id, answer, now, now
    )
    return now


def test_sequencer_down_then_up_inside_and_after_the_grace_period(
    net: Devnet, chains: dict[str, Chain]
) -> None:
    cfg = net.config
    _set_sequencer(chains, cfg, 2, 1)  # down
    report = margin(cfg, carol(net))
    for asset in ("ETH", "BTC", "USDC"):
        assert reasons(report, asset)[42161] == "sequencer_down"
    assert codes(report).count("sequencer_down") == 3
    assert_eth_priced_from(report, {"ethereum", "optimism", "base"})
    assert weth(report, "arbitrum").status == "ok"  # arbitrum's balances still count

    _set_sequencer(chains, cfg, 3, 0)  # back up: the grace period starts now
    report = margin(cfg, carol(net))
    assert set(reasons(report, "ETH").values()) == {None, "sequencer_grace"}
    assert reasons(report, "USDC")[42161] == "sequencer_grace"
    assert codes(report).count("sequencer_grace") == 3

    grace = cfg.chain("arbitrum").sequencer_grace_period_s
    for c in chains.values():  # all chains, so no time skew
        c.advance(grace + 1)
    asyncio.run(net.refresh_feeds())  # fresh rounds at the new time
    report = margin(cfg, carol(net))
    assert report.status == "ok"
    assert codes(report) == []
    assert_eth_priced_from(report, set(CHAIN_IDS))


def test_incomplete_round(net: Devnet, chains: dict[str, Chain]) -> None:
    op = chains["optimism"]
    agg = op.deploy("DevAggregator", ["uint8"], [8])
    now = op.now()
    sig = "setRound(uint80,int256,uint256,uint256,uint80)"
    op.transact(agg, sig, 5, 2990_00000000, now, now, 4)  # answeredInRound 4 < roundId 5
    cfg = _with_feed(net.config, "ETH", "optimism", address=agg)
    report = margin(cfg, carol(net))
    assert reasons(report, "ETH")[10] == "incomplete_round"
    assert "incomplete_round" in codes(report)
    assert_eth_priced_from(report, {"ethereum", "arbitrum", "base"})

    op.transact(agg, sig, 6, 2990_00000000, now, now, 6)  # a complete round, far below
    report = margin(cfg, carol(net))
    assert reasons(report, "ETH")[10] is None
    assert_eth_priced_from(report, set(CHAIN_IDS))
    assert weth(report, "ethereum").price_usd == "2990.000000"  # the lowest valid answer
    assert "price_deviation" not in codes(report)  # (3000 - 2990) / 3000 < max_deviation 2 %


UPDATE_ROUND = "updateRoundData(uint80,int256,uint256,uint256)"  # MockV3Aggregator


def test_rounds_from_the_future_and_rounds_that_do_not_exist(
    net: Devnet, chains: dict[str, Chain]
) -> None:
    """§3.5 and §3.6: a feed posts a round an hour ahead of its chain, at half the price
    (it would set the collateral price if it counted), another round id 0, another
    updatedAt 0. Each source is listed invalid with its reason; only base prices ETH."""
    cfg = net.config
    l1, arb, op = chains["ethereum"], chains["arbitrum"], chains["optimism"]
    answer = l1.latest_answer(feed(cfg, "ETH", "ethereum"))
    ahead = l1.now() + 3600
    l1.transact(feed(cfg, "ETH", "ethereum"), UPDATE_ROUND, 1000, answer // 2, ahead, ahead)
    arb.transact(feed(cfg, "ETH", "arbitrum"), UPDATE_ROUND, 0, answer, arb.now(), arb.now())
    op.transact(feed(cfg, "ETH", "optimism"), UPDATE_ROUND, 1000, answer, 0, 0)
    report = margin(cfg, carol(net))
    assert reasons(report, "ETH") == {
        1: "future_timestamp",
        42161: "zero_round",
        10: "zero_round",
        8453: None,
    }
    l1_src = sources(report, "ETH")[1]
    assert (l1_src.valid, l1_src.updated_at, l1_src.answer) == (False, ahead, str(answer // 2))
    assert (sources(report, "ETH")[42161].round_id, sources(report, "ETH")[10].updated_at) == (
        "0",
        0,
    )
    assert_eth_priced_from(report, {"base"})  # not at answer // 2
    assert codes(report).count("future_timestamp") == 1
    assert codes(report).count("zero_round") == 2
    assert report.status == "ok"  # invalid sources are warnings, the asset is still priced


def test_every_eth_feed_from_the_future_leaves_eth_unpriced(
    net: Devnet, chains: dict[str, Chain]
) -> None:
    cfg = net.config
    for name, c in chains.items():
        ahead = c.now() + 600
        c.transact(feed(cfg, "ETH", name), UPDATE_ROUND, 1000, 3000_00000000, ahead, ahead)
    report = margin(cfg, carol(net))
    assert set(reasons(report, "ETH").values()) == {"future_timestamp"}
    eth = next(p for p in report.prices if p.asset == "ETH")
    assert (eth.collateral_usd, eth.debt_usd) == (None, None)
    assert {weth(report, c).status for c in ("ethereum", "arbitrum")} == {"unpriced"}
    assert report.totals.collateral_usd == "0.000000"
    assert "unpriced" in codes(report)


def test_future_tolerance_is_inclusive_at_the_pinned_block(
    net: Devnet, chains: dict[str, Chain]
) -> None:
    """The pinned block's own timestamp is set (evm_setNextBlockTimestamp), so the round
    sits exactly `future_tolerance_s` ahead of it, then one second more."""
    cfg = net.config
    tolerance = cfg.risk.future_tolerance_s
    l1 = chains["ethereum"]
    address = feed(cfg, "ETH", "ethereum")
    answer = l1.latest_answer(address)
    for step, (lead, why) in enumerate(((tolerance, None), (tolerance + 1, "future_timestamp"))):
        block_ts = l1.now() + 5
        l1.rpc("evm_setNextBlockTimestamp", block_ts)
        ts = block_ts + lead
        l1.transact(address, UPDATE_ROUND, 1000 + step, answer, ts, ts)
        report = margin(cfg, carol(net))
        assert next(b for b in report.as_of if b.chain_id == 1).timestamp == block_ts
        assert reasons(report, "ETH")[1] == why


def _with_pyth(config: Config, pyth: str, **kw: Any) -> Config:
    fields: dict[str, Any] = {
        "chain": "base",
        "kind": "pyth",
        "address": pyth,
        "price_id": ETH_ID,
        "decimals": 8,
        "heartbeat_s": 600,
        **kw,
    }
    eth = config.asset("ETH")
    new = eth.model_copy(update={"feeds": [*eth.feeds, PythFeedConfig.model_validate(fields)]})
    return config.model_copy(
        update={"assets": [new if a.symbol == "ETH" else a for a in config.assets]}
    )


def test_pyth_feed_with_confidence_and_its_rejections(
    net: Devnet, chains: dict[str, Chain]
) -> None:
    base = chains["base"]
    pyth = base.deploy("DevPyth", [], [])
    price = base.latest_answer(feed(net.config, "ETH", "base"))
    conf = price // 100  # 1 %: the interval's low end is below every Chainlink answer
    sig = "setPrice(bytes32,int64,uint64,int32,uint256)"
    ident = bytes.fromhex(ETH_ID[2:])

    def post(p: int, c: int, expo: int, age: int) -> None:
        base.transact(pyth, sig, ident, p, c, expo, base.now() - age)

    post(price, conf, -8, 5)
    cfg = _with_pyth(net.config, pyth, max_confidence=0.02)
    requests: dict[str, int] = {}
    report = margin(cfg, carol(net), requests)
    assert requests == balances_only_requests(cfg, carol(net))  # still no extra request
    eth = next(p for p in report.prices if p.asset == "ETH")
    (src,) = [s for s in eth.sources if s.kind == "pyth"]
    assert (src.valid, src.price_id, src.confidence, src.round_id) == (
        True,
        ETH_ID,
        str(conf),
        None,
    )
    assert eth.collateral_usd == fixed6(Fraction(price - conf, 10**8))
    assert eth.debt_usd == fixed6(Fraction(price + conf, 10**8))
    assert weth(report, "arbitrum").price_usd == fixed6(Fraction(price - conf, 10**8))
    assert "price_deviation" not in codes(report)  # compared on answers, not intervals

    for p, c, expo, age, why in [
        (price, conf, -8, 5, "wide_confidence"),  # 1 % > max_confidence 0.5 %
        (price, conf // 10, -8, 601, "stale"),
        (0, 0, -8, 5, "non_positive"),
        (price, conf // 10, -6, 5, "decimals_mismatch"),
        (price, conf // 10, -8, -3600, "future_timestamp"),  # §3.5 holds for Pyth too
    ]:
        post(p, c, expo, age)
        tight = _with_pyth(net.config, pyth, max_confidence=0.005)
        report = margin(tight, carol(net))
        (src,) = [
            s for p_ in report.prices if p_.asset == "ETH" for s in p_.sources if s.kind == "pyth"
        ]
        assert src.reason == why
        assert why in codes(report)
        assert_eth_priced_from(report, set(CHAIN_IDS))

    # A publishTime a little ahead of the chain (publishers' clocks) is within tolerance.
    post(price, conf // 10, -8, -30)
    report = margin(_with_pyth(net.config, pyth, max_confidence=0.005), carol(net))
    (src,) = [
        s for p_ in report.prices if p_.asset == "ETH" for s in p_.sources if s.kind == "pyth"
    ]
    assert (src.valid, src.reason) == (True, None)
    assert src.updated_at is not None
    assert src.updated_at > max(b.timestamp for b in report.as_of if b.chain_id == 8453)
