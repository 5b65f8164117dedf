"""Feed-reading validity and per-asset price aggregation (METHOD.md §3).

Pure functions over decoded readings. Prices stay exact (`Fraction` of the raw answer
over 10^decimals); staleness is measured against the pinned block's timestamp, never
the wall clock, so every verdict can be replayed from the recorded inputs.

Every feed kind is read into the AggregatorV3 shape (`RoundData`). Kinds without rounds
(Pyth) carry round id 0 in both round fields, so rules 3 and 6 on round ids do not
apply to them ("where the feed reports it"), and their confidence as
`FeedReading.confidence`. Rule 5 (a reading from the future) applies to every kind.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from fractions import Fraction

from adapters.calls import RoundData
from crossmargin.core.codes import Code
from crossmargin.core.config import FeedConfig, PythFeedConfig

# Reason codes, as reported in warnings and in each price's sources: the one list is
# crossmargin/core/codes.py.
STALE = Code.STALE
NON_POSITIVE = Code.NON_POSITIVE
OUT_OF_BOUNDS = Code.OUT_OF_BOUNDS
INCOMPLETE_ROUND = Code.INCOMPLETE_ROUND
SEQUENCER_DOWN = Code.SEQUENCER_DOWN
SEQUENCER_GRACE = Code.SEQUENCER_GRACE
SEQUENCER_UNKNOWN = Code.SEQUENCER_UNKNOWN
DECIMALS_MISMATCH = Code.DECIMALS_MISMATCH
WIDE_CONFIDENCE = Code.WIDE_CONFIDENCE
FUTURE_TIMESTAMP = Code.FUTURE_TIMESTAMP
ZERO_ROUND = Code.ZERO_ROUND
UNREADABLE = Code.UNREADABLE
CHAIN_UNAVAILABLE = Code.CHAIN_UNAVAILABLE

CHAINLINK = "chainlink"
PYTH = "pyth"


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
    if not (state.round.round_id and state.round.started_at and state.round.updated_at):
        return SEQUENCER_UNKNOWN  # §3.6 on the uptime feed: no round (startedAt 0) is no verdict
    if state.round.answer != 0:
        return SEQUENCER_DOWN
    if block_timestamp - state.round.started_at <= state.grace_period_s:
        return SEQUENCER_GRACE
    return None


def reading_reason(
    feed: FeedConfig,
    rd: RoundData,
    onchain_decimals: int,
    block_timestamp: int,
    future_tolerance_s: int,
    confidence: int | None = None,
) -> str | None:
    """§3.1-3.3, 3.5, 3.6 for one reading: the first failed check's reason code, or None.

    The order is fixed (docs/methodology.md): decimals, zero round (§3.6: nothing else
    about a round that does not exist means anything), answer, bounds, confidence,
    future (§3.5, before staleness, which a negative age would pass), stale, incomplete.
    Not in §3, for kinds that publish a confidence (Pyth): conf >= answer (the interval
    reaches 0) or conf / answer above the feed's `max_confidence` is `wide_confidence`.
    """
    has_rounds = not isinstance(feed, PythFeedConfig)
    if onchain_decimals != feed.decimals:
        return DECIMALS_MISMATCH
    if rd.updated_at == 0 or (has_rounds and rd.round_id == 0):
        return ZERO_ROUND
    if rd.answer <= 0:
        return NON_POSITIVE
    if feed.min_answer is not None and rd.answer < feed.min_answer:
        return OUT_OF_BOUNDS
    if feed.max_answer is not None and rd.answer > feed.max_answer:
        return OUT_OF_BOUNDS
    if confidence is not None:
        limit = feed.max_confidence if isinstance(feed, PythFeedConfig) else None
        if confidence >= rd.answer or (
            limit is not None and Fraction(confidence, rd.answer) > Fraction(limit)
        ):
            return WIDE_CONFIDENCE
    if rd.updated_at > block_timestamp + future_tolerance_s:
        return FUTURE_TIMESTAMP
    if block_timestamp - rd.updated_at > feed.heartbeat_s:
        return STALE
    if rd.answered_in_round < rd.round_id:
        return INCOMPLETE_ROUND
    return None


@dataclass(frozen=True, slots=True)
class FeedReading:
    """One source of one asset's price at one pinned block, with its verdict.

    `confidence` (raw answer units, kinds that publish one): a valid reading then counts
    as the interval [answer - conf, answer + conf] in the min/max of §3.
    """

    asset: str
    chain_id: int
    address: str
    decimals: int
    block_timestamp: int
    round: RoundData | None
    reason: str | None  # None: valid
    kind: str = CHAINLINK
    confidence: int | None = None
    price_id: str | None = None  # Pyth: which feed of the contract at `address`

    @property
    def valid(self) -> bool:
        return self.reason is None

    @property
    def price(self) -> Fraction | None:
        if self.round is None:
            return None
        return Fraction(self.round.answer, 10**self.decimals)

    @property
    def low(self) -> Fraction | None:
        """The lowest price this reading allows: what collateral may be valued at."""
        if self.round is None:
            return None
        return Fraction(self.round.answer - (self.confidence or 0), 10**self.decimals)

    @property
    def high(self) -> Fraction | None:
        """The highest price this reading allows: what debt may be valued at."""
        if self.round is None:
            return None
        return Fraction(self.round.answer + (self.confidence or 0), 10**self.decimals)


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
    """min/max over valid readings; (max - min) / median above the limit is flagged.

    A reading with a confidence enters the min with answer - conf and the max with
    answer + conf; the deviation compares the sources' answers (their disagreement),
    not their confidence intervals.
    """
    valid = [r for r in readings if r.valid and r.round is not None]
    if not valid:
        return AssetPrice(asset, None, None, None, False, tuple(readings))
    lo = min(r.low for r in valid if r.low is not None)
    hi = max(r.high for r in valid if r.high is not None)
    points = [r.price for r in valid if r.price is not None]
    deviation = (
        (max(points) - min(points)) / statistics.median(points) if len(points) >= 2 else None
    )
    flag = deviation is not None and deviation > Fraction(max_deviation)
    return AssetPrice(asset, lo, hi, deviation, flag, tuple(readings))
