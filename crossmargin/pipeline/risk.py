"""Config and exact exposures in, aggregator arrays out: the one float conversion
(`batch_positions_of`), and one aggregator call for a whole batch (`run_risk_many`), with
the per-asset and per-chain parameters built once per batch, not per account.

sigma and rho (METHOD.md §6) come from `RiskEstimates`: estimated from the stored price
history by oracle/estimation.py when the engine has a history store, otherwise from
config alone (`config_estimates`: overrides, sigma_default, configured or default
correlations). Either way they are passed in: nothing here reads a database.

The risk parameters used (sigma, rho and where each came from, latencies, z, kappa) are
returned with the outcome so the report can show exactly what produced each figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import NamedTuple, Protocol, TypeVar

import numpy as np

from aggregator import (
    COMPONENT_NAMES,
    AssetParams,
    BatchMarginResult,
    BatchPositions,
    MarginParams,
    Positions,
    compute_margin_batch,
    latency_matrix,
    z_score,
)
from crossmargin.core.config import Config, RepresentationConfig
from crossmargin.core.memo import IdentityMemo
from oracle.estimation import RiskEstimates, config_estimates


class ValuedPosition(Protocol):
    @property
    def rep(self) -> RepresentationConfig: ...

    @property
    def value(self) -> Fraction: ...


@dataclass(frozen=True, slots=True)
class RiskParameters:
    """What the risk math was given, for the report and for replay."""

    z: float
    kappa: float
    sigma: dict[str, float]
    correlation: dict[str, dict[str, float]]
    latency_days: dict[str, float]  # L(c -> target) per chain name
    estimates: RiskEstimates | None = None  # sigma/rho with their sources and history span


def _estimates(config: Config, estimates: RiskEstimates | None) -> RiskEstimates:
    if estimates is None:
        return config_estimates(config)
    if estimates.symbols != tuple(a.symbol for a in config.assets):
        raise ValueError("risk estimates are for other assets than the config's")
    return estimates


def asset_sigma(config: Config, estimates: RiskEstimates | None = None) -> list[float]:
    """§6 sigma per config asset: from `estimates`, or from config alone (no history:
    override, else sigma_default)."""
    return list(_estimates(config, estimates).sigma)


def correlation(config: Config, estimates: RiskEstimates | None = None) -> list[list[float]]:
    """§6 rho (asset x asset): from `estimates`, or from config alone (configured pairs,
    default_correlation for the rest, 1 on the diagonal)."""
    return [list(row) for row in _estimates(config, estimates).correlation]


def margin_params(config: Config, target: str) -> MarginParams:
    names = [c.name for c in config.chains]
    pairs = {
        (names.index(p.from_chain), names.index(p.to_chain)): p.days for p in config.bridges.latency
    }
    latency = latency_matrix(
        [0.0 if c.name == config.bridges.hub else c.to_hub_days for c in config.chains],
        [0.0 if c.name == config.bridges.hub else c.from_hub_days for c in config.chains],
        pairs,
    )
    z = z_score(config.risk.method, config.risk.alpha, config.risk.alpha_es)
    return MarginParams(z, config.risk.kappa, latency, names.index(target))


def asset_params(config: Config, estimates: RiskEstimates | None = None) -> AssetParams:
    est = _estimates(config, estimates)
    return AssetParams.build(
        sigma=est.sigma_array(),
        liq_horizon_days=[a.liquidation_horizon_days for a in config.assets],
        h_min=[a.h_min for a in config.assets],
        # an asset without a depth is never collateral (config checks it): no §7 term
        conc_k=[a.concentration_k if a.liquidity_depth_usd else 0.0 for a in config.assets],
        depth_usd=[a.liquidity_depth_usd or 0.0 for a in config.assets],
        corr=est.correlation_array(),
    )


def positions_of(config: Config, valued: Sequence[ValuedPosition]) -> Positions:
    """One account's positions as aggregator arrays (a batch of one of `batch_positions_of`)."""
    return batch_positions_of(config, [valued]).positions


def batch_positions_of(
    config: Config, accounts: Sequence[Sequence[ValuedPosition]]
) -> BatchPositions:
    """Every account's valued positions as one flat batch, account by account in order
    (account k's positions are contiguous): the single exact -> float step (§4)."""
    assets = {a.symbol: i for i, a in enumerate(config.assets)}
    chains = {c.name: i for i, c in enumerate(config.chains)}
    flat = [v for valued in accounts for v in valued]
    positions = Positions.build(
        exposure=[float(v.value) for v in flat],  # the single exact -> float step
        asset=[assets[v.rep.asset] for v in flat],
        chain=[chains[v.rep.chain] for v in flat],
        bridge_addon=[v.rep.bridge_addon for v in flat],
        bridged=[v.rep.bridged for v in flat],
    )
    account = np.repeat(np.arange(len(accounts), dtype=np.intp), [len(v) for v in accounts])
    return BatchPositions(positions, account, len(accounts))


