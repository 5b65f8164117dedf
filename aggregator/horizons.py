"""Bridge latencies and position horizons (METHOD.md §5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from aggregator._types import BoolArray, FloatArray, IntArray
from aggregator.errors import InvalidInput


def latency_matrix(
    to_hub: Sequence[float] | FloatArray,
    from_hub: Sequence[float] | FloatArray,
    pairs: Mapping[tuple[int, int], float] | None = None,
) -> FloatArray:
    """L(c -> t) in days for every chain pair (§5).

    L(c -> t) = pairs[(c, t)] where configured, else to_hub[c] + from_hub[t] (route
    through the hub); L(c -> c) = 0. A configured diagonal pair other than 0 is a
    config error, not something to override silently.
    """
    up = np.array(to_hub, dtype=np.float64)
    down = np.array(from_hub, dtype=np.float64)
    if up.ndim != 1 or up.shape != down.shape:
        raise InvalidInput("to_hub and from_hub: 1-d arrays of the same length (one per chain)")
    if not (np.all(np.isfinite(up)) and np.all(np.isfinite(down))):
        raise InvalidInput("to_hub and from_hub: latencies must be finite")
    if np.any(up < 0) or np.any(down < 0):
        raise InvalidInput("to_hub and from_hub: latencies must be >= 0")
    m = up.shape[0]
    latency: FloatArray = up[:, None] + down[None, :]
    for (source, target), days in (pairs or {}).items():
        if not (0 <= source < m and 0 <= target < m):
            raise InvalidInput(f"latency pair {(source, target)} outside chains 0..{m - 1}")
        if not (np.isfinite(days) and days >= 0):
            raise InvalidInput(f"latency pair {(source, target)}: must be finite and >= 0")
        if source == target and days != 0:
            raise InvalidInput(f"latency pair {(source, target)}: L(c -> c) must be 0")
        latency[source, target] = days
    np.fill_diagonal(latency, 0.0)
    latency.flags.writeable = False
    return latency


def position_horizons(
    asset: IntArray,
    chain: IntArray,
    is_collateral: BoolArray,
    liq_horizon_days: FloatArray,
    latency: FloatArray,
    target_chain: int | IntArray,
) -> FloatArray:
    """Horizon T_p in days of each position (§5).

    T_p = T_liq(a) + L(c -> t) for collateral (it must be bridged to t before it can
    be sold there), T_liq(a) for debt (it is repaid where it lives). `target_chain`
    may be one chain or one per position (batch path).
    """
    bridge_days = np.where(is_collateral, latency[chain, target_chain], 0.0)
    horizon: FloatArray = liq_horizon_days[asset] + bridge_days
    return horizon
