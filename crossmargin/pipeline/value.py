"""From what was read to the margin report: prices (§3), exposures (§4), risk (§5-§7).

No I/O: the same chain states always give the same report, which is what lets an
auditor replay a figure. Money stays exact (`Fraction` of integers) up to the single
place where exposures become float64 for the risk math (`crossmargin.pipeline.risk.positions_of`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from adapters.balances import BalanceRead
from crossmargin.core.config import Config, RepresentationConfig, config_hash
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.report import (
    BlockRef,
    ChainRef,
    ChainSummary,
    Haircuts,
    HistoryUsed,
    MarginReport,
    Parameters,
    Position,
    Price,
    PriceSource,
    Totals,
    Warning_,
    fixed6,
    split6,
)
from crossmargin.pipeline.risk import RiskOutcome, run_risk
from oracle.estimation import RiskEstimates, config_estimates
from oracle.validity import CHAIN_UNAVAILABLE, AssetPrice, FeedReading, aggregate_price


@dataclass(frozen=True, slots=True)
class Valued:
    """A readable, non-zero position with its exact USD value (signed: debt < 0).
    `flag`: why the figure is implausible (§4: debt still counts in full)."""

    chain_id: int
    rep: RepresentationConfig
    raw_amount: int
    price: Fraction
    value: Fraction
    flag: str | None = None


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
        worth = Fraction(b.raw_amount, 10**rep.decimals) * price
        if limit is not None and worth > Fraction(limit):
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


def _price_model(p: AssetPrice) -> Price:
    return Price(
        asset=p.asset,
        collateral_usd=fixed6(p.collateral),
        debt_usd=fixed6(p.debt),
        deviation=fixed6(p.deviation),
        sources=[
            PriceSource(
                chain_id=r.chain_id,
                feed=r.address,
                round_id=str(r.round.round_id) if r.round and r.kind == "chainlink" else None,
                answer=str(r.round.answer) if r.round else None,
                decimals=r.decimals,
                updated_at=r.round.updated_at if r.round else None,
                valid=r.valid,
                reason=r.reason,
                kind=r.kind,
                price_id=r.price_id,
                confidence=None if r.confidence is None else str(r.confidence),
            )
            for r in p.sources
        ],
    )


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

    @property
    def debt_unknown(self) -> bool:
        """METHOD.md §4 "debt that cannot be valued": debt, equity, free margin and health
        are null, capacity is 0 and every stress scenario's solvency is null."""
        return bool(self.debt_gaps)

    @property
    def collateral(self) -> Fraction:
        return sum((v.value for v in self.valued if v.value > 0), Fraction(0))

    @property
    def debt(self) -> Fraction:
        return sum((-v.value for v in self.valued if v.value < 0), Fraction(0))

    @property
    def max_time_skew_s(self) -> int | None:
        return _skew(self.as_of)


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
    names = {c.chain_id: f"{c.name} ({c.chain_id})" for c in config.chains}
    reasons: list[str] = []
    for p in unvalued:
        if p.kind != "debt":
            continue
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


