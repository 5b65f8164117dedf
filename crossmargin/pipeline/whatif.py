"""What-if figures on an assessment: borrowing capacity (§8) and stress scenarios (§9)."""

from __future__ import annotations

from fractions import Fraction

from aggregator import CapacityNotMonotone, Scenario, borrowing_capacity, run_stress
from crossmargin.core.config import Config
from crossmargin.core.errors import InputError, Refused
from crossmargin.pipeline.report import (
    Capacity,
    CapacityReport,
    ChainRef,
    ScenarioOutcome,
    StressReport,
    Warning_,
    fixed6,
)
from crossmargin.pipeline.risk import asset_params, margin_params, positions_of
from crossmargin.pipeline.value import Assessment, margin_report


def _asset_index(config: Config, symbol: str) -> int:
    symbols = [a.symbol for a in config.assets]
    if symbol not in symbols:
        raise InputError(f"unknown asset {symbol!r}; known: {', '.join(symbols)}")
    return symbols.index(symbol)


def capacity_report(a: Assessment, target: str, asset: str | None = None) -> CapacityReport:
    """§8 for one borrow asset, or for every configured asset when none is named.

    Capacity is 0 for every asset when debt cannot be valued (§4: an unavailable chain
    that can hold debt, unpriced or unreadable debt), also for an unpriced borrow asset
    (0 USD is 0 units at any price); otherwise null with a reason when the borrow asset
    is unpriced.
    """
    config = a.config
    chain = config.chain(target)
    symbols = [asset] if asset else [x.symbol for x in config.assets]
    indices = [_asset_index(config, s) for s in symbols]
    positions = positions_of(config, a.valued)
    params = margin_params(config, chain.name)
    assets = asset_params(config, a.estimates)
    warnings = list(a.warnings)
    rows: list[Capacity] = []
    free: str | None = None
    for symbol, index in zip(symbols, indices, strict=True):
        price = a.prices[symbol].debt
        if a.debt_unknown:
            rows.append(Capacity(asset=symbol, capacity_usd=fixed6(0), amount=fixed6(0),
                                 price_usd=fixed6(price),
                                 reason="debt cannot be valued: capacity 0"))  # fmt: skip
            continue
        if price is None:
            rows.append(Capacity(asset=symbol, capacity_usd=None, amount=None, price_usd=None,
                                 reason=f"{symbol} has no valid price"))  # fmt: skip
            continue
        try:
            cap = borrowing_capacity(positions, assets, params, index)
        except CapacityNotMonotone as exc:
            raise Refused(
                f"free margin is not decreasing in new {symbol} debt for these parameters; "
                "capacity is not defined"
            ) from exc
        usd = Fraction(cap.usd)
        rows.append(Capacity(asset=symbol, capacity_usd=fixed6(usd), amount=fixed6(usd / price),
                             price_usd=fixed6(price)))  # fmt: skip
    if a.debt_unknown:
        warnings.append(
            Warning_(code="capacity_zero", detail="debt cannot be valued (§4): capacity 0")
        )
    else:
        free = margin_report(a, chain.name).totals.free_margin_usd
    return CapacityReport(
        account=a.account,
        target_chain=ChainRef(chain_id=chain.chain_id, name=chain.name),
        status="partial" if a.partial else "ok",
        as_of=a.as_of,
        free_margin_usd=free,
        capacities=rows,
        warnings=warnings,
    )


def stress_report(a: Assessment) -> StressReport:
    """§9: every configured scenario on the account's exposures; the worst by equity.
    When debt cannot be valued (§4), debt, equity and solvency after each shock, today's
    equity and the worst are null; the collateral after each shock is still shown."""
    config = a.config
    chains = [c.name for c in config.chains]
    scenarios = [
        Scenario(
            name=s.name,
            asset_shocks={_asset_index(config, k): v for k, v in s.shocks.items()},
            bridged_shock=-s.bridged_depeg,
            halted_chains=frozenset(chains.index(c) for c in s.halted_chains),
        )
        for s in config.scenarios
    ]
    result = run_stress(positions_of(config, a.valued), scenarios)
    known = not a.debt_unknown
    return StressReport(
        account=a.account,
        status="partial" if a.partial else "ok",
        as_of=a.as_of,
        equity_usd=fixed6(a.collateral - a.debt) if known else None,
        scenarios=[
            ScenarioOutcome(
                name=r.name,
                collateral_usd=fixed6(r.collateral),
                debt_usd=fixed6(r.debt) if known else None,
                equity_usd=fixed6(r.equity) if known else None,
                solvent=r.solvent if known else None,
            )
            for r in result.results
        ],
        worst=result.worst.name if result.worst and known else None,
        warnings=list(a.warnings),
    )
