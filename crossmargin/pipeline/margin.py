"""The margin report (METHOD.md §5-§7) of assessed accounts, many at once.

`margin_reports` makes one aggregator call for a whole batch (`run_risk_many`) and
builds what every account shares (the parameters, the price table) once; a single
account is a batch of one (`margin_report`). Money stays exact (`Fraction`) in every
USD figure and total; the float risk figures come back from the one float step in
`crossmargin.pipeline.risk` and are served as fixed-6 strings whose shares sum to M.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from crossmargin.core.codes import Code
from crossmargin.core.config import Config, config_hash
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.report import (
    ChainRef,
    ChainSummary,
    Haircuts,
    HistoryUsed,
    MarginReport,
    Parameters,
    Position,
    Price,
    PriceSource,
    ProtocolAccount,
    Totals,
    fixed6,
    split6,
    sum6,
)
from crossmargin.pipeline.risk import RiskOutcome, RiskParameters, run_risk_many
from crossmargin.pipeline.value import Assessment, Valued, assess, exact_sum
from oracle.estimation import RiskEstimates
from oracle.validity import AssetPrice


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
    """`margin_reports` for one assessment (a batch of one)."""
    return margin_reports([a], target)[0]


def margin_reports(assessments: Sequence[Assessment], target: str) -> list[MarginReport]:
    """METHOD.md §5-§7 on assessments, for one target chain, in order: one risk call per
    batch (assessments sharing config and estimates), parameters and price tables built
    once. When debt cannot be valued (§4) the debt-dependent totals are null and the rest
    covers what could be valued."""
    out: list[MarginReport | None] = [None] * len(assessments)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, a in enumerate(assessments):
        groups.setdefault((id(a.config), id(a.estimates)), []).append(i)
    for members in groups.values():
        first = assessments[members[0]]
        config = first.config
        risk = run_risk_many(
            config,
            [assessments[i].valued for i in members],
            config.chain(target).name,
            first.estimates,
            [assessments[i].debt_unknown for i in members],
        )
        shared = _Shared(config, target, _parameters(config, risk.parameters), {}, {})
        for k, i in enumerate(members):
            out[i] = _margin_report(assessments[i], risk.outcome(k), shared)
    return [r for r in out if r is not None]


@dataclass(frozen=True, slots=True)
class _Shared:
    """Report parts every account of a batch shares (frozen models: safe to share)."""

    config: Config
    target: str
    parameters: Parameters
    price_tables: dict[int, list[Price]]
    # a chain row without valued positions, filled in (zeros), by (row id, debt unknown):
    # the rows are shared, frozen models (value.py), so most chains of most accounts hit
    empty_rows: dict[tuple[int, bool], tuple[ChainSummary, ChainSummary]]

    def prices(self, prices: dict[str, AssetPrice]) -> list[Price]:
        table = self.price_tables.get(id(prices))
        if table is None:
            table = [_price_model(p) for p in prices.values()]
            self.price_tables[id(prices)] = table
        return table


def _margin_report(a: Assessment, risk: RiskOutcome, shared: _Shared) -> MarginReport:
    config = shared.config
    target_chain = config.chain(shared.target)
    valued = a.valued
    collateral, debt = a.collateral, a.debt
    equity = collateral - debt
    m = collateral if risk.result.capped else risk.requirement  # capped: exactly collateral
    m6 = fixed6(m)
    shares = split6(m6, risk.result.positions.total.tolist())
    positions = _valued_positions(valued, risk, shares) + a.unvalued
    chain_rows = _chain_totals(a.chain_rows, valued, shares, a.unvalued, a.protocols, shared)
    free = equity - m
    health: Fraction | None = (collateral - m) / debt if debt > 0 else None
    known = not a.debt_unknown
    return MarginReport(
        account=a.account,
        target_chain=ChainRef(chain_id=target_chain.chain_id, name=target_chain.name),
        status=Code.PARTIAL if a.partial else Code.OK,
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
            # §12: a local health factor below 1 is liquidatable whatever else is known
            liquidatable=True if a.locally_liquidatable else (free < 0 if known else None),
        ),
        haircuts=Haircuts(**{k: fixed6(v) for k, v in risk.result.components.as_dict().items()}),
        parameters=shared.parameters,
        chains=chain_rows,
        positions=positions,
        prices=shared.prices(a.prices),
        warnings=list(a.warnings),
        protocols=a.protocols,
    )


def _finite(value: float) -> str | None:
    return fixed6(float(value)) if math.isfinite(value) else None


def _parameters(config: Config, p: RiskParameters) -> Parameters:
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
    horizon = risk.result.horizon.tolist()
    haircut = risk.result.haircut.tolist()
    return [
        Position(
            chain_id=v.chain_id,
            asset=v.rep.asset,
            token=v.rep.address,
            symbol=v.rep.symbol,
            kind=v.rep.kind,
            bridged=v.rep.bridged,
            status=Code.OK,
            reason=v.flag,
            raw_amount=str(v.raw_amount),
            decimals=v.rep.decimals,
            price_usd=fixed6(v.price),
            value_usd=fixed6(v.value),
            horizon_days=fixed6(horizon[i]),
            haircut=_finite(haircut[i]),
            margin_usd=shares[i],
        )
        for i, v in enumerate(valued)
    ]


def _chain_totals(
    rows: list[ChainSummary],
    valued: list[Valued],
    shares: list[str],
    unvalued: list[Position],
    protocols: list[ProtocolAccount],
    shared: _Shared,
) -> list[ChainSummary]:
    """Each readable chain's collateral, debt (null when a debt position on it could not be
    read or priced, or a protocol market there reports debt the config does not list or
    could not be read: §4, §12) and share of M: the exact sum of its positions' shares."""
    by_chain: dict[int, list[int]] = {}
    for i, v in enumerate(valued):
        by_chain.setdefault(v.chain_id, []).append(i)
    unknown = {p.chain_id for p in unvalued if p.kind == "debt"}
    unknown |= {p.chain_id for p in protocols if p.status != "ok" or p.unlisted_debt}
    out = []
    for row in rows:
        if row.status != "ok":
            out.append(row)
            continue
        mine = by_chain.get(row.chain_id)
        if mine is None:  # nothing valued there: zeros (debt null if unknown)
            out.append(_empty_row(row, row.chain_id in unknown, shared.empty_rows))
            continue
        coll = exact_sum(valued[i].value for i in mine if valued[i].value.numerator > 0)
        debt = -exact_sum(valued[i].value for i in mine if valued[i].value.numerator < 0)
        update = {
            "collateral_usd": fixed6(coll),
            "debt_usd": None if row.chain_id in unknown else fixed6(debt),
            "margin_usd": sum6([shares[i] for i in mine]),
        }
        out.append(row.model_copy(update=update))
    return out


ZERO6 = fixed6(0)


def _empty_row(
    row: ChainSummary,
    debt_unknown: bool,
    cache: dict[tuple[int, bool], tuple[ChainSummary, ChainSummary]],
) -> ChainSummary:
    """`_chain_totals` of a readable chain without valued positions: the exact sums of
    nothing. One copy per shared row (kept with it, so its id stays its own)."""
    key = (id(row), debt_unknown)
    hit = cache.get(key)
    if hit is None or hit[0] is not row:
        update = {
            "collateral_usd": ZERO6,
            "debt_usd": None if debt_unknown else ZERO6,
            "margin_usd": ZERO6,
        }
        hit = cache[key] = (row, row.model_copy(update=update))
    return hit[1]
