"""Every figure the service serves, from the inputs of one computation: `compute` is the
one path from chain states to a report (margin §5-§7, capacity §8, stress §9), used live
and on replay, so a stored snapshot's outputs can be recomputed byte for byte."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from crossmargin.core.config import Config
from crossmargin.pipeline.capacity import capacity_report
from crossmargin.pipeline.margin import margin_report
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.report import CapacityReport, MarginReport, StressReport
from crossmargin.pipeline.stress import stress_report
from crossmargin.pipeline.value import assess
from oracle.estimation import RiskEstimates

Kind = Literal["margin", "capacity", "stress"]
Report = MarginReport | CapacityReport | StressReport


@dataclass(frozen=True, slots=True)
class Request:
    """What was asked: the kind of figure, for whom, on which target, for which asset."""

    kind: Kind
    account: str
    target: str | None = None  # chain name (margin, capacity)
    asset: str | None = None  # capacity: one borrow asset, or None for every asset

    def as_json(self) -> dict[str, Any]:
        return {"target_chain": self.target, "asset": self.asset}


def compute(
    config: Config,
    states: list[ChainState],
    req: Request,
    estimates: RiskEstimates | None = None,
) -> Report:
    """The one path from inputs to a report, live and on replay. `estimates`: §6 sigma
    and rho from the price history (None: from config alone)."""
    a = assess(config, states, req.account, estimates)
    if req.kind == "margin":
        assert req.target is not None
        return margin_report(a, req.target)
    if req.kind == "capacity":
        assert req.target is not None
        return capacity_report(a, req.target, req.asset)
    return stress_report(a)
