"""Thresholds and crossings (METHOD.md §14), pure: no I/O.

A watch names up to four conditions. Each is evaluated on a margin report as
breached (True), clear (False) or unknown (None: the figure is null, e.g. debt that
cannot be valued). An alert is raised only when a known value differs from the last
known one: unknown never raises nor clears (docs/methodology.md, "Watching").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

Condition = Literal["health_below", "free_margin_below", "liquidatable", "partial"]
CONDITIONS: tuple[Condition, ...] = ("health_below", "free_margin_below", "liquidatable", "partial")
MAX_USD = Decimal("1e15")


# "At least one condition", in the schema as well as in the validator below.
AT_LEAST_ONE: JsonDict = {
    "anyOf": [
        {"required": ["health_below"], "properties": {"health_below": {"type": "number"}}},
        {
            "required": ["free_margin_below"],
            "properties": {"free_margin_below": {"type": "string"}},
        },
        {"required": ["liquidatable"], "properties": {"liquidatable": {"const": True}}},
        {"required": ["partial"], "properties": {"partial": {"const": True}}},
    ]
}


class Thresholds(BaseModel):
    """What to alert on; at least one condition."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=AT_LEAST_ONE)

    health_below: float | None = Field(
        default=None, gt=0, le=1000, allow_inf_nan=False, description="alert when health < h"
    )
    free_margin_below: str | None = Field(
        default=None,
        pattern=r"^-?[0-9]{1,15}(\.[0-9]{1,6})?$",
        description="alert when free margin (USD, a decimal string) < f",
    )
    liquidatable: bool = Field(default=False, description="alert when liquidatable")
    partial: bool = Field(default=False, description="alert when the report is partial")

    @field_validator("free_margin_below")
    @classmethod
    def _usd(cls, v: str | None) -> str | None:
        if v is not None and abs(Decimal(v)) > MAX_USD:
            raise ValueError("free_margin_below out of range")
        return v

    @model_validator(mode="after")
    def _some(self) -> Thresholds:
        if not self.active():
            raise ValueError("at least one threshold is needed")
        return self

    def active(self) -> list[Condition]:
        on = {
            "health_below": self.health_below is not None,
            "free_margin_below": self.free_margin_below is not None,
            "liquidatable": self.liquidatable,
            "partial": self.partial,
        }
        return [c for c in CONDITIONS if on[c]]


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def evaluate(th: Thresholds, report: Mapping[str, Any]) -> dict[Condition, bool | None]:
    """Each active condition on one margin report (its JSON as a dict)."""
    totals: Mapping[str, Any] = report.get("totals") or {}
    out: dict[Condition, bool | None] = {}
    for cond in th.active():
        if cond == "health_below":
            health, debt = _decimal(totals.get("health")), _decimal(totals.get("debt_usd"))
            if health is not None:
                out[cond] = health < Decimal(str(th.health_below))
            else:  # no debt: no health figure, and nothing to liquidate; else unknown
                out[cond] = False if debt == 0 else None
        elif cond == "free_margin_below":
            free = _decimal(totals.get("free_margin_usd"))
            assert th.free_margin_below is not None
            out[cond] = None if free is None else free < Decimal(th.free_margin_below)
        elif cond == "liquidatable":
            liq = totals.get("liquidatable")
            out[cond] = None if liq is None else bool(liq)
        else:
            out[cond] = report.get("status") == "partial"
    return out


def distance(th: Thresholds, report: Mapping[str, Any]) -> float:
    """How far one report is from crossing any active condition, relative to the
    threshold (health) or to the collateral (USD figures); 0 at a threshold, inf when
    no figure can be measured (null). The watcher recomputes the accounts closest to
    a crossing first: an ordering only, never an alert."""
    totals: Mapping[str, Any] = report.get("totals") or {}
    health, free = _decimal(totals.get("health")), _decimal(totals.get("free_margin_usd"))
    scale = max(abs(_decimal(totals.get("collateral_usd")) or Decimal(0)), Decimal(1))
    out = float("inf")
    for cond in th.active():
        if cond == "health_below" and health is not None:
            h = Decimal(str(th.health_below))
            out = min(out, float(abs(health - h) / h))
        elif cond == "free_margin_below" and free is not None:
            assert th.free_margin_below is not None
            out = min(out, float(abs(free - Decimal(th.free_margin_below)) / scale))
        elif cond == "liquidatable" and free is not None:  # liquidatable: free margin < 0
            out = min(out, float(abs(free) / scale))
        elif cond == "partial" and report.get("status") == "partial":
            out = 0.0
    return out


@dataclass(frozen=True, slots=True)
class Crossing:
    condition: Condition
    breached: bool  # the new state: True "breached", False "recovered"


def crossings(
    before: Mapping[Condition, bool], now: Mapping[Condition, bool | None]
) -> list[Crossing]:
    """The conditions whose known state changed. A condition seen for the first time
    counts as clear before, so an account already past a threshold raises an alert
    when it is first watched; a recovery needs a breach before it."""
    out = []
    for cond, state in now.items():
        if state is None:
            continue
        if state != before.get(cond, False):
            out.append(Crossing(cond, state))
    return out
