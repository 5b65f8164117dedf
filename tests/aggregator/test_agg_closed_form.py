"""Hand-computed METHOD.md §5/§7 figures: every expected value is written as arithmetic."""

import math

import numpy as np
import pytest

from aggregator import (
    AssetParams,
    InvalidInput,
    MarginParams,
    Positions,
    compute_margin,
    latency_matrix,
    z_score,
)

Z = 2.3263478740408408  # Phi^-1(0.99)
ETH, BTC, USDC = 0, 1, 2
REL = 1e-12


def approx(value: float) -> object:
    return pytest.approx(value, rel=REL, abs=1e-9)


def assets(
    h_min: tuple[float, float, float] = (0.1, 0.1, 0.02),
    conc_k: tuple[float, float, float] = (0.0, 0.0, 0.0),
    depth: tuple[float, float, float] = (1e9, 1e9, 1e9),
    rho_eth_btc: float = 0.0,
) -> AssetParams:
    """ETH: sigma 5%/day, T_liq 1 d; BTC: 4%, 2.25 d; USDC: 0.1%, 1 d."""
    corr = [[1.0, rho_eth_btc, 0.0], [rho_eth_btc, 1.0, 0.0], [0.0, 0.0, 1.0]]
    return AssetParams.build([0.05, 0.04, 0.001], [1.0, 2.25, 1.0], h_min, conc_k, depth, corr)


def params(kappa: float = 0.5) -> MarginParams:
    """Chain 0 is the target; chain 1 -> 0 takes 3 days, chain 2 -> 0 takes 0.44 days."""
    return MarginParams(Z, kappa, latency_matrix([0.0, 3.0, 0.44], [0.0, 0.0, 0.0]), 0)


def test_z_scores() -> None:
    assert z_score("var", 0.99) == pytest.approx(Z, rel=1e-12)
    # ES at 97.5%: phi(1.959964) / 0.025 = 0.0584451 / 0.025
    phi = math.exp(-(1.959963984540054**2) / 2) / math.sqrt(2 * math.pi)
    assert z_score("es", alpha_es=0.975) == pytest.approx(phi / 0.025, rel=1e-9)
    with pytest.raises(InvalidInput):
        z_score("var", 1.0)


def test_one_asset_one_chain() -> None:
    # 1000 USD of ETH on the target chain, 300 USD of USDC debt.
    pos = Positions.build([1000.0, -300.0], [ETH, USDC], [0, 0])
    r = compute_margin(pos, assets(), params())
    s_eth = 0.05 * math.sqrt(1.0) * 1000.0  # 50
    s_usdc = 0.001 * math.sqrt(1.0) * -300.0  # -0.3
    market = Z * math.sqrt(s_eth**2 + s_usdc**2)  # rho(ETH, USDC) = 0
    # opposite sides: R^s_12 = (1 - 0.5) * 0 = 0, so the stress changes nothing
    assert r.components.market == approx(market)
    assert r.components.bridge_latency == 0.0
    assert r.components.correlation == approx(0.0)
    assert r.components.floor == 0.0  # 0.1 * 1000 = 100 < 116.3
    assert r.requirement == approx(market)
    assert r.equity == approx(700.0)
    assert r.free_margin == approx(700.0 - market)
    assert r.health == approx((1000.0 - market) / 300.0)
    assert not r.liquidatable
    assert r.haircut[0] == approx(Z * 0.05 * 1.0)  # > h_min 0.1
    assert math.isnan(r.haircut[1])
    assert r.positions.euler[0] == approx(Z * s_eth * s_eth / math.sqrt(s_eth**2 + s_usdc**2))
    assert r.positions.euler.sum() == approx(market)


def test_same_asset_two_chains_different_latencies() -> None:
    pos = Positions.build([1000.0, 500.0], [ETH, ETH], [1, 2])
    r = compute_margin(pos, assets(h_min=(0.05, 0.1, 0.02)), params())
    s1 = 0.05 * math.sqrt(1.0 + 3.0) * 1000.0  # 100
    s2 = 0.05 * math.sqrt(1.0 + 0.44) * 500.0  # 30
    market = Z * (0.05 * 1000.0 + 0.05 * 500.0)  # same asset, R = 1, no latency: z * 75
    var_t = Z * (s1 + s2)  # z * 130
    assert r.components.market == approx(market)
    assert r.components.bridge_latency == approx(var_t - market)
    assert r.components.correlation == approx(0.0)  # same side, same asset: R^s = R = 1
    assert r.requirement == approx(var_t)
    assert list(r.horizon) == pytest.approx([4.0, 1.44])
    assert r.positions.euler == pytest.approx([Z * 100.0, Z * 30.0], rel=REL)
    assert r.chains.euler == pytest.approx([0.0, Z * 100.0, Z * 30.0], rel=REL)
    assert r.haircut == pytest.approx([Z * 0.05 * 2.0, Z * 0.05 * 1.2], rel=REL)
    assert r.attribution_residual == approx(0.0)


