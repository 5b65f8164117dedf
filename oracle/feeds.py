"""Feed kinds as data: the calls that read a feed, and their decoding into a verdict.

Pure functions. The caller appends `FeedPlan.calls` to the balance calls of the same
chain, so feeds are read in the same block-pinned multicall (no extra round trip), and
hands the matching slice of results to `read_feeds`.

| kind | calls at the pinned block | reading |
|---|---|---|
| `chainlink` | `latestRoundData()`, `decimals()` | the round as reported |
| `pyth` | `getPriceUnsafe(price_id)` | price, conf, expo (decimals = -expo), publishTime |

Sequencer uptime feeds (L2s) are Chainlink-shaped: `latestRoundData()`, answer 0 = up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_utils.abi import function_signature_to_4byte_selector

from adapters import calls as c
from adapters.calls import Call, CallResult, RoundData
from crossmargin.core.config import ChainConfig, Config, FeedConfig, PythFeedConfig
from crossmargin.core.errors import DecodeError
from oracle.validity import (
    CHAINLINK,
    PYTH,
    UNREADABLE,
    FeedReading,
    SequencerState,
    reading_reason,
    sequencer_reason,
)

SEL_GET_ROUND_DATA = function_signature_to_4byte_selector("getRoundData(uint80)")
SEL_PHASE_AGGREGATORS = function_signature_to_4byte_selector("phaseAggregators(uint16)")
SEL_LATEST_ROUND = function_signature_to_4byte_selector("latestRound()")
SEL_GET_PRICE_UNSAFE = function_signature_to_4byte_selector("getPriceUnsafe(bytes32)")

_WORD = 32


@dataclass(frozen=True, slots=True)
class Quote:
    """A decoded reading before the §3 checks: the round (AggregatorV3 shape), the
    decimals the feed itself reports, and a confidence where the kind has one."""

    round: RoundData
    onchain_decimals: int
    confidence: int | None = None


def _signed(word: int) -> int:
    return word - (1 << 256) if word >> 255 else word


def _words(result: CallResult, what: str, n: int) -> list[int]:
    if not result.success:
        raise DecodeError(f"{what}: call reverted")
    if len(result.data) != n * _WORD:
        raise DecodeError(f"{what}: expected {n * _WORD} bytes, got {len(result.data)}")
    return [int.from_bytes(result.data[i : i + _WORD], "big") for i in range(0, n * _WORD, _WORD)]


# ---------------------------------------------------------------- Chainlink


def get_round_data(feed: str, round_id: int) -> Call:
    if not 0 <= round_id < 1 << 80:
        raise ValueError(f"round id {round_id} is not a uint80")
    return Call(feed, SEL_GET_ROUND_DATA + round_id.to_bytes(_WORD, "big"))


def phase_aggregator(proxy: str, phase_id: int) -> Call:
    """AggregatorProxy.phaseAggregators(phaseId): the aggregator behind one phase."""
    return Call(proxy, SEL_PHASE_AGGREGATORS + phase_id.to_bytes(_WORD, "big"))


def latest_round(aggregator: str) -> Call:
    return Call(aggregator, SEL_LATEST_ROUND)


def decode_address(result: CallResult, what: str) -> str:
    (word,) = _words(result, what, 1)
    if word >> 160:
        raise DecodeError(f"{what}: not an address")
    return c.checksum("0x" + word.to_bytes(20, "big").hex())


def decode_round(result: CallResult) -> RoundData:
    """latestRoundData() / getRoundData(): (uint80, int256, uint256, uint256, uint80)."""
    return c.decode_round_data(result)


# ---------------------------------------------------------------- Pyth


def get_price_unsafe(contract: str, price_id: str) -> Call:
    return Call(contract, SEL_GET_PRICE_UNSAFE + bytes.fromhex(price_id[2:]))


def decode_pyth_price(result: CallResult) -> Quote:
    """Price {int64 price; uint64 conf; int32 expo; uint publishTime} as a Quote."""
    w = _words(result, "getPriceUnsafe()", 4)
    price, expo = _signed(w[0]), _signed(w[2])
    if not -(1 << 63) <= price < 1 << 63 or w[1] >> 64 or not -(1 << 31) <= expo < 1 << 31:
        raise DecodeError("getPriceUnsafe(): field out of its type's range")
    return Quote(RoundData(0, price, w[3], w[3], 0), -expo, w[1])


# ---------------------------------------------------------------- per kind


def feed_calls(feed: FeedConfig) -> tuple[Call, ...]:
    """The calls that read one feed at the pinned block."""
    if isinstance(feed, PythFeedConfig):
        return (get_price_unsafe(feed.address, feed.price_id),)
    return (c.latest_round_data(feed.address), c.decimals(feed.address))


def decode_feed(feed: FeedConfig, results: Sequence[CallResult]) -> Quote:
    """Decode what `feed_calls` returned; DecodeError if anything is malformed."""
    if isinstance(feed, PythFeedConfig):
        return decode_pyth_price(results[0])
    return Quote(decode_round(results[0]), c.decode_decimals(results[1]))


def judge(
    feed: FeedConfig, quote: Quote | None, block_timestamp: int, future_tolerance_s: int
) -> str | None:
    """§3.1-3.3, 3.5, 3.6 on a decoded quote (None: it did not decode)."""
    if quote is None:
        return UNREADABLE
    return reading_reason(
        feed,
        quote.round,
        quote.onchain_decimals,
        block_timestamp,
        future_tolerance_s,
        quote.confidence,
    )


# ---------------------------------------------------------------- one chain


@dataclass(frozen=True, slots=True)
class FeedSlot:
    asset: str
    feed: FeedConfig
    start: int  # its calls are plan.calls[start:stop]
    stop: int


@dataclass(frozen=True, slots=True)
class FeedPlan:
    """Every feed call of one chain, in config order, then the sequencer uptime feed;
    `future_tolerance_s` is §3.5's (`[risk]`, one for every feed)."""

    chain: ChainConfig
    calls: tuple[Call, ...]
    feeds: tuple[FeedSlot, ...]
    sequencer_slot: int | None
    future_tolerance_s: int


