"""The vectorised batch path agrees with the single-account path (§7)."""

from __future__ import annotations

import numpy as np
import pytest
from agg_helpers import asset_params, margin_params, positions_for
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator import (
    AssetParams,
    BatchPositions,
    InvalidInput,
    MarginParams,
    Positions,
    compute_margin,
    compute_margin_batch,
)

FIELDS = (
    "market",
    "bridge_latency",
    "correlation",
    "bridge_risk",
    "concentration",
    "floor",
    "requirement",
    "collateral",
    "debt",
    "equity",
    "free_margin",
    "var_base",
    "var_stressed",
)


def _concat(accounts: list[Positions], order: np.ndarray) -> BatchPositions:
    """Flatten the accounts into one batch, positions in the shuffled `order`."""
    account = np.concatenate(
        [np.full(p.exposure.shape[0], k, dtype=np.intp) for k, p in enumerate(accounts)]
    )
    cols = [
        np.concatenate([getattr(p, f) for p in accounts])[order]
        for f in ("exposure", "asset", "chain", "bridge_addon", "bridged")
    ]
    return BatchPositions(Positions.build(*cols), account[order], len(accounts))


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[Positions], AssetParams, MarginParams, np.ndarray]:
    n_assets = draw(st.integers(1, 3))
    n_chains = draw(st.integers(1, 3))
    accounts = draw(st.lists(positions_for(n_assets, n_chains), min_size=1, max_size=6))
    n = sum(p.exposure.shape[0] for p in accounts)
    order = np.array(draw(st.permutations(range(n))), dtype=np.intp)
    return (
        accounts,
        draw(asset_params(n_assets)),
        draw(margin_params(n_chains)),
        order,
    )


@settings(max_examples=200, deadline=None)
@given(batches())
def test_batch_equals_single(
    case: tuple[list[Positions], AssetParams, MarginParams, np.ndarray],
) -> None:
    accounts, assets, params, order = case
    batch = compute_margin_batch(_concat(accounts, order), assets, params)
    for k, pos in enumerate(accounts):
        single = compute_margin(pos, assets, params)
        tol = 1e-9 * (float(np.abs(pos.exposure).sum()) + 1.0)
        for name in FIELDS:
            expected = getattr(single.components, name, None)
            if expected is None:
                expected = getattr(single, name)
            got = float(getattr(batch, name)[k])
            assert got == pytest.approx(expected, rel=1e-9, abs=tol), name
        assert batch.capped[k] == single.capped or abs(single.requirement - single.collateral) < tol
        assert batch.liquidatable[k] == single.liquidatable or abs(single.free_margin) < tol
        if single.health is None:
            assert np.isnan(batch.health[k])
        else:
            assert batch.health[k] == pytest.approx(single.health, rel=1e-9, abs=tol)


def test_empty_batch() -> None:
    assets = AssetParams.build([0.1], [1.0], [0.1], [0.0], [0.0], [[1.0]])
    params = MarginParams(2.0, 0.5, np.zeros((1, 1)), 0)
    result = compute_margin_batch(
        BatchPositions(Positions.build([], [], []), np.array([], dtype=np.intp), 2),
        assets,
        params,
    )
    assert result.requirement.tolist() == [0.0, 0.0]
    assert np.isnan(result.health).all()


def test_account_index_out_of_range() -> None:
    with pytest.raises(InvalidInput):
        BatchPositions(Positions.build([1.0], [0], [0]), np.array([3]), 2)
