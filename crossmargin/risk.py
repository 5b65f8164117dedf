"""Config and exact exposures in, aggregator arrays out: the one float conversion.

The risk parameters used (sigma, rho, latencies, z, kappa) are returned with the
outcome so the report can show exactly what produced each figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

import numpy as np

from aggregator import (
    AssetParams,
    MarginParams,
    MarginResult,
    Positions,
    compute_margin,
    latency_matrix,
    z_score,
)
from crossmargin.config import Config, RepresentationConfig


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


@dataclass(frozen=True, slots=True)
class RiskOutcome:
    result: MarginResult
    parameters: RiskParameters

    @property
    def requirement(self) -> Fraction:
        return Fraction(self.result.requirement)


def asset_sigma(config: Config) -> list[float]:
    """§6: config override, else sigma_default (no stored history is wired in yet)."""
    return [a.sigma if a.sigma is not None else a.sigma_default for a in config.assets]


def correlation(config: Config) -> list[list[float]]:
    """§6: configured pairs, default_correlation for the rest, 1 on the diagonal."""
    symbols = [a.symbol for a in config.assets]
    index = {s: i for i, s in enumerate(symbols)}
    rho = np.full((len(symbols), len(symbols)), config.risk.default_correlation)
    for pair in config.risk.correlations:
        i, j = index[pair.a], index[pair.b]
        rho[i, j] = rho[j, i] = pair.rho
    np.fill_diagonal(rho, 1.0)
    return [[float(v) for v in row] for row in rho]


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


def asset_params(config: Config) -> AssetParams:
    return AssetParams.build(
        sigma=asset_sigma(config),
        liq_horizon_days=[a.liquidation_horizon_days for a in config.assets],
        h_min=[a.h_min for a in config.assets],
        conc_k=[a.concentration_k for a in config.assets],
        depth_usd=[a.liquidity_depth_usd for a in config.assets],
        corr=correlation(config),
    )


def positions_of(config: Config, valued: Sequence[ValuedPosition]) -> Positions:
    assets = [a.symbol for a in config.assets]
    chains = [c.name for c in config.chains]
    return Positions.build(
        exposure=[float(v.value) for v in valued],  # the single exact -> float step
        asset=[assets.index(v.rep.asset) for v in valued],
        chain=[chains.index(v.rep.chain) for v in valued],
        bridge_addon=[v.rep.bridge_addon for v in valued],
        bridged=[v.rep.bridged for v in valued],
    )


def run_risk(config: Config, valued: Sequence[ValuedPosition], target: str) -> RiskOutcome:
    """METHOD.md §5-§7 on one account's valued positions."""
    params = margin_params(config, target)
    result = compute_margin(positions_of(config, valued), asset_params(config), params)
    symbols = [a.symbol for a in config.assets]
    t = params.target_chain
    rho = correlation(config)
    return RiskOutcome(
        result,
        RiskParameters(
            z=params.z,
            kappa=params.kappa,
            sigma=dict(zip(symbols, asset_sigma(config), strict=True)),
            correlation={
                a: dict(zip(symbols, row, strict=True)) for a, row in zip(symbols, rho, strict=True)
            },
            latency_days={c.name: float(params.latency[i, t]) for i, c in enumerate(config.chains)},
        ),
    )
