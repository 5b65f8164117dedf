"""Pure risk math of crossmargin: METHOD.md §5-§9 over numpy arrays, no I/O.

Inputs (float64 USD exposures; the caller converts raw integer amounts once, §4):

- `Positions.build(exposure, asset, chain, bridge_addon=None, bridged=None)`: one
  account, x > 0 collateral, x < 0 debt; asset/chain are dense indices.
- `AssetParams.build(sigma, liq_horizon_days, h_min, conc_k, depth_usd, corr)`: daily
  vol, T_liq in days, floor haircut, k_a, D_a (0 = unconfigured), rho (asset x asset).
- `MarginParams(z, kappa, latency, target_chain)`, with `z_score(method, alpha,
  alpha_es)` and `latency_matrix(to_hub, from_hub, pairs)`.

Entry points: `compute_margin` (§7, with attribution), `compute_margin_batch` (§7,
many accounts), `borrowing_capacity` (§8), `run_stress` (§9).

Choices where METHOD.md is silent (all conservative unless noted):

- bridge_latency = max(0, VaR(T, R) - market). Latency can lower the VaR of an
  over-hedged account (collateral smaller than same-asset debt: a longer horizon
  grows the collateral leg towards the debt leg); it earns no credit. M's VaR part is
  then max(market, VaR(T, R)) + correlation. All components are >= 0 by construction.
- 1-sigma risk below 1e-12 of the gross 1-sigma exposure is rounding noise of a
  netted hedge: VaR 0, Euler shares 0 (no division by ~0).
- Concentration is 0 for an asset with no configured depth (D_a = 0). This is the
  non-conservative reading of "0 if not configured"; the alternative (infinite
  add-on) would make every unconfigured asset worthless. Config should give depths.
- The floor is allocated to collateral positions pro rata to h_min(a) * x_p.
- Euler shares are of max(VaR(T, R^s), VaR(T, R)) (R when equal); the part of M
  they do not cover (the clipped latency credit, the no-debt cap) is reported as
  `MarginResult.attribution_residual`.
- The cap at collateral without debt applies to `requirement`; components are
  reported uncapped and `capped` says when it bit.
- Standalone haircut is NaN for positions that are not collateral; batch health is
  NaN where debt is 0 (single-account health is None).
- Capacity: returns the lower end of the final bracket (always feasible); the new
  debt carries no bridge add-on and lives on the target chain. Monotonicity is
  checked on every sampled point (doubling, a 17-point grid, bisection).
- Stress: shocks multiply price (1 + shock), apply to debt of the shocked asset too;
  the depeg compounds with the asset shock; debt on a halted chain stays.
- Not a choice but worth knowing: with hedges, §7 free margin is not monotone in
  sigma or latency (a bigger hedge leg can lower VaR), nor in kappa when a long and
  a short are negatively correlated. It is monotone in alpha and concentration
  always, and in sigma, latency and kappa for long-only books with rho >= 0 (tested).
- Correlation matrices must be symmetric, unit-diagonal and PSD within 1e-8
  (eigenvalues above -1e-8 are clipped to 0); otherwise `InvalidInput`.
"""

from aggregator._types import BoolArray, FloatArray, IntArray
from aggregator.batch import BatchMarginResult, BatchPositions, compute_margin_batch
from aggregator.capacity import BorrowCapacity, borrowing_capacity
from aggregator.errors import AggregatorError, CapacityNotMonotone, InvalidInput
from aggregator.horizons import latency_matrix, position_horizons
from aggregator.inputs import AssetParams, MarginParams, Positions, z_score
from aggregator.margin import compute_margin
from aggregator.results import COMPONENT_NAMES, Attribution, Components, MarginResult
from aggregator.stress import Scenario, ScenarioResult, StressReport, run_stress

__all__ = [
    "COMPONENT_NAMES",
    "AggregatorError",
    "AssetParams",
    "Attribution",
    "BatchMarginResult",
    "BatchPositions",
    "BoolArray",
    "BorrowCapacity",
    "CapacityNotMonotone",
    "Components",
    "FloatArray",
    "IntArray",
    "InvalidInput",
    "MarginParams",
    "MarginResult",
    "Positions",
    "Scenario",
    "ScenarioResult",
    "StressReport",
    "borrowing_capacity",
    "compute_margin",
    "compute_margin_batch",
    "latency_matrix",
    "position_horizons",
    "run_stress",
    "z_score",
]
