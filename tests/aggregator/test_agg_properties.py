"""Property tests of the §7 margin: invariants that must hold for every portfolio."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from agg_helpers import (
    Account,
    accounts,
    hedged_accounts,
    reference_attributions,
    reference_margin,
    scale_of,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator import (
    COMPONENT_NAMES,
    AssetParams,
    MarginParams,
    Positions,
    compute_margin,
    z_score,
)

SETTINGS = settings(max_examples=200, deadline=None)


def _fm(acct: Account) -> float:
    return compute_margin(acct.positions, acct.assets, acct.params).free_margin


def _assets_with(assets: AssetParams, **changes: np.ndarray) -> AssetParams:
    fields = {f: getattr(assets, f) for f in ("sigma", "liq_horizon_days", "h_min")}
    fields |= {f: getattr(assets, f) for f in ("conc_k", "depth_usd", "corr")}
    return AssetParams.build(**(fields | changes))


@SETTINGS
@given(accounts())
def test_components_are_non_negative_and_match_the_literal_method(acct: Account) -> None:
    r = compute_margin(acct.positions, acct.assets, acct.params)
    ref = reference_margin(acct)
    # the literal form loses ~1e-8 of gross on netted hedges (sqrt of rounding noise)
    tol = 1e-7 * scale_of(acct.positions)
    for name in COMPONENT_NAMES:
        value = getattr(r.components, name)
        assert value >= 0.0
        assert value == pytest.approx(ref[name], rel=1e-9, abs=tol), name
    assert r.requirement == pytest.approx(ref["requirement"], rel=1e-9, abs=tol)
    assert r.free_margin == pytest.approx(ref["free_margin"], rel=1e-9, abs=tol)
    assert r.liquidatable == (r.free_margin < 0)


ANY_ACCOUNT = st.one_of(accounts(), hedged_accounts(), hedged_accounts(over=True))


@SETTINGS
@given(ANY_ACCOUNT)
def test_attribution_adds_up_to_the_requirement(acct: Account) -> None:
    # §7: the positions' shares sum to M exactly (up to float rounding), and so do the
    # chains'; the hedged and over-hedged books are where the old attribution (shares of
    # max(VaR(T, R), VaR(T, R^s)) only) missed the clipped latency credit.
    r = compute_margin(acct.positions, acct.assets, acct.params)
    tol = 1e-9 * scale_of(acct.positions)
    pos, chains, comps = r.positions, r.chains, r.components
    assert pos.total.sum() == pytest.approx(r.requirement, rel=1e-9, abs=tol)
    assert chains.total.sum() == pytest.approx(r.requirement, rel=1e-9, abs=tol)
    assert abs(r.attribution_residual) <= tol
    cap = r.requirement / comps.total if r.capped else 1.0
    var_part = comps.market + comps.bridge_latency + comps.correlation
    assert pos.euler.sum() == pytest.approx(cap * var_part, rel=1e-9, abs=tol)
    assert pos.bridge_risk.sum() == pytest.approx(cap * comps.bridge_risk, rel=1e-9, abs=tol)
    assert pos.concentration.sum() == pytest.approx(cap * comps.concentration, abs=tol)
    assert pos.floor.sum() == pytest.approx(cap * comps.floor, rel=1e-9, abs=tol)
    for field in ("euler", "bridge_risk", "concentration", "floor", "total"):
        assert getattr(chains, field).sum() == pytest.approx(
            getattr(pos, field).sum(), rel=1e-9, abs=tol
        )
    haircut = r.haircut[acct.positions.is_collateral]
    assert np.all((haircut >= 0) & (haircut <= 1))


@SETTINGS
@given(ANY_ACCOUNT)
def test_attribution_matches_the_literal_method(acct: Account) -> None:
    r = compute_margin(acct.positions, acct.assets, acct.params)
    scale = scale_of(acct.positions)
    top = max(r.components.market, r.var_base, r.var_stressed)
    if top <= 1e-6 * scale:  # the literal 1/sqrt(q) of a netted hedge is float noise
        return
    candidates = reference_attributions(acct)
    assert any(
        np.allclose(r.positions.total, c, rtol=1e-6, atol=1e-7 * scale) for c in candidates
    ), (r.positions.total, candidates)


@SETTINGS
@given(hedged_accounts(over=True))
def test_over_hedged_books_clip_latency_and_still_add_up(acct: Account) -> None:
    r = compute_margin(acct.positions, acct.assets, acct.params)
    assert r.components.bridge_latency >= 0.0
    assert r.components.bridge_latency == max(0.0, r.var_base - r.components.market)
    tol = 1e-9 * scale_of(acct.positions)
    assert r.positions.total.sum() == pytest.approx(r.requirement, rel=1e-9, abs=tol)


@SETTINGS
@given(accounts(long_only=True))
def test_hidden_debt_is_not_no_debt(acct: Account) -> None:
    # §4 + §7: the no-debt cap needs "no debt"; debt that may be hidden is not that
    seen = compute_margin(acct.positions, acct.assets, acct.params)
    hidden = compute_margin(acct.positions, acct.assets, acct.params, debt_may_be_hidden=True)
    assert not hidden.capped
    assert hidden.requirement == pytest.approx(seen.components.total, rel=1e-12)
    assert hidden.requirement >= seen.requirement
    tol = 1e-9 * scale_of(acct.positions)
    assert hidden.positions.total.sum() == pytest.approx(hidden.requirement, rel=1e-9, abs=tol)


@SETTINGS
@given(accounts(), st.data())
def test_invariant_to_position_order(acct: Account, data: st.DataObject) -> None:
    n = acct.positions.exposure.shape[0]
    perm = np.array(data.draw(st.permutations(range(n))), dtype=np.intp)
    p = acct.positions
    shuffled = Positions(
        p.exposure[perm], p.asset[perm], p.chain[perm], p.bridge_addon[perm], p.bridged[perm]
    )
    a = compute_margin(p, acct.assets, acct.params)
    b = compute_margin(shuffled, acct.assets, acct.params)
    tol = 1e-9 * scale_of(p)
    for name in COMPONENT_NAMES:
        assert getattr(b.components, name) == pytest.approx(getattr(a.components, name), abs=tol)
    assert b.positions.total == pytest.approx(a.positions.total[perm], abs=tol)
    assert b.chains.total == pytest.approx(a.chains.total, abs=tol)


@SETTINGS
@given(accounts(min_size=1), st.data())
def test_invariant_to_splitting_a_position(acct: Account, data: st.DataObject) -> None:
    p = acct.positions
    i = data.draw(st.integers(0, p.exposure.shape[0] - 1))
    frac = data.draw(st.floats(0.0, 1.0))
    first = p.exposure[i] * frac
    exposure = np.append(p.exposure, p.exposure[i] - first)
    exposure[i] = first
    split = Positions.build(
        exposure,
        np.append(p.asset, p.asset[i]),
        np.append(p.chain, p.chain[i]),
        np.append(p.bridge_addon, p.bridge_addon[i]),
        np.append(p.bridged, p.bridged[i]),
    )
    a = compute_margin(p, acct.assets, acct.params)
    b = compute_margin(split, acct.assets, acct.params)
    tol = 1e-9 * scale_of(p)
    for name in COMPONENT_NAMES:
        assert getattr(b.components, name) == pytest.approx(getattr(a.components, name), abs=tol)
    assert b.free_margin == pytest.approx(a.free_margin, abs=tol)
    assert b.chains.total == pytest.approx(a.chains.total, abs=tol)


def _not_higher(after: float, before: float, acct: Account) -> None:
    assert after <= before + 1e-9 * scale_of(acct.positions)


@SETTINGS
@given(accounts(), st.floats(0.0, 0.05))
def test_free_margin_falls_with_alpha(acct: Account, step: float) -> None:
    alpha = 0.9
    lo = dataclasses.replace(acct.params, z=z_score("var", alpha))
    hi = dataclasses.replace(acct.params, z=z_score("var", alpha + step))
    _not_higher(
        _fm(dataclasses.replace(acct, params=hi)), _fm(dataclasses.replace(acct, params=lo)), acct
    )


@SETTINGS
@given(accounts(), st.floats(0.0, 1.0), st.floats(0.0, 0.9))
def test_free_margin_falls_with_concentration(acct: Account, dk: float, shrink: float) -> None:
    a = acct.assets
    harsher = _assets_with(a, conc_k=a.conc_k + dk, depth_usd=a.depth_usd * (1.0 - shrink))
    _not_higher(_fm(dataclasses.replace(acct, assets=harsher)), _fm(acct), acct)


@SETTINGS
@given(accounts(nonneg_corr=True), st.floats(0.0, 1.0))
def test_free_margin_falls_with_kappa(acct: Account, t: float) -> None:
    # dVaR(T, R^s)^2 / dkappa = sum over p != q of ([same side] - R_pq) s_p s_q, which is
    # >= 0 when correlations are >= 0 (a negatively correlated long/short pair gains)
    kappa = acct.params.kappa + t * (1.0 - acct.params.kappa)
    harsher = dataclasses.replace(acct.params, kappa=kappa)
    _not_higher(_fm(dataclasses.replace(acct, params=harsher)), _fm(acct), acct)


@SETTINGS
@given(accounts(long_only=True, nonneg_corr=True), st.floats(0.0, 5.0), st.data())
def test_free_margin_falls_with_latency(acct: Account, extra: float, data: st.DataObject) -> None:
    # Long-only with rho >= 0: every s_p >= 0 and R, R^s >= 0, so both VaRs grow with s.
    # With hedges VaR can fall as a collateral leg grows (see test_latency_credit_is_clipped).
    lat = acct.params.latency.copy()
    m = lat.shape[0]
    c = data.draw(st.integers(0, m - 1))
    t = acct.params.target_chain
    if c != t:
        lat[c, t] += extra
    harsher = dataclasses.replace(acct.params, latency=lat)
    _not_higher(_fm(dataclasses.replace(acct, params=harsher)), _fm(acct), acct)


@SETTINGS
@given(accounts(long_only=True, nonneg_corr=True), st.floats(0.0, 0.1), st.data())
def test_free_margin_falls_with_sigma(acct: Account, extra: float, data: st.DataObject) -> None:
    sigma = acct.assets.sigma.copy()
    sigma[data.draw(st.integers(0, sigma.shape[0] - 1))] += extra
    harsher = _assets_with(acct.assets, sigma=sigma)
    _not_higher(_fm(dataclasses.replace(acct, assets=harsher)), _fm(acct), acct)


def test_sigma_monotonicity_needs_no_hedges() -> None:
    # Documented limit: a larger vol on the hedge asset can lower VaR. ETH collateral
    # (s = 100) hedged by BTC debt, rho 0.8, kappa 0: VaR^2 = 100^2 (1 + l^2 - 1.6 l)
    # falls while the BTC leg l < 0.8.
    def fm(sigma_btc: float) -> float:
        a = AssetParams.build(
            [0.1, sigma_btc], [1, 1], [0, 0], [0, 0], [0, 0], [[1, 0.8], [0.8, 1]]
        )
        p = MarginParams(2.0, 0.0, np.zeros((1, 1)), 0)
        return compute_margin(Positions.build([1000.0, -1000.0], [0, 1], [0, 0]), a, p).free_margin

    assert fm(0.05) > fm(0.0)
