"""Frozen outputs of the portfolio margin (METHOD.md §7)."""

from __future__ import annotations

from dataclasses import dataclass

from aggregator._types import BoolArray, FloatArray, IntArray

COMPONENT_NAMES = (
    "market",
    "bridge_latency",
    "correlation",
    "bridge_risk",
    "concentration",
    "floor",
)


@dataclass(frozen=True)
class Components:
    """The six margin components of §7, USD, each >= 0; M is their sum (before the cap)."""

    market: float
    bridge_latency: float
    correlation: float
    bridge_risk: float
    concentration: float
    floor: float

    @property
    def total(self) -> float:
        return (
            self.market
            + self.bridge_latency
            + self.correlation
            + self.bridge_risk
            + self.concentration
            + self.floor
        )

    def as_dict(self) -> dict[str, float]:
        """Component name -> USD, in the order of the §7 table."""
        return {name: float(getattr(self, name)) for name in COMPONENT_NAMES}


@dataclass(frozen=True)
class Attribution:
    """Who carries the requirement (§7 attribution), one entry per position or per chain.

    euler: the VaR share, the Euler allocation of V* (the largest of VaR(L=0, R), VaR(T,
    R), VaR(T, R^s)) scaled to market + bridge_latency + correlation; bridge_risk,
    concentration: the position's own terms; floor: the floor allocated pro rata to
    h_min(a) * x_p. When the no-debt cap bites, all four are scaled by M / (sum of the
    components). `total` sums to M.
    """

    euler: FloatArray
    bridge_risk: FloatArray
    concentration: FloatArray
    floor: FloatArray

    @property
    def total(self) -> FloatArray:
        total: FloatArray = self.euler + self.bridge_risk + self.concentration + self.floor
        return total


@dataclass(frozen=True)
class MarginResult:
    """One account's portfolio margin (§4, §7).

    requirement: M after the no-debt cap (`capped` says whether it bit); health is
    (collateral - M) / debt, None without debt. var_base = VaR(T, R), var_stressed =
    VaR(T, R^s). horizon: T_p per position; haircut: standalone h_p per position
    (NaN for positions that are not collateral). attribution_residual =
    requirement - sum(positions.total): float rounding only (the shares sum to M).
    """

    components: Components
    requirement: float
    capped: bool
    collateral: float
    debt: float
    equity: float
    free_margin: float
    health: float | None
    liquidatable: bool
    var_base: float
    var_stressed: float
    horizon: FloatArray
    haircut: FloatArray
    positions: Attribution
    chains: Attribution
    attribution_residual: float


@dataclass(frozen=True)
class BatchMarginResult:
    """Portfolio margin of n_accounts accounts (§4, §7): per-account figures are arrays of
    length n_accounts; per-position figures follow the batch's flat position order.

    Same meaning as `MarginResult` field by field; health is NaN where debt is 0.
    positions: the §7 shares per position; chains: per account x chain, shape
    (n_accounts, n_chains) in each of the four arrays.
    """

    market: FloatArray
    bridge_latency: FloatArray
    correlation: FloatArray
    bridge_risk: FloatArray
    concentration: FloatArray
    floor: FloatArray
    requirement: FloatArray
    capped: BoolArray
    collateral: FloatArray
    debt: FloatArray
    equity: FloatArray
    free_margin: FloatArray
    health: FloatArray
    liquidatable: BoolArray
    var_base: FloatArray
    var_stressed: FloatArray
    horizon: FloatArray
    haircut: FloatArray
    positions: Attribution
    chains: Attribution

    @property
    def n_accounts(self) -> int:
        return int(self.requirement.shape[0])

    def components(self, k: int) -> Components:
        """Account k's six components."""
        return Components(*(float(getattr(self, name)[k]) for name in COMPONENT_NAMES))

    def account(self, k: int, where: slice | IntArray) -> MarginResult:
        """Account k's figures as one `MarginResult`; `where` selects its positions in the
        batch's flat order (a slice when they are contiguous)."""
        debt = float(self.debt[k])
        requirement = float(self.requirement[k])
        p = self.positions
        mine = Attribution(p.euler[where], p.bridge_risk[where], p.concentration[where],
                           p.floor[where])  # fmt: skip
        c = self.chains
        return MarginResult(
            components=self.components(k),
            requirement=requirement,
            capped=bool(self.capped[k]),
            collateral=float(self.collateral[k]),
            debt=debt,
            equity=float(self.equity[k]),
            free_margin=float(self.free_margin[k]),
            health=float(self.health[k]) if debt > 0 else None,
            liquidatable=bool(self.liquidatable[k]),
            var_base=float(self.var_base[k]),
            var_stressed=float(self.var_stressed[k]),
            horizon=self.horizon[where],
            haircut=self.haircut[where],
            positions=mine,
            chains=Attribution(c.euler[k], c.bridge_risk[k], c.concentration[k], c.floor[k]),
            attribution_residual=requirement - float(mine.total.sum()),
        )
