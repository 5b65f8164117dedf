"""Borrowing capacity (METHOD.md §8): a search over the §7 free margin of `margin.py`,
each set of candidate debts evaluated as one batch of accounts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aggregator._types import FloatArray
from aggregator.errors import AggregatorError, CapacityNotMonotone, InvalidInput
from aggregator.inputs import (
    AssetParams,
    BatchPositions,
    MarginParams,
    Positions,
    check_indices,
)
from aggregator.margin import free_margin_many

TOLERANCE_USD = 0.01
GRID_POINTS = 17  # evenly spaced samples over the bracket, for the monotonicity check
MAX_DOUBLINGS = 200
MAX_BISECTIONS = 200
# Free margin may rise by this much (relative to the account's gross USD) between
# samples before it counts as an increase: float rounding, not model behaviour.
MONOTONE_SLACK = 1e-9


@dataclass(frozen=True)
class BorrowCapacity:
    """Largest extra debt B (USD) the account can take; units of b = usd / P_debt(b).

    free_margin: equity - M with that debt added (>= 0, within `tolerance_usd` of 0
    whenever usd > 0 and the free margin is continuous there); evaluations: number of
    margin computations the search used.
    """

    usd: float
    free_margin: float
    evaluations: int


def borrowing_capacity(
    positions: Positions,
    assets: AssetParams,
    params: MarginParams,
    borrow_asset: int,
    *,
    tolerance_usd: float = TOLERANCE_USD,
) -> BorrowCapacity:
    """Largest B >= 0 with free_margin(B) >= 0 after adding debt -B in `borrow_asset`
    on the target chain (horizon T_liq(b), no bridge add-on) (METHOD.md §8).

    Brackets by doubling from max(collateral, tolerance), samples GRID_POINTS evenly
    over [0, bracket], then bisects until the bracket is within `tolerance_usd` and the
    free margin at the lower end is within `tolerance_usd` of 0 (or the bracket has
    collapsed onto a jump). Returns the lower end, which always satisfies the
    constraint. Raises CapacityNotMonotone if, over every sampled point, free margin
    rises with B by more than rounding.
    """
    check_indices(positions, assets, params)
    if not 0 <= borrow_asset < assets.n_assets:
        raise InvalidInput(f"borrow_asset {borrow_asset} outside 0..{assets.n_assets - 1}")
    if not (np.isfinite(tolerance_usd) and tolerance_usd > 0):
        raise InvalidInput("tolerance_usd: must be finite and > 0")

    samples: dict[float, float] = {}
    evaluate = _evaluator(positions, assets, params, borrow_asset)

    def free_margin_at(borrows: list[float]) -> list[float]:
        todo = [b for b in dict.fromkeys(borrows) if b not in samples]
        if todo:
            samples.update(zip(todo, evaluate(todo), strict=True))
        return [samples[b] for b in borrows]

    def free_margin(borrow: float) -> float:
        return free_margin_at([borrow])[0]

    collateral = float(positions.exposure[positions.exposure > 0].sum())
    hi = max(collateral, tolerance_usd)
    for _ in range(MAX_DOUBLINGS):
        if free_margin(hi) < 0:
            break
        hi *= 2.0
    else:  # unreachable: free_margin(B) <= equity - B < 0 once B > collateral
        raise AggregatorError(f"could not bracket the capacity below {hi} USD")

    grid = np.linspace(0.0, hi, GRID_POINTS)
    fm_grid = np.array(free_margin_at([float(b) for b in grid]))
    _check_monotone(samples, positions)
    if fm_grid[0] < 0:
        return BorrowCapacity(0.0, fm_grid[0], len(samples))
    last_ok = int(np.flatnonzero(fm_grid >= 0)[-1])

    lo = _bisect(free_margin, float(grid[last_ok]), float(grid[last_ok + 1]), tolerance_usd)
    _check_monotone(samples, positions)
    return BorrowCapacity(lo, free_margin(lo), len(samples))


def _bisect(
    free_margin: Callable[[float], float], lo: float, hi: float, tolerance_usd: float
) -> float:
    """Bisect [lo, hi] (free margin >= 0 at lo, < 0 at hi) until it is within
    `tolerance_usd` and the free margin at lo is within `tolerance_usd` of 0, or the
    bracket has collapsed onto a jump; returns lo, which always satisfies the constraint."""
    for _ in range(MAX_BISECTIONS):
        width = hi - lo
        if width <= tolerance_usd and (
            free_margin(lo) <= tolerance_usd or width <= 1e-12 * max(hi, 1.0)
        ):
            break
        mid = lo + width / 2.0
        if mid in (lo, hi):
            break
        if free_margin(mid) >= 0:
            lo = mid
        else:
            hi = mid
    return lo


def _evaluator(
    positions: Positions, assets: AssetParams, params: MarginParams, borrow_asset: int
) -> Callable[[list[float]], list[float]]:
    """free_margin(B) for a list of B: the account with one more debt position of -B in
    the borrow asset on the target chain (no bridge add-on), one copy per B, in one batch."""
    n = positions.exposure.shape[0]
    base = (positions.exposure, positions.asset, positions.chain, positions.bridge_addon)
    extra = (0.0, borrow_asset, params.target_chain, 0.0)
    columns = [np.append(col, value) for col, value in zip(base, extra, strict=True)]

    def evaluate(borrows: list[float]) -> list[float]:
        k = len(borrows)
        exposure = np.tile(columns[0], k)
        exposure[n :: n + 1] = -np.asarray(borrows, dtype=np.float64)
        tiled = Positions(
            exposure,
            np.tile(columns[1], k),
            np.tile(columns[2], k),
            np.tile(columns[3], k),
            np.zeros(k * (n + 1), dtype=np.bool_),
        )
        account = np.repeat(np.arange(k, dtype=np.intp), n + 1)
        fm = free_margin_many(BatchPositions(tiled, account, k), assets, params)
        return [float(v) for v in fm]

    return evaluate


def _sorted(samples: dict[float, float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    borrow = tuple(sorted(samples))
    return borrow, tuple(samples[b] for b in borrow)


def _check_monotone(samples: dict[float, float], positions: Positions) -> None:
    """Free margin must be non-increasing in B over every point sampled so far (§8)."""
    borrow, fm = _sorted(samples)
    values: FloatArray = np.array(fm, dtype=np.float64)
    scale = float(np.abs(positions.exposure).sum()) + max(borrow) + 1.0
    if np.any(np.diff(values) > MONOTONE_SLACK * scale):
        raise CapacityNotMonotone(borrow, fm)
