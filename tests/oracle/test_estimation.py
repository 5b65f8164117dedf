"""EWMA volatility and correlation (METHOD.md §6, oracle/estimation.py) against an
independent reference: the RiskMetrics recursion S_t = lambda S_{t-1} + (1 - lambda)
r_t r_t^T in plain Python, normalised by 1 - lambda^n."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from crossmargin.core.config import Config, CorrelationConfig, load_config
from oracle import estimation as e
from oracle.store import DailyClose

ROOT = Path(__file__).resolve().parents[2]
BASE = load_config(ROOT / "configs" / "devnet.toml", env={})  # ETH, BTC, USDC
D0 = date(2025, 1, 1)


def reference_cov(r: list[list[float]], lam: float) -> list[list[float]]:
    """The recursion, oldest row first; independent of ewma_weights."""
    k = len(r[0])
    s = [[0.0] * k for _ in range(k)]
    for row in r:
        s = [[lam * s[a][b] + (1 - lam) * row[a] * row[b] for b in range(k)] for a in range(k)]
    norm = 1 - lam ** len(r)
    return [[v / norm for v in line] for line in s]


def with_risk(config: Config, **update: object) -> Config:
    return config.model_copy(update={"risk": config.risk.model_copy(update=update)})


returns_arrays = st.integers(1, 60).flatmap(
    lambda n: st.integers(1, 5).flatmap(
        lambda k: hnp.arrays(
            np.float64,
            (n, k),
            elements=st.floats(-0.3, 0.3, allow_nan=False, allow_subnormal=False),
        )
    )
)


@settings(max_examples=150, deadline=None)
@given(r=returns_arrays, lam=st.floats(0.5, 0.999))
def test_ewma_covariance_matches_the_recursion(r: np.ndarray, lam: float) -> None:
    got = e.ewma_covariance(r, lam)
    want = np.array(reference_cov(r.tolist(), lam))
    assert got.shape == (r.shape[1], r.shape[1])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)
    assert np.all(np.isfinite(got))
    assert np.linalg.eigvalsh(got).min() >= -1e-12 * max(1.0, float(np.abs(got).max()))


@given(n=st.integers(1, 400), lam=st.floats(0.5, 0.999))
def test_weights_are_normalised_and_geometric(n: int, lam: float) -> None:
    w = e.ewma_weights(n, lam)
    assert w.sum() == pytest.approx(1.0, rel=1e-12)
    assert np.all(w > 0) or n > 300  # far weights may underflow to 0, never below
    if n > 1 and w[-2] > 0:
        assert w[-2] / w[-1] == pytest.approx(lam, rel=1e-9)


def test_recovers_a_known_covariance_within_sampling_error() -> None:
    sigma = np.array([0.035, 0.03, 0.001])
    corr = np.array([[1.0, 0.8, 0.1], [0.8, 1.0, -0.2], [0.1, -0.2, 1.0]])
    true = corr * np.outer(sigma, sigma)
    rng = np.random.default_rng(20240601)
    r = rng.multivariate_normal(np.zeros(3), true, size=20_000)
    lam = 0.999
    s = e.ewma_covariance(r, lam)
    w2 = float((e.ewma_weights(len(r), lam) ** 2).sum())  # 1 / effective sample size
    se = np.sqrt((np.outer(np.diag(true), np.diag(true)) + true**2) * w2)  # normal 4th moments
    assert np.all(np.abs(s - true) < 4 * se)
    sd, rho = e.sigma_rho(s)
    np.testing.assert_allclose(sd, sigma, rtol=0.1)
    np.testing.assert_allclose(rho, corr, atol=0.1)


# ---------------------------------------------------------------- estimate(): config on top


# A daily log return is 0 or at least ~1e-12 in size: feeds answer with 8 decimals, so a
# smaller move is no move. Returns like 1e-161 (found by hypothesis) square to subnormal
# floats where no two summation orders agree, which tests float underflow, not §6.
RETURNS = st.floats(-0.2, 0.2, allow_nan=False, allow_subnormal=False).map(
    lambda r: 0.0 if abs(r) < 1e-12 else r
)
panels = st.integers(0, 90).flatmap(
    lambda n: hnp.arrays(
        np.float64,
        (n, 3),
        elements=st.one_of(
            RETURNS,
            st.just(np.nan),
            st.just(0.0),
        ),
    )
)


@settings(max_examples=150, deadline=None)
@given(panel=panels)
def test_estimates_are_finite_psd_and_respect_floors(panel: np.ndarray) -> None:
    days = [D0 + timedelta(days=i) for i in range(len(panel))]
    est = e.estimate(BASE, days, panel)
    sigma, rho = est.sigma_array(), est.correlation_array()
    assert np.all(np.isfinite(sigma))
    assert np.all(np.isfinite(rho))
    np.testing.assert_array_equal(rho, rho.T)
    np.testing.assert_array_equal(np.diag(rho), 1.0)
    assert np.linalg.eigvalsh(rho).min() >= -1e-10
    for a, src, s in zip(BASE.assets, est.sigma_source, sigma, strict=True):
        if src in (e.EWMA, e.FLOOR):
            assert s >= a.sigma_floor
        else:
            assert (src, s) == (e.DEFAULT, a.sigma_default)
    assert est == e.estimate(BASE, days, panel.copy())  # deterministic
    assert e.RiskEstimates.from_dict(est.symbols, est.as_dict()) == est  # snapshot round trip


@settings(max_examples=100, deadline=None)
@given(panel=panels, lam=st.floats(0.8, 0.99))
def test_estimates_match_the_reference_on_common_dates(panel: np.ndarray, lam: float) -> None:
    cfg = with_risk(BASE, ewma_lambda=lam, min_observations=2)
    days = [D0 + timedelta(days=i) for i in range(len(panel))]
    est = e.estimate(cfg, days, panel)
    full = ~np.isnan(panel)
    if (full.sum(axis=0) >= 2).all() and full.all(axis=1).sum() >= 2:
        rows = panel[full.all(axis=1)]
        ref = np.array(reference_cov(rows.tolist(), lam))
        sd = np.sqrt(np.diag(ref))
        for i, a in enumerate(cfg.assets):
            assert est.sigma[i] == pytest.approx(max(sd[i], a.sigma_floor), rel=1e-9, abs=1e-15)
        for i in range(3):
            for j in range(3):
                if i != j and sd[i] > 0 and sd[j] > 0 and not est.repaired:
                    assert est.correlation_source[i][j] == e.EWMA
                    assert est.correlation[i][j] == pytest.approx(
                        ref[i, j] / (sd[i] * sd[j]), abs=1e-9
                    )
        assert est.observations == rows.shape[0]


def _walk(n: int, vols: list[float], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, len(vols))) * np.array(vols)


def test_constant_price_gets_the_floor_and_configured_correlations() -> None:
    panel = _walk(60, [0.03, 0.03, 0.001])
    panel[:, 0] = 0.0  # ETH never moves
    est = e.estimate(BASE, [D0 + timedelta(days=i) for i in range(60)], panel)
    assert (est.sigma[0], est.sigma_source[0]) == (BASE.asset("ETH").sigma_floor, e.FLOOR)
    assert est.correlation_source[0][1] == e.CONFIG  # ETH/BTC is configured: 0.8
    assert est.correlation[0][1] == 0.8
    assert est.correlation_source[1][2] == e.EWMA


def test_too_few_observations_use_defaults() -> None:
    panel = _walk(60, [0.03, 0.03, 0.001])
    panel[:35, 2] = np.nan  # USDC: 25 returns < min_observations 30
    est = e.estimate(BASE, [D0 + timedelta(days=i) for i in range(60)], panel)
    assert est.sigma_source == (e.EWMA, e.EWMA, e.DEFAULT)
    assert est.sigma[2] == BASE.asset("USDC").sigma_default
    assert est.correlation_source[0][2] == e.CONFIG
    assert est.observations == 60  # ETH and BTC on all their dates
    nothing = e.config_estimates(BASE)
    assert nothing.sigma_source == (e.DEFAULT,) * 3
    assert nothing.observations == 0
    assert nothing.first_day is None


def test_missing_days_are_skipped_not_weighted() -> None:
    panel = _walk(50, [0.03, 0.02, 0.001], seed=5)
    panel[[3, 17, 40], 1] = np.nan
    cfg = with_risk(BASE, min_observations=2)
    est = e.estimate(cfg, [D0 + timedelta(days=i) for i in range(50)], panel)
    keep = np.ones(50, bool)
    keep[[3, 17, 40]] = False
    ref = np.array(reference_cov(panel[keep].tolist(), cfg.risk.ewma_lambda))
    assert est.sigma[1] == pytest.approx(max(math.sqrt(ref[1, 1]), 0.015), rel=1e-12)
    assert est.observations == 47
    assert est.last_day == D0 + timedelta(days=49)


def test_the_asset_with_fewest_returns_is_dropped_until_enough_common_dates() -> None:
    panel = _walk(60, [0.03, 0.02, 0.001], seed=2)
    panel[:30, 2] = np.nan  # USDC: returns on days 30-59
    panel[30:, 1] = np.nan  # BTC: returns on days 0-29 (and ETH everywhere)
    panel[0, 1] = np.nan  # BTC has 29, USDC 30: BTC is dropped first
    cfg = with_risk(BASE, min_observations=25)
    est = e.estimate(cfg, [D0 + timedelta(days=i) for i in range(60)], panel)
    assert est.sigma_source == (e.EWMA, e.DEFAULT, e.EWMA)
    assert est.observations == 30


def test_one_asset() -> None:
    eth = BASE.asset("ETH")
    cfg = BASE.model_copy(
        update={
            "assets": [eth],
            "risk": BASE.risk.model_copy(update={"correlations": []}),
        }
    )
    est = e.estimate(cfg, [D0 + timedelta(days=i) for i in range(40)], _walk(40, [0.05]))
    assert est.correlation == ((1.0,),)
    assert est.sigma_source == (e.EWMA,)


def test_overrides_win_outright() -> None:
    eth = BASE.asset("ETH").model_copy(update={"sigma": 0.5})
    assets = [eth, *BASE.assets[1:]]
    cfg = BASE.model_copy(
        update={
            "assets": assets,
            "risk": BASE.risk.model_copy(
                update={
                    "correlations": [CorrelationConfig(a="ETH", b="BTC", rho=0.3, override=True)]
                }
            ),
        }
    )
    est = e.estimate(cfg, [D0 + timedelta(days=i) for i in range(60)], _walk(60, [0.03] * 3))
    assert (est.sigma[0], est.sigma_source[0]) == (0.5, e.OVERRIDE)
    assert (est.correlation[0][1], est.correlation_source[0][1]) == (0.3, e.OVERRIDE)
    assert est.correlation_source[0][2] == e.EWMA


def test_a_non_psd_mix_is_repaired() -> None:
    cfg = with_risk(
        BASE,
        correlations=[
            CorrelationConfig(a="ETH", b="BTC", rho=0.95, override=True),
            CorrelationConfig(a="ETH", b="USDC", rho=0.95, override=True),
            CorrelationConfig(a="BTC", b="USDC", rho=-0.95, override=True),
        ],
    )
    est = e.config_estimates(cfg)
    rho = est.correlation_array()
    assert est.repaired
    assert np.linalg.eigvalsh(rho).min() >= -1e-10
    np.testing.assert_allclose(np.diag(rho), 1.0)
    assert not e.config_estimates(BASE).repaired


# ---------------------------------------------------------------- closes -> returns


def close(day: date, answer: int, age_s: int = 3600, feed: str = "0xF") -> DailyClose:
    end = e._midnight_after(day)
    return DailyClose(chain_id=1, feed=feed, day=day, asset="ETH", round_id="1",
                      answer=str(answer), decimals=8, updated_at=end - age_s)  # fmt: skip


def test_feed_returns_need_consecutive_usable_closes() -> None:
    d = [D0 + timedelta(days=i) for i in range(6)]
    closes = [
        close(d[0], 100_00000000),
        close(d[1], 110_00000000),
        # d[2] missing
        close(d[3], 121_00000000),
        close(d[4], 0),  # not positive: unusable
        close(d[5], 100_00000000, age_s=3600 + 86_400 + 1),  # older than heartbeat + 1 day
    ]
    r = e.feed_returns(closes, heartbeat_s=3600)
    assert r == pytest.approx({d[1]: math.log(1.1)})


def test_asset_return_is_the_median_over_its_feeds() -> None:
    d = [D0 + timedelta(days=i) for i in range(3)]
    eth = BASE.asset("ETH")
    keys = [(BASE.chain(f.chain).chain_id, f.address) for f in eth.feeds]
    moves = [1.10, 1.20, 1.30, 1.40]  # day 1 return per feed
    closes = {
        key: [
            close(d[0], 100_00000000),
            close(d[1], int(100_00000000 * m)),
            close(d[2], int(100_00000000 * m)),
        ]
        for key, m in zip(keys, moves, strict=True)
    }
    days, panel = e.returns_panel(BASE, closes)
    assert days == [d[1], d[2]]
    assert panel[0, 0] == pytest.approx(np.median(np.log(moves)))
    assert panel[1, 0] == pytest.approx(0.0)
    assert np.isnan(panel[:, 1:]).all()  # no BTC or USDC closes


def test_as_of_uses_only_closes_final_before_the_time() -> None:
    """METHOD.md §15: as of τ, a day's close counts only once its UTC day ended by τ;
    the estimate is then the one of the history cut there, and a later, wild close
    cannot reach it."""
    eth = BASE.asset("ETH")
    key = (BASE.chain(eth.feeds[0].chain).chain_id, eth.feeds[0].address)
    days = [D0 + timedelta(days=i) for i in range(60)]
    prices = [100_00000000 + (i % 7) * 1_00000000 for i in range(59)] + [10_00000000]
    closes = {key: [close(d, p) for d, p in zip(days, prices, strict=True)]}
    tau = e._midnight_after(days[58]) + 3600  # day 59 (the crash) is not over yet
    cut = {key: closes[key][:59]}
    asof = e.estimate_from_closes(BASE, closes, before=tau)
    assert asof.as_dict() == e.estimate_from_closes(BASE, cut).as_dict()
    assert asof.as_dict() != e.estimate_from_closes(BASE, closes).as_dict()
    assert e.final_before(days[58], tau)
    assert not e.final_before(days[59], tau)
    assert not e.final_before(days[58], e._midnight_after(days[58]) - 1)
