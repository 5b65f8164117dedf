"""Feed histories: a seeded, correlated random walk of daily log returns.

    r_t = L @ z_t * sigma,   z_t ~ N(0, I),   L = cholesky(C)      (t = 1..N-1)
    log p_N = log price,     log p_{t} = log p_{t+1} - r_t          (anchored at the end)

so the last round is the scenario's current price and the returns have the scenario's
daily vols and correlation matrix C (missing pairs are 0). Each chain's feed of an
asset carries the same path times a constant (1 + offset_c), offset_c drawn once in
[-chain_spread, +chain_spread] (0 on the first chain): real oracles on different
chains disagree by a few basis points, well within risk.max_deviation, and the
returns (so the EWMA vols) are the same on every chain.

Determinism: same seed and scenario give the same answers (numpy's PCG64 stream is
platform-independent; the float -> int rounding is the only place a different libm
could flip a last digit). Round timestamps are the one thing that follows the clock:
they end at the chain time when the devnet starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossmargin.core.config import Config
from devnet.scenario import Scenario


@dataclass(frozen=True)
class Round:
    round_id: int
    answer: int
    updated_at: int


@dataclass(frozen=True)
class FeedHistory:
    chain: str
    asset: str
    address: str
    decimals: int
    rounds: tuple[Round, ...]


def price_paths(scenario: Scenario) -> dict[str, np.ndarray]:
    """Asset -> prices (float64, length scenario.rounds, oldest first)."""
    assets = [p.asset for p in scenario.prices]
    k, n = len(assets), scenario.rounds
    corr = np.eye(k)
    index = {a: i for i, a in enumerate(assets)}
    for c in scenario.correlations:
        i, j = index[c.a], index[c.b]
        corr[i, j] = corr[j, i] = c.rho
    chol = np.linalg.cholesky(corr)
    vols = np.array([p.daily_vol for p in scenario.prices])
    rng = np.random.default_rng(scenario.seed)
    returns = (rng.standard_normal((n - 1, k)) @ chol.T) * vols
    # log p_t = log p_N - sum_{s >= t} r_s; the last row is log p_N itself.
    tail = np.vstack([np.cumsum(returns[::-1], axis=0)[::-1], np.zeros((1, k))])
    logp = np.log([p.price for p in scenario.prices]) - tail
    return {a: np.exp(logp[:, i]) for i, a in enumerate(assets)}


def chain_offsets(scenario: Scenario, chains: list[str]) -> dict[tuple[str, str], float]:
    """(chain, asset) -> relative offset; drawn after the returns, 0 on the first chain."""
    rng = np.random.default_rng([scenario.seed, 1])
    draws = rng.uniform(-1.0, 1.0, size=(len(chains), len(scenario.prices)))
    return {
        (c, p.asset): 0.0 if ci == 0 else float(draws[ci, pi]) * scenario.chain_spread
        for ci, c in enumerate(chains)
        for pi, p in enumerate(scenario.prices)
    }


def feed_histories(config: Config, scenario: Scenario, end_timestamp: int) -> list[FeedHistory]:
    """Every configured feed's rounds 1..N; round N is at `end_timestamp` (chain time)."""
    paths = price_paths(scenario)
    offsets = chain_offsets(scenario, [c.name for c in config.chains])
    n, step = scenario.rounds, scenario.round_interval_s
    out = []
    for asset in config.assets:
        for feed in asset.feeds:
            scale = (1.0 + offsets[(feed.chain, asset.symbol)]) * 10**feed.decimals
            rounds = tuple(
                Round(i + 1, round(float(p) * scale), end_timestamp - (n - 1 - i) * step)
                for i, p in enumerate(paths[asset.symbol])
            )
            out.append(FeedHistory(feed.chain, asset.symbol, feed.address, feed.decimals, rounds))
    return out
