"""The one §7 path over a batch: a batch of N accounts gives each account what a batch of
one gives it, and both agree with the literal per-account reference of METHOD.md §7."""

from __future__ import annotations

import numpy as np
import pytest
from agg_helpers import (
    Account,
    asset_params,
    margin_params,
    positions_for,
    reference_attributions,
    reference_margin,
    scale_of,
)
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
def test_batch_of_n_equals_n_batches_of_one(
    case: tuple[list[Positions], AssetParams, MarginParams, np.ndarray],
) -> None:
    """Figures, attribution (per position, per chain) and haircuts of each account do not
    depend on which other accounts share its batch, nor on the order of positions."""
    accounts, assets, params, order = case
    batch = compute_margin_batch(_concat(accounts, order), assets, params)
    inverse = np.argsort(order)
    offset = 0
    for k, pos in enumerate(accounts):
        single = compute_margin(pos, assets, params)
        tol = 1e-9 * scale_of(pos)
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
        mine = inverse[offset : offset + pos.exposure.shape[0]]
        offset += pos.exposure.shape[0]
        np.testing.assert_allclose(batch.positions.total[mine], single.positions.total, atol=tol)
        np.testing.assert_allclose(batch.chains.total[k], single.chains.total, atol=tol)
        np.testing.assert_allclose(batch.horizon[mine], single.horizon)
        np.testing.assert_allclose(batch.haircut[mine], single.haircut)


@settings(max_examples=150, deadline=None)
@given(batches())
def test_batch_agrees_with_literal_reference(
    case: tuple[list[Positions], AssetParams, MarginParams, np.ndarray],
) -> None:
    """Every account of a batch against §7 transcribed literally (position x position R
    and R^s), attribution included: the batch's shares match one admissible choice of V*
    and sum to M."""
    accounts, assets, params, order = case
    batch = compute_margin_batch(_concat(accounts, order), assets, params)
    inverse = np.argsort(order)
    offset = 0
    for k, pos in enumerate(accounts):
        acct = Account(pos, assets, params)
        ref = reference_margin(acct)
        tol = 1e-7 * scale_of(pos)
        for name, expected in ref.items():
            assert float(getattr(batch, name)[k]) == pytest.approx(expected, abs=tol), name
        mine = inverse[offset : offset + pos.exposure.shape[0]]
        offset += pos.exposure.shape[0]
        shares = batch.positions.total[mine]
        assert float(shares.sum()) == pytest.approx(float(batch.requirement[k]), abs=tol)
        assert mine.size == 0 or any(
            np.allclose(shares, option, atol=tol) for option in reference_attributions(acct)
        )


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
    assert result.chains.total.shape == (2, 1)


def test_hidden_debt_per_account() -> None:
    """`debt_may_be_hidden` per account: only the flagged account escapes the no-debt cap."""
    assets = AssetParams.build([0.5], [10.0], [0.9], [0.0], [0.0], [[1.0]])
    params = MarginParams(2.33, 0.5, np.zeros((1, 1)), 0)
    batch = BatchPositions(Positions.build([100.0, 100.0], [0, 0], [0, 0]), np.array([0, 1]), 2)
    r = compute_margin_batch(batch, assets, params, debt_may_be_hidden=np.array([False, True]))
    assert r.capped.tolist() == [True, False]
    assert r.requirement[0] == 100.0
    assert r.requirement[1] > 100.0
    assert r.positions.total.sum() == pytest.approx(float(r.requirement.sum()))


def test_account_index_out_of_range() -> None:
    with pytest.raises(InvalidInput):
        BatchPositions(Positions.build([1.0], [0], [0]), np.array([3]), 2)
