"""The §12 reads of one chain: each account's own figures in every configured protocol
market, planned beside the balances and read at the same pin.

Aave v3: getUserAccountData per account and pool, in the balances' multicall. Morpho
Blue: per market `market(id)` and its oracle's `price()` (shared by the batch), per
account `position(id, user)`, in that multicall too; then, at the same pin, one more
round for the IRM's `borrowRateView` of each market whose totals need accruing to the
block's timestamp (it takes the market's totals as an argument). What is read is
recorded raw (snapshots replay it); the math is in pipeline/protocols.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from adapters.calls import Call, CallResult
from adapters.evm import BlockPin, ChainReader
from adapters.protocols import aave, morpho
from adapters.protocols.aave import AaveAccountData
from adapters.protocols.morpho import MarketParams, MorphoMarket, MorphoPosition
from crossmargin.core.codes import Code
from crossmargin.core.config import ChainConfig, Config
from crossmargin.core.errors import DecodeError
from crossmargin.core.protocols import MorphoMarketConfig, ProtocolConfig

log = logging.getLogger("crossmargin.pipeline.read")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MorphoRead:
    """An account's Morpho Blue position and its market at the pinned block, raw: the
    totals as stored (accrued to the block later, exactly), the IRM's rate at the block
    (None when no accrual is needed) and the market oracle's price (1e36 scale)."""

    position: MorphoPosition
    market: MorphoMarket
    borrow_rate: int | None
    price: int


@dataclass(frozen=True, slots=True)
class ProtocolRead:
    """One account's own figures in one protocol market at the pinned block (§12):
    Aave v3 `getUserAccountData`, a Morpho Blue market's reads, or why they could not be
    read (`error`, public form). `name` is the [[protocols]] entry's, `market` the
    Morpho market's."""

    kind: str
    pool: str
    account_data: AaveAccountData | None = None
    error: str | None = None
    name: str | None = None
    market: str | None = None
    morpho: MorphoRead | None = None


def market_params(m: MorphoMarketConfig) -> MarketParams:
    return MarketParams(*m.params)


class ProtocolPlan:
    """The protocol calls of one chain for a batch of accounts, and their decoding."""

    def __init__(self, config: Config, chain: ChainConfig, accounts: Sequence[str]) -> None:
        here = [p for p in config.protocols if p.chain == chain.name]
        self.accounts = list(accounts)
        self.aave = [p for p in here if p.kind == "aave_v3"]
        self.morpho = [(p, m) for p in here if p.kind == "morpho_blue" for m in p.markets]
        shared: list[Call] = []
        for p, m in self.morpho:
            shared += [morpho.market(p.address, m.market_id), morpho.oracle_price(m.oracle)]
        own: list[Call] = []
        for a in self.accounts:
            own += [aave.user_account_data(p.address, a) for p in self.aave]
            own += [morpho.position(p.address, m.market_id, a) for p, m in self.morpho]
        self.calls = shared + own

    async def finish(
        self, reader: ChainReader, results: Sequence[CallResult], at: BlockPin
    ) -> list[list[ProtocolRead]]:
        """Each account's reads, in plan order (Aave pools, then Morpho markets). The
        rates round is one more multicall at `at`; a chain error there fails the chain
        (the caller's), a bad answer only its market."""
        n_shared = 2 * len(self.morpho)
        markets = [self._market(results[2 * i : 2 * i + 2]) for i in range(len(self.morpho))]
        rate_calls: list[Call] = []
        wanted: list[int] = []
        for i, ((_, m), got) in enumerate(zip(self.morpho, markets, strict=True)):
            if got is not None and morpho.needs_rate(got[0], market_params(m), at.timestamp):
                rate_calls.append(morpho.borrow_rate_view(market_params(m), got[0]))
                wanted.append(i)
        rates: dict[int, int | None] = {}
        if rate_calls:
            for i, r in zip(wanted, await reader.read(rate_calls, at), strict=True):
                rates[i] = _decoded(morpho.decode_rate, r, "borrowRateView")
        width = len(self.aave) + len(self.morpho)
        out = []
        for k in range(len(self.accounts)):
            own = results[n_shared + k * width : n_shared + (k + 1) * width]
            row = [_aave_read(p, own[j]) for j, p in enumerate(self.aave)]
            for i, (p, m) in enumerate(self.morpho):
                res = own[len(self.aave) + i]
                row.append(_morpho_read(p, m, res, markets[i], i in wanted, rates.get(i)))
            out.append(row)
        return out

    @staticmethod
    def _market(pair: Sequence[CallResult]) -> tuple[MorphoMarket, int] | None:
        state = _decoded(morpho.decode_market, pair[0], "market")
        price = _decoded(morpho.decode_price, pair[1], "oracle price")
        return None if state is None or price is None else (state, price)


def _decoded(decode: Callable[[CallResult], T], result: CallResult, what: str) -> T | None:
    try:
        return decode(result)
    except DecodeError as exc:
        log.info("%s unreadable: %s", what, exc)
        return None


def _unreadable(p: ProtocolConfig, what: str, market: str | None = None) -> ProtocolRead:
    return ProtocolRead(
        p.kind,
        p.address,
        None,
        f"{Code.PROTOCOL_UNREADABLE}: {what} unreadable",
        p.name,
        market,
    )


def _aave_read(p: ProtocolConfig, result: CallResult) -> ProtocolRead:
    """Decode one getUserAccountData; a revert or malformed answer is this market's
    error (the account's debt there cannot be checked), not the chain's."""
    data = _decoded(aave.decode_user_account_data, result, f"{p.kind} {p.address}")
    if data is None:
        return _unreadable(p, "account data")
    return ProtocolRead(p.kind, p.address, data, None, p.name)


def _morpho_read(
    p: ProtocolConfig,
    m: MorphoMarketConfig,
    result: CallResult,
    market: tuple[MorphoMarket, int] | None,
    needs_rate: bool,
    rate: int | None,
) -> ProtocolRead:
    pos = _decoded(morpho.decode_position, result, f"morpho position {m.name}")
    if pos is None or market is None or (needs_rate and rate is None):
        return _unreadable(p, f"market {m.name}", m.name)
    read = MorphoRead(pos, market[0], rate if needs_rate else None, market[1])
    return ProtocolRead(p.kind, p.address, None, None, p.name, m.name, read)
