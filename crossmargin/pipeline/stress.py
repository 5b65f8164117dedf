"""Stress scenarios (METHOD.md §9) of an assessed account, as configured."""

from __future__ import annotations

from aggregator import Scenario, run_stress
from crossmargin.core.codes import Code
from crossmargin.pipeline.capacity import asset_index
from crossmargin.pipeline.report import ScenarioOutcome, StressReport, fixed6
from crossmargin.pipeline.risk import positions_of
from crossmargin.pipeline.value import Assessment


def stress_report(a: Assessment) -> StressReport:
    """§9: every configured scenario on the account's exposures; the worst by equity.
    When debt cannot be valued (§4), debt, equity and solvency after each shock, today's
    equity and the worst are null; the collateral after each shock is still shown."""
    config = a.config
    chains = [c.name for c in config.chains]
    scenarios = [
        Scenario(
            name=s.name,
            asset_shocks={asset_index(config, k): v for k, v in s.shocks.items()},
            bridged_shock=-s.bridged_depeg,
            halted_chains=frozenset(chains.index(c) for c in s.halted_chains),
        )
        for s in config.scenarios
    ]
    result = run_stress(positions_of(config, a.valued), scenarios)
    known = not a.debt_unknown
    return StressReport(
        account=a.account,
        status=Code.PARTIAL if a.partial else Code.OK,
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
