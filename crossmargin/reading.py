"""Read one account's state on one chain: balances and price feeds in one multicall.

This is where adapters meet oracle: a plan of calls is built from config, sent as a single
block-pinned batch, and every slot is decoded on its own, so one bad token is one flagged
position, not a lost chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from adapters import calls as c
from adapters.calls import Call, CallResult, RoundData
from adapters.evm import BlockPin, ChainReader
from crossmargin.config import ChainConfig, Config, RepresentationConfig
from crossmargin.errors import ChainError, DecodeError
from oracle.validity import (
    UNREADABLE,
    FeedReading,
    SequencerState,
    reading_reason,
    sequencer_reason,
)


@dataclass(frozen=True, slots=True)
class BalanceRead:
    """A representation's raw balance, or why it could not be read (never a silent 0)."""

    rep: RepresentationConfig
    raw_amount: int | None
    error: str | None = None
    onchain_decimals: int | None = None


@dataclass(slots=True)
class ChainState:
    """Everything read from one chain for one computation, at one pinned block."""

    chain: ChainConfig
    pin: BlockPin | None = None
    error: str | None = None
    balances: list[BalanceRead] = field(default_factory=list)
    feeds: list[FeedReading] = field(default_factory=list)
    sequencer: SequencerState | None = None

    @property
    def available(self) -> bool:
        return self.pin is not None and self.error is None


@dataclass(frozen=True, slots=True)
class _Plan:
    calls: list[Call]
    reps: list[tuple[RepresentationConfig, int, int | None]]  # rep, balance slot, decimals slot
    feeds: list[tuple[str, int, int, int]]  # asset, feed index, round slot, decimals slot
    sequencer_slot: int | None


def _plan(config: Config, chain: ChainConfig, account: str) -> _Plan:
    calls: list[Call] = []

    def add(call: Call) -> int:
        calls.append(call)
        return len(calls) - 1

    reps: list[tuple[RepresentationConfig, int, int | None]] = []
    for rep in config.representations:
        if rep.chain != chain.name:
            continue
        if rep.is_native:
            reps.append((rep, add(c.eth_balance(account)), None))
        else:
            reps.append(
                (rep, add(c.balance_of(rep.address, account)), add(c.decimals(rep.address)))
            )
    feeds: list[tuple[str, int, int, int]] = []
    for asset in config.assets:
        for j, feed in enumerate(asset.feeds):
            if feed.chain == chain.name:
                rd = add(c.latest_round_data(feed.address))
                feeds.append((asset.symbol, j, rd, add(c.decimals(feed.address))))
    seq = (
        add(c.latest_round_data(chain.sequencer_uptime_feed))
        if chain.sequencer_uptime_feed
        else None
    )
    return _Plan(calls, reps, feeds, seq)


def _balance(rep: RepresentationConfig, bal: CallResult, dec: CallResult | None) -> BalanceRead:
    try:
        raw = c.decode_uint(bal, f"{rep.symbol} balance")
        onchain = c.decode_decimals(dec) if dec is not None else rep.decimals
    except DecodeError as exc:
        return BalanceRead(rep, None, str(exc))
    if onchain != rep.decimals:
        return BalanceRead(
            rep, None, f"{rep.symbol}: decimals() is {onchain}, config says {rep.decimals}", onchain
        )
    return BalanceRead(rep, raw, None, onchain)


def _round(result: CallResult) -> RoundData | None:
    try:
        return c.decode_round_data(result)
    except DecodeError:
        return None


async def read_chain(
    config: Config, reader: ChainReader, account: str, pin: BlockPin | None = None
) -> ChainState:
    """Pin (unless given), read, decode. Chain-level failures become `error`, not raises."""
    chain = reader.chain
    state = ChainState(chain)
    plan = _plan(config, chain, account)
    try:
        state.pin = pin or await reader.pin()
        results = await reader.read(plan.calls, state.pin)
    except (ChainError, DecodeError) as exc:
        state.error = str(exc)
        return state
    ts = state.pin.timestamp
    state.balances = [
        _balance(rep, results[b], results[d] if d is not None else None) for rep, b, d in plan.reps
    ]
    if plan.sequencer_slot is not None:
        state.sequencer = SequencerState(
            _round(results[plan.sequencer_slot]), chain.sequencer_grace_period_s
        )
    seq_reason = sequencer_reason(state.sequencer, ts)
    for symbol, j, rd_slot, dec_slot in plan.feeds:
        feed = config.asset(symbol).feeds[j]
        rd = _round(results[rd_slot])
        try:
            onchain = c.decode_decimals(results[dec_slot])
        except DecodeError:
            onchain = None
        if rd is None or onchain is None:
            reason: str | None = UNREADABLE
        else:
            reason = seq_reason or reading_reason(feed, rd, onchain, ts)
        state.feeds.append(
            FeedReading(symbol, chain.chain_id, feed.address, feed.decimals, ts, rd, reason)
        )
    return state
