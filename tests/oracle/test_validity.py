"""METHOD.md §3 validity rules and min/max aggregation, one rule at a time."""

from __future__ import annotations

from fractions import Fraction

import pytest

from adapters.calls import RoundData
from crossmargin.config import ChainlinkFeedConfig
from oracle import validity as v

FEED = ChainlinkFeedConfig(
    chain="ethereum",
    address="0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419",
    heartbeat_s=3600,
    min_answer=100,
    max_answer=10**12,
)
NOW = 1_800_000_000


def rd(answer: int = 3000 * 10**8, age: int = 10, rid: int = 5, answered: int = 5) -> RoundData:
    return RoundData(rid, answer, NOW - age, NOW - age, answered)


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
    ],
)
def test_reading_rules(reading: RoundData, decimals: int, reason: str | None) -> None:
    assert v.reading_reason(FEED, reading, decimals, NOW) == reason


def test_sequencer_rules() -> None:
    up_long = RoundData(1, 0, NOW - 7200, NOW - 7200, 1)
    up_recent = RoundData(2, 0, NOW - 3600, NOW - 3600, 2)
    down = RoundData(3, 1, NOW - 7200, NOW - 7200, 3)
    assert v.sequencer_reason(None, NOW) is None  # an L1: no sequencer feed
    assert v.sequencer_reason(v.SequencerState(up_long, 3600), NOW) is None
    assert v.sequencer_reason(v.SequencerState(up_recent, 3600), NOW) == v.SEQUENCER_GRACE
    assert v.sequencer_reason(v.SequencerState(down, 3600), NOW) == v.SEQUENCER_DOWN
    assert v.sequencer_reason(v.SequencerState(None, 3600), NOW) == v.SEQUENCER_UNKNOWN


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
