"""Volatility and correlation from stored daily closes (METHOD.md §6), numpy, no I/O.

    w_i = (1 - lambda) * lambda^(n - i) / (1 - lambda^n),   i = 1..n (oldest first)
    S   = sum_i w_i * r_i r_i^T        over the dates where every estimated asset has a return
    sigma_a = sqrt(S_aa),   rho_ab = S_ab / (sigma_a * sigma_b)

Pipeline, each step deterministic (sorted inputs, no randomness, no wall clock):

1. Closes -> per-feed daily log returns (`feed_returns`): the return of day d needs the
   closes of d - 1 and d. A close is missing when its answer is not positive or its
   round is older than heartbeat + 1 day at the day's end (a dead feed's carried-forward
   price would fake zero returns).
2. Per-feed returns -> one series per asset (`returns_panel`): the median over the
   asset's feeds of that day's returns. Returns of the same feed only, so a level offset
   between chains never enters a return.
3. Which assets are estimated (`estimate`): those with at least min_observations
   returns; while their common dates number fewer than min_observations, the one with
   the fewest returns (ties: the later in config) is dropped. The EWMA runs over the
   common dates of the rest, indexed by position (a missing day is skipped, not
   weighted as a gap).
4. Config on top: sigma = max(EWMA, sigma_floor) for estimated assets, sigma_default
   otherwise, `sigma` overrides outright. rho = EWMA for pairs of estimated assets with
   non-zero sigma; otherwise the pair's configured rho, else default_correlation;
   pairs configured with `override = true` win outright.
5. A mix of estimated and configured correlations need not be positive semidefinite:
   then negative eigenvalues are clipped to 0 and the matrix rescaled to unit diagonal
   (`repaired`, reported as a warning).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from crossmargin.core.config import ChainlinkFeedConfig, Config
from crossmargin.core.memo import IdentityMemo

if TYPE_CHECKING:
    from oracle.store import DailyClose

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

DAY_S = 86_400
CLOSE_SLACK_S = DAY_S  # a usable close was updated within heartbeat + this of its day's end
PSD_TOLERANCE = 1e-10

# Where a parameter came from (reported beside it).
EWMA, FLOOR, DEFAULT, CONFIG, OVERRIDE, DIAGONAL = (
    "ewma",
    "floor",
    "default",
    "config",
    "override",
    "diagonal",
)


# ---------------------------------------------------------------- the EWMA itself


def ewma_weights(n: int, lam: float) -> FloatArray:
    """w_i = (1 - lambda) lambda^(n-i) / (1 - lambda^n), i = 1..n; they sum to 1."""
    i = np.arange(1, n + 1, dtype=np.float64)
    return np.asarray((1.0 - lam) * lam ** (n - i) / (1.0 - lam**n), dtype=np.float64)


def ewma_covariance(returns: FloatArray, lam: float) -> FloatArray:
    """S = sum_i w_i r_i r_i^T for returns of shape (n, k), oldest row first; n >= 1."""
    n = returns.shape[0]
    if n == 0:
        raise ValueError("no returns")
    w = ewma_weights(n, lam)
    s = (returns * w[:, None]).T @ returns
    return np.asarray((s + s.T) / 2.0, dtype=np.float64)


def sigma_rho(cov: FloatArray) -> tuple[FloatArray, FloatArray]:
    """sigma = sqrt(diag S); rho = S / (sigma sigma^T), NaN where a sigma is 0."""
    sigma = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    denom = np.outer(sigma, sigma)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), np.nan)
    return sigma, np.clip(rho, -1.0, 1.0)


# ---------------------------------------------------------------- closes -> returns


def feed_returns(closes: Sequence[DailyClose], heartbeat_s: int) -> dict[date, float]:
    """Day -> log return of one feed, from its closes (any order); see the module doc."""
    prices: dict[date, float] = {}
    for c in closes:
        answer = int(c.answer)
        day_end = _midnight_after(c.day)
        if answer > 0 and day_end - c.updated_at <= heartbeat_s + CLOSE_SLACK_S:
            prices[c.day] = np.log(answer) - c.decimals * np.log(10.0)
    out: dict[date, float] = {}
    for day, logp in prices.items():
        before = prices.get(day - timedelta(days=1))
        if before is not None:
            out[day] = float(logp - before)
    return out


def returns_panel(
    config: Config, closes: Mapping[tuple[int, str], Sequence[DailyClose]]
) -> tuple[list[date], FloatArray]:
    """(days, R): R[t, a] is asset a's return on days[t] (median over its feeds), NaN if none."""
    per_asset: list[list[dict[date, float]]] = []
    for asset in config.assets:
        series = []
        for feed in asset.feeds:
            if isinstance(feed, ChainlinkFeedConfig):  # kinds without rounds have no history
                key = (config.chain(feed.chain).chain_id, feed.address)
                if key in closes:
                    series.append(feed_returns(closes[key], feed.heartbeat_s))
        per_asset.append(series)
    days = sorted({d for series in per_asset for s in series for d in s})
    index = {d: i for i, d in enumerate(days)}
    panel = np.full((len(days), len(config.assets)), np.nan)
    for a, series in enumerate(per_asset):
        if not series:
            continue
        stack = np.full((len(days), len(series)), np.nan)
        for j, s in enumerate(series):
            rows = np.fromiter((index[d] for d in s), dtype=np.intp, count=len(s))
            stack[rows, j] = np.fromiter(s.values(), dtype=np.float64, count=len(s))
        some = ~np.isnan(stack).all(axis=1)
        if some.any():
            panel[some, a] = np.nanmedian(stack[some], axis=1)
    return days, panel


