"""The generated price history and the demo accounts' intent (pure, no chain)."""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest

from crossmargin.core.config import Config, load_config
from devnet.manifest import build_accounts
from devnet.prices import feed_histories, price_paths
from devnet.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
END = 1_800_000_000


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(ROOT / "configs" / "devnet.toml", env={})


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(ROOT / "configs" / "devnet-scenario.toml")


def test_same_seed_same_history_other_seed_other_history(
    config: Config, scenario: Scenario
) -> None:
    a = feed_histories(config, scenario, END)
    assert a == feed_histories(config, scenario, END)
    b = feed_histories(config, scenario.with_seed(scenario.seed + 1), END)
    assert [h.address for h in a] == [h.address for h in b]
    assert [h.rounds for h in a] != [h.rounds for h in b]
    other = build_accounts(config, scenario.with_seed(scenario.seed + 1))
    assert {x.address for x in other}.isdisjoint(
        x.address for x in build_accounts(config, scenario)
    )


def test_history_shape_and_anchor(config: Config, scenario: Scenario) -> None:
    prices = {p.asset: p.price for p in scenario.prices}
    for h in feed_histories(config, scenario, END):
        assert len(h.rounds) == scenario.rounds >= 120
        assert [r.round_id for r in h.rounds] == list(range(1, scenario.rounds + 1))
        assert h.rounds[-1].updated_at == END
        assert all(
            b.updated_at - a.updated_at == 86_400
            for a, b in zip(h.rounds, h.rounds[1:], strict=False)
        )
        last = h.rounds[-1].answer / 10**h.decimals
        assert abs(last / prices[h.asset] - 1) <= scenario.chain_spread + 1e-9
        if h.chain == "ethereum":
            assert h.rounds[-1].answer == round(prices[h.asset] * 10**h.decimals)


def test_returns_have_the_scenario_vols_and_correlation(scenario: Scenario) -> None:
    paths = price_paths(scenario)
    r = {a: np.diff(np.log(p)) for a, p in paths.items()}
    for p in scenario.prices:
        assert r[p.asset].std() == pytest.approx(p.daily_vol, rel=0.15)
    assert np.corrcoef(r["ETH"], r["BTC"])[0, 1] == pytest.approx(0.8, abs=0.1)
    assert abs(np.corrcoef(r["ETH"], r["USDC"])[0, 1]) < 0.2


def _health(config: Config, scenario: Scenario, name: str, target: str) -> float:
    """METHOD.md §5-§7 for one account, written out independently of aggregator/: EWMA
    sigma (floored) and rho from the ethereum feeds' history, z = Phi^-1(alpha)."""
    hist = [h for h in feed_histories(config, scenario, END)]
    assets = [a.symbol for a in config.assets]
    closes = np.array(
        [
            [
                r.answer
                for r in next(h for h in hist if h.asset == a and h.chain == "ethereum").rounds
            ]
            for a in assets
        ],
        float,
    ).T
    ret = np.diff(np.log(closes), axis=0)
    lam, n = config.risk.ewma_lambda, len(ret)
    w = (1 - lam) * lam ** (n - 1 - np.arange(n)) / (1 - lam**n)
    cov = (ret * w[:, None]).T @ ret
    sd = np.sqrt(np.diag(cov))
    rho = cov / np.outer(sd, sd)
    sigma = np.maximum(sd, [config.asset(a).sigma_floor for a in assets])
    last = {(h.asset, h.chain): h.rounds[-1].answer / 10**h.decimals for h in hist}
    p_coll = {a: min(v for (b, _), v in last.items() if b == a) for a in assets}
    p_debt = {a: max(v for (b, _), v in last.items() if b == a) for a in assets}

    def latency(c: str) -> float:
        if c == target:
            return 0.0
        pair = [p.days for p in config.bridges.latency if (p.from_chain, p.to_chain) == (c, target)]
        return pair[0] if pair else config.chain(c).to_hub_days + config.chain(target).from_hub_days

    acc = next(a for a in build_accounts(config, scenario) if a.name == name)
    idx = [assets.index(h.asset) for h in acc.holdings]
    units = np.array([int(h.raw) / 10**h.decimals for h in acc.holdings])
    coll = np.array([h.kind == "collateral" for h in acc.holdings])
    x = np.where(
        coll,
        units * [p_coll[h.asset] for h in acc.holdings],
        -units * np.array([p_debt[h.asset] for h in acc.holdings]),
    )
    t_liq = np.array([config.asset(h.asset).liquidation_horizon_days for h in acc.holdings])
    t = t_liq + np.where(coll, [latency(h.chain) for h in acc.holdings], 0.0)
    corr = rho[np.ix_(idx, idx)]
    kappa, z = config.risk.kappa, NormalDist().inv_cdf(config.risk.alpha)
    stressed = (1 - kappa) * corr + kappa * (np.sign(x)[:, None] == np.sign(x)[None, :])
    np.fill_diagonal(stressed, 1.0)

    def var(horizon: np.ndarray, r: np.ndarray) -> float:
        s = sigma[idx] * np.sqrt(horizon) * x
        return z * math.sqrt(float(s @ r @ s))

    market, full = var(t_liq, corr), var(t, corr)
    m = full + max(0.0, var(t, stressed) - full)
    v_a = {a: float(x[coll & (np.array(idx) == i)].sum()) for i, a in enumerate(assets)}
    for i, h in enumerate(acc.holdings):
        cfg = config.asset(h.asset)
        if coll[i] and cfg.liquidity_depth_usd:
            m += cfg.concentration_k * math.sqrt(v_a[h.asset] / cfg.liquidity_depth_usd) * x[i]
    floor = sum(config.asset(h.asset).h_min * x[i] for i, h in enumerate(acc.holdings) if coll[i])
    m = max(m, floor)
    assert market <= full
    return float((x[coll].sum() - m) / -x[~coll].sum())


@pytest.mark.parametrize("target", ["ethereum", "arbitrum"])
def test_carol_is_just_above_liquidation_and_bob_is_healthy(
    config: Config, scenario: Scenario, target: str
) -> None:
    assert 1.0 < _health(config, scenario, "carol", target) < 1.05
    assert _health(config, scenario, "bob", target) > 1.5