def assess(  # noqa: C901
    config: Config,
    states: list[ChainState],
    account: str,
    estimates: RiskEstimates | None = None,
) -> Assessment:
    """METHOD.md §2-§4: prices from valid readings, exact exposures, what could not be read.
    `estimates`: §6 sigma/rho from the price history (None: from config alone)."""
    warnings: list[Warning_] = []
    estimates = estimates if estimates is not None else config_estimates(config)
    if estimates.repaired:
        warnings.append(
            Warning_(
                code="correlation_repaired",
                detail="estimated and configured correlations were not PSD; "
                "negative eigenvalues clipped to 0",
            )
        )

    def warn(code: str, detail: str) -> None:
        warnings.append(Warning_(code=code, detail=detail))

    prices = _prices(config, states)
    for p in prices.values():
        if not p.priced:
            why = sorted({r.reason or "" for r in p.sources})
            warn("unpriced", f"{p.asset}: no valid price reading ({', '.join(why)})")
        if p.deviation_flag:
            warn("price_deviation", f"{p.asset}: sources deviate by {fixed6(p.deviation)}")
        for r in p.sources:
            if r.reason and r.reason != CHAIN_UNAVAILABLE:
                warn(r.reason, f"{p.asset} feed {r.address} on chain {r.chain_id}")

    positions: list[Position] = []
    valued: list[Valued] = []
    as_of: list[BlockRef] = []
    chain_rows: list[ChainSummary] = []
    for state in states:
        chain = state.chain
        if not state.available or state.pin is None:
            warn("chain_unavailable", f"{chain.name} ({chain.chain_id}): {state.error}")
            reps = [r for r in config.representations if r.chain == chain.name]
            positions += [_position(chain.chain_id, r, "unavailable", state.error) for r in reps]
            chain_rows.append(
                ChainSummary(
                    chain_id=chain.chain_id,
                    name=chain.name,
                    status="unavailable",
                    reason=state.error,
                    collateral_usd=None,
                    debt_usd=None,
                )
            )
            continue
        pin = state.pin
        as_of.append(
            BlockRef(
                chain_id=pin.chain_id,
                name=chain.name,
                block_number=pin.number,
                block_hash=pin.hash,
                timestamp=pin.timestamp,
            )
        )
        for b in state.balances:
            rep = b.rep
            if b.raw_amount is None:
                warn("read_error", f"{rep.symbol} on {chain.name}: {b.error}")
                positions.append(_position(chain.chain_id, rep, "error", b.error))
                continue
            if b.warning:
                warn("decimals_unverified", f"{rep.symbol} on {chain.name}: {b.warning}")
            if b.raw_amount == 0:
                continue
            ap = prices[rep.asset]
            price = ap.collateral if rep.kind == "collateral" else ap.debt
            flag = _implausible(config, b, price)
            if flag is not None:
                counted = "counted 0" if rep.kind == "collateral" else "debt counted in full"
                warn("implausible", f"{rep.symbol} on {chain.name}: {flag}; {counted}")
                if rep.kind == "collateral":  # §4: implausible collateral counts 0
                    positions.append(
                        _position(chain.chain_id, rep, "implausible", flag, b.raw_amount, price)
                    )
                    continue
            if price is None:
                positions.append(
                    _position(chain.chain_id, rep, "unpriced", "no valid price", b.raw_amount)
                )
                continue
            value = Fraction(b.raw_amount, 10**rep.decimals) * price
            valued.append(
                Valued(
                    chain.chain_id,
                    rep,
                    b.raw_amount,
                    price,
                    value if rep.kind == "collateral" else -value,
                    flag,
                )
            )
        chain_rows.append(
            ChainSummary(
                chain_id=chain.chain_id,
                name=chain.name,
                status="ok",
                collateral_usd=None,
                debt_usd=None,
            )
        )

    skew = _skew(as_of)
    if skew is not None and skew > config.risk.max_time_skew_s:
        warn("time_skew", f"pinned blocks are {skew} s apart")
    gaps = debt_gaps(config, positions)
    if gaps:
        warn(
            "debt_unknown",
            f"debt cannot be valued (METHOD.md §4): {'; '.join(gaps)}. Debt, equity, free "
            "margin, health and stress solvency are not computed; borrowing capacity is 0",
        )
    partial = any(not st.available for st in states) or bool(gaps)
    return Assessment(
        config,
        account,
        prices,
        valued,
        positions,
        as_of,
        chain_rows,
        warnings,
        gaps,
        partial,
        estimates,
    )


def value_account(
    config: Config,
    states: list[ChainState],
    account: str,
    target: str,
    estimates: RiskEstimates | None = None,
) -> MarginReport:
    """METHOD.md §2-§7 for one account at the pinned blocks recorded in `states`."""
    return margin_report(assess(config, states, account, estimates), target)


