"""Benchmark: §7 margin of 100,000 accounts x 30 positions, batch vs per-account loop.

Run from the repository root:  .venv/bin/python -m bench.aggregator [n_accounts]
(or .venv/bin/python bench/aggregator.py). The loop times `compute_margin` on a
subsample with each account's `Positions` built beforehand, so the ratio is a lower
bound on what a service loop would see.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: this file's folder would shadow the package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np

from aggregator import (
    AssetParams,
    BatchPositions,
    MarginParams,
    Positions,
    compute_margin,
    compute_margin_batch,
    latency_matrix,
    z_score,
)

N_ASSETS, N_CHAINS, PER_ACCOUNT, LOOP_SAMPLE, REPEATS = 10, 5, 30, 2_000, 3


def make_inputs(n_accounts: int, seed: int = 7) -> tuple[BatchPositions, AssetParams, MarginParams]:
    """Random but plausible accounts: 25 collateral and 5 debt positions each."""
    rng = np.random.default_rng(seed)
    n = n_accounts * PER_ACCOUNT
    size = rng.lognormal(mean=8.0, sigma=1.5, size=n)
    is_debt = (np.arange(n) % PER_ACCOUNT) >= PER_ACCOUNT - 5
    exposure = np.where(is_debt, -0.3 * size, size)
    addon = np.where(rng.random(n) < 0.3, 0.01, 0.0) * ~is_debt
    positions = Positions.build(
        exposure,
        rng.integers(0, N_ASSETS, n),
        rng.integers(0, N_CHAINS, n),
        addon,
        addon > 0,
    )
    account = np.repeat(np.arange(n_accounts, dtype=np.intp), PER_ACCOUNT)
    loadings = rng.uniform(0.0, 1.0, (N_ASSETS, 3))
    cov = loadings @ loadings.T + 0.1 * np.eye(N_ASSETS)
    d = np.sqrt(np.diag(cov))
    corr = cov / np.outer(d, d)
    np.fill_diagonal(corr, 1.0)
    assets = AssetParams.build(
        sigma=rng.uniform(0.001, 0.08, N_ASSETS),
        liq_horizon_days=rng.uniform(0.5, 3.0, N_ASSETS),
        h_min=rng.uniform(0.02, 0.2, N_ASSETS),
        conc_k=np.full(N_ASSETS, 0.3),
        depth_usd=rng.uniform(1e6, 1e9, N_ASSETS),
        corr=(corr + corr.T) / 2,
    )
    latency = latency_matrix(rng.uniform(0, 1, N_CHAINS), rng.uniform(0, 0.5, N_CHAINS))
    params = MarginParams(z_score("var", 0.99), 0.5, latency, target_chain=0)
    return BatchPositions(positions, account, n_accounts), assets, params


def main(n_accounts: int = 100_000) -> None:
    batch, assets, params = make_inputs(n_accounts)
    print(
        f"{n_accounts:,} accounts x {PER_ACCOUNT} positions, {N_ASSETS} assets, {N_CHAINS} chains"
    )

    batch_s = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = compute_margin_batch(batch, assets, params)
        batch_s.append(time.perf_counter() - start)
    best = min(batch_s)
    print(f"batch: {best:.3f} s (best of {REPEATS}), {n_accounts / best:,.0f} accounts/s")

    sample = min(LOOP_SAMPLE, n_accounts)
    p = batch.positions
    cut = [slice(k * PER_ACCOUNT, (k + 1) * PER_ACCOUNT) for k in range(sample)]
    singles = [
        Positions(p.exposure[c], p.asset[c], p.chain[c], p.bridge_addon[c], p.bridged[c])
        for c in cut
    ]
    start = time.perf_counter()
    loop_fm = [compute_margin(pos, assets, params).free_margin for pos in singles]
    loop_s = time.perf_counter() - start
    loop_rate = sample / loop_s
    print(f"loop:  {loop_s:.3f} s for {sample:,} accounts, {loop_rate:,.0f} accounts/s")
    print(f"       extrapolated to {n_accounts:,} accounts: {n_accounts / loop_rate:.1f} s")
    print(f"ratio: {n_accounts / best / loop_rate:.1f}x")

    diff = np.abs(result.free_margin[:sample] - np.array(loop_fm))
    scale = np.abs(np.array(loop_fm)) + 1.0
    print(f"max relative disagreement batch vs loop: {float((diff / scale).max()):.1e}")
    print(f"liquidatable: {int(result.liquidatable.sum()):,} of {n_accounts:,}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
