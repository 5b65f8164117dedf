"""Pure risk math of crossmargin: METHOD.md §5-§9 over numpy arrays, no I/O.

Inputs (float64 USD exposures; the caller converts raw integer amounts once, §4):

- `Positions.build(exposure, asset, chain, bridge_addon=None, bridged=None)`: one
  account, x > 0 collateral, x < 0 debt; asset/chain are dense indices.
- `AssetParams.build(sigma, liq_horizon_days, h_min, conc_k, depth_usd, corr)`: daily
  vol, T_liq in days, floor haircut, k_a, D_a (> 0 wherever k_a > 0), rho (asset x asset).
- `MarginParams(z, kappa, latency, target_chain)`, with `z_score(method, alpha,
  alpha_es)` and `latency_matrix(to_hub, from_hub, pairs)`.

Entry points: `compute_margin_batch` (§7 with attribution, many accounts: the one
implementation), `compute_margin` (the same for one account, a batch of one),
`free_margin_many` (§7 without attribution), `borrowing_capacity` (§8, which searches
with `free_margin_many`), `run_stress` (§9).

Choices where METHOD.md is silent (all conservative unless noted):

- (METHOD.md's rule, not a choice) bridge_latency = max(0, VaR(T, R) - market):
  latency can lower the VaR of an over-hedged account (collateral smaller than
  same-asset debt); it earns no credit. All components are >= 0 by construction.
- 1-sigma risk below 1e-12 of the gross 1-sigma exposure is rounding noise of a
  netted hedge: VaR 0, Euler shares 0 (no division by ~0).
- Config must give D_a for every asset that can be collateral (METHOD.md §7); here
  D_a must be > 0 wherever k_a > 0 (`InvalidInput` otherwise).
- The floor is allocated to collateral positions pro rata to h_min(a) * x_p.
- Attribution (§7): VaR shares are the Euler allocation of V*, the largest of VaR(T,
  R^s), VaR(T, R), VaR(L=0, R) (ties in that order), scaled to market +
  bridge_latency + correlation. The cap at collateral without debt applies to
  `requirement` and scales every share by M / (sum of components), so the shares
  always sum to M; components are reported uncapped and `capped` says when it bit.
  `debt_may_be_hidden=True` (§4: debt that cannot be valued; per account in a batch)
  never caps: hidden debt is not "no debt".
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
- Batch sums over assets run in a fixed order (`rows_times`, not BLAS), so an
  account's figures are bit-identical whatever batch it is computed in.
- Correlation matrices must be symmetric, unit-diagonal and PSD within 1e-8
  (eigenvalues above -1e-8 are clipped to 0); otherwise `InvalidInput`.
"""

from aggregator._types import BoolArray, FloatArray, IntArray
from aggregator.capacity import BorrowCapacity, borrowing_capacity
from aggregator.errors import AggregatorError, CapacityNotMonotone, InvalidInput
from aggregator.horizons import latency_matrix, position_horizons
from aggregator.inputs import AssetParams, BatchPositions, MarginParams, Positions, z_score
from aggregator.margin import compute_margin, compute_margin_batch, free_margin_many
from aggregator.results import (
    COMPONENT_NAMES,
    Attribution,
    BatchMarginResult,
    Components,
    MarginResult,
)
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
    "free_margin_many",
    "latency_matrix",
    "position_horizons",
    "run_stress",
    "z_score",
]
