"""Feed kinds as data (oracle/feeds.py): the calls per kind, decoding, and the verdicts
`read_feeds` gives a chain's slice of the multicall results. Pure: no chain."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from adapters.calls import SEL_DECIMALS, SEL_LATEST_ROUND_DATA, CallResult
from crossmargin.core.config import Config, PythFeedConfig, load_config
from crossmargin.core.errors import DecodeError
from oracle import feeds as f
from oracle import validity as v

ROOT = Path(__file__).resolve().parents[2]
BASE = load_config(ROOT / "configs" / "devnet.toml", env={})
PYTH = "0x4305FB66699C3B2702D4d05CF36551390A4c69C6"
ETH_ID = "0xff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace"
NOW = 1_800_000_000


def words(*values: int) -> bytes:
    return b"".join((x % (1 << 256)).to_bytes(32, "big") for x in values)


def ok(*values: int) -> CallResult:
    return CallResult(True, words(*values))


def pyth_feed(chain: str = "ethereum", **kw: object) -> PythFeedConfig:
    fields: dict[str, object] = {
        "chain": chain,
        "kind": "pyth",
        "address": PYTH,
        "price_id": ETH_ID,
        "decimals": 8,
        "heartbeat_s": 60,
        **kw,
    }
    return PythFeedConfig.model_validate(fields)


def with_pyth(config: Config, feed: PythFeedConfig) -> Config:
    eth = config.asset("ETH")
    assets = [eth.model_copy(update={"feeds": [*eth.feeds, feed]}), *config.assets[1:]]
    return config.model_copy(update={"assets": assets})


def test_calls_per_kind() -> None:
    cl = BASE.asset("ETH").feeds[0]
    latest, dec = f.feed_calls(cl)
    assert (latest.target, latest.data, dec.data) == (
        cl.address,
        SEL_LATEST_ROUND_DATA,
        SEL_DECIMALS,
    )
    (price,) = f.feed_calls(pyth_feed())
    assert price.target == PYTH
    assert price.data == f.SEL_GET_PRICE_UNSAFE + bytes.fromhex(ETH_ID[2:])
    assert f.get_round_data(cl.address, 7).data == f.SEL_GET_ROUND_DATA + (7).to_bytes(32, "big")
    with pytest.raises(ValueError, match="uint80"):
        f.get_round_data(cl.address, 1 << 80)


def test_pyth_price_decodes_signed_fields() -> None:
    q = f.decode_pyth_price(ok(3000_12345678, 1_500000, -8, NOW - 5))
    assert q.round == f.RoundData(0, 3000_12345678, NOW - 5, NOW - 5, 0)
    assert (q.onchain_decimals, q.confidence) == (8, 1_500000)
    neg = f.decode_pyth_price(ok(-5, 0, -6, NOW))
    assert (neg.round.answer, neg.onchain_decimals) == (-5, 6)
    with pytest.raises(DecodeError, match="range"):
        f.decode_pyth_price(ok(1 << 63, 0, -8, NOW))  # price wider than int64
    with pytest.raises(DecodeError, match="reverted"):
        f.decode_pyth_price(CallResult(False, b""))
    with pytest.raises(DecodeError, match="128 bytes"):
        f.decode_pyth_price(ok(1, 2, 3))


def test_wide_confidence_and_the_interval() -> None:
    feed = pyth_feed(max_confidence=0.01)
    rd = f.RoundData(0, 1000_00000000, NOW, NOW, 0)
    assert v.reading_reason(feed, rd, 8, NOW, 60, confidence=10_00000000) is None  # exactly 1 %
    assert v.reading_reason(feed, rd, 8, NOW, 60, confidence=10_00000001) == v.WIDE_CONFIDENCE
    no_limit = pyth_feed()
    assert v.reading_reason(no_limit, rd, 8, NOW, 60, confidence=999_00000000) is None
    assert v.reading_reason(no_limit, rd, 8, NOW, 60, confidence=1000_00000000) == v.WIDE_CONFIDENCE
    assert v.reading_reason(no_limit, rd, 8, NOW + 61, 60, confidence=1) == v.STALE
    assert v.reading_reason(no_limit, rd, 6, NOW, 60, confidence=1) == v.DECIMALS_MISMATCH

    def reading(answer: int, conf: int | None) -> v.FeedReading:
        r = f.RoundData(0, answer, NOW, NOW, 0)
        return v.FeedReading("ETH", 1, PYTH, 8, NOW, r, None, "pyth", conf, ETH_ID)

    p = v.aggregate_price(
        "ETH", [reading(1000_00000000, 20_00000000), reading(1010_00000000, None)], 0.02
    )
    assert p.collateral == 980  # 1000 - 20
    assert p.debt == 1020  # 1000 + 20
    assert p.deviation == Fraction(10, 1005)  # the answers, not the intervals


def _results(plan: f.FeedPlan, by_kind: dict[str, list[CallResult]]) -> list[CallResult]:
    out: list[CallResult] = []
    for slot in plan.feeds:
        out += by_kind[slot.feed.kind]
    if plan.sequencer_slot is not None:
        out += by_kind["sequencer"]
    return out


def test_read_feeds_judges_every_feed_of_a_chain() -> None:
    cfg = with_pyth(BASE, pyth_feed("arbitrum", heartbeat_s=3600))
    arb = cfg.chain("arbitrum")
    plan = f.plan_feeds(cfg, arb)
    assert [s.asset for s in plan.feeds] == ["ETH", "ETH", "BTC", "USDC"]  # config order
    assert plan.sequencer_slot == len(plan.calls) - 1
    fresh = {
        "chainlink": [ok(7, 3000_00000000, NOW - 60, NOW - 60, 7), ok(8)],
        "pyth": [ok(3001_00000000, 1_00000000, -8, NOW - 30)],
        "sequencer": [ok(1, 0, NOW - 7200, NOW - 7200, 1)],
    }
    readings, seq = f.read_feeds(plan, _results(plan, fresh), NOW)
    assert seq is not None
    assert seq.round is not None
    assert [r.reason for r in readings] == [None] * 4
    pyth = readings[1]
    assert (pyth.kind, pyth.price_id, pyth.confidence) == ("pyth", ETH_ID, 1_00000000)
    assert (pyth.low, pyth.high) == (Fraction(3000), Fraction(3002))

    down = {**fresh, "sequencer": [ok(2, 1, NOW - 10, NOW - 10, 2)]}
    readings, _ = f.read_feeds(plan, _results(plan, down), NOW)
    assert {r.reason for r in readings} == {v.SEQUENCER_DOWN}

    grace = {**fresh, "sequencer": [ok(3, 0, NOW - 3600, NOW - 3600, 3)]}
    readings, _ = f.read_feeds(plan, _results(plan, grace), NOW)
    assert {r.reason for r in readings} == {v.SEQUENCER_GRACE}  # startedAt + grace not passed

    unknown = {**fresh, "sequencer": [CallResult(False, b"")]}
    readings, _ = f.read_feeds(plan, _results(plan, unknown), NOW)
    assert {r.reason for r in readings} == {v.SEQUENCER_UNKNOWN}

    broken = {**down, "chainlink": [CallResult(True, b""), ok(8)]}
    readings, _ = f.read_feeds(plan, _results(plan, broken), NOW)
    assert readings[0].reason == v.UNREADABLE  # an unreadable feed stays unreadable
    assert readings[1].reason == v.SEQUENCER_DOWN

    with pytest.raises(ValueError, match="results for"):
        f.read_feeds(plan, [], NOW)


def test_read_feeds_applies_rules_5_and_6_to_every_kind() -> None:
    """A reading from the future, or without a round, is rejected whatever its kind; the
    tolerance is the config's `[risk] future_tolerance_s`, carried by the plan."""
    cfg = with_pyth(BASE, pyth_feed("ethereum", heartbeat_s=3600))
    plan = f.plan_feeds(cfg, cfg.chain("ethereum"))
    assert plan.future_tolerance_s == cfg.risk.future_tolerance_s == 60
    kinds = [s.feed.kind for s in plan.feeds]
    assert kinds == ["chainlink", "pyth", "chainlink", "chainlink"]

    def reasons(chainlink: CallResult, pyth: CallResult, p: f.FeedPlan = plan) -> list[str | None]:
        by_kind = {"chainlink": [chainlink, ok(8)], "pyth": [pyth]}
        return [r.reason for r in f.read_feeds(p, _results(p, by_kind), NOW)[0]]

    def cl(rid: int, updated: int) -> CallResult:
        return ok(rid, 3000_00000000, updated, updated, rid)

    def py(publish: int) -> CallResult:
        return ok(3000_00000000, 1_00000000, -8, publish)

    assert reasons(cl(7, NOW + 60), py(NOW + 60)) == [None] * 4  # at the tolerance
    future = reasons(cl(7, NOW + 61), py(NOW + 61))
    assert future == [v.FUTURE_TIMESTAMP] * 4
    assert reasons(cl(0, NOW), py(0)) == [v.ZERO_ROUND] * 4
    assert reasons(cl(7, 0), py(NOW)) == [v.ZERO_ROUND, None, v.ZERO_ROUND, v.ZERO_ROUND]

    risk = cfg.risk.model_copy(update={"future_tolerance_s": 3600})
    lax = f.plan_feeds(cfg.model_copy(update={"risk": risk}), cfg.chain("ethereum"))
    assert reasons(cl(7, NOW + 61), py(NOW + 3600), lax) == [None] * 4
    assert reasons(cl(7, NOW + 3601), py(NOW + 61), lax)[0] == v.FUTURE_TIMESTAMP