def margin_report(a: Assessment, target: str) -> MarginReport:
    """METHOD.md §5-§7 on an assessment, for one target chain. When debt cannot be valued
    (§4) the debt-dependent totals are null and the rest covers what could be valued."""
    config = a.config
    target_chain = config.chain(target)
    valued = a.valued
    collateral, debt = a.collateral, a.debt
    equity = collateral - debt
    risk = run_risk(
        config, valued, target_chain.name, a.estimates, debt_may_be_hidden=a.debt_unknown
    )
    m = collateral if risk.result.capped else risk.requirement  # capped: exactly collateral
    m6 = fixed6(m)
    shares = split6(m6, risk.result.positions.total.tolist())
    positions = _valued_positions(valued, risk, shares) + a.unvalued
    chain_rows = [_chain_totals(row, valued, shares, a.unvalued) for row in a.chain_rows]
    free = equity - m
    health: Fraction | None = (collateral - m) / debt if debt > 0 else None
    known = not a.debt_unknown
    status = "partial" if a.partial else "ok"
    return MarginReport(
        account=a.account,
        target_chain=ChainRef(chain_id=target_chain.chain_id, name=target_chain.name),
        status=status,
        method=config.risk.method,
        as_of=a.as_of,
        max_time_skew_s=a.max_time_skew_s,
        totals=Totals(
            collateral_usd=fixed6(collateral),
            debt_usd=fixed6(debt) if known else None,
            equity_usd=fixed6(equity) if known else None,
            margin_requirement_usd=m6,
            free_margin_usd=fixed6(free) if known else None,
            health=fixed6(health) if known else None,
            liquidatable=free < 0 if known else None,
        ),
        haircuts=Haircuts(**{k: fixed6(v) for k, v in risk.result.components.as_dict().items()}),
        parameters=_parameters(config, risk),
        chains=chain_rows,
        positions=positions,
        prices=[_price_model(p) for p in a.prices.values()],
        warnings=list(a.warnings),
    )


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
        value_usd=fixed6(0) if status == "implausible" else None,
    )


def _finite(value: float) -> str | None:
    return fixed6(float(value)) if math.isfinite(value) else None


def _parameters(config: Config, risk: RiskOutcome) -> Parameters:
    p = risk.parameters
    return Parameters(
        z=fixed6(p.z),
        kappa=fixed6(p.kappa),
        sigma={k: fixed6(v) for k, v in p.sigma.items()},
        correlation={a: {b: fixed6(v) for b, v in row.items()} for a, row in p.correlation.items()},
        latency_days={k: fixed6(v) for k, v in p.latency_days.items()},
        config_hash=config_hash(config),
        **_sources(p.estimates),
    )


def _sources(est: RiskEstimates | None) -> dict[str, Any]:
    """Where sigma and rho came from (ewma, floor, default, config, override) and the
    span of price history behind the EWMA."""
    if est is None:
        return {}
    d = est.as_dict()
    return {
        "sigma_source": d["sigma_source"],
        "correlation_source": d["correlation_source"],
        "history": HistoryUsed(
            observations=est.observations, first_day=d["first_day"], last_day=d["last_day"]
        ),
    }


def _valued_positions(valued: list[Valued], risk: RiskOutcome, shares: list[str]) -> list[Position]:
    """`shares`: each position's served §7 share of M (they sum exactly to the served M)."""
    return [
        Position(
            chain_id=v.chain_id,
            asset=v.rep.asset,
            token=v.rep.address,
            symbol=v.rep.symbol,
            kind=v.rep.kind,
            bridged=v.rep.bridged,
            status="ok",
            reason=v.flag,
            raw_amount=str(v.raw_amount),
            decimals=v.rep.decimals,
            price_usd=fixed6(v.price),
            value_usd=fixed6(v.value),
            horizon_days=fixed6(float(risk.result.horizon[i])),
            haircut=_finite(float(risk.result.haircut[i])),
            margin_usd=shares[i],
        )
        for i, v in enumerate(valued)
    ]


def _chain_totals(
    row: ChainSummary, valued: list[Valued], shares: list[str], unvalued: list[Position]
) -> ChainSummary:
    """A readable chain's collateral, debt (null when a debt position on it could not be
    read or priced, §4) and share of M: the exact sum of its positions' served shares."""
    if row.status != "ok":
        return row
    mine = [i for i, v in enumerate(valued) if v.chain_id == row.chain_id]
    coll = sum((valued[i].value for i in mine if valued[i].value > 0), Fraction(0))
    debt = sum((-valued[i].value for i in mine if valued[i].value < 0), Fraction(0))
    debt_unknown = any(p.kind == "debt" and p.chain_id == row.chain_id for p in unvalued)
    margin = sum((Fraction(shares[i]) for i in mine), Fraction(0))
    return row.model_copy(
        update={
            "collateral_usd": fixed6(coll),
            "debt_usd": None if debt_unknown else fixed6(debt),
            "margin_usd": fixed6(margin),
        }
    )
