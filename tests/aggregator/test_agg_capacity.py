"""§8 borrowing capacity: closed form, the monotonicity guard, and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from agg_helpers import Account, accounts
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator import (
    AssetParams,
    CapacityNotMonotone,
    InvalidInput,
    MarginParams,
    Positions,
    borrowing_capacity,
    compute_margin,
)

Z = 2.3263478740408408  # Phi^-1(0.99)
SETTINGS = settings(max_examples=200, deadline=None)


def _eth_usdc(h_min_eth: float = 0.1) -> AssetParams:
    # ETH: sigma 5 %/day, T_liq 1 day; USDC: sigma 0 (a debt leg with no market risk)
    return AssetParams.build(
        [0.05, 0.0], [1.0, 1.0], [h_min_eth, 0.0], [0, 0], [0, 0], [[1, 0], [0, 1]]
    )


def _with_debt(acct: Account, asset: int, usd: float) -> Positions:
    p = acct.positions
    return Positions.build(
        np.append(p.exposure, -usd),
        np.append(p.asset, asset),
        np.append(p.chain, acct.params.target_chain),
        np.append(p.bridge_addon, 0.0),
        np.append(p.bridged, False),
    )


def test_capacity_against_a_riskless_borrow() -> None:
    # 1000 of ETH; borrowing USDC adds no VaR (sigma 0, and kappa leaves a lone ETH leg
    # alone), so M stays z * 0.05 * 1000 and free margin = 1000 - B - 116.317
    params = MarginParams(Z, 0.5, np.zeros((1, 1)), 0)
    cap = borrowing_capacity(Positions.build([1000.0], [0], [0]), _eth_usdc(), params, 1)
    expected = 1000.0 - Z * 0.05 * 1000.0
    assert expected - 0.01 <= cap.usd <= expected
    assert 0.0 <= cap.free_margin <= 0.01


def test_capacity_when_the_floor_binds() -> None:
    # h_min 0.2: floor makes M = 0.2 * 1000 = 200 > z * 50
    params = MarginParams(Z, 0.0, np.zeros((1, 1)), 0)
    cap = borrowing_capacity(Positions.build([1000.0], [0], [0]), _eth_usdc(0.2), params, 1)
    assert 800.0 - 0.01 <= cap.usd <= 800.0


def test_no_capacity_when_already_short_of_margin() -> None:
    params = MarginParams(Z, 0.0, np.zeros((1, 1)), 0)
    pos = Positions.build([1000.0, -950.0], [0, 1], [0, 0])
    assert borrowing_capacity(pos, _eth_usdc(), params, 1).usd == 0.0


def test_refuses_when_free_margin_rises_with_borrowing() -> None:
    # Insane vol: ETH sigma 200 %/day. Borrowing ETH hedges faster than it costs:
    # free margin at B = 100 is z * 0 away from 0 while at B = 1 it is 99 - z * 198.
    a = AssetParams.build([2.0], [1.0], [0.0], [0.0], [0.0], [[1.0]])
    params = MarginParams(Z, 0.0, np.zeros((1, 1)), 0)
    with pytest.raises(CapacityNotMonotone) as info:
        borrowing_capacity(Positions.build([100.0], [0], [0]), a, params, 0)
    assert len(info.value.borrow_usd) == len(info.value.free_margin) > 2


def test_rejects_unknown_borrow_asset() -> None:
    params = MarginParams(Z, 0.0, np.zeros((1, 1)), 0)
    with pytest.raises(InvalidInput):
        borrowing_capacity(Positions.build([1.0], [0], [0]), _eth_usdc(), params, 2)


@SETTINGS
@given(accounts(sane=True), st.data())
def test_capacity_leaves_free_margin_near_zero(acct: Account, data: st.DataObject) -> None:
    b = data.draw(st.integers(0, acct.assets.n_assets - 1))
    cap = borrowing_capacity(acct.positions, acct.assets, acct.params, b)
    after = compute_margin(_with_debt(acct, b, cap.usd), acct.assets, acct.params)
    assert after.free_margin == cap.free_margin
    assert after.free_margin >= 0.0 or cap.usd == 0.0
    if cap.usd > 0:
        assert after.free_margin <= 0.01
        beyond = compute_margin(_with_debt(acct, b, cap.usd + 0.01), acct.assets, acct.params)
        assert beyond.free_margin < 0


@SETTINGS
@given(
    accounts(sane=True),
    st.floats(0.0, 1e6),
    st.data(),
)
def test_adding_collateral_never_lowers_capacity(
    acct: Account, extra: float, data: st.DataObject
) -> None:
    # 'sane' keeps z sigma sqrt(T) + b + concentration well below 1, so a dollar of
    # collateral adds less than a dollar of requirement.
    n_assets = acct.assets.n_assets
    b = data.draw(st.integers(0, n_assets - 1))
    a = data.draw(st.integers(0, n_assets - 1))
    c = data.draw(st.integers(0, acct.params.n_chains - 1))
    p = acct.positions
    richer = Positions.build(
        np.append(p.exposure, extra),
        np.append(p.asset, a),
        np.append(p.chain, c),
        np.append(p.bridge_addon, 0.0),
        np.append(p.bridged, False),
    )
    before = borrowing_capacity(p, acct.assets, acct.params, b)
    after = borrowing_capacity(richer, acct.assets, acct.params, b)
    assert after.usd >= before.usd - 0.01
    assert math.isfinite(after.usd)
