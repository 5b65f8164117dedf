"""From what was read to exact exposures: prices (§3), positions valued (§4), what
could not be read or valued, for many accounts at once (`assess_many`; one account is a
batch of one).

No I/O: the same chain states always give the same assessment, which is what lets an
auditor replay a figure. Money stays exact (`Fraction` of integers) up to the single
place where exposures become float64 for the risk math
(`crossmargin.pipeline.risk.batch_positions_of`). The margin report is margin.py's.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, NamedTuple

from adapters.balances import BalanceRead
from adapters.evm import BlockPin
from adapters.proof import Verdict
from crossmargin.core.codes import Code
from crossmargin.core.config import Config, RepresentationConfig, morpho_market_key
from crossmargin.core.errors import DecodeError
from crossmargin.core.memo import IdentityMemo
from crossmargin.pipeline.protocol_read import ProtocolRead
from crossmargin.pipeline.protocols import (
    AAVE_BASE,
    active,
    collateral_off,
    error_account,
    morpho_account,
    morpho_figures,
    protocol_account,
)
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.report import (
    BlockRef,
    ChainSummary,
    Position,
    ProtocolAccount,
    Warning_,
    fixed6,
)
from oracle.estimation import RiskEstimates, config_estimates
from oracle.validity import CHAIN_UNAVAILABLE, AssetPrice, FeedReading, aggregate_price


class Valued(NamedTuple):
    """A readable, non-zero position with its exact USD value (signed: debt < 0).
    `flag`: why the figure is implausible (§4: debt still counts in full). An immutable
    NamedTuple: a batch builds one per position, ~4x faster than a frozen dataclass."""

    chain_id: int
    rep: RepresentationConfig
    raw_amount: int
    price: Fraction
    value: Fraction
    flag: str | None = None


def exact_sum(values: Iterable[Fraction]) -> Fraction:
    """The exact sum of USD values over their least common denominator: integer
    arithmetic and one normalisation, instead of one Fraction per addition (this runs for
    every chain and total of every report)."""
    parts = [(v.numerator, v.denominator) for v in values]
    if not parts:
        return Fraction(0)
    common = math.lcm(*(d for _, d in parts))
    return Fraction(sum(n * (common // d) for n, d in parts), common)


def implausible_balance(b: BalanceRead) -> str | None:
    """§4 plausibility of a token balance read at the pinned block: why it cannot be
    believed, or None. The balance (an ERC-4626 vault's: the shares) may not exceed the
    token's totalSupply() read in the same multicall. A totalSupply() that cannot be read
    (EIP-20 requires it) leaves the balance unchecked, so it is implausible too. Native
    coins have no totalSupply: nothing to check (nor in snapshots taken before it was read).
    """
    if b.supply_error is not None:
        return f"totalSupply() unreadable ({b.supply_error})"
    if b.total_supply is None:
        return None
    held = b.shares if b.rep.standard == "erc4626" else b.raw_amount
    if held is not None and held > b.total_supply:
        what = "shares" if b.rep.standard == "erc4626" else "balance"
        return f"{what} {held} above totalSupply() {b.total_supply}"
    return None


def _implausible(config: Config, b: BalanceRead, price: Fraction | None) -> str | None:
    """§4 for a read, non-zero position: its balance, then (priced collateral only) its
    value against the asset's `max_position_usd`."""
    flag = implausible_balance(b)
    rep = b.rep
    if flag is None and price is not None and b.raw_amount and rep.kind == "collateral":
        limit = config.asset(rep.asset).max_position_usd
        if limit is None:
            return None
        worth = Fraction(b.raw_amount, 10**rep.decimals) * price
        if worth > Fraction(limit):
            return f"worth {fixed6(worth)} USD, above max_position_usd {limit}"
    return flag


def _prices(config: Config, states: list[ChainState]) -> dict[str, AssetPrice]:
    readings: dict[str, list[FeedReading]] = {a.symbol: [] for a in config.assets}
    for state in states:
        if state.available:
            for r in state.feeds:
                readings[r.asset].append(r)
            continue
        for asset in config.assets:  # list the sources we could not read, with why
            for feed in asset.feeds:
                if feed.chain == state.chain.name:
                    readings[asset.symbol].append(
                        FeedReading(
                            asset.symbol,
                            state.chain.chain_id,
                            feed.address,
                            feed.decimals,
                            0,
                            None,
                            CHAIN_UNAVAILABLE,
                            kind=feed.kind,
                            price_id=getattr(feed, "price_id", None),
                        )
                    )
    return {
        sym: aggregate_price(sym, rs, config.risk.max_deviation) for sym, rs in readings.items()
    }


@dataclass
class Assessment:
    """What one account holds at the pinned blocks, valued exactly (§2-§4); target-free,
    so margin, capacity and stress for any target chain share one read."""

    config: Config
    account: str
    prices: dict[str, AssetPrice]
    valued: list[Valued]
    unvalued: list[Position]
    as_of: list[BlockRef]
    chain_rows: list[ChainSummary]
    warnings: list[Warning_]
    debt_gaps: list[str]  # §4: why debt may be hidden or unpriced (see `debt_gaps`)
    partial: bool
    estimates: RiskEstimates | None = None  # §6 sigma/rho (None: from config alone)
    protocols: list[ProtocolAccount] = field(default_factory=list)  # §12, per market
    borrow_caps: list[BorrowCap] = field(default_factory=list)  # §12, per active market

    @property
    def locally_liquidatable(self) -> bool:
        """§12: some protocol market would liquidate the account by its own rules."""
        return any(p.liquidatable for p in self.protocols)

    def available_borrows(self, chain_id: int, asset: str | None = None) -> Fraction | None:
        """§12: the most the account's protocol markets on `chain_id` would lend it (USD)
        in `asset`, over the markets where it has a position (an Aave pool lends any of
        its reserves, a Morpho market only its loan token); None: no such market."""
        caps = [
            c.usd
            for c in self.borrow_caps
            if c.chain_id == chain_id and (c.asset is None or asset is None or c.asset == asset)
        ]
        return max(caps) if caps else None

    @property
    def debt_unknown(self) -> bool:
        """METHOD.md §4 "debt that cannot be valued": debt, equity, free margin and health
        are null, capacity is 0 and every stress scenario's solvency is null."""
        return bool(self.debt_gaps)

    @property
    def collateral(self) -> Fraction:
        return exact_sum(v.value for v in self.valued if v.value.numerator > 0)

    @property
    def debt(self) -> Fraction:
        return -exact_sum(v.value for v in self.valued if v.value.numerator < 0)

    @property
    def max_time_skew_s(self) -> int | None:
        return _skew(self.as_of)


@dataclass(frozen=True, slots=True)
class BorrowCap:
    """What one protocol market would still lend the account (USD at §3 prices), in
    `asset` only (a Morpho market's loan asset) or in any of its reserves (None)."""

    chain_id: int
    asset: str | None
    usd: Fraction


def _where(read: ProtocolRead, chain: str, chain_id: int) -> str:
    """How warnings name a protocol market: kind, entry name, Morpho market, chain."""
    names = " ".join(n for n in (read.name, read.market) if n)
    return f"{read.kind}{' ' + names if names else ''} on {chain} ({chain_id})"


def _skew(as_of: list[BlockRef]) -> int | None:
    """§2: the largest gap between the pinned blocks' timestamps (None: nothing pinned)."""
    ts = [b.timestamp for b in as_of]
    return max(ts) - min(ts) if ts else None


def debt_gaps(config: Config, unvalued: Sequence[Position]) -> list[str]:
    """Why the account's debt may be hidden or unpriced (METHOD.md §4), one reason per
    unavailable chain with debt representations and per debt position that could not be
    read or priced; empty when every debt is valued. This is the one predicate behind
    `Assessment.debt_unknown`: a later reason (§12 `unlisted_debt`) joins as one more
    entry of `Assessment.debt_gaps`."""
    debts = [p for p in unvalued if p.kind == "debt"]
    if not debts:
        return []
    names = {c.chain_id: f"{c.name} ({c.chain_id})" for c in config.chains}
    reasons: list[str] = []
    for p in debts:
        chain = names.get(p.chain_id, str(p.chain_id))
        if p.status == "unavailable":
            why = f"{chain} is unavailable and has debt representations"
        elif p.status == "unpriced":
            why = f"{p.symbol} debt on {chain} is unpriced ({p.asset} has no valid price)"
        elif p.status == "error":
            why = f"{p.symbol} debt on {chain} could not be read"
        else:
            why = f"{p.symbol} debt on {chain} is {p.status}"
        if why not in reasons:
            reasons.append(why)
    return reasons


_PriceKey = tuple[tuple[str, bool, tuple[FeedReading, ...]], ...]
_IdKey = tuple[tuple[str, bool, int], ...]


@dataclass
class _BatchContext:
    """What every account of one batch shares: config, §6 estimates, the warnings they
    raise, and prices with their warnings per distinct set of feed readings (one set when
    the reader shared its pins and feeds across the batch, as it does)."""

    config: Config
    estimates: RiskEstimates
    warnings: list[Warning_]
    prices: dict[_PriceKey, tuple[dict[str, AssetPrice], list[Warning_]]] = field(
        default_factory=dict
    )
    by_id: dict[_IdKey, tuple[dict[str, AssetPrice], list[Warning_], list[Any]]] = field(
        default_factory=dict
    )
    # the batch's pinned blocks as reported, by the pin's identity (the pin is kept)
    block_refs: dict[tuple[int, str], tuple[BlockPin, BlockRef]] = field(default_factory=dict)

    def prices_of(self, states: list[ChainState]) -> tuple[dict[str, AssetPrice], list[Warning_]]:
        """§3 prices for these states, computed once per distinct feed readings: keyed by
        the readings themselves (frozen values), so accounts read apart (API requests
        joined into one pass) share them too. A feed list seen before (one read shares
        it across its accounts) is found by identity first, without hashing it."""
        ids = tuple((s.chain.name, s.available, id(s.feeds)) for s in states)
        seen = self.by_id.get(ids)
        if seen is not None:
            return seen[0], seen[1]
        key = tuple((s.chain.name, s.available, tuple(s.feeds)) for s in states)
        hit = self.prices.get(key)
        if hit is None:  # and batches at one block (API requests, each a batch) share them
            hit = self.prices[key] = _PRICES.get(
                (self.config,), (key,), functools.partial(_priced, self.config, states)
            )
        # the feed lists are kept alive with the entry: their ids stay theirs
        self.by_id[ids] = (hit[0], hit[1], [s.feeds for s in states])
        return hit


_PRICES: IdentityMemo[tuple[dict[str, AssetPrice], list[Warning_]]] = IdentityMemo()


def _priced(
    config: Config, states: list[ChainState]
) -> tuple[dict[str, AssetPrice], list[Warning_]]:
    prices = _prices(config, states)
    return prices, _price_warnings(prices)


def _estimate_warnings(estimates: RiskEstimates) -> list[Warning_]:
    if not estimates.repaired:
        return []
    return [
        Warning_(
            code=Code.CORRELATION_REPAIRED,
            detail="estimated and configured correlations were not PSD; "
            "negative eigenvalues clipped to 0",
        )
    ]


def _price_warnings(prices: dict[str, AssetPrice]) -> list[Warning_]:
    """§3: an unpriced asset, deviating sources, and every invalid reading with why."""
    out: list[Warning_] = []
    for p in prices.values():
        if not p.priced:
            why = ", ".join(sorted({r.reason or "" for r in p.sources}))
            detail = f"{p.asset}: no valid price reading ({why})"
            out.append(Warning_(code=Code.UNPRICED, detail=detail))
        if p.deviation_flag:
            detail = f"{p.asset}: sources deviate by {fixed6(p.deviation)}"
            out.append(Warning_(code=Code.PRICE_DEVIATION, detail=detail))
        for r in p.sources:
            if r.reason and r.reason != CHAIN_UNAVAILABLE:
                detail = f"{p.asset} feed {r.address} on chain {r.chain_id}"
                out.append(Warning_(code=Code(r.reason), detail=detail))
    return out


@functools.lru_cache(maxsize=1024)
def _block_ref(pin: BlockPin, name: str) -> BlockRef:
    """A pinned block as reported: one frozen model per pin, shared by every account
    read at it (a batch's reports hold the same object)."""
    return BlockRef(
        chain_id=pin.chain_id,
        name=name,
        block_number=pin.number,
        block_hash=pin.hash,
        timestamp=pin.timestamp,
    )


@functools.lru_cache(maxsize=256)
def _readable_row(chain_id: int, name: str) -> ChainSummary:
    """A readable chain's row before its figures (margin.py fills them in a copy)."""
    return ChainSummary(
        chain_id=chain_id, name=name, status=Code.OK, collateral_usd=None, debt_usd=None
    )


class _ConfigIndex:
    """Which [[protocols]] entry each representation belongs to, looked up once per
    config: every readable chain of every account asks (`_Account.chain`)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._entry: dict[int, tuple[str, str | None] | None] = {}
        self._keep: list[RepresentationConfig] = []  # ids in `_entry` stay theirs
        self._collateral: dict[tuple[str, str | None], list[str]] = {}
        for rep in config.representations:
            entry = self.entry_of(rep)
            if rep.kind == "collateral" and entry is not None:
                self._collateral.setdefault(entry, []).append(rep.address)

    def entry_of(self, rep: RepresentationConfig) -> tuple[str, str | None] | None:
        """(kind, name) of the entry `rep` belongs to (config.protocol_of), or None."""
        key = id(rep)
        try:
            return self._entry[key]
        except KeyError:  # (one read: another thread may clear the table meanwhile)
            pass
        if len(self._keep) >= 4096:  # representations made outside the config
            self._entry.clear()
            self._keep.clear()
        entry = self.config.protocol_of(rep)
        found = None if entry is None else (entry.kind, entry.name)
        self._keep.append(rep)
        self._entry[key] = found
        return found

    def collateral_in(self, kind: str, name: str | None) -> list[str]:
        """The addresses of the collateral representations in entry (kind, name)."""
        return self._collateral.get((kind, name), [])


_INDEX: IdentityMemo[_ConfigIndex] = IdentityMemo(16)


def _index(config: Config) -> _ConfigIndex:
    """The config's `_ConfigIndex`, kept by identity (the entry keeps the config alive)."""
    return _INDEX.get((config,), (), lambda: _ConfigIndex(config))


_HELD = operator.attrgetter("raw_amount", "warning")
_NOTHING = (0, None)  # a balance read as 0, without a warning


def _to_judge(state: ChainState) -> tuple[list[BalanceRead], Sequence[Verdict | None]]:
    """A readable chain's balances `_Account.balance` has something to say about, each
    with its §13 verdict: without proofs, those that hold something or carry a warning
    (most balances of most accounts hold nothing: one C-level count finds a chain so)."""
    balances = state.balances
    proof = state.holder_proof
    if proof is None:
        if list(map(_HELD, balances)).count(_NOTHING) == len(balances):
            return [], ()
        held = [b for b in balances if b.raw_amount != 0 or b.warning]
        return held, (None,) * len(held)
    if len(proof.verdicts) != len(balances):  # a damaged record proves nothing
        return balances, (Verdict(None, False, "no verdict for this balance"),) * len(balances)
    return balances, proof.verdicts


@dataclass
class _Account:
    """One account's assessment as it is built, chain by chain."""

    config: Config
    prices: dict[str, AssetPrice]
    warnings: list[Warning_]
    positions: list[Position] = field(default_factory=list)
    valued: list[Valued] = field(default_factory=list)
    as_of: list[BlockRef] = field(default_factory=list)
    chain_rows: list[ChainSummary] = field(default_factory=list)
    protocols: list[ProtocolAccount] = field(default_factory=list)
    protocol_gaps: list[str] = field(default_factory=list)  # §12 reasons for §4
    borrow_caps: list[BorrowCap] = field(default_factory=list)  # §12 capacity caps
    not_collateral: dict[tuple[int, str], str] = field(default_factory=dict)  # §12 flags
    block_refs: dict[tuple[int, str], tuple[BlockPin, BlockRef]] = field(default_factory=dict)

    def warn(self, code: Code, detail: str) -> None:
        self.warnings.append(Warning_(code=code, detail=detail))

    def unavailable(self, state: ChainState) -> None:
        """§2: an unreadable chain lists its positions as unavailable, valued 0."""
        chain = state.chain
        self.warn(Code.CHAIN_UNAVAILABLE, f"{chain.name} ({chain.chain_id}): {state.error}")
        reps = [r for r in self.config.representations if r.chain == chain.name]
        reps += self.config.morpho_representations(chain.name)  # §12: Morpho positions too
        self.positions += [
            _position(chain.chain_id, r, Code.UNAVAILABLE, state.error) for r in reps
        ]
        self.chain_rows.append(
            ChainSummary(
                chain_id=chain.chain_id,
                name=chain.name,
                status=Code.UNAVAILABLE,
                reason=state.error,
                collateral_usd=None,
                debt_usd=None,
                address=state.address,
            )
        )

    def chain(self, state: ChainState, pin: BlockPin) -> None:
        """§2-§4 for one readable chain: its pin, and every balance read at it."""
        chain = state.chain
        ref = self.block_refs.get((id(pin), chain.name))
        if ref is None or ref[0] is not pin:
            ref = self.block_refs[id(pin), chain.name] = (pin, _block_ref(pin, chain.name))
        self.as_of.append(ref[1])
        proof = state.holder_proof
        balances, verdicts = _to_judge(state)
        if balances:  # only a balance of this chain asks (`balance`)
            for read in state.protocols:
                if read.kind != "aave_v3":
                    continue
                mine = _index(self.config).collateral_in(read.kind, read.name)
                for token, why in collateral_off(read, mine).items():
                    self.not_collateral[(chain.chain_id, token)] = why
        for b, verdict in zip(balances, verdicts, strict=True):
            self.balance(chain.chain_id, chain.name, b, verdict)
        for read in state.protocols:
            if read.kind == "morpho_blue":
                self.morpho(chain.chain_id, chain.name, read, pin.timestamp)
            else:
                self.protocol(chain.chain_id, chain.name, read)
        counts = {}
        if proof is not None:  # §13: how many of the chain's positions were proven
            counts = {"proven": sum(v is not None and v.ok for v in verdicts)}
            counts["positions"] = len(verdicts)
        self.chain_rows.append(
            _readable_row(chain.chain_id, chain.name)
            if state.address is None and state.has_code is None and not counts
            else ChainSummary(
                chain_id=chain.chain_id,
                name=chain.name,
                status=Code.OK,
                collateral_usd=None,
                debt_usd=None,
                address=state.address,
                contract=state.has_code,
                **counts,
            )
        )

    def protocol(self, chain_id: int, chain_name: str, read: ProtocolRead) -> None:
        """§12 for one Aave market: debt completeness (joins §4) and the local floor."""
        d = read.account_data
        if d is not None and d.total_collateral_base == 0 and d.total_debt_base == 0:
            return  # no account in this market (`active` of its row would say so)
        listed = -exact_sum(
            v.value
            for v in self.valued
            if v.chain_id == chain_id and self._in_entry(v.rep, read) and v.value.numerator < 0
        )
        p = protocol_account(chain_id, chain_name, read, listed)
        if p.status == "ok" and not active(p):
            return  # no account in this market: nothing to list or check
        off = [
            q.symbol
            for q in self.positions
            if q.status == "not_collateral"
            and q.chain_id == chain_id
            and any(self._in_entry(r, read) for r in self._reps(chain_name, q.token))
        ]
        p = p.model_copy(update={"collateral_off": off}) if off else p
        self.protocols.append(p)
        where = _where(read, chain_name, chain_id)
        if p.status != "ok":
            self.unreadable(where, read.error)
            return
        if p.unlisted_debt:
            detail = (
                f"{where} reports {p.total_debt_usd} USD of debt, {p.listed_debt_usd} USD "
                "is in configured representations"
            )
            self.warn(Code.UNLISTED_DEBT, detail)
            self.protocol_gaps.append(f"{where}: unlisted debt")
        usd = Fraction(int(p.available_borrows_base or 0), AAVE_BASE)
        self.borrow_caps.append(BorrowCap(chain_id, None, usd))
        self.local_floor(where, p, read.account_data.health if read.account_data else None)

    def _reps(self, chain: str, token: str) -> list[RepresentationConfig]:
        return [r for r in self.config.representations if (r.chain, r.address) == (chain, token)]

    def _in_entry(self, rep: RepresentationConfig, read: ProtocolRead) -> bool:
        return _index(self.config).entry_of(rep) == (read.kind, read.name)

    def unreadable(self, where: str, error: str | None) -> None:
        self.warn(Code.PROTOCOL_UNREADABLE, f"{where}: {error}")
        self.protocol_gaps.append(f"{where}: the protocol's own debt could not be read")

    def local_floor(self, where: str, p: ProtocolAccount, health: Fraction | None) -> None:
        """§12: warn below local_health_warn (liquidatable there below 1)."""
        warn_below = Fraction(self.config.risk.local_health_warn)
        if health is not None and health < warn_below:
            self.warn(
                Code.LOCAL_LIQUIDATION_RISK,
                f"{where}: health factor {p.health_factor} below {fixed6(warn_below)}"
                + ("; liquidatable there" if p.liquidatable else ""),
            )

    def morpho(self, chain_id: int, chain_name: str, read: ProtocolRead, timestamp: int) -> None:
        """§12 for one Morpho Blue market: the account's collateral and debt there become
        positions of the market's tokens' assets (valued by §3 like any balance), beside
        Morpho's own health factor and available borrows."""
        if read.morpho is not None and read.morpho.empty:
            return  # no account in this market (a lender only: see docs/methodology.md)
        entry = self.config.protocol("morpho_blue", chain_name, read.name)
        assert entry is not None  # read from this config
        assert read.market is not None
        m = entry.market(read.market)
        key = morpho_market_key(entry, m)
        reps = {
            r.kind: r for r in self.config.morpho_representations(chain_name) if r.market == key
        }
        where = _where(read, chain_name, chain_id)
        try:
            f = None if read.morpho is None else morpho_figures(read.morpho, m, timestamp)
        except (DecodeError, ValueError) as exc:  # a state Morpho would revert on
            f, read = None, replace(read, error=f"{Code.PROTOCOL_UNREADABLE}: {exc}")
        if f is None:
            self.protocols.append(error_account(chain_id, chain_name, read, None, read.error))
            self.positions.append(_position(chain_id, reps["debt"], Code.ERROR, read.error))
            self.unreadable(where, read.error)
            return
        if f.collateral == 0 and f.debt == 0:
            return  # no account in this market (a lender only: see docs/methodology.md)
        coll, debt = reps["collateral"], reps["debt"]
        # §13: a Morpho position is computed from the market's state, not a stored
        # balance: in verified mode no proof covers it (collateral 0, debt as read)
        verdict = None
        if self.config.chain(chain_name).verification == "proof":
            verdict = Verdict(None, False, "a Morpho position has no balance slot to prove")
        self.balance(chain_id, chain_name, BalanceRead(coll, f.collateral), verdict)
        self.balance(chain_id, chain_name, BalanceRead(debt, f.debt), verdict)
        cp, dp = self.prices[coll.asset].collateral, self.prices[debt.asset].debt
        unit = None if dp is None else dp / 10**debt.decimals
        p = morpho_account(
            chain_id,
            chain_name,
            read,
            f,
            None if cp is None else f.collateral * cp / 10**coll.decimals,
            None if unit is None else f.debt * unit,
            unit,
        )
        self.protocols.append(p)
        if unit is not None:
            usd = f.health.available_borrow * unit
            self.borrow_caps.append(BorrowCap(chain_id, debt.asset, usd))
        self.local_floor(where, p, f.health.health)

    def balance(
        self, chain_id: int, chain_name: str, b: BalanceRead, verdict: Verdict | None = None
    ) -> None:
        """§4 for one read: unreadable, zero, implausible, unpriced or valued exactly;
        in verified mode (§13, `verdict`) an unproven balance first goes to `unverified`."""
        if b.raw_amount == 0 and verdict is None and not b.warning:
            return  # nothing held, nothing to say: most balances of most accounts
        rep = b.rep
        where = f"{rep.symbol} on {chain_name}"
        if b.raw_amount is None:
            self.warn(Code.READ_ERROR, f"{where}: {b.error}")
            self.positions.append(_position(chain_id, rep, Code.ERROR, b.error))
            return
        raw = b.raw_amount
        if verdict is not None and not verdict.ok:
            raw = self.unverified(chain_id, where, b, verdict)
            if rep.kind == "collateral":
                return
            b = b._replace(raw_amount=raw)
        if b.warning:
            self.warn(Code.DECIMALS_UNVERIFIED, f"{where}: {b.warning}")
        if raw == 0:
            return
        ap = self.prices[rep.asset]
        price = ap.collateral if rep.kind == "collateral" else ap.debt
        off = self.not_collateral.get((chain_id, rep.address.lower()))
        if off is not None and rep.kind == "collateral" and rep.protocol == "aave_v3":
            self.warn(Code.NOT_COLLATERAL, f"{where}: {off}; counted 0")
            self.positions.append(
                _position(chain_id, rep, Code.NOT_COLLATERAL, off, b.raw_amount, price)
            )
            return
        flag = _implausible(self.config, b, price)
        if flag is not None:
            counted = "counted 0" if rep.kind == "collateral" else "debt counted in full"
            self.warn(Code.IMPLAUSIBLE, f"{where}: {flag}; {counted}")
            if rep.kind == "collateral":  # §4: implausible collateral counts 0
                self.positions.append(_position(chain_id, rep, Code.IMPLAUSIBLE, flag, raw, price))
                return
        if price is None:
            self.positions.append(_position(chain_id, rep, Code.UNPRICED, "no valid price", raw))
            return
        value = Fraction(raw * price.numerator, 10**rep.decimals * price.denominator)
        signed = value if rep.kind == "collateral" else -value
        self.valued.append(Valued(chain_id, rep, raw, price, signed, flag))

    def unverified(self, chain_id: int, where: str, b: BalanceRead, v: Verdict) -> int:
        """§13: an unproven collateral balance is listed and counts 0; an unproven debt
        counts at the larger of the value read and the value proven (returned, to be
        valued as any debt)."""
        rep = b.rep
        raw = b.raw_amount or 0
        counted = max(raw, v.proven or 0)
        how = "counted 0" if rep.kind == "collateral" else f"debt counted at {counted}"
        self.warn(Code.UNVERIFIED, f"{where}: {v.reason}; {how}")
        if rep.kind == "collateral":
            ap = self.prices[rep.asset]
            self.positions.append(
                _position(chain_id, rep, Code.UNVERIFIED, v.reason, raw, ap.collateral)
            )
        return counted


def assess_many(
    config: Config,
    states_by_account: Mapping[str, list[ChainState]],
    estimates: RiskEstimates | None = None,
) -> list[Assessment]:
    """METHOD.md §2-§4 for every account of a batch, in the mapping's order: prices from
    valid readings (once per distinct set of readings), exact exposures, what could not
    be read. `estimates`: §6 sigma/rho from the price history (None: from config alone)."""
    est = estimates if estimates is not None else config_estimates(config)
    ctx = _BatchContext(config, est, _estimate_warnings(est))
    return [_assess(ctx, states, account) for account, states in states_by_account.items()]


def assess(
    config: Config,
    states: list[ChainState],
    account: str,
    estimates: RiskEstimates | None = None,
) -> Assessment:
    """`assess_many` for one account (a batch of one)."""
    return assess_many(config, {account: states}, estimates)[0]


def _assess(ctx: _BatchContext, states: list[ChainState], account: str) -> Assessment:
    config = ctx.config
    prices, price_warnings = ctx.prices_of(states)
    acc = _Account(config, prices, [*ctx.warnings, *price_warnings], block_refs=ctx.block_refs)
    for state in states:
        if not state.available or state.pin is None:
            acc.unavailable(state)
        else:
            acc.chain(state, state.pin)
    acc.chain_rows = address_notes(acc.chain_rows)
    skew = _skew(acc.as_of)
    if skew is not None and skew > config.risk.max_time_skew_s:
        acc.warn(Code.TIME_SKEW, f"pinned blocks are {skew} s apart")
    gaps = debt_gaps(config, acc.positions) + acc.protocol_gaps
    if gaps:
        acc.warn(
            Code.DEBT_UNKNOWN,
            f"debt cannot be valued (METHOD.md §4): {'; '.join(gaps)}. Debt, equity, free "
            "margin, health and stress solvency are not computed; borrowing capacity is 0",
        )
    partial = any(not st.available for st in states) or bool(gaps)
    return Assessment(
        config,
        account,
        prices,
        acc.valued,
        acc.positions,
        acc.as_of,
        acc.chain_rows,
        acc.warnings,
        gaps,
        partial,
        ctx.estimates,
        acc.protocols,
        acc.borrow_caps,
    )


def address_notes(rows: list[ChainSummary]) -> list[ChainSummary]:
    """§1: an account read at addresses that are a contract on some chains and not on
    others is read as configured, and each such chain says so in a note."""
    if all(r.contract is None for r in rows):  # read at the account's own address
        return rows
    contract = sorted(r.name for r in rows if r.contract is True)
    plain = sorted(r.name for r in rows if r.contract is False)
    if not contract or not plain:
        return rows
    out = []
    for r in rows:
        if r.contract is None:
            out.append(r)
            continue
        others = ", ".join(plain if r.contract else contract)
        here = "holds code" if r.contract else "holds no code"
        there = "holds none" if r.contract else "is a contract"
        note = f"{Code.ADDRESS_KIND_DIFFERS}: the address {here} here; on {others} it {there}"
        out.append(r.model_copy(update={"note": note}))
    return out


def _position(
    chain_id: int,
    rep: RepresentationConfig,
    status: str,
    reason: str | None,
    raw: int | None = None,
    price: Fraction | None = None,
) -> Position:
    """A position that is not valued; an implausible one shows its price and counts 0."""
    return Position(
        chain_id=chain_id,
        asset=rep.asset,
        token=rep.address,
        symbol=rep.symbol,
        kind=rep.kind,
        bridged=rep.bridged,
        status=status,
        reason=reason,
        raw_amount=None if raw is None else str(raw),
        decimals=rep.decimals,
        price_usd=fixed6(price),
        value_usd=fixed6(0) if status in ("implausible", "unverified", "not_collateral") else None,
    )
