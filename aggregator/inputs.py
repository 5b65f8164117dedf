"""Frozen inputs of the risk math (METHOD.md §4-§7), validated once on construction.

Positions carry signed USD exposures (the caller converts raw integer amounts once,
§4): x > 0 is collateral, x < 0 is debt, x == 0 contributes nothing. Assets and
chains are dense integer indices into the per-asset arrays and the latency matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal

import numpy as np

from aggregator._types import BoolArray, FloatArray, IntArray
from aggregator.errors import InvalidInput

# Negative eigenvalues of a correlation matrix below this are float noise and are
# clipped to 0; anything more negative means the matrix is not a correlation matrix.
PSD_TOLERANCE = 1e-8


def _floats(name: str, values: object, ndim: int = 1) -> FloatArray:
    """Read-only float64 copy of `values`."""
    arr = np.array(values, dtype=np.float64)
    if arr.ndim != ndim:
        raise InvalidInput(f"{name}: expected {ndim}-d array, got shape {arr.shape}")
    arr.flags.writeable = False
    return arr


def _indices(name: str, values: object) -> IntArray:
    """Read-only intp copy of integer `values` (an empty list is fine)."""
    arr = np.array(values)
    if arr.size == 0:
        arr = arr.astype(np.intp)
    if not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInput(f"{name}: expected integers")
    arr = arr.astype(np.intp)
    arr.flags.writeable = False
    return arr


def _check_vector(name: str, arr: FloatArray, n: int, *, non_negative: bool = True) -> None:
    if arr.dtype != np.float64 or arr.shape != (n,):
        raise InvalidInput(f"{name}: expected float64 of shape ({n},), got {arr.dtype} {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInput(f"{name}: values must be finite")
    if non_negative and np.any(arr < 0):
        raise InvalidInput(f"{name}: values must be >= 0")


def _check_index(name: str, arr: IntArray, n: int) -> None:
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInput(f"{name}: expected integers of shape ({n},)")
    if n and arr.min() < 0:
        raise InvalidInput(f"{name}: indices must be >= 0")


@dataclass(frozen=True)
class Positions:
    """One account's positions (§1, §4), one entry per position.

    exposure: signed USD x_p; asset, chain: indices; bridge_addon: b_r (fraction of
    exposure, 0 for native representations; ignored on debt); bridged: bridge-minted
    representation (used by the §9 depeg scenario). Use `Positions.build` from lists.
    """

    exposure: FloatArray
    asset: IntArray
    chain: IntArray
    bridge_addon: FloatArray
    bridged: BoolArray

    def __post_init__(self) -> None:
        if self.exposure.ndim != 1:
            raise InvalidInput("exposure: expected a 1-d array")
        n = self.exposure.shape[0]
        _check_vector("exposure", self.exposure, n, non_negative=False)
        _check_index("asset", self.asset, n)
        _check_index("chain", self.chain, n)
        _check_vector("bridge_addon", self.bridge_addon, n)
        if self.bridged.shape != (n,) or self.bridged.dtype != np.bool_:
            raise InvalidInput(f"bridged: expected booleans of shape ({n},)")

    @classmethod
    def build(
        cls,
        exposure: Sequence[float] | FloatArray,
        asset: Sequence[int] | IntArray,
        chain: Sequence[int] | IntArray,
        bridge_addon: Sequence[float] | FloatArray | None = None,
        bridged: Sequence[bool] | BoolArray | None = None,
    ) -> Positions:
        """Convert to read-only arrays; add-ons default to 0 and bridged to False."""
        x = _floats("exposure", exposure)
        addon = _floats("bridge_addon", np.zeros_like(x) if bridge_addon is None else bridge_addon)
        flags = np.zeros(x.shape, dtype=np.bool_) if bridged is None else np.array(bridged)
        if flags.size == 0:
            flags = flags.astype(np.bool_)
        flags.flags.writeable = False
        return cls(x, _indices("asset", asset), _indices("chain", chain), addon, flags)

    @property
    def is_collateral(self) -> BoolArray:
        """x > 0 (§4: collateral = sum of x_p > 0)."""
        return self.exposure > 0


@dataclass(frozen=True)
class BatchPositions:
    """Flat positions of n_accounts accounts; account[p] in 0..n_accounts-1, any order.
    One account is a batch of one (`BatchPositions.of`)."""

    positions: Positions
    account: IntArray
    n_accounts: int

    def __post_init__(self) -> None:
        n = self.positions.exposure.shape[0]
        if self.account.shape != (n,) or not np.issubdtype(self.account.dtype, np.integer):
            raise InvalidInput(f"account: expected integers of shape ({n},)")
        if self.n_accounts < 0:
            raise InvalidInput("n_accounts: must be >= 0")
        if n and not (0 <= self.account.min() and self.account.max() < self.n_accounts):
            raise InvalidInput("account: indices must lie in 0..n_accounts-1")

    @classmethod
    def of(cls, positions: Positions) -> BatchPositions:
        """One account as a batch of one."""
        n = positions.exposure.shape[0]
        return cls(positions, np.zeros(n, dtype=np.intp), 1)


@dataclass(frozen=True)
class AssetParams:
    """Per-asset risk parameters (§5-§7), indexed by asset.

    sigma: daily volatility; liq_horizon_days: T_liq(a); h_min: floor haircut;
    conc_k: concentration coefficient k_a; depth_usd: liquidity depth D_a, > 0 wherever
    k_a > 0 (an asset with k_a = 0 has no concentration term, so its D_a may be 0);
    corr: asset x asset correlation rho.
    `corr_factor` (derived) is F with F F^T = rho after clipping float-noise negative
    eigenvalues; sqrt(s^T R s) is evaluated as |F^T u| so hedges cancel without the
    sqrt amplifying rounding error.
    """

    sigma: FloatArray
    liq_horizon_days: FloatArray
    h_min: FloatArray
    conc_k: FloatArray
    depth_usd: FloatArray
    corr: FloatArray
    corr_factor: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = self.sigma.shape[0]
        _check_vector("sigma", self.sigma, n)
        _check_vector("liq_horizon_days", self.liq_horizon_days, n)
        _check_vector("h_min", self.h_min, n)
        _check_vector("conc_k", self.conc_k, n)
        _check_vector("depth_usd", self.depth_usd, n)
        if self.corr.dtype != np.float64 or self.corr.shape != (n, n):
            raise InvalidInput(f"corr: expected float64 of shape ({n}, {n})")
        if np.any(self.h_min > 1):
            raise InvalidInput("h_min: must be <= 1")
        if np.any((self.conc_k > 0) & (self.depth_usd == 0)):
            raise InvalidInput("depth_usd: D_a must be > 0 where conc_k > 0 (§7)")
        object.__setattr__(self, "corr_factor", correlation_factor(self.corr))

    @classmethod
    def build(
        cls,
        sigma: Sequence[float] | FloatArray,
        liq_horizon_days: Sequence[float] | FloatArray,
        h_min: Sequence[float] | FloatArray,
        conc_k: Sequence[float] | FloatArray,
        depth_usd: Sequence[float] | FloatArray,
        corr: Sequence[Sequence[float]] | FloatArray,
    ) -> AssetParams:
        """Convert sequences to read-only float64 arrays and validate."""
        return cls(
            _floats("sigma", sigma),
            _floats("liq_horizon_days", liq_horizon_days),
            _floats("h_min", h_min),
            _floats("conc_k", conc_k),
            _floats("depth_usd", depth_usd),
            _floats("corr", corr, ndim=2),
        )

    @property
    def n_assets(self) -> int:
        return int(self.sigma.shape[0])


def correlation_factor(corr: FloatArray) -> FloatArray:
    """F such that F F^T = rho (§6), rejecting matrices that are not correlations.

    Requires symmetry, unit diagonal (R_pq = 1 for the same asset, §7), entries in
    [-1, 1] and no eigenvalue below -PSD_TOLERANCE; smaller negative eigenvalues are
    clipped to 0 so every quadratic form is >= 0.
    """
    if corr.shape[0] == 0:
        return np.zeros((0, 0), dtype=np.float64)
    if not np.all(np.isfinite(corr)):
        raise InvalidInput("corr: values must be finite")
    if not np.allclose(corr, corr.T, rtol=0.0, atol=1e-12):
        raise InvalidInput("corr: must be symmetric")
    if not np.allclose(np.diag(corr), 1.0, rtol=0.0, atol=1e-12):
        raise InvalidInput("corr: diagonal must be 1 (same asset on any chain)")
    if np.any(np.abs(corr) > 1.0 + 1e-12):
        raise InvalidInput("corr: entries must lie in [-1, 1]")
    eigval, eigvec = np.linalg.eigh((corr + corr.T) / 2.0)
    if eigval.min() < -PSD_TOLERANCE:
        raise InvalidInput(f"corr: not positive semi-definite (eigenvalue {eigval.min():.3g})")
    factor: FloatArray = eigvec * np.sqrt(np.clip(eigval, 0.0, None))
    factor.flags.writeable = False
    return factor


@dataclass(frozen=True)
class MarginParams:
    """Account-independent settings of one computation (§5, §7).

    z: the VaR multiplier (see `z_score`); kappa: correlation-breakdown stress in
    [0, 1]; latency: L(c -> t) in days, chain x chain (see `latency_matrix`);
    target_chain: t, the chain where the margin is used.
    """

    z: float
    kappa: float
    latency: FloatArray
    target_chain: int

    def __post_init__(self) -> None:
        if not (np.isfinite(self.z) and self.z >= 0):
            raise InvalidInput("z: must be finite and >= 0")
        if not 0.0 <= self.kappa <= 1.0:
            raise InvalidInput("kappa: must lie in [0, 1]")
        m = self.latency.shape[0]
        if self.latency.dtype != np.float64 or self.latency.shape != (m, m):
            raise InvalidInput("latency: must be a square chain x chain matrix")
        if not np.all(np.isfinite(self.latency)) or np.any(self.latency < 0):
            raise InvalidInput("latency: must be finite and >= 0")
        if np.any(np.diag(self.latency) != 0):
            raise InvalidInput("latency: L(c -> c) must be 0")
        if not 0 <= self.target_chain < m:
            raise InvalidInput(f"target_chain {self.target_chain} outside 0..{m - 1}")

    @property
    def n_chains(self) -> int:
        return int(self.latency.shape[0])


def z_score(method: Literal["var", "es"], alpha: float = 0.99, alpha_es: float = 0.975) -> float:
    """VaR multiplier z (§7).

    var: z = Phi^-1(alpha).  es: z = phi(Phi^-1(alpha_es)) / (1 - alpha_es), the
    expected shortfall of a standard normal beyond its alpha_es quantile.
    """
    normal = NormalDist()
    if method == "var":
        if not 0.5 <= alpha < 1.0:
            raise InvalidInput("alpha: must lie in [0.5, 1)")
        return normal.inv_cdf(alpha)
    if method == "es":
        if not 0.0 < alpha_es < 1.0:
            raise InvalidInput("alpha_es: must lie in (0, 1)")
        return normal.pdf(normal.inv_cdf(alpha_es)) / (1.0 - alpha_es)
    raise InvalidInput(f"method: expected 'var' or 'es', got {method!r}")


def check_indices(positions: Positions, assets: AssetParams, params: MarginParams) -> None:
    """Reject asset or chain indices outside the parameter arrays."""
    if positions.asset.size and positions.asset.max() >= assets.n_assets:
        raise InvalidInput("positions: asset index outside the asset parameters")
    if positions.chain.size and positions.chain.max() >= params.n_chains:
        raise InvalidInput("positions: chain index outside the latency matrix")
