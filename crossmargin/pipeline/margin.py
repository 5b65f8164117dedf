"""The margin report (METHOD.md §5-§7) of assessed accounts, many at once.

`margin_reports` makes one aggregator call for a whole batch (`run_risk_many`) and
builds what every account shares (the parameters, the price table) once; a single
account is a batch of one (`margin_report`). Money stays exact in every USD figure
and total (the positions' `Fraction`s, summed and subtracted as integer ratios n / d,
rounded once by `fixed6_ratio`); the float risk figures come back from the one float
step in `crossmargin.pipeline.risk` and are served as fixed-6 strings whose shares sum
to M. The per-account models are built `trusted` (report.py): ~20 models a report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from typing import Any

from aggregator import COMPONENT_NAMES
from crossmargin.core.codes import Code
from crossmargin.core.config import Config, config_hash
from crossmargin.core.memo import IdentityMemo
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
    Totals,
    fixed6,
    fixed6_ratio,
    split6,
    sum6,
    trusted,
    updated,
)
from crossmargin.pipeline.risk import AccountRisk, RiskParameters, run_risk_many
from crossmargin.pipeline.value import Assessment, Valued, assess
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
        chain = config.chain(target)
        shared = _Shared(
            config,
            ChainRef(chain_id=chain.chain_id, name=chain.name),
            _PARAMETERS.get(
                (config, risk.parameters), (), partial(_parameters, config, risk.parameters)
            ),
            {},
            {},
            {},
            {},
        )
        for i, outcome in zip(members, risk.accounts(), strict=True):
            out[i] = _margin_report(assessments[i], outcome, shared)
    return [r for r in out if r is not None]


# a batch's parameters model, built once per config and risk parameters (frozen: shared)
_PARAMETERS: IdentityMemo[Parameters] = IdentityMemo()
_PRICE_TABLES: IdentityMemo[list[Price]] = IdentityMemo()


def _price_table(prices: dict[str, AssetPrice]) -> list[Price]:
    return [_price_model(p) for p in prices.values()]


@dataclass(frozen=True, slots=True)
class _Shared:
    """Report parts every account of a batch shares (frozen models: safe to share), and
    the fixed-6 strings of the figures accounts have alike."""

    config: Config
    target: ChainRef
    parameters: Parameters
    price_tables: dict[int, list[Price]]
    # a chain row without valued positions, filled in (zeros), by (row id, debt unknown):
    # the rows are shared, frozen models (value.py), so most chains of most accounts hit
    empty_rows: dict[tuple[int, bool], tuple[ChainSummary, ChainSummary]]
    # fixed6 by value of the batch's floats (horizons, haircuts, components repeat from
    # account to account), and of the §3 prices by identity (one object per asset price)
    floats: dict[float, str]
    prices6: dict[int, tuple[Fraction, str]]

    def prices(self, prices: dict[str, AssetPrice]) -> list[Price]:
        """The price table of a prices object (value.py shares one per distinct feed
        readings, across batches too: built once for them all)."""
        table = self.price_tables.get(id(prices))
        if table is None:
            table = _PRICE_TABLES.get((prices,), (), partial(_price_table, prices))
            self.price_tables[id(prices)] = table
        return table

    def f6(self, value: float) -> str:
        """`fixed6(value)`: a float's string is its exact value's, so equal floats share it."""
        hit = self.floats.get(value)
        if hit is None:
            hit = self.floats[value] = fixed6(value)
        return hit

    def price6(self, price: Fraction) -> str:
        """`fixed6(price)` of a shared price object (kept in the entry: its id is its own)."""
        hit = self.prices6.get(id(price))
        if hit is None or hit[0] is not price:
            hit = self.prices6[id(price)] = (price, fixed6(price))
        return hit[1]


def _margin_report(a: Assessment, risk: AccountRisk, shared: _Shared) -> MarginReport:
    """One account's report. Its models are built `trusted` (report.py): every value is
    a plain str, int, bool or None, or a model built so or validated in value.py. The
    exact figures are integer ratios (`Ratio`), summed chain by chain (`_chain_sums`)."""
    valued = a.valued
    r6 = _Fixed6()
    sums = _chain_sums(valued)
    cn, cd = _ratio_sum([c for c, _, _ in sums.values()])
    dn, dd = _ratio_sum([d for _, d, _ in sums.values()])
    if risk.capped:  # M is exactly the collateral
        mn, md = cn, cd
        m6 = r6(cn, cd)
    else:
        mn, md = risk.requirement.as_integer_ratio()
        m6 = shared.f6(risk.requirement)
    shares = split6(m6, risk.shares)
    positions = _valued_positions(valued, risk, shares, shared, r6) + a.unvalued
    chain_rows = _chain_totals(a, sums, shares, m6, shared, r6)
    known = not a.debt_unknown
    if known:
        en, ed = cn * dd - dn * cd, cd * dd  # equity = collateral - debt
        fn, fd = en * md - mn * ed, ed * md  # free margin = equity - M
        totals = {
            "collateral_usd": r6(cn, cd),
            "debt_usd": r6(dn, dd),
            "equity_usd": r6(en, ed),
            "margin_requirement_usd": m6,
            "free_margin_usd": r6(fn, fd),
            # health = (collateral - M) / debt, without debt none
            "health": r6((cn * md - mn * cd) * dd, cd * md * dn) if dn > 0 else None,
            # §12: a local health factor below 1 is liquidatable whatever else is known
            "liquidatable": True if a.locally_liquidatable else fn < 0,
        }
    else:
        totals = {
            "collateral_usd": r6(cn, cd),
            "debt_usd": None,
            "equity_usd": None,
            "margin_requirement_usd": m6,
            "free_margin_usd": None,
            "health": None,
            "liquidatable": True if a.locally_liquidatable else None,
        }
    return trusted(
        MarginReport,
        {
            "account": a.account,
            "target_chain": shared.target,
            "status": PARTIAL if a.partial else OK,
            "method": shared.config.risk.method,
            "as_of": list(a.as_of),
            "max_time_skew_s": a.max_time_skew_s,
            "totals": trusted(Totals, totals),
            "haircuts": trusted(
                Haircuts, dict(zip(COMPONENT_NAMES, map(shared.f6, risk.components), strict=True))
            ),
            "chains": chain_rows,
            "positions": positions,
            "prices": list(shared.prices(a.prices)),
            "parameters": shared.parameters,
            "warnings": list(a.warnings),
            "protocols": list(a.protocols),
        },
    )


OK, PARTIAL = Code.OK.value, Code.PARTIAL.value  # plain str, as validation makes them
Ratio = tuple[int, int]  # n / d with d > 0: an exact USD figure, in any terms


class _Fixed6(dict[Ratio, str]):
    """`fixed6_ratio` for one report, remembered: a figure often equals another (a chain
    holding one position, the account one chain, equity the collateral without debt)."""

    def __call__(self, n: int, d: int) -> str:
        hit = self.get((n, d))
        if hit is None:
            hit = self[n, d] = fixed6_ratio(n, d)
        return hit


def _ratio_sum(parts: list[Ratio]) -> Ratio:
    """The exact sum over the least common denominator (`exact_sum`, without Fractions)."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return 0, 1
    common = math.lcm(*(d for _, d in parts))
    return sum(n * (common // d) for n, d in parts), common


def _chain_sums(valued: list[Valued]) -> dict[int, tuple[Ratio, Ratio, list[int]]]:
    """Per chain id with valued positions: its collateral, its debt (> 0) and the
    positions' indices. Every total is the sum of these (§4)."""
    parts: dict[int, tuple[list[Ratio], list[Ratio], list[int]]] = {}
    for i, v in enumerate(valued):
        entry = parts.get(v.chain_id)
        if entry is None:
            entry = parts[v.chain_id] = ([], [], [])
        n, d = v.value.as_integer_ratio()
        if n > 0:
            entry[0].append((n, d))
        elif n < 0:
            entry[1].append((-n, d))
        entry[2].append(i)
    return {c: (_ratio_sum(p), _ratio_sum(q), i) for c, (p, q, i) in parts.items()}


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


def _valued_positions(
    valued: list[Valued], risk: AccountRisk, shares: list[str], shared: _Shared, r6: _Fixed6
) -> list[Position]:
    """`shares`: each position's served §7 share of M (they sum exactly to the served M)."""
    f6 = shared.f6
    return [
        trusted(
            Position,
            {
                "chain_id": v.chain_id,
                "asset": v.rep.asset,
                "token": v.rep.address,
                "symbol": v.rep.symbol,
                "kind": v.rep.kind,
                "bridged": v.rep.bridged,
                "status": OK,
                "reason": v.flag,
                "raw_amount": str(v.raw_amount),
                "decimals": v.rep.decimals,
                "price_usd": shared.price6(v.price),
                "value_usd": r6(*v.value.as_integer_ratio()),
                "horizon_days": f6(horizon),
                "haircut": f6(haircut) if math.isfinite(haircut) else None,
                "margin_usd": share,
            },
        )
        for v, horizon, haircut, share in zip(
            valued, risk.horizon, risk.haircut, shares, strict=True
        )
    ]


def _chain_totals(
    a: Assessment,
    sums: dict[int, tuple[Ratio, Ratio, list[int]]],
    shares: list[str],
    m6: str,
    shared: _Shared,
    r6: _Fixed6,
) -> list[ChainSummary]:
    """Each readable chain's collateral, debt (null when a debt position on it could not be
    read or priced, or a protocol market there reports debt the config does not list or
    could not be read: §4, §12) and share of M: the exact sum of its positions' shares,
    which for a chain holding every valued position is M as served (`m6`: the shares
    sum to it exactly, split6)."""
    unknown = {p.chain_id for p in a.unvalued if p.kind == "debt"}
    unknown |= {p.chain_id for p in a.protocols if p.status != "ok" or p.unlisted_debt}
    out = []
    for row in a.chain_rows:
        if row.status != "ok":
            out.append(row)
            continue
        mine = sums.get(row.chain_id)
        if mine is None:  # nothing valued there: zeros (debt null if unknown)
            out.append(_empty_row(row, row.chain_id in unknown, shared.empty_rows))
            continue
        coll, debt, where = mine
        out.append(
            updated(
                row,
                collateral_usd=r6(*coll),
                debt_usd=None if row.chain_id in unknown else r6(*debt),
                margin_usd=m6 if len(where) == len(shares) else sum6([shares[i] for i in where]),
            )
        )
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
        hit = cache[key] = (row, updated(row, **update))
    return hit[1]