def _midnight_after(day: date) -> int:
    return (day - date(1970, 1, 1)).days * DAY_S + DAY_S


# ---------------------------------------------------------------- parameters


@dataclass(frozen=True, slots=True)
class RiskEstimates:
    """sigma and rho per config asset (config order), each with where it came from."""

    symbols: tuple[str, ...]
    sigma: tuple[float, ...]
    sigma_source: tuple[str, ...]  # ewma | floor | default | override
    correlation: tuple[tuple[float, ...], ...]
    correlation_source: tuple[tuple[str, ...], ...]  # ewma | config | default | override
    observations: int  # common return dates the EWMA ran over (0: no history used)
    first_day: date | None  # of those dates
    last_day: date | None
    repaired: bool  # the correlation matrix was made PSD (step 5)

    def sigma_array(self) -> FloatArray:
        return np.array(self.sigma, dtype=np.float64)

    def correlation_array(self) -> FloatArray:
        return np.array(self.correlation, dtype=np.float64)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for snapshots and the report)."""
        s = self.symbols
        return {
            "sigma": dict(zip(s, self.sigma, strict=True)),
            "sigma_source": dict(zip(s, self.sigma_source, strict=True)),
            "correlation": {
                a: dict(zip(s, row, strict=True))
                for a, row in zip(s, self.correlation, strict=True)
            },
            "correlation_source": {
                a: dict(zip(s, row, strict=True))
                for a, row in zip(s, self.correlation_source, strict=True)
            },
            "observations": self.observations,
            "first_day": None if self.first_day is None else self.first_day.isoformat(),
            "last_day": None if self.last_day is None else self.last_day.isoformat(),
            "repaired": self.repaired,
        }

    @classmethod
    def from_dict(cls, symbols: Sequence[str], d: Mapping[str, Any]) -> RiskEstimates:
        """Inverse of `as_dict` for the given asset order (a snapshot's replay)."""
        sym = tuple(symbols)

        def day(v: Any) -> date | None:
            return None if v is None else date.fromisoformat(str(v))

        return cls(
            symbols=sym,
            sigma=tuple(float(d["sigma"][a]) for a in sym),
            sigma_source=tuple(str(d["sigma_source"][a]) for a in sym),
            correlation=tuple(tuple(float(d["correlation"][a][b]) for b in sym) for a in sym),
            correlation_source=tuple(
                tuple(str(d["correlation_source"][a][b]) for b in sym) for a in sym
            ),
            observations=int(d["observations"]),
            first_day=day(d["first_day"]),
            last_day=day(d["last_day"]),
            repaired=bool(d["repaired"]),
        )


def estimated_assets(panel: FloatArray, min_observations: int) -> tuple[BoolArray, BoolArray]:
    """Step 3: (which assets are estimated, which dates the EWMA runs over)."""
    have = ~np.isnan(panel)
    counts = have.sum(axis=0)
    chosen = counts >= min_observations
    while True:
        common = have[:, chosen].all(axis=1) if chosen.any() else np.zeros(len(panel), bool)
        if not chosen.any() or int(common.sum()) >= min_observations:
            return chosen, common & chosen.any()
        idx = np.flatnonzero(chosen)
        chosen[idx[np.lexsort((-idx, counts[idx]))[0]]] = False


def estimate(config: Config, days: Sequence[date], panel: FloatArray) -> RiskEstimates:
    """Steps 3-5 on a returns panel (rows: days, oldest first; columns: config assets)."""
    assets = config.assets
    k = len(assets)
    symbols = tuple(a.symbol for a in assets)
    risk = config.risk
    chosen, common = estimated_assets(panel, risk.min_observations)
    est = np.flatnonzero(chosen)

    sigma = np.array([a.sigma_default for a in assets], dtype=np.float64)
    s_src = np.full(k, DEFAULT, dtype=object)
    rho = np.full((k, k), risk.default_correlation, dtype=np.float64)
    r_src = np.full((k, k), DEFAULT, dtype=object)
    index = {s: i for i, s in enumerate(symbols)}
    pairs = [(index[p.a], index[p.b], p) for p in risk.correlations]
    for i, j, p in pairs:
        if not p.override:
            rho[i, j] = rho[j, i] = p.rho
            r_src[i, j] = r_src[j, i] = CONFIG

    if est.size:
        cov = ewma_covariance(panel[np.ix_(common, est)], risk.ewma_lambda)
        raw_sigma, raw_rho = sigma_rho(cov)
        floor = np.array([assets[a].sigma_floor for a in est])
        sigma[est] = np.maximum(raw_sigma, floor)
        s_src[est] = np.where(floor > raw_sigma, FLOOR, EWMA)
        ok = ~np.isnan(raw_rho)
        block = np.ix_(est, est)
        rho[block] = np.where(ok, raw_rho, rho[block])
        r_src[block] = np.where(ok, EWMA, r_src[block])

    for i, a in enumerate(assets):
        if a.sigma is not None:
            sigma[i], s_src[i] = a.sigma, OVERRIDE
    for i, j, p in pairs:
        if p.override:
            rho[i, j] = rho[j, i] = p.rho
            r_src[i, j] = r_src[j, i] = OVERRIDE
    np.fill_diagonal(rho, 1.0)
    np.fill_diagonal(r_src, DIAGONAL)
    rho, repaired = nearest_psd_correlation(rho)

    used = [d for d, c in zip(days, common, strict=True) if c]
    return RiskEstimates(
        symbols=symbols,
        sigma=tuple(float(x) for x in sigma),
        sigma_source=tuple(str(x) for x in s_src),
        correlation=tuple(tuple(float(x) for x in row) for row in rho),
        correlation_source=tuple(tuple(str(x) for x in row) for row in r_src),
        observations=len(used),
        first_day=used[0] if used else None,
        last_day=used[-1] if used else None,
        repaired=repaired,
    )


def nearest_psd_correlation(rho: FloatArray) -> tuple[FloatArray, bool]:
    """Step 5: unchanged if PSD (within 1e-10); else clip eigenvalues, unit diagonal."""
    vals, vecs = np.linalg.eigh(rho)
    if vals.min() >= -PSD_TOLERANCE:
        return rho, False
    fixed = (vecs * np.clip(vals, 0.0, None)) @ vecs.T
    d = np.sqrt(np.diag(fixed))
    d = np.where(d > 0, d, 1.0)
    fixed = fixed / np.outer(d, d)
    fixed = np.clip((fixed + fixed.T) / 2.0, -1.0, 1.0)
    np.fill_diagonal(fixed, 1.0)
    return fixed, True


_FROM_CONFIG: IdentityMemo[RiskEstimates] = IdentityMemo()


def config_estimates(config: Config) -> RiskEstimates:
    """No history: sigma_default / overrides, configured or default correlations. Once
    per config (frozen; every batch without a history store asks)."""
    return _FROM_CONFIG.get(
        (config,), (), lambda: estimate(config, [], np.empty((0, len(config.assets))))
    )


def final_before(day: date, before: int | None) -> bool:
    """§15: a day's close is final once its UTC day is over; as of τ only the closes
    of days over by τ are used (None: every stored close, all final)."""
    return before is None or _midnight_after(day) <= before


def estimate_from_closes(
    config: Config,
    closes: Mapping[tuple[int, str], Sequence[DailyClose]],
    before: int | None = None,
) -> RiskEstimates:
    """§6 from stored closes; `before` (§15): only the closes final before that time."""
    if before is not None:
        closes = {k: [c for c in v if final_before(c.day, before)] for k, v in closes.items()}
    days, panel = returns_panel(config, closes)
    return estimate(config, days, panel)