def plan_feeds(config: Config, chain: ChainConfig) -> FeedPlan:
    calls: list[Call] = []
    slots: list[FeedSlot] = []
    for asset in config.assets:
        for feed in asset.feeds:
            if feed.chain == chain.name:
                start = len(calls)
                calls.extend(feed_calls(feed))
                slots.append(FeedSlot(asset.symbol, feed, start, len(calls)))
    seq: int | None = None
    if chain.sequencer_uptime_feed is not None:
        seq = len(calls)
        calls.append(c.latest_round_data(chain.sequencer_uptime_feed))
    return FeedPlan(chain, tuple(calls), tuple(slots), seq, config.risk.future_tolerance_s)


def read_feeds(
    plan: FeedPlan, results: Sequence[CallResult], block_timestamp: int
) -> tuple[list[FeedReading], SequencerState | None]:
    """Decode and judge every feed of the plan; `results` line up with `plan.calls`."""
    if len(results) != len(plan.calls):
        raise ValueError(f"{len(results)} results for {len(plan.calls)} feed calls")
    sequencer: SequencerState | None = None
    if plan.sequencer_slot is not None:
        try:
            seq_round: RoundData | None = decode_round(results[plan.sequencer_slot])
        except DecodeError:
            seq_round = None
        sequencer = SequencerState(seq_round, plan.chain.sequencer_grace_period_s)
    seq_reason = sequencer_reason(sequencer, block_timestamp)
    readings: list[FeedReading] = []
    for slot in plan.feeds:
        feed = slot.feed
        try:
            quote: Quote | None = decode_feed(feed, results[slot.start : slot.stop])
        except DecodeError:
            quote = None
        reason = judge(feed, quote, block_timestamp, plan.future_tolerance_s)
        if quote is not None and seq_reason is not None:
            reason = seq_reason
        readings.append(
            FeedReading(
                slot.asset,
                plan.chain.chain_id,
                feed.address,
                feed.decimals,
                block_timestamp,
                quote.round if quote else None,
                reason,
                PYTH if isinstance(feed, PythFeedConfig) else CHAINLINK,
                quote.confidence if quote else None,
                feed.price_id if isinstance(feed, PythFeedConfig) else None,
            )
        )
    return readings, sequencer
