"""Portfolio margin (METHOD.md §7) of a batch of accounts: the one implementation.

A single account is a batch of one (`compute_margin`). Positions of all accounts are one
flat array plus an account index per position, in any order; every per-account sum is a
bincount over that index (or over account x asset), with no Python loop over accounts or
positions.

Correlations act by asset (R_pq = rho_a(p)a(q), 1 for the same asset on any chain), so
for account k, s^T R s = u_k^T rho u_k with u_ka = sum of s_p over k's positions in asset
a, evaluated as |F^T u_k|^2 with F F^T = rho. The stressed form needs only the one-sided
sums S+ = sum of s_p over x_p > 0 and S- over x_p < 0:

    s^T R^s s   = (1 - kappa) s^T R s + kappa (S+^2 + S-^2)
    (R^s s)_p   = (1 - kappa) (R s)_p + kappa S_side(p)

(the diagonal of R^s stays 1). No matrix over positions is ever formed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from aggregator._types import BoolArray, FloatArray, IntArray
from aggregator.horizons import position_horizons
from aggregator.inputs import AssetParams, BatchPositions, MarginParams, Positions, check_indices
from aggregator.results import Attribution, BatchMarginResult, MarginResult

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


def rows_times(u: FloatArray, m: FloatArray) -> FloatArray:
    """u @ m for u of shape (n_accounts, k), summing over k in a fixed order, so that each
    account's row is bit-identical whatever the batch size (BLAS picks its kernels, and
    so its rounding, by shape): a batch of N gives the reports of N batches of one."""
    out = np.zeros((u.shape[0], m.shape[1]), dtype=np.float64)
    for i in range(m.shape[0]):  # over assets, never over accounts or positions
        out += u[:, i, None] * m[i]
    return out


def row_dot(a: FloatArray, b: FloatArray) -> FloatArray:
    """Row-wise dot product, one row at a time in the same order for any batch size."""
    dot: FloatArray = (a * b).sum(axis=1)
    return dot


@dataclass(frozen=True)
class _Totals:
    """Per-account §7 figures (arrays of n_accounts) and the per-position intermediates
    the attribution needs (arrays of n_positions)."""

    market: FloatArray
    bridge_latency: FloatArray
    correlation: FloatArray
    bridge_risk: FloatArray
    concentration: FloatArray
    floor: FloatArray
    total: FloatArray
    requirement: FloatArray
    capped: BoolArray
    collateral: FloatArray
    debt: FloatArray
    var_base: FloatArray
    var_stressed: FloatArray
    q_market: FloatArray
    q_base: FloatArray
    q_stressed: FloatArray
    s_plus: FloatArray
    s_minus: FloatArray
    rate: FloatArray  # k_a sqrt(V_a / D_a), (n_accounts, n_assets)
    w: FloatArray  # F^T u per account (rows): (R s) per account x asset is w F^T
    w_market: FloatArray
    horizon: FloatArray
    s: FloatArray
    s_market: FloatArray
    x_collateral: FloatArray


def _totals(
    batch: BatchPositions,
    assets: AssetParams,
    params: MarginParams,
    debt_may_be_hidden: bool | BoolArray,
) -> _Totals:
    """§5 horizons, the six §7 components and M of every account of the batch."""
    pos = batch.positions
    n_acc, n_assets = batch.n_accounts, assets.n_assets
    x, asset, account = pos.exposure, pos.asset, batch.account
    key = account * n_assets + asset
    cells = n_acc * n_assets

    def by_account(values: FloatArray) -> FloatArray:
        return group_sum(account, values, n_acc)

    def by_cell(values: FloatArray) -> FloatArray:
        return group_sum(key, values, cells).reshape(n_acc, n_assets)

    is_coll = x > 0
    is_debt = x < 0
    x_coll = np.where(is_coll, x, 0.0)
    sigma = assets.sigma[asset]
    horizon = position_horizons(
        asset, pos.chain, is_coll, assets.liq_horizon_days, params.latency, params.target_chain
    )
    s_market = sigma * np.sqrt(assets.liq_horizon_days[asset]) * x  # every L = 0
    s = sigma * np.sqrt(horizon) * x

    factor = assets.corr_factor
    w_market = rows_times(by_cell(s_market), factor)
    w = rows_times(by_cell(s), factor)
    q_market = row_dot(w_market, w_market)
    q_base = row_dot(w, w)
    s_plus = by_account(np.where(is_coll, s, 0.0))
    s_minus = by_account(np.where(is_debt, s, 0.0))
    kappa, z = params.kappa, params.z
    q_stressed = (1.0 - kappa) * q_base + kappa * (s_plus * s_plus + s_minus * s_minus)
    gross = by_account(np.abs(s))
    market = z * root_risk(q_market, by_account(np.abs(s_market)))
    var_base = z * root_risk(q_base, gross)
    var_stressed = z * root_risk(q_stressed, gross)

    coll_by_asset = by_cell(x_coll)
    rate = concentration_rate(assets.conc_k, assets.depth_usd, coll_by_asset)
    concentration = row_dot(rate, coll_by_asset)
    floor_base = row_dot(coll_by_asset, assets.h_min[None, :])
    bridge_risk = by_account(pos.bridge_addon * x_coll)
    collateral = by_account(x_coll)
    debt = by_account(np.where(is_debt, -x, 0.0))

    bridge_latency = np.maximum(0.0, var_base - market)  # §7: latency never earns credit
    correlation = np.maximum(0.0, var_stressed - var_base)
    above_floor = market + bridge_latency + correlation + bridge_risk + concentration
    floor = np.maximum(0.0, floor_base - above_floor)
    total = above_floor + floor
    # M is capped at collateral when there is no debt; debt that may be hidden (§4) is
    # not "no debt", so then the cap does not apply (the larger M)
    capped = (debt == 0.0) & ~np.asarray(debt_may_be_hidden, dtype=np.bool_) & (total > collateral)
    return _Totals(
        market=market,
        bridge_latency=bridge_latency,
        correlation=correlation,
        bridge_risk=bridge_risk,
        concentration=concentration,
        floor=floor,
        total=total,
        requirement=np.where(capped, collateral, total),
        capped=capped,
        collateral=collateral,
        debt=debt,
        var_base=var_base,
        var_stressed=var_stressed,
        q_market=q_market,
        q_base=q_base,
        q_stressed=q_stressed,
        s_plus=s_plus,
        s_minus=s_minus,
        rate=rate,
        w=w,
        w_market=w_market,
        horizon=horizon,
        s=s,
        s_market=s_market,
        x_collateral=x_coll,
    )


def free_margin_many(
    batch: BatchPositions, assets: AssetParams, params: MarginParams
) -> FloatArray:
    """equity - M (§7) of every account, without attribution: what the §8 capacity
    search evaluates, many candidate debts at once."""
    check_indices(batch.positions, assets, params)
    t = _totals(batch, assets, params, False)
    free: FloatArray = t.collateral - t.debt - t.requirement
    return free


def compute_margin_batch(
    batch: BatchPositions,
    assets: AssetParams,
    params: MarginParams,
    *,
    debt_may_be_hidden: bool | BoolArray = False,
) -> BatchMarginResult:
    """Portfolio margin of every account with attribution (METHOD.md §5, §7).

    s_p = sigma_a * sqrt(T_p) * x_p;  VaR(T, R) = z * sqrt(s^T R s);
    market = VaR with every L = 0;  bridge_latency = max(0, VaR(T, R) - market);
    correlation = max(0, VaR(T, R^s) - VaR(T, R));  bridge_risk = sum b_r x_p;
    concentration = sum k_a sqrt(V_a / D_a) x_p;  floor = max(0, sum h_min x_p - rest)
    (sums over collateral). M = sum, capped at collateral without debt (not where
    `debt_may_be_hidden`, §4, a bool or one per account); free_margin = equity - M;
    health = (collateral - M) / debt; liquidatable iff free_margin < 0. Attribution:
    V* = the largest of VaR(T, R^s), VaR(T, R), VaR(L=0, R) (ties in that order);
    VaR share_p = z s*_p (R* s*)_p / sqrt(s*^T R* s*) with V*'s horizons and matrix,
    times (market + bridge_latency + correlation) / V*; plus the position's bridge_risk,
    concentration and floor shares; all scaled by M / sum when the cap bites, so the
    shares sum to M. Standalone haircut
    h_p = min(1, max(h_min, z sigma sqrt(T_p)) + b_r + k_a sqrt(V_a / D_a)).
    """
    pos = batch.positions
    check_indices(pos, assets, params)
    t = _totals(batch, assets, params, debt_may_be_hidden)
    account, asset = batch.account, pos.asset
    rate_p = t.rate[account, asset]
    var_share = _var_shares(t, batch, assets, params)
    bridge_share = pos.bridge_addon * t.x_collateral
    conc_share = rate_p * t.x_collateral
    floor_weight = assets.h_min[asset] * t.x_collateral
    weight_total = group_sum(account, floor_weight, batch.n_accounts)
    has_weight = weight_total > 0
    floor_per_weight = np.divide(
        t.floor, weight_total, out=np.zeros_like(t.floor), where=has_weight
    )
    floor_share = floor_per_weight[account] * floor_weight
    # the cap bit: M = collateral < sum of components, every share shrinks pro rata
    cap = np.divide(t.requirement, t.total, out=np.ones_like(t.total), where=t.capped)[account]
    per_position = Attribution(
        cap * var_share, cap * bridge_share, cap * conc_share, cap * floor_share
    )
    standalone = np.maximum(
        assets.h_min[asset], params.z * assets.sigma[asset] * np.sqrt(t.horizon)
    )
    haircut = np.where(
        pos.exposure > 0, np.minimum(1.0, standalone + pos.bridge_addon + rate_p), np.nan
    )
    equity = t.collateral - t.debt
    free_margin = equity - t.requirement
    health = np.full(batch.n_accounts, np.nan)
    with np.errstate(over="ignore"):  # a dust debt gives health inf, as float division does
        np.divide(t.collateral - t.requirement, t.debt, out=health, where=t.debt > 0)
    return BatchMarginResult(
        market=t.market,
        bridge_latency=t.bridge_latency,
        correlation=t.correlation,
        bridge_risk=t.bridge_risk,
        concentration=t.concentration,
        floor=t.floor,
        requirement=t.requirement,
        capped=t.capped,
        collateral=t.collateral,
        debt=t.debt,
        equity=equity,
        free_margin=free_margin,
        health=health,
        liquidatable=free_margin < 0,
        var_base=t.var_base,
        var_stressed=t.var_stressed,
        horizon=t.horizon,
        haircut=haircut,
        positions=per_position,
        chains=_per_chain(per_position, batch, params.n_chains),
    )


def _per_chain(shares: Attribution, batch: BatchPositions, n_chains: int) -> Attribution:
    """Sums of the position shares per account x chain, shape (n_accounts, n_chains)."""
    key = batch.account * n_chains + batch.positions.chain
    cells = batch.n_accounts * n_chains

    def by_chain(v: FloatArray) -> FloatArray:
        return group_sum(key, v, cells).reshape(batch.n_accounts, n_chains)

    return Attribution(
        by_chain(shares.euler),
        by_chain(shares.bridge_risk),
        by_chain(shares.concentration),
        by_chain(shares.floor),
    )


def _var_shares(
    t: _Totals, batch: BatchPositions, assets: AssetParams, params: MarginParams
) -> FloatArray:
    """VaR shares of §7: the Euler allocation z s*_p (R* s*)_p / sqrt(s*^T R* s*) of V*, the
    largest of VaR(T, R^s), VaR(T, R), VaR(L=0, R) (ties in that order), with that VaR's
    horizons s* and matrix R*, scaled by var_part / V* so that they sum to var_part
    (= market + bridge_latency + correlation), account by account."""
    account, asset = batch.account, batch.positions.asset
    kappa = params.kappa
    # which VaR is V*: 0 stressed, 1 base, 2 market (the first of the largest)
    choice = np.where(t.var_base > t.var_stressed, 1, 0)
    v_star = np.maximum(t.var_stressed, t.var_base)
    choice = np.where(t.market > v_star, 2, choice)
    v_star = np.maximum(v_star, t.market)
    q_star = np.choose(choice, (t.q_stressed, t.q_base, t.q_market))
    var_part = t.market + t.bridge_latency + t.correlation
    live = v_star > 0  # otherwise every VaR is 0 (or float noise), and so is var_part
    # z / sqrt(q*) * var_part / V*, per account; 0 where V* is 0
    scale = np.zeros_like(v_star)
    np.divide(params.z * var_part, np.sqrt(q_star) * v_star, out=scale, where=live)

    side_sum = np.where(t.x_collateral > 0, t.s_plus[account], 0.0) + np.where(
        batch.positions.exposure < 0, t.s_minus[account], 0.0
    )
    factor_t = assets.corr_factor.T
    rs = rows_times(t.w, factor_t)[account, asset]
    choice_p = choice[account]
    s_star = np.where(choice_p == 2, t.s_market, t.s)
    r_star_s = np.choose(
        choice_p,
        (
            (1.0 - kappa) * rs + kappa * side_sum,
            rs,
            rows_times(t.w_market, factor_t)[account, asset],
        ),
    )
    shares: FloatArray = scale[account] * s_star * r_star_s
    return shares


def compute_margin(
    positions: Positions,
    assets: AssetParams,
    params: MarginParams,
    *,
    debt_may_be_hidden: bool = False,
) -> MarginResult:
    """`compute_margin_batch` for one account (a batch of one), as scalars (METHOD.md §7)."""
    r = compute_margin_batch(
        BatchPositions.of(positions), assets, params, debt_may_be_hidden=debt_may_be_hidden
    )
    return r.account(0, slice(None))