def risk_parameters(config: Config, params: MarginParams, est: RiskEstimates) -> RiskParameters:
    """What the risk math is given for one target, shared by every account of a batch."""
    symbols = est.symbols
    t = params.target_chain
    return RiskParameters(
        z=params.z,
        kappa=params.kappa,
        sigma=dict(zip(symbols, est.sigma, strict=True)),
        correlation={
            a: dict(zip(symbols, row, strict=True))
            for a, row in zip(symbols, est.correlation, strict=True)
        },
        latency_days={c.name: float(params.latency[i, t]) for i, c in enumerate(config.chains)},
        estimates=est,
    )


@dataclass(frozen=True, slots=True)
class BatchRiskOutcome:
    """§5-§7 of a batch: per-account figures in `result`, account k's positions at
    `spans[k]` of the flat arrays, and the parameters every account shared."""

    result: BatchMarginResult
    spans: list[slice]
    parameters: RiskParameters

    def accounts(self) -> list[AccountRisk]:
        """Every account's served figures as Python floats, in order. Taken from the
        batch's arrays in bulk (one `tolist` per array, then list slices), the same
        values as `BatchMarginResult.account(k, spans[k])` gives one account at a time
        (tested), at a fraction of the cost."""
        r = self.result
        capped = r.capped.tolist()
        requirement = r.requirement.tolist()
        components = list(zip(*(getattr(r, n).tolist() for n in COMPONENT_NAMES), strict=True))
        shares = r.positions.total.tolist()  # elementwise: as a slice's own total
        horizon, haircut = r.horizon.tolist(), r.haircut.tolist()
        return [
            AccountRisk(c, q, k, shares[s], horizon[s], haircut[s])
            for c, q, k, s in zip(capped, requirement, components, self.spans, strict=True)
        ]


class AccountRisk(NamedTuple):
    """One account's §7 figures from a batch: whether the no-debt cap bit, M (float),
    the six components (`COMPONENT_NAMES` order), and per position its share of M,
    horizon T_p and standalone haircut (NaN where not collateral)."""

    capped: bool
    requirement: float
    components: tuple[float, ...]
    shares: list[float]
    horizon: list[float]
    haircut: list[float]


def run_risk_many(
    config: Config,
    accounts: Sequence[Sequence[ValuedPosition]],
    target: str,
    estimates: RiskEstimates | None = None,
    debt_may_be_hidden: Sequence[bool] | None = None,
) -> BatchRiskOutcome:
    """METHOD.md §5-§7 on many accounts' valued positions in one aggregator call, with §6
    parameters from `estimates` (None: from config alone), built once for the batch.
    `debt_may_be_hidden` (§4), per account: no no-debt cap."""
    est = _estimates(config, estimates)
    params = _MARGIN_PARAMS.get(
        (config,), (target,), lambda: _read_only(margin_params(config, target))
    )
    assets = _ASSET_PARAMS.get((config, est), (), lambda: _read_only(asset_params(config, est)))
    batch = batch_positions_of(config, accounts)
    hidden = np.array(
        debt_may_be_hidden if debt_may_be_hidden is not None else [False] * len(accounts),
        dtype=np.bool_,
    )
    result = compute_margin_batch(batch, assets, params, debt_may_be_hidden=hidden)
    ends = np.cumsum([len(v) for v in accounts]).tolist()
    spans = [slice(end - len(v), end) for v, end in zip(accounts, ends, strict=True)]
    used = _RISK_PARAMETERS.get(
        (config, est), (target,), lambda: risk_parameters(config, params, est)
    )
    return BatchRiskOutcome(result, spans, used)


# what every batch of one config, estimates and target shares, built once (frozen: the
# arrays are made read-only, so no caller can change what the next batch is given)
_MARGIN_PARAMS: IdentityMemo[MarginParams] = IdentityMemo()
_ASSET_PARAMS: IdentityMemo[AssetParams] = IdentityMemo()
_RISK_PARAMETERS: IdentityMemo[RiskParameters] = IdentityMemo()
P = TypeVar("P", MarginParams, AssetParams)


def _read_only(params: P) -> P:
    for value in vars(params).values():
        if isinstance(value, np.ndarray):
            value.setflags(write=False)
    return params
