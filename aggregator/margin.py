"""Portfolio margin of one account (METHOD.md §7).

Correlations act by asset (R_pq = rho_a(p)a(q), 1 for the same asset on any chain), so
s^T R s = u^T rho u with u_a = sum of s_p over positions in asset a, evaluated as
|F^T u|^2 with F F^T = rho. The stressed form needs only the one-sided sums
S+ = sum of s_p over x_p > 0 and S- over x_p < 0:

    s^T R^s s   = (1 - kappa) s^T R s + kappa (S+^2 + S-^2)
    (R^s s)_p   = (1 - kappa) (R s)_p + kappa S_side(p)

(the diagonal of R^s stays 1). No matrix over positions is ever formed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np

from aggregator._types import BoolArray, FloatArray, IntArray
from aggregator.horizons import position_horizons
from aggregator.inputs import AssetParams, MarginParams, Positions, check_indices
from aggregator.results import Attribution, Components, MarginResult

# A 1-sigma portfolio risk |F^T u| below this fraction of the gross 1-sigma exposure
# sum |s_p| is cancellation noise (a hedge that nets to zero up to rounding): it is
# reported as VaR 0 with zero Euler shares, instead of shares of +-z*|s_p| that sum
# to ~0.
NOISE_RELATIVE = 1e-12


def root_risk(q: FloatArray, gross: FloatArray) -> FloatArray:
    """sqrt(q) with q's float noise (negative or below NOISE_RELATIVE * gross) set to 0."""
    root: FloatArray = np.sqrt(np.clip(q, 0.0, None))
    cleaned: FloatArray = np.where(root > NOISE_RELATIVE * gross, root, 0.0)
    return cleaned


def _root_risk_scalar(q: float, gross: float) -> float:
    """`root_risk` for one account (math.sqrt and np.sqrt round identically)."""
    root = math.sqrt(max(q, 0.0))
    return root if root > NOISE_RELATIVE * gross else 0.0


def group_sum(index: IntArray, values: FloatArray, n_groups: int) -> FloatArray:
    """sum of values per group index (a weighted bincount), length n_groups."""
    # bincount returns int64 when there are no values at all; keep the dtype promise
    return cast(FloatArray, np.bincount(index, values, n_groups).astype(np.float64, copy=False))


def concentration_rate(
    conc_k: FloatArray, depth_usd: FloatArray, collateral_by_asset: FloatArray
) -> FloatArray:
    """k_a * sqrt(V_a / D_a) (§7), 0 where the depth D_a is not configured (0).

    METHOD.md reads D_a as 0 when not configured; a literal division would make every
    unconfigured asset unusable, so the term is dropped instead. Works on V of shape
    (n_assets,) or (n_accounts, n_assets).
    """
    configured = depth_usd > 0
    safe_depth = np.where(configured, depth_usd, 1.0)
    rate: FloatArray = np.where(configured, conc_k * np.sqrt(collateral_by_asset / safe_depth), 0.0)
    return rate


@dataclass(frozen=True)
class _Core:
    """Totals of one account plus the intermediates the attribution needs."""

    components: Components
    collateral: float
    debt: float
    var_base: float
    var_stressed: float
    horizon: FloatArray
    s: FloatArray
    is_collateral: BoolArray
    x_collateral: FloatArray
    rate: FloatArray
    rs: FloatArray
    s_plus: float
    s_minus: float
    q_base: float
    q_stressed: float


def _core(
    x: FloatArray,
    asset: IntArray,
    chain: IntArray,
    bridge_addon: FloatArray,
    assets: AssetParams,
    params: MarginParams,
) -> _Core:
    """§5 horizons and the six §7 components, from raw (validated) arrays."""
    z, kappa, n_assets = params.z, params.kappa, assets.n_assets
    is_coll = x > 0
    is_debt = x < 0
    x_coll = np.where(is_coll, x, 0.0)
    collateral = float(x_coll.sum())
    debt = float(np.where(is_debt, -x, 0.0).sum())

    sigma = assets.sigma[asset]
    horizon = position_horizons(
        asset, chain, is_coll, assets.liq_horizon_days, params.latency, params.target_chain
    )
    s_market = sigma * np.sqrt(assets.liq_horizon_days[asset]) * x  # every L = 0
    s = sigma * np.sqrt(horizon) * x

    factor = assets.corr_factor
    w_market = group_sum(asset, s_market, n_assets) @ factor
    w = group_sum(asset, s, n_assets) @ factor
    gross_market = float(np.abs(s_market).sum())
    gross = float(np.abs(s).sum())
    q_market = float(w_market @ w_market)
    q_base = float(w @ w)
    s_plus = float(np.where(is_coll, s, 0.0).sum())
    s_minus = float(np.where(is_debt, s, 0.0).sum())
    q_stressed = (1.0 - kappa) * q_base + kappa * (s_plus * s_plus + s_minus * s_minus)

    market = z * _root_risk_scalar(q_market, gross_market)
    var_base = z * _root_risk_scalar(q_base, gross)
    var_stressed = z * _root_risk_scalar(q_stressed, gross)

    rate = concentration_rate(assets.conc_k, assets.depth_usd, group_sum(asset, x_coll, n_assets))
    bridge_risk = float((bridge_addon * x_coll).sum())
    concentration = float((rate[asset] * x_coll).sum())
    floor_base = float((assets.h_min[asset] * x_coll).sum())

    bridge_latency = max(0.0, var_base - market)  # conservative: latency earns no credit
    correlation = max(0.0, var_stressed - var_base)
    above_floor = market + bridge_latency + correlation + bridge_risk + concentration
    components = Components(
        market=market,
        bridge_latency=bridge_latency,
        correlation=correlation,
        bridge_risk=bridge_risk,
        concentration=concentration,
        floor=max(0.0, floor_base - above_floor),
    )
    return _Core(
        components=components,
        collateral=collateral,
        debt=debt,
        var_base=var_base,
        var_stressed=var_stressed,
        horizon=horizon,
        s=s,
        is_collateral=is_coll,
        x_collateral=x_coll,
        rate=rate,
        rs=(factor @ w)[asset],
        s_plus=s_plus,
        s_minus=s_minus,
        q_base=q_base,
        q_stressed=q_stressed,
    )


