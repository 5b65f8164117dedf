"""METHOD.md §3 validity rules and min/max aggregation, one rule at a time."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.calls import RoundData
from crossmargin.core.config import ChainlinkFeedConfig, PythFeedConfig
from oracle import validity as v

FEED = ChainlinkFeedConfig(
    chain="ethereum",
    address="0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419",
    heartbeat_s=3600,
    min_answer=100,
    max_answer=10**12,
)
NOW = 1_800_000_000
TOLERANCE = 60  # [risk] future_tolerance_s
PYTH = PythFeedConfig(
    chain="base",
    kind="pyth",
    address="0x4305FB66699C3B2702D4d05CF36551390A4c69C6",
    price_id="0x" + "ff" * 32,
    heartbeat_s=60,
)


def rd(answer: int = 3000 * 10**8, age: int = 10, rid: int = 5, answered: int = 5) -> RoundData:
    return RoundData(rid, answer, NOW - age, NOW - age, answered)


def at(updated_at: int, rid: int = 5) -> RoundData:
    return RoundData(rid, 3000 * 10**8, updated_at, updated_at, rid)


@pytest.mark.parametrize(
    ("reading", "decimals", "reason"),
    [
        (rd(), 8, None),
        (rd(age=3600), 8, None),  # exactly at the heartbeat is still fresh
        (rd(age=3601), 8, v.STALE),
        (rd(answer=0), 8, v.NON_POSITIVE),
        (rd(answer=-1), 8, v.NON_POSITIVE),
        (rd(answer=99), 8, v.OUT_OF_BOUNDS),
        (rd(answer=10**12 + 1), 8, v.OUT_OF_BOUNDS),
        (rd(rid=6, answered=5), 8, v.INCOMPLETE_ROUND),
        (rd(), 18, v.DECIMALS_MISMATCH),
        # §3.5: up to future_tolerance_s after the pinned block is still valid
        (rd(age=-TOLERANCE), 8, None),
        (rd(age=-TOLERANCE - 1), 8, v.FUTURE_TIMESTAMP),
        (rd(age=-(10**9)), 8, v.FUTURE_TIMESTAMP),
        # §3.6: no round at all
        (rd(rid=0, answered=0), 8, v.ZERO_ROUND),
        (at(0), 8, v.ZERO_ROUND),  # not `stale`: the round does not exist
        (RoundData(0, 0, 0, 0, 0), 8, v.ZERO_ROUND),  # an empty aggregator, not non_positive
        (RoundData(0, 0, 0, 0, 0), 18, v.DECIMALS_MISMATCH),  # decimals still come first
        (RoundData(5, -1, NOW + 999, NOW + 999, 5), 8, v.NON_POSITIVE),  # fixed order
    ],
)
def test_reading_rules(reading: RoundData, decimals: int, reason: str | None) -> None:
    assert v.reading_reason(FEED, reading, decimals, NOW, TOLERANCE) == reason


def test_future_tolerance_comes_from_the_caller() -> None:
    ahead = rd(age=-30)
    assert v.reading_reason(FEED, ahead, 8, NOW, 60) is None
    assert v.reading_reason(FEED, ahead, 8, NOW, 30) is None
    assert v.reading_reason(FEED, ahead, 8, NOW, 29) == v.FUTURE_TIMESTAMP
    assert v.reading_reason(FEED, rd(age=0), 8, NOW, 0) is None  # same second


def test_pyth_has_no_rounds_but_rules_5_and_6_on_publish_time_apply() -> None:
    def pyth(publish: int) -> RoundData:  # decode_pyth_price's shape: round ids 0
        return RoundData(0, 3000 * 10**8, publish, publish, 0)

    assert v.reading_reason(PYTH, pyth(NOW - 5), 8, NOW, TOLERANCE, 1) is None
    assert v.reading_reason(PYTH, pyth(NOW + TOLERANCE), 8, NOW, TOLERANCE, 1) is None
    assert (
        v.reading_reason(PYTH, pyth(NOW + TOLERANCE + 1), 8, NOW, TOLERANCE, 1)
        == v.FUTURE_TIMESTAMP
    )
    assert v.reading_reason(PYTH, pyth(0), 8, NOW, TOLERANCE, 1) == v.ZERO_ROUND


@given(
    age=st.integers(-(10**6), 10**6),
    tolerance=st.integers(0, 3600),
    rid=st.integers(0, 3),
)
def test_timestamp_rules_partition_the_time_line(age: int, tolerance: int, rid: int) -> None:
    """Whatever the age: a reading is future, stale, zero or fresh, exactly by §3.2/5/6."""
    reason = v.reading_reason(FEED, rd(age=age, rid=rid, answered=rid), 8, NOW, tolerance)
    if rid == 0:
        assert reason == v.ZERO_ROUND
    elif -age > tolerance:
        assert reason == v.FUTURE_TIMESTAMP
    elif age > FEED.heartbeat_s:
        assert reason == v.STALE
    else:
        assert reason is None


def test_sequencer_rules() -> None:
    up_long = RoundData(1, 0, NOW - 7200, NOW - 7200, 1)
    up_recent = RoundData(2, 0, NOW - 3600, NOW - 3600, 2)
    down = RoundData(3, 1, NOW - 7200, NOW - 7200, 3)
    assert v.sequencer_reason(None, NOW) is None  # an L1: no sequencer feed
    assert v.sequencer_reason(v.SequencerState(up_long, 3600), NOW) is None
    assert v.sequencer_reason(v.SequencerState(up_recent, 3600), NOW) == v.SEQUENCER_GRACE
    assert v.sequencer_reason(v.SequencerState(down, 3600), NOW) == v.SEQUENCER_DOWN
    assert v.sequencer_reason(v.SequencerState(None, 3600), NOW) == v.SEQUENCER_UNKNOWN
    # §3.6 on the uptime feed: a round that does not exist says nothing about the sequencer
    # (Chainlink: startedAt 0 on an uninitialised round), so it is not "up for long".
    for empty in (
        RoundData(0, 0, NOW - 7200, NOW - 7200, 0),
        RoundData(4, 0, 0, NOW - 7200, 4),
        RoundData(4, 0, NOW - 7200, 0, 4),
    ):
        assert v.sequencer_reason(v.SequencerState(empty, 3600), NOW) == v.SEQUENCER_UNKNOWN
    ahead = RoundData(5, 0, NOW + 600, NOW + 600, 5)  # up "since" the future: in grace
    assert v.sequencer_reason(v.SequencerState(ahead, 3600), NOW) == v.SEQUENCER_GRACE


def reading(answer: int, reason: str | None = None) -> v.FeedReading:
    return v.FeedReading("ETH", 1, FEED.address, 8, NOW, rd(answer=answer), reason)


def test_collateral_at_min_debt_at_max_and_deviation_flag() -> None:
    p = v.aggregate_price("ETH", [reading(3000 * 10**8), reading(3100 * 10**8)], 0.02)
    assert p.collateral == 3000
    assert p.debt == 3100
    assert p.deviation == Fraction(100, 3050)
    assert p.deviation_flag
    calm = v.aggregate_price("ETH", [reading(3000 * 10**8), reading(3001 * 10**8)], 0.02)
    assert not calm.deviation_flag


def test_invalid_readings_are_ignored_and_none_valid_is_unpriced() -> None:
    p = v.aggregate_price("ETH", [reading(3000 * 10**8), reading(1, v.STALE)], 0.02)
    assert p.collateral == p.debt == 3000
    assert p.deviation is None  # a single valid reading has no deviation
    none = v.aggregate_price("ETH", [reading(3000 * 10**8, v.STALE)], 0.02)
    assert not none.priced
    assert none.collateral is None
    assert none.debt is None