def test_perfect_hedge_is_charged_only_by_the_stress() -> None:
    pos = Positions.build([1000.0, -1000.0], [ETH, ETH], [0, 0])
    r = compute_margin(pos, assets(), params(kappa=0.5))
    # s = (50, -50): s^T R s = 0; R^s_12 = (1 - 0.5) * 1 = 0.5
    q_s = 50.0**2 + 50.0**2 + 2 * 0.5 * 50.0 * -50.0  # 2500
    assert r.components.market == 0.0
    assert r.components.correlation == approx(Z * math.sqrt(q_s))
    assert r.components.floor == 0.0  # 0.1 * 1000 = 100 < z * 50
    assert r.free_margin == approx(0.0 - Z * 50.0)
    assert r.liquidatable
    assert r.health == approx((1000.0 - Z * 50.0) / 1000.0)
    # (R^s s) = (50 - 0.5 * 50, 0.5 * 50 - 50) = (25, -25): shares z*50*25/50 each
    assert r.positions.euler == pytest.approx([Z * 25.0, Z * 25.0], rel=REL)

    no_stress = compute_margin(pos, assets(), params(kappa=0.0))
    assert no_stress.components.correlation == 0.0
    assert no_stress.components.floor == approx(0.1 * 1000.0)
    assert no_stress.requirement == approx(100.0)
    assert no_stress.positions.floor == pytest.approx([100.0, 0.0])


def test_two_uncorrelated_assets() -> None:
    pos = Positions.build([1000.0, 2000.0], [ETH, BTC], [0, 0])
    r = compute_margin(pos, assets(), params(kappa=0.5))
    s_eth = 0.05 * math.sqrt(1.0) * 1000.0  # 50
    s_btc = 0.04 * math.sqrt(2.25) * 2000.0  # 120
    q = s_eth**2 + s_btc**2  # rho = 0: 16900
    q_s = q + 2 * (0.5 * 0.0 + 0.5 * 1.0) * s_eth * s_btc  # both collateral: 22900
    assert r.components.market == approx(Z * math.sqrt(q))  # z * 130
    assert r.components.bridge_latency == 0.0
    assert r.components.correlation == approx(Z * (math.sqrt(q_s) - math.sqrt(q)))
    assert r.requirement == approx(Z * math.sqrt(q_s))
    rs = [s_eth + 0.5 * s_btc, 0.5 * s_eth + s_btc]  # R^s s = (110, 145)
    expected = [Z * s_eth * rs[0] / math.sqrt(q_s), Z * s_btc * rs[1] / math.sqrt(q_s)]
    assert r.positions.euler == pytest.approx(expected, rel=REL)


def test_stablecoin_hits_its_floor() -> None:
    pos = Positions.build([10_000.0], [USDC], [0])
    r = compute_margin(pos, assets(), params())
    market = Z * 0.001 * math.sqrt(1.0) * 10_000.0  # z * 10 = 23.26
    assert r.components.market == approx(market)
    assert r.components.floor == approx(0.02 * 10_000.0 - market)
    assert r.requirement == approx(200.0)
    assert r.free_margin == approx(10_000.0 - 200.0)
    assert r.health is None
    assert r.haircut[0] == approx(0.02)  # max(h_min, z * 0.001) = h_min
    assert r.positions.floor[0] == approx(200.0 - market)


def test_bridge_addon_and_concentration() -> None:
    # bridged USDC.e on chain 2 (0.44 d away), add-on 2%; depth 1e6, k = 0.5
    pos = Positions.build([10_000.0], [USDC], [2], [0.02], [True])
    a = assets(conc_k=(0.0, 0.0, 0.5), depth=(1e9, 1e9, 1e6))
    r = compute_margin(pos, a, params())
    rate = 0.5 * math.sqrt(10_000.0 / 1e6)  # 0.05
    var_t = Z * 0.001 * math.sqrt(1.44) * 10_000.0
    assert r.components.bridge_risk == approx(0.02 * 10_000.0)
    assert r.components.concentration == approx(rate * 10_000.0)
    assert r.components.floor == 0.0  # 200 < 23.26 * 1.2 + 200 + 500
    assert r.requirement == approx(var_t + 200.0 + 500.0)
    assert r.haircut[0] == approx(max(0.02, Z * 0.001 * 1.2) + 0.02 + rate)
    assert r.chains.total == pytest.approx([0.0, 0.0, var_t + 700.0], rel=REL)


def test_requirement_is_capped_at_collateral_without_debt() -> None:
    a = AssetParams.build([0.5], [4.0], [0.0], [0.0], [0.0], [[1.0]])
    r = compute_margin(Positions.build([100.0], [0], [0]), a, params())
    assert r.components.market == approx(Z * 0.5 * 2.0 * 100.0)  # 232.6 > 100
    assert r.capped
    assert r.requirement == 100.0
    assert r.free_margin == 0.0
    # the shares shrink pro rata to the capped M: the one position carries all of it
    assert r.positions.euler == pytest.approx([100.0], rel=REL)
    assert r.attribution_residual == approx(0.0)
    hidden = compute_margin(
        Positions.build([100.0], [0], [0]), a, params(), debt_may_be_hidden=True
    )
    assert not hidden.capped  # debt that may be hidden is not "no debt" (§4)
    assert hidden.requirement == approx(Z * 100.0)
    assert hidden.positions.total == pytest.approx([Z * 100.0], rel=REL)