def _requirement(components: Components, collateral: float, debt: float) -> tuple[float, bool]:
    """M = sum of components, capped at collateral when there is no debt (§7)."""
    total = components.total
    if debt == 0.0 and total > collateral:
        return collateral, True
    return total, False


def free_margin_of(
    x: FloatArray,
    asset: IntArray,
    chain: IntArray,
    bridge_addon: FloatArray,
    assets: AssetParams,
    params: MarginParams,
) -> float:
    """equity - M (§7) without attribution: the inner loop of the §8 capacity search."""
    core = _core(x, asset, chain, bridge_addon, assets, params)
    requirement, _ = _requirement(core.components, core.collateral, core.debt)
    return core.collateral - core.debt - requirement


def compute_margin(positions: Positions, assets: AssetParams, params: MarginParams) -> MarginResult:
    """Portfolio margin of one account with attribution (METHOD.md §5, §7).

    s_p = sigma_a * sqrt(T_p) * x_p;  VaR(T, R) = z * sqrt(s^T R s);
    market = VaR with every L = 0;  bridge_latency = max(0, VaR(T, R) - market);
    correlation = max(0, VaR(T, R^s) - VaR(T, R));  bridge_risk = sum b_r x_p;
    concentration = sum k_a sqrt(V_a / D_a) x_p;  floor = max(0, sum h_min x_p - rest)
    (sums over collateral). M = sum, capped at collateral without debt;
    free_margin = equity - M; health = (collateral - M) / debt; liquidatable iff
    free_margin < 0. Euler share z s_p (R* s)_p / sqrt(s^T R* s) with R* the matrix of
    the larger VaR; standalone haircut
    h_p = min(1, max(h_min, z sigma sqrt(T_p)) + b_r + k_a sqrt(V_a / D_a)).
    """
    check_indices(positions, assets, params)
    asset, chain = positions.asset, positions.chain
    core = _core(positions.exposure, asset, chain, positions.bridge_addon, assets, params)
    comps = core.components
    requirement, capped = _requirement(comps, core.collateral, core.debt)
    equity = core.collateral - core.debt
    free_margin = equity - requirement

    euler = _euler(core, params)
    bridge_share = positions.bridge_addon * core.x_collateral
    conc_share = core.rate[asset] * core.x_collateral
    floor_weight = assets.h_min[asset] * core.x_collateral
    weight_total = floor_weight.sum()
    floor_share = (
        comps.floor * floor_weight / weight_total if weight_total > 0 else np.zeros_like(euler)
    )
    per_position = Attribution(euler, bridge_share, conc_share, floor_share)
    n_chains = params.n_chains
    per_chain = Attribution(
        group_sum(chain, euler, n_chains),
        group_sum(chain, bridge_share, n_chains),
        group_sum(chain, conc_share, n_chains),
        group_sum(chain, floor_share, n_chains),
    )
    standalone = np.maximum(
        assets.h_min[asset], params.z * assets.sigma[asset] * np.sqrt(core.horizon)
    )
    haircut = np.where(
        core.is_collateral,
        np.minimum(1.0, standalone + positions.bridge_addon + core.rate[asset]),
        np.nan,
    )
    return MarginResult(
        components=comps,
        requirement=requirement,
        capped=capped,
        collateral=core.collateral,
        debt=core.debt,
        equity=equity,
        free_margin=free_margin,
        health=(core.collateral - requirement) / core.debt if core.debt > 0 else None,
        liquidatable=free_margin < 0,
        var_base=core.var_base,
        var_stressed=core.var_stressed,
        horizon=core.horizon,
        haircut=haircut,
        positions=per_position,
        chains=per_chain,
        attribution_residual=requirement - float(per_position.total.sum()),
    )


def _euler(core: _Core, params: MarginParams) -> FloatArray:
    """Euler shares z s_p (R* s)_p / sqrt(s^T R* s) of the larger VaR (§7); they sum to it."""
    if core.var_stressed > core.var_base:
        side_sum = np.where(core.is_collateral, core.s_plus, 0.0) + np.where(
            core.s < 0, core.s_minus, 0.0
        )
        r_star_s = (1.0 - params.kappa) * core.rs + params.kappa * side_sum
        var, q = core.var_stressed, core.q_stressed
    else:
        r_star_s, var, q = core.rs, core.var_base, core.q_base
    if var == 0.0:
        return np.zeros_like(core.s)
    euler: FloatArray = params.z * core.s * r_star_s / np.sqrt(q)
    return euler
