"""The §12 reads of one chain: each account's own figures in every configured protocol
market, planned beside the balances and read at the same pin.

Aave v3: getUserAccountData and getUserConfiguration per account and pool, and each
configured aToken's UNDERLYING_ASSET_ADDRESS, in the balances' multicall; then, at the
same pin, the pool's getReserveData(underlying) for each aToken's reserve id (which of
the configuration's bits say "used as collateral"). Morpho
Blue: per market `market(id)` and its oracle's `price()` (shared by the batch), per
account `position(id, user)`, in that multicall too; then, at the same pin, one more
round for the IRM's `borrowRateView` of each market whose totals need accruing to the
block's timestamp (it takes the market's totals as an argument). What is read is
recorded raw (snapshots replay it); the math is in pipeline/protocols.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from adapters.calls import Call, CallResult, address_word, make_calls
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
    (None when no accrual is needed) and the market oracle's price (1e36 scale). An
    empty position is recorded alone (market and price None): it has no figures."""

    position: MorphoPosition
    market: MorphoMarket | None
    borrow_rate: int | None
    price: int | None

    @property
    def empty(self) -> bool:
        return self.position.collateral == 0 and self.position.borrow_shares == 0


@dataclass(frozen=True, slots=True)
class AaveReserveRef:
    """A configured aToken and its reserve's id in the pool at the pin (None: it could
    not be read, so whether the account uses it as collateral is unknown)."""

    token: str
    reserve_id: int | None


@dataclass(frozen=True, slots=True)
class ProtocolRead:
    """One account's own figures in one protocol market at the pinned block (§12):
    Aave v3 `getUserAccountData`, a Morpho Blue market's reads, or why they could not be
    read (`error`, public form). `name` is the [[protocols]] entry's, `market` the
    Morpho market's. Aave: `user_configuration` is getUserConfiguration's bitmap and
    `reserves` the configured aTokens' reserve ids (which bits are theirs)."""

    kind: str
    pool: str
    account_data: AaveAccountData | None = None
    error: str | None = None
    name: str | None = None
    market: str | None = None
    morpho: MorphoRead | None = None
    user_configuration: int | None = None
    reserves: tuple[AaveReserveRef, ...] = ()


def market_params(m: MorphoMarketConfig) -> MarketParams:
    return MarketParams(*m.params)


class ProtocolPlan:
    """The protocol calls of one chain for a batch of accounts, and their decoding."""

    def __init__(self, config: Config, chain: ChainConfig, accounts: Sequence[str]) -> None:
        here = [p for p in config.protocols if p.chain == chain.name]
        self.accounts = list(accounts)
        self.aave = [p for p in here if p.kind == "aave_v3"]
        self.morpho = [(p, m) for p in here if p.kind == "morpho_blue" for m in p.markets]
        self.a_tokens = [  # per pool: its configured aTokens
            [
                r.address
                for r in config.representations
                if r.kind == "collateral" and config.protocol_of(r) == p
            ]
            for p in self.aave
        ]
        shared: list[Call] = []
        for p, m in self.morpho:
            shared += [morpho.market(p.address, m.market_id), morpho.oracle_price(m.oracle)]
        shared += [aave.underlying_asset(t) for tokens in self.a_tokens for t in tokens]
        self.n_shared = len(shared)
        # per account, in this order: each pool's two reads, then each market's position;
        # the same target and selector (and market id) for every account, then its word
        targets: list[str] = []
        prefixes: list[bytes] = []
        for p in self.aave:
            targets += [p.address, p.address]
            prefixes += [aave.SEL_USER_ACCOUNT_DATA, aave.SEL_USER_CONFIGURATION]
        for p, m in self.morpho:
            targets.append(p.address)
            prefixes.append(morpho.SEL_POSITION + m.market_id)
        words = [address_word(a) for a in self.accounts] if prefixes else []
        own = make_calls(targets * len(words), [x + w for w in words for x in prefixes])
        self.calls = shared + own

    async def finish(
        self, reader: ChainReader, results: Sequence[CallResult], at: BlockPin
    ) -> list[list[ProtocolRead]]:
        """Each account's reads, in plan order (Aave pools, then Morpho markets). The
        second round is one more multicall at `at`, made only when some account of the
        batch needs it: a Morpho market's rate where an account borrows there (accrual
        moves nothing else it reports), an Aave pool's reserve ids where an account
        uses some reserve as collateral (else none of its supplies is collateral). A
        chain error there fails the chain (the caller's), a bad answer only its market
        or token."""
        markets = [self._market(results[2 * i : 2 * i + 2]) for i in range(len(self.morpho))]
        width = 2 * len(self.aave) + len(self.morpho)
        owns = [
            results[self.n_shared + k * width : self.n_shared + (k + 1) * width]
            for k in range(len(self.accounts))
        ]
        second: list[Call] = []
        wanted: list[int] = []
        for i, ((_, m), got) in enumerate(zip(self.morpho, markets, strict=True)):
            if got is None or not morpho.needs_rate(got[0], market_params(m), at.timestamp):
                continue
            if any(map(_borrows, {own[2 * len(self.aave) + i] for own in owns})):
                second.append(morpho.borrow_rate_view(market_params(m), got[0]))
                wanted.append(i)
        n_rates = len(second)
        under = iter(results[2 * len(self.morpho) : self.n_shared])
        underlying: list[list[str | None]] = []
        for j, (p, tokens) in enumerate(zip(self.aave, self.a_tokens, strict=True)):
            found = [_decoded(aave.decode_underlying_asset, next(under), t) for t in tokens]
            if not any(map(_uses_collateral, {own[2 * j + 1] for own in owns})):
                found = [None] * len(tokens)  # no account here uses any as collateral
            second += [aave.reserve_data(p.address, u) for u in found if u is not None]
            underlying.append(found)
        answers = await reader.read(second, at) if second else []
        rates = {
            i: _decoded(morpho.decode_rate, r, "borrowRateView")
            for i, r in zip(wanted, answers[:n_rates], strict=True)
        }
        refs = self._reserve_refs(underlying, iter(answers[n_rates:]))
        # Accounts with the same answers get the same (immutable) read: most hold
        # nothing in a market, and decoding that once per batch is enough.
        aave_reads: list[dict[tuple[CallResult, CallResult], ProtocolRead]] = [
            {} for _ in self.aave
        ]
        morpho_reads: list[dict[CallResult, ProtocolRead]] = [{} for _ in self.morpho]
        n_aave = 2 * len(self.aave)
        rows: dict[tuple[CallResult, ...], list[ProtocolRead]] = {}  # by the whole answer
        out = []
        for own in owns:
            answer = tuple(own)
            seen = rows.get(answer)
            if seen is not None:  # an account answered alike (nothing held, typically)
                out.append(seen.copy())
                continue
            row = rows[answer] = []
            for j, p in enumerate(self.aave):
                key = (own[2 * j], own[2 * j + 1])
                read = aave_reads[j].get(key)
                if read is None:  # reserve ids only where the account uses collateral
                    reserves = refs[j] * _uses_collateral(key[1])
                    read = aave_reads[j][key] = _aave_read(p, *key, reserves)
                row.append(read)
            for i, (p, m) in enumerate(self.morpho):
                res = own[n_aave + i]
                read = morpho_reads[i].get(res)
                if read is None:
                    read = morpho_reads[i][res] = _morpho_read(
                        p, m, res, markets[i], i in wanted, rates.get(i)
                    )
                row.append(read)
            out.append(row.copy())
        return out

    def _reserve_refs(
        self, underlying: list[list[str | None]], answers: Iterator[CallResult]
    ) -> list[tuple[AaveReserveRef, ...]]:
        """Per pool, each configured aToken's reserve id (None where unreadable, or
        where the pool's reserve for that underlying has another aToken)."""
        out = []
        for tokens, found in zip(self.a_tokens, underlying, strict=True):
            refs = []
            for token, u in zip(tokens, found, strict=True):
                data = None
                if u is not None:
                    data = _decoded(aave.decode_reserve_data, next(answers), "getReserveData")
                ok = data is not None and data.a_token.lower() == token.lower()
                refs.append(AaveReserveRef(token, data.id if ok and data else None))
            out.append(tuple(refs))
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


