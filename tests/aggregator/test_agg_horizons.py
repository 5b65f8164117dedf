"""§5 latency matrix and horizons."""

import numpy as np
import pytest

from aggregator import InvalidInput, latency_matrix, position_horizons


def test_latency_matrix_routes_through_the_hub_unless_a_pair_is_given() -> None:
    lat = latency_matrix([0.0, 0.5, 1.0], [0.0, 0.25, 2.0], {(2, 1): 0.1})
    expected = [
        [0.0, 0.0 + 0.25, 0.0 + 2.0],
        [0.5 + 0.0, 0.0, 0.5 + 2.0],
        [1.0 + 0.0, 0.1, 0.0],
    ]
    np.testing.assert_allclose(lat, expected, rtol=0, atol=1e-15)
    assert not lat.flags.writeable


@pytest.mark.parametrize(
    ("to_hub", "from_hub", "pairs"),
    [
        ([0.0, -1.0], [0.0, 0.0], {}),
        ([0.0, 1.0], [0.0], {}),
        ([0.0, 1.0], [0.0, 0.0], {(1, 1): 2.0}),
        ([0.0, 1.0], [0.0, 0.0], {(0, 2): 1.0}),
        ([0.0, float("nan")], [0.0, 0.0], {}),
    ],
)
def test_latency_matrix_rejects_bad_config(
    to_hub: list[float], from_hub: list[float], pairs: dict[tuple[int, int], float]
) -> None:
    with pytest.raises(InvalidInput):
        latency_matrix(to_hub, from_hub, pairs)


def test_horizons_add_latency_to_collateral_only() -> None:
    lat = latency_matrix([0.0, 3.0], [0.0, 0.0])
    horizon = position_horizons(
        asset=np.array([0, 1, 0]),
        chain=np.array([1, 1, 0]),
        is_collateral=np.array([True, False, True]),
        liq_horizon_days=np.array([1.0, 2.0]),
        latency=lat,
        target_chain=0,
    )
    assert horizon.tolist() == [1.0 + 3.0, 2.0, 1.0]
