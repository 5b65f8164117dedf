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
    """k_a * sqrt(V_a / D_a) (§7). `AssetParams` guarantees D_a > 0 wherever k_a > 0 (config
    must give D_a for every asset that can be collateral); an asset with k_a = 0 has no
    term whatever its depth. Works on V of shape (n_assets,) or (n_accounts, n_assets).
    """
    has_depth = depth_usd > 0
    safe_depth = np.where(has_depth, depth_usd, 1.0)
    rate: FloatArray = np.where(has_depth, conc_k * np.sqrt(collateral_by_asset / safe_depth), 0.0)
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
    s_market: FloatArray
    rs_market: FloatArray
    q_market: float
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

    bridge_latency = max(0.0, var_base - market)  # §7: latency never earns credit
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
        s_market=s_market,
        rs_market=(factor @ w_market)[asset],
        q_market=q_market,
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


def _requirement(
    components: Components, collateral: float, debt: float, debt_may_be_hidden: bool = False
) -> tuple[float, bool]:
    """M = sum of components, capped at collateral when there is no debt (§7). Debt that may
    be hidden (§4) is not "no debt": then the cap does not apply (the larger M)."""
    total = components.total
    if debt == 0.0 and not debt_may_be_hidden and total > collateral:
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


def compute_margin(
    positions: Positions,
    assets: AssetParams,
    params: MarginParams,
    *,
    debt_may_be_hidden: bool = False,
) -> MarginResult:
    """Portfolio margin of one account with attribution (METHOD.md §5, §7).

    s_p = sigma_a * sqrt(T_p) * x_p;  VaR(T, R) = z * sqrt(s^T R s);
    market = VaR with every L = 0;  bridge_latency = max(0, VaR(T, R) - market);
    correlation = max(0, VaR(T, R^s) - VaR(T, R));  bridge_risk = sum b_r x_p;
    concentration = sum k_a sqrt(V_a / D_a) x_p;  floor = max(0, sum h_min x_p - rest)
    (sums over collateral). M = sum, capped at collateral without debt (not when
    `debt_may_be_hidden`, §4); free_margin = equity - M; health = (collateral - M) / debt;
    liquidatable iff free_margin < 0. Attribution: V* = the largest of VaR(L=0, R),
    VaR(T, R), VaR(T, R^s); VaR share_p = z s*_p (R* s*)_p / sqrt(s*^T R* s*) with V*'s
    horizons and matrix, times (market + bridge_latency + correlation) / V*; plus the
    position's bridge_risk, concentration and floor shares; all scaled by M / sum when the
    cap bites, so the shares sum to M. Standalone haircut
    h_p = min(1, max(h_min, z sigma sqrt(T_p)) + b_r + k_a sqrt(V_a / D_a)).
    """
    check_indices(positions, assets, params)
    asset, chain = positions.asset, positions.chain
    core = _core(positions.exposure, asset, chain, positions.bridge_addon, assets, params)
    comps = core.components
    requirement, capped = _requirement(comps, core.collateral, core.debt, debt_may_be_hidden)
    equity = core.collateral - core.debt
    free_margin = equity - requirement

    var_part = comps.market + comps.bridge_latency + comps.correlation
    var_share = _var_shares(core, params, var_part)
    bridge_share = positions.bridge_addon * core.x_collateral
    conc_share = core.rate[asset] * core.x_collateral
    floor_weight = assets.h_min[asset] * core.x_collateral
    weight_total = floor_weight.sum()
    floor_share = (
        comps.floor * floor_weight / weight_total if weight_total > 0 else np.zeros_like(var_share)
    )
    if capped:  # M = collateral < sum of components: every share shrinks pro rata
        cap = requirement / comps.total
        var_share, bridge_share, conc_share, floor_share = (
            cap * var_share,
            cap * bridge_share,
            cap * conc_share,
            cap * floor_share,
        )
    per_position = Attribution(var_share, bridge_share, conc_share, floor_share)
    n_chains = params.n_chains
    per_chain = Attribution(
        group_sum(chain, var_share, n_chains),
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


def _var_shares(core: _Core, params: MarginParams, var_part: float) -> FloatArray:
    """VaR shares of §7: the Euler allocation z s*_p (R* s*)_p / sqrt(s*^T R* s*) of V*, the
    largest of VaR(T, R^s), VaR(T, R), VaR(L=0, R) (ties in that order), with that VaR's
    horizons s* and matrix R*, scaled by var_part / V* so that they sum to var_part
    (= market + bridge_latency + correlation)."""
    kappa = params.kappa
    side_sum = np.where(core.is_collateral, core.s_plus, 0.0) + np.where(
        core.s < 0, core.s_minus, 0.0
    )
    candidates = (
        (core.var_stressed, core.s, (1.0 - kappa) * core.rs + kappa * side_sum, core.q_stressed),
        (core.var_base, core.s, core.rs, core.q_base),
        (core.components.market, core.s_market, core.rs_market, core.q_market),
    )
    v_star, s_star, r_star_s, q = max(candidates, key=lambda c: c[0])  # first of the largest
    if v_star == 0.0:  # every VaR is 0 (or float noise), and so is var_part
        return np.zeros_like(core.s)
    euler: FloatArray = params.z * s_star * r_star_s / math.sqrt(q)
    scaled: FloatArray = euler * (var_part / v_star)
    return scaled
