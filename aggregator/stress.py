"""Stress scenarios (METHOD.md §9): deterministic shocks, no model, no margin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from aggregator._types import FloatArray, IntArray
from aggregator.errors import InvalidInput
from aggregator.inputs import Positions


@dataclass(frozen=True)
class Scenario:
    """One named §9 scenario, as data from config.

    asset_shocks: asset index -> price change as a fraction (-0.4 = ETH -40%), applied
    to collateral and debt alike; bridged_shock: price change of every bridged
    representation (a depeg, e.g. -0.1), compounded with its asset's shock;
    halted_chains: chains whose positions count 0 as collateral (their debt stays).
    """

    name: str
    asset_shocks: Mapping[int, float] = field(default_factory=dict)
    bridged_shock: float = 0.0
    halted_chains: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        shocks = (*self.asset_shocks.values(), self.bridged_shock)
        if not all(np.isfinite(v) and v >= -1.0 for v in shocks):
            raise InvalidInput(f"scenario {self.name!r}: shocks must be finite and >= -1")
        if any(a < 0 for a in self.asset_shocks) or any(c < 0 for c in self.halted_chains):
            raise InvalidInput(f"scenario {self.name!r}: indices must be >= 0")


@dataclass(frozen=True)
class ScenarioResult:
    """Totals after one scenario; solvent iff collateral >= debt after the shock."""

    name: str
    collateral: float
    debt: float
    equity: float
    solvent: bool


@dataclass(frozen=True)
class StressReport:
    """Every scenario's result in input order, and the worst (lowest equity; first on ties)."""

    results: tuple[ScenarioResult, ...]
    worst: ScenarioResult | None


def run_stress(positions: Positions, scenarios: Sequence[Scenario]) -> StressReport:
    """Apply each §9 scenario to the account's exposures (METHOD.md §9).

    x'_p = x_p * (1 + shock_a(p)) * (1 + bridged_shock if bridged_p);
    collateral' = sum of x'_p > 0 off halted chains; debt' = sum |x'_p| over x'_p < 0
    (all chains); equity' = collateral' - debt'; solvent iff collateral' >= debt'.
    """
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise InvalidInput("scenarios: names must be unique")
    x, asset, chain = positions.exposure, positions.asset, positions.chain
    results = []
    for scenario in scenarios:
        factor = _asset_factor(scenario, asset) * np.where(
            positions.bridged, 1.0 + scenario.bridged_shock, 1.0
        )
        shocked = x * factor
        halted = np.isin(chain, np.fromiter(scenario.halted_chains, dtype=np.intp))
        collateral = float(np.where((shocked > 0) & ~halted, shocked, 0.0).sum())
        debt = float(np.where(shocked < 0, -shocked, 0.0).sum())
        results.append(
            ScenarioResult(scenario.name, collateral, debt, collateral - debt, collateral >= debt)
        )
    worst = min(results, key=lambda r: r.equity) if results else None
    return StressReport(tuple(results), worst)


def _asset_factor(scenario: Scenario, asset: IntArray) -> FloatArray:
    """1 + shock of each position's asset (1 for assets the scenario leaves alone)."""
    size = max([int(asset.max()) + 1 if asset.size else 0, *(a + 1 for a in scenario.asset_shocks)])
    price = np.ones(size, dtype=np.float64)
    for a, shock in scenario.asset_shocks.items():
        price[a] = 1.0 + shock
    factor: FloatArray = price[asset]
    return factor