EMPTY: tuple[None, None, None] = (None, None, None)


def _borrows(result: CallResult) -> bool:
    pos = _decoded(morpho.decode_position, result, "morpho position")
    return pos is not None and pos.borrow_shares > 0


def _uses_collateral(result: CallResult) -> bool:
    bitmap = _decoded(aave.decode_user_configuration, result, "getUserConfiguration")
    return bitmap is not None and bitmap & aave.COLLATERAL_BITS != 0


def _unreadable(p: ProtocolConfig, what: str, market: str | None = None) -> ProtocolRead:
    return ProtocolRead(
        p.kind,
        p.address,
        None,
        f"{Code.PROTOCOL_UNREADABLE}: {what} unreadable",
        p.name,
        market,
    )


def _aave_read(
    p: ProtocolConfig,
    result: CallResult,
    configuration: CallResult,
    reserves: tuple[AaveReserveRef, ...],
) -> ProtocolRead:
    """Decode one getUserAccountData and getUserConfiguration; a revert or malformed
    answer is this market's error (the account's debt there cannot be checked), not
    the chain's."""
    data = _decoded(aave.decode_user_account_data, result, f"{p.kind} {p.address}")
    bitmap = _decoded(aave.decode_user_configuration, configuration, f"{p.kind} {p.address}")
    if data is None or bitmap is None:
        return _unreadable(p, "account data")
    return ProtocolRead(
        p.kind, p.address, data, None, p.name, user_configuration=bitmap, reserves=reserves
    )


def _morpho_read(
    p: ProtocolConfig,
    m: MorphoMarketConfig,
    result: CallResult,
    market: tuple[MorphoMarket, int] | None,
    needs_rate: bool,
    rate: int | None,
) -> ProtocolRead:
    pos = _decoded(morpho.decode_position, result, f"morpho position {m.name}")
    if pos is not None and pos.collateral == 0 and pos.borrow_shares == 0:
        return ProtocolRead(p.kind, p.address, None, None, p.name, m.name, MorphoRead(pos, *EMPTY))
    if pos is None or market is None or (needs_rate and rate is None):  # needs: was read
        return _unreadable(p, f"market {m.name}", m.name)
    read = MorphoRead(pos, market[0], rate if needs_rate else None, market[1])
    return ProtocolRead(p.kind, p.address, None, None, p.name, m.name, read)
