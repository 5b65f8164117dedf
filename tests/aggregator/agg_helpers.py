"""Shared test helpers: a literal METHOD.md §7 reference and hypothesis strategies.

The reference builds the position x position matrices R and R^s exactly as METHOD.md
writes them, with none of the production code's algebra (asset aggregation, one-sided
sums, factorised correlation), so agreement is evidence, not tautology.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from aggregator import (
    AssetParams,
    FloatArray,
    MarginParams,
    Positions,
    latency_matrix,
    z_score,
)

Z99 = z_score("var", 0.99)


@dataclass(frozen=True)
class Account:
    positions: Positions
    assets: AssetParams
    params: MarginParams


def reference_margin(acct: Account) -> dict[str, float]:
    """§7 transcribed literally: R_pq, R^s_pq, s^T R s over positions."""
    pos, assets, params = acct.positions, acct.assets, acct.params
    x = pos.exposure
    n = x.shape[0]
    z, kappa = params.z, params.kappa
    coll = x > 0
    t_liq = np.array([assets.liq_horizon_days[a] for a in pos.asset])
    lat = np.array([params.latency[c, params.target_chain] for c in pos.chain])
    horizon = np.where(coll, t_liq + lat, t_liq)
    sigma = np.array([assets.sigma[a] for a in pos.asset])
    s = sigma * np.sqrt(horizon) * x
    s0 = sigma * np.sqrt(t_liq) * x
    r = np.ones((n, n))
    rs = np.ones((n, n))
    for p in range(n):
        for q in range(n):
            if p != q:
                r[p, q] = assets.corr[pos.asset[p], pos.asset[q]]
                same = float(np.sign(x[p]) == np.sign(x[q]))
                rs[p, q] = (1 - kappa) * r[p, q] + kappa * same

    def var(v: np.ndarray, m: np.ndarray) -> float:
        return z * math.sqrt(max(0.0, float(v @ m @ v)))

    market = var(s0, r)
    var_t = var(s, r)
    var_s = var(s, rs)
    bridge_risk = sum(pos.bridge_addon[p] * x[p] for p in range(n) if coll[p])
    v_a = {a: sum(x[p] for p in range(n) if coll[p] and pos.asset[p] == a) for a in pos.asset}
    conc = 0.0
    floor_base = 0.0
    for p in range(n):
        if coll[p]:
            a = pos.asset[p]
            conc += assets.conc_k[a] * math.sqrt(v_a[a] / assets.depth_usd[a]) * x[p]
            floor_base += assets.h_min[a] * x[p]
    bridge_latency = max(0.0, var_t - market)
    correlation = max(0.0, var_s - var_t)
    rest = market + bridge_latency + correlation + bridge_risk + conc
    floor = max(0.0, floor_base - rest)
    collateral = float(x[coll].sum())
    debt = float(-x[x < 0].sum())
    m = rest + floor
    if debt == 0:
        m = min(m, collateral)
    return {
        "market": market,
        "bridge_latency": bridge_latency,
        "correlation": correlation,
        "bridge_risk": bridge_risk,
        "concentration": conc,
        "floor": floor,
        "requirement": m,
        "var_base": var_t,
        "var_stressed": var_s,
        "free_margin": collateral - debt - m,
    }


def reference_attributions(acct: Account) -> list[FloatArray]:
    """§7 attribution transcribed literally, one candidate per VaR that may be V*.

    Each candidate is the per-position total share (VaR share + bridge_risk +
    concentration + floor, scaled by the cap) for one choice of V*: every VaR within
    1e-9 of the largest (a near tie may go either way in float). With position x
    position matrices and np.linalg, none of the production algebra.
    """
    pos, assets, params = acct.positions, acct.assets, acct.params
    x = pos.exposure
    n = x.shape[0]
    z, kappa = params.z, params.kappa
    coll = x > 0
    t_liq = np.array([assets.liq_horizon_days[a] for a in pos.asset])
    lat = np.array([params.latency[c, params.target_chain] for c in pos.chain])
    sigma = np.array([assets.sigma[a] for a in pos.asset])
    s = sigma * np.sqrt(np.where(coll, t_liq + lat, t_liq)) * x
    s0 = sigma * np.sqrt(t_liq) * x
    r = np.array([[assets.corr[pos.asset[p], pos.asset[q]] for q in range(n)] for p in range(n)])
    sides = np.sign(x)
    rs = (1 - kappa) * r + kappa * (sides[:, None] == sides[None, :])
    np.fill_diagonal(r, 1.0)
    np.fill_diagonal(rs, 1.0)
    ref = reference_margin(acct)
    var_part = ref["market"] + ref["bridge_latency"] + ref["correlation"]
    total = var_part + ref["bridge_risk"] + ref["concentration"] + ref["floor"]
    v_a = {a: sum(x[p] for p in range(n) if coll[p] and pos.asset[p] == a) for a in pos.asset}
    own = np.zeros(n)
    floor_w = np.zeros(n)
    for p in range(n):
        if coll[p]:
            a = pos.asset[p]
            rate = assets.conc_k[a] * math.sqrt(v_a[a] / assets.depth_usd[a])
            own[p] = (pos.bridge_addon[p] + rate) * x[p]
            floor_w[p] = assets.h_min[a] * x[p]
    floor = ref["floor"] * floor_w / floor_w.sum() if floor_w.sum() > 0 else np.zeros(n)
    cap = ref["requirement"] / total if total > 0 else 1.0
    options = []
    for vec, mat in ((s, rs), (s, r), (s0, r)):
        q = float(vec @ mat @ vec)
        options.append((z * math.sqrt(max(q, 0.0)), vec, mat, q))
    top = max(v for v, *_ in options)
    out = []
    for v, vec, mat, q in options:
        if v < top * (1 - 1e-9):
            continue
        var_share = z * vec * (mat @ vec) / math.sqrt(q) * var_part / v if v > 0 else np.zeros(n)
        out.append(cap * (var_share + own + floor))
    return out


def scale_of(pos: Positions) -> float:
    """Gross USD of an account plus 1: the absolute tolerance unit of comparisons."""
    return float(np.abs(pos.exposure).sum()) + 1.0


def correlation_from(loadings: FloatArray) -> FloatArray:
    """A valid correlation matrix from factor loadings (rows normalised)."""
    cov = loadings @ loadings.T + 0.05 * np.eye(loadings.shape[0])
    d = np.sqrt(np.diag(cov))
    corr: FloatArray = cov / np.outer(d, d)
    np.fill_diagonal(corr, 1.0)
    symmetric: FloatArray = (corr + corr.T) / 2
    return symmetric


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def asset_params(
    draw: st.DrawFn,
    n_assets: int,
    *,
    nonneg_corr: bool = False,
    sane: bool = False,
) -> AssetParams:
    """Random §6/§7 asset parameters; `sane` keeps every standalone haircut well below 1."""
    sig_hi, t_hi, depth_lo = (0.03, 3.0, 1e8) if sane else (0.1, 5.0, 1e3)
    vec = st.lists
    sigma = draw(vec(_floats(0.0, sig_hi), min_size=n_assets, max_size=n_assets))
    t_liq = draw(vec(_floats(0.05, t_hi), min_size=n_assets, max_size=n_assets))
    h_min = draw(vec(_floats(0.0, 0.5), min_size=n_assets, max_size=n_assets))
    conc_k = draw(vec(_floats(0.0, 0.5), min_size=n_assets, max_size=n_assets))
    depth = draw(vec(_floats(depth_lo, 1e9), min_size=n_assets, max_size=n_assets))
    lo = 0.0 if nonneg_corr else -1.0
    flat = draw(vec(_floats(lo, 1.0), min_size=n_assets * 2, max_size=n_assets * 2))
    corr = correlation_from(np.array(flat).reshape(n_assets, 2))
    if draw(st.booleans()) and nonneg_corr:
        corr = np.ones((n_assets, n_assets))  # perfectly correlated distinct assets
    return AssetParams.build(sigma, t_liq, h_min, conc_k, depth, corr)


@st.composite
def margin_params(draw: st.DrawFn, n_chains: int, *, sane: bool = False) -> MarginParams:
    """Random z (var or es), kappa, hub latencies and target chain."""
    lat_hi = 0.5 if sane else 3.0
    to_hub = draw(st.lists(_floats(0.0, lat_hi), min_size=n_chains, max_size=n_chains))
    from_hub = draw(st.lists(_floats(0.0, lat_hi), min_size=n_chains, max_size=n_chains))
    if draw(st.booleans()):
        z = z_score("var", draw(_floats(0.9, 0.999)))
    else:
        z = z_score("es", alpha_es=draw(_floats(0.9, 0.99)))
    return MarginParams(
        z=z,
        kappa=draw(_floats(0.0, 1.0)),
        latency=latency_matrix(to_hub, from_hub),
        target_chain=draw(st.integers(0, n_chains - 1)),
    )


@st.composite
def positions_for(
    draw: st.DrawFn,
    n_assets: int,
    n_chains: int,
    *,
    long_only: bool = False,
    min_size: int = 0,
    max_size: int = 6,
) -> Positions:
    """Random positions over the given assets and chains (USD exposures up to 1e6)."""
    n = draw(st.integers(min_size, max_size))
    lo = 0.0 if long_only else -1e6
    exposure = draw(st.lists(_floats(lo, 1e6), min_size=n, max_size=n))
    asset = draw(st.lists(st.integers(0, n_assets - 1), min_size=n, max_size=n))
    chain = draw(st.lists(st.integers(0, n_chains - 1), min_size=n, max_size=n))
    addon = draw(st.lists(st.one_of(st.just(0.0), _floats(0.0, 0.05)), min_size=n, max_size=n))
    bridged = [b > 0 for b in addon]
    return Positions.build(exposure, asset, chain, addon, bridged)


@st.composite
def hedged_accounts(draw: st.DrawFn, *, over: bool = False) -> Account:
    """Collateral hedged by debt of the same asset: the collateral often a bridge away
    from the target, the debt on the target chain, the debt leg 0.5-2x the collateral
    (`over`: always above it). Over-hedged books are where latency lowers VaR(T, R) below
    the market VaR and the §7 latency clip bites."""
    n_assets = draw(st.integers(1, 3))
    n_chains = draw(st.integers(2, 3))
    params = draw(margin_params(n_chains))
    t = params.target_chain
    exposure: list[float] = []
    asset: list[int] = []
    chain: list[int] = []
    for _ in range(draw(st.integers(1, 3))):
        a = draw(st.integers(0, n_assets - 1))
        amount = draw(_floats(1.0, 1e6))
        ratio = draw(_floats(1.01, 2.0) if over else _floats(0.5, 2.0))
        exposure += [amount, -amount * ratio]
        asset += [a, a]
        chain += [draw(st.integers(0, n_chains - 1)), t]
    return Account(
        positions=Positions.build(exposure, asset, chain),
        assets=draw(asset_params(n_assets)),
        params=params,
    )


@st.composite
def accounts(
    draw: st.DrawFn,
    *,
    long_only: bool = False,
    nonneg_corr: bool = False,
    sane: bool = False,
    min_size: int = 0,
) -> Account:
    """One random account with its parameters."""
    n_assets = draw(st.integers(1, 3))
    n_chains = draw(st.integers(1, 3))
    return Account(
        positions=draw(positions_for(n_assets, n_chains, long_only=long_only, min_size=min_size)),
        assets=draw(asset_params(n_assets, nonneg_corr=nonneg_corr, sane=sane)),
        params=draw(margin_params(n_chains, sane=sane)),
    )