def test_latency_credit_is_clipped() -> None:
    # 500 of ETH collateral 3 days away against 1000 of ETH debt: the latency grows the
    # collateral leg towards the debt leg, VaR(T, R) < market; no credit is given.
    pos = Positions.build([500.0, -1000.0], [ETH, ETH], [1, 0])
    r = compute_margin(pos, assets(h_min=(0.0, 0.0, 0.0)), params(kappa=0.0))
    market = Z * abs(0.05 * 500.0 - 0.05 * 1000.0)  # z * 25
    var_t = Z * abs(0.05 * 2.0 * 500.0 - 0.05 * 1000.0)  # z * 0
    assert r.var_base == approx(var_t)
    assert r.components.bridge_latency == 0.0
    assert r.requirement == approx(market)
    # V* = market: Euler shares with L = 0, s0 = (25, -50), (R s0) = (-25, -25):
    # z * 25 * -25 / 25 and z * -50 * -25 / 25; they sum to M
    assert r.positions.euler == pytest.approx([-Z * 25.0, Z * 50.0], rel=REL)
    assert r.chains.total == pytest.approx([Z * 50.0, -Z * 25.0, 0.0], rel=REL)
    assert r.attribution_residual == approx(0.0)


def test_over_hedged_with_stress_shares_add_up() -> None:
    # the same book with kappa 0.5: V* = VaR(T, R^s) (s = (50, -50), R^s_12 = 0.5,
    # q = 2500), but M = market + correlation = z * 25 + z * (50 - 0) exceeds it: the
    # Euler shares of V* are scaled by M / V* = 75 / 50
    pos = Positions.build([500.0, -1000.0], [ETH, ETH], [1, 0])
    r = compute_margin(pos, assets(h_min=(0.0, 0.0, 0.0)), params(kappa=0.5))
    assert r.var_base == approx(0.0)
    assert r.var_stressed == approx(Z * 50.0)
    assert r.components.market == approx(Z * 25.0)
    assert r.components.correlation == approx(Z * 50.0)
    assert r.requirement == approx(Z * 75.0)
    # (R^s s) = (50 - 0.5 * 50, 0.5 * 50 - 50) = (25, -25): z * 50 * 25 / 50 each, x 1.5
    assert r.positions.euler == pytest.approx([Z * 37.5, Z * 37.5], rel=REL)
    assert r.positions.total.sum() == approx(r.requirement)


def test_no_positions() -> None:
    r = compute_margin(Positions.build([], [], []), assets(), params())
    assert r.requirement == 0.0
    assert r.debt == 0.0
    assert r.health is None
    assert not r.liquidatable
    assert r.chains.total.dtype == np.float64
    assert list(r.chains.total) == [0.0, 0.0, 0.0]


def test_zero_volatility_has_zero_var_and_attribution() -> None:
    a = AssetParams.build([0.0], [1.0], [0.0], [0.0], [0.0], [[1.0]])
    pos = Positions.build([100.0, -40.0, 0.0], [0, 0, 0], [0, 1, 2])
    r = compute_margin(pos, a, params())
    assert r.requirement == 0.0
    assert list(r.positions.euler) == [0.0, 0.0, 0.0]
    assert r.health == approx(100.0 / 40.0)


@pytest.mark.parametrize(
    "corr",
    [
        [[1.0, 0.5], [0.4, 1.0]],  # not symmetric
        [[0.9, 0.0], [0.0, 1.0]],  # diagonal != 1
        [[1.0, 1.5], [1.5, 1.0]],  # outside [-1, 1]
    ],
)
def test_invalid_correlations_are_rejected(corr: list[list[float]]) -> None:
    with pytest.raises(InvalidInput):
        AssetParams.build([0.1, 0.1], [1, 1], [0, 0], [0, 0], [0, 0], corr)


def test_concentration_needs_a_depth() -> None:
    # §7: config must give D_a for an asset that can be collateral; k_a > 0 without it
    # is refused rather than read as "no concentration"
    with pytest.raises(InvalidInput, match="depth_usd"):
        AssetParams.build([0.1], [1], [0], [0.1], [0.0], [[1.0]])
    AssetParams.build([0.1], [1], [0], [0.0], [0.0], [[1.0]])  # k_a = 0: no term at all


def test_non_psd_correlation_is_rejected() -> None:
    corr = [[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]
    with pytest.raises(InvalidInput, match="positive semi-definite"):
        AssetParams.build([0.1] * 3, [1] * 3, [0] * 3, [0] * 3, [0] * 3, corr)


def test_out_of_range_indices_are_rejected() -> None:
    with pytest.raises(InvalidInput):
        compute_margin(Positions.build([1.0], [5], [0]), assets(), params())
    with pytest.raises(InvalidInput):
        compute_margin(Positions.build([1.0], [0], [7]), assets(), params())
    with pytest.raises(InvalidInput):
        Positions.build([math.inf], [0], [0])
