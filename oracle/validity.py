"""Feed-reading validity and per-asset price aggregation (METHOD.md §3).

Pure functions over decoded readings. Prices stay exact (`Fraction` of the raw answer
over 10^decimals); staleness is measured against the pinned block's timestamp, never
the wall clock, so every verdict can be replayed from the recorded inputs.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from fractions import Fraction

from adapters.calls import RoundData
from crossmargin.config import FeedConfig

# Reason codes, as reported in warnings and in each price's sources.
STALE = "stale"
NON_POSITIVE = "non_positive"
OUT_OF_BOUNDS = "out_of_bounds"
INCOMPLETE_ROUND = "incomplete_round"
SEQUENCER_DOWN = "sequencer_down"
SEQUENCER_GRACE = "sequencer_grace"
SEQUENCER_UNKNOWN = "sequencer_unknown"
DECIMALS_MISMATCH = "decimals_mismatch"
UNREADABLE = "unreadable"
CHAIN_UNAVAILABLE = "chain_unavailable"


@dataclass(frozen=True, slots=True)
class SequencerState:
    """The L2 uptime feed as read at the pinned block; `None` round means unreadable."""

    round: RoundData | None
    grace_period_s: int


def sequencer_reason(state: SequencerState | None, block_timestamp: int) -> str | None:
    """§3.4: why every feed on this chain is invalid at this block, or None if none."""
    if state is None:
        return None
    if state.round is None:
        return SEQUENCER_UNKNOWN  # conservative: an unreadable uptime feed counts as down
    if state.round.answer != 0:
        return SEQUENCER_DOWN
    if block_timestamp - state.round.started_at <= state.grace_period_s:
        return SEQUENCER_GRACE
    return None


def reading_reason(
    feed: FeedConfig, rd: RoundData, onchain_decimals: int, block_timestamp: int
) -> str | None:
    """§3.1-3.3 for one reading: the first failed check's reason code, or None if valid."""
    if onchain_decimals != feed.decimals:
        return DECIMALS_MISMATCH
    if rd.answer <= 0:
        return NON_POSITIVE
    if feed.min_answer is not None and rd.answer < feed.min_answer:
        return OUT_OF_BOUNDS
    if feed.max_answer is not None and rd.answer > feed.max_answer:
        return OUT_OF_BOUNDS
    if block_timestamp - rd.updated_at > feed.heartbeat_s:
        return STALE
    if rd.answered_in_round < rd.round_id:
        return INCOMPLETE_ROUND
    return None


@dataclass(frozen=True, slots=True)
class FeedReading:
    """One source of one asset's price at one pinned block, with its verdict."""

    asset: str
    chain_id: int
    address: str
    decimals: int
    block_timestamp: int
    round: RoundData | None
    reason: str | None  # None: valid

    @property
    def valid(self) -> bool:
        return self.reason is None

    @property
    def price(self) -> Fraction | None:
        if self.round is None:
            return None
        return Fraction(self.round.answer, 10**self.decimals)


@dataclass(frozen=True, slots=True)
class AssetPrice:
    """§3 aggregation: collateral at the lowest valid reading, debt at the highest."""

    asset: str
    collateral: Fraction | None
    debt: Fraction | None
    deviation: Fraction | None
    deviation_flag: bool
    sources: tuple[FeedReading, ...]

    @property
    def priced(self) -> bool:
        return self.collateral is not None


def aggregate_price(asset: str, readings: list[FeedReading], max_deviation: float) -> AssetPrice:
    """min/max over valid readings; (max - min) / median above the limit is flagged."""
    values = [r.price for r in readings if r.valid and r.price is not None]
    if not values:
        return AssetPrice(asset, None, None, None, False, tuple(readings))
    lo, hi = min(values), max(values)
    deviation = (hi - lo) / statistics.median(values) if len(values) >= 2 else None
    flag = deviation is not None and deviation > Fraction(max_deviation)
    return AssetPrice(asset, lo, hi, deviation, flag, tuple(readings))
