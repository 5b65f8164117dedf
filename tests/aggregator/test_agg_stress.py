"""§9 stress scenarios, computed by hand."""

import pytest

from aggregator import InvalidInput, Positions, Scenario, run_stress

ETH, USDC = 0, 1


def _account() -> Positions:
    # chain 0: 1000 ETH collateral, 400 USDC debt; chain 1: 500 bridged USDC.e
    return Positions.build(
        [1000.0, -400.0, 500.0], [ETH, USDC, USDC], [0, 0, 1], [0.0, 0.0, 0.01],
        [False, False, True],
    )  # fmt: skip


def test_scenarios() -> None:
    scenarios = [
        Scenario("eth_crash", asset_shocks={ETH: -0.4}),
        Scenario("usdc_e_depeg", bridged_shock=-0.1),
        Scenario("chain_1_halt", halted_chains=frozenset({1})),
        Scenario("combined", asset_shocks={ETH: -0.8}, halted_chains=frozenset({1})),
    ]
    report = run_stress(_account(), scenarios)
    by_name = {r.name: r for r in report.results}
    crash = by_name["eth_crash"]
    assert crash.collateral == pytest.approx(1000.0 * 0.6 + 500.0)
    assert crash.debt == pytest.approx(400.0)
    assert crash.equity == pytest.approx(600.0 + 500.0 - 400.0)
    assert by_name["usdc_e_depeg"].equity == pytest.approx(1000.0 + 500.0 * 0.9 - 400.0)
    halt = by_name["chain_1_halt"]
    assert halt.collateral == pytest.approx(1000.0)
    assert halt.solvent
    combined = by_name["combined"]
    assert combined.equity == pytest.approx(1000.0 * 0.2 - 400.0)
    assert not combined.solvent
    assert report.worst == combined


def test_shock_applies_to_debt_of_the_asset() -> None:
    pos = Positions.build([1000.0, -500.0], [USDC, ETH], [0, 0])
    report = run_stress(pos, [Scenario("eth_up", asset_shocks={ETH: 0.5})])
    assert report.results[0].debt == pytest.approx(750.0)


def test_debt_on_a_halted_chain_stays() -> None:
    pos = Positions.build([1000.0, -500.0], [USDC, USDC], [0, 1])
    result = run_stress(pos, [Scenario("halt", halted_chains=frozenset({1}))]).results[0]
    assert (result.collateral, result.debt) == (1000.0, 500.0)


def test_no_scenarios() -> None:
    report = run_stress(_account(), [])
    assert report.results == ()
    assert report.worst is None


def test_invalid_scenarios() -> None:
    with pytest.raises(InvalidInput):
        Scenario("bad", asset_shocks={ETH: -1.5})
    with pytest.raises(InvalidInput):
        run_stress(_account(), [Scenario("a"), Scenario("a")])