def test_an_l1_has_no_sequencer_slot() -> None:
    plan = f.plan_feeds(BASE, BASE.chain("ethereum"))
    assert plan.sequencer_slot is None
    assert len(plan.calls) == 2 * len(plan.feeds)


def test_config_kinds() -> None:
    text = (ROOT / "configs" / "devnet.toml").read_text()
    first = 'kind = "chainlink", decimals = 8, heartbeat_s = 3600 }'
    assert first in text
    no_kind = text.replace(first, "decimals = 8, heartbeat_s = 3600 }", 1)
    from crossmargin.core.config import ChainlinkFeedConfig, parse_config
    from crossmargin.core.errors import ConfigError

    assert isinstance(parse_config(no_kind, env={}).assets[0].feeds[0], ChainlinkFeedConfig)
    pyth = text.replace(
        first, f'kind = "pyth", price_id = "{ETH_ID}", decimals = 8, heartbeat_s = 60 }}', 1
    )
    feed = parse_config(pyth, env={}).assets[0].feeds[0]
    assert isinstance(feed, PythFeedConfig)
    bad = text.replace(first, 'kind = "pyth", decimals = 8, heartbeat_s = 60 }', 1)
    with pytest.raises(ConfigError, match=r"assets\.0\.feeds\.0\.price_id: Field required"):
        parse_config(bad, env={}, source="bad.toml")
    with pytest.raises(ConfigError, match=r"assets\.0\.feeds\.0: Input tag 'dia'"):
        parse_config(text.replace('"chainlink"', '"dia"', 1), env={}, source="bad.toml")
