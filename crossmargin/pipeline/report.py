"""The margin report: what the API serves and the CLI prints (METHOD.md §11 output rules).

Raw amounts are decimal integer strings; USD figures are decimal strings rounded
half-even to 6 decimals; anything that could not be computed is null with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from math import lcm
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer


@overload
def fixed6(value: None) -> None: ...
@overload
def fixed6(value: Fraction | float | int) -> str: ...
def fixed6(value: Fraction | float | int | None) -> str | None:
    """USD figures and ratios: exact half-even rounding to 6 decimals, as a string."""
    if value is None:
        return None
    # a float's and a Fraction's exact ratio (no double rounding), without building a
    # Fraction: this runs for every figure of every report
    n, d = value.as_integer_ratio()
    return fixed6_ratio(n, d)


def fixed6_ratio(n: int, d: int) -> str:
    """`fixed6` of the exact ratio n / d, d > 0, in any terms: the quotient and the
    rounding (2 r against d) scale with a common factor, so n / d needs no reducing."""
    q, r = divmod(n * 1_000_000, d)
    if 2 * r > d or (2 * r == d and q % 2 == 1):
        q += 1
    return _fixed6_units(q)


def split6(total: str, parts: Sequence[Fraction | float]) -> list[str]:
    """`parts` as fixed-6 strings that sum exactly to `total` (a fixed6 string), for the
    §7 attribution: the shares of M must add up to the served M, not only to M.

    Largest remainder in units of 1e-6: every part is rounded down, and the residue
    (total minus the rounded-down parts) goes one unit at a time to the parts with the
    largest remainders, ties to the earlier part; a negative residue takes units from
    the smallest remainders. Float drift beyond one unit per part goes round again.
    """
    if len(parts) < 2:  # one part is the whole (the residue is all its own)
        return [_fixed6_units(_micro(total))] if parts else []
    ratios = [(n * 1_000_000, d) for n, d in (p.as_integer_ratio() for p in parts)]
    units = [n // d for n, d in ratios]  # floor
    # the remainders (n - u d) / d, exactly, as integers over their common denominator
    common = lcm(*(d for _, d in ratios))
    rest = [(n - u * d) * (common // d) for (n, d), u in zip(ratios, units, strict=True)]
    residue = _micro(total) - sum(units)
    n = len(units)
    rounds, extra = divmod(abs(residue), n)
    # stable sorts (reverse=True keeps stability too): ties keep the earlier part first
    order = sorted(range(n), key=rest.__getitem__, reverse=residue >= 0)
    step = 1 if residue >= 0 else -1
    for rank, i in enumerate(order):
        units[i] += step * (rounds + (1 if rank < extra else 0))
    return [_fixed6_units(u) for u in units]


def sum6(values: Sequence[str]) -> str:
    """The exact sum of fixed-6 strings, as a fixed-6 string."""
    return _fixed6_units(sum(_micro(v) for v in values))


def _micro(value: str) -> int:
    """A fixed6 string as an integer number of 1e-6 units."""
    whole, _, frac = value.partition(".")
    if len(frac) != 6:
        raise ValueError(f"not a fixed-6 decimal: {value!r}")
    return int(whole + frac)


def _fixed6_units(units: int) -> str:
    if units < 0:
        whole, frac = divmod(-units, 1_000_000)
        return f"-{whole}.{frac:06d}"
    whole, frac = divmod(units, 1_000_000)
    return f"{whole}.{frac:06d}"


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


M = TypeVar("M", bound=Model)
_setattr = object.__setattr__


def trusted(cls: type[M], values: dict[str, Any]) -> M:
    """`cls(**values)` without running the validator, for the models margin.py builds per
    account from parts already of the types validation gives: plain `str` (not a `Code`:
    validation turns a str enum into its plain value), `int`, `bool`, None, fresh lists of
    models. `values` names every field, in declaration order (the validator fills in
    defaults; here they must be given). Validation is all these models have (no
    validators or computed fields of their own), so the result is the validated model;
    tests/crossmargin/test_report_trusted.py rebuilds every model of a batch's reports
    through the validator and compares. ~1 us a model instead of ~4-7 us, about twenty
    a report."""
    model = cls.__new__(cls)
    _setattr(model, "__dict__", values)
    _setattr(model, "__pydantic_fields_set__", set(values))
    _setattr(model, "__pydantic_extra__", None)
    _setattr(model, "__pydantic_private__", None)
    return model


def updated(model: M, **update: Any) -> M:
    """`model.model_copy(update=update)` (no validation either), for `trusted` values."""
    return trusted(type(model), {**model.__dict__, **update})


class Warning_(Model):
    code: str
    detail: str


class ChainRef(Model):
    chain_id: int
    name: str


class BlockRef(Model):
    chain_id: int
    name: str
    block_number: int
    block_hash: str
    timestamp: int


class Totals(Model):
    """Headline figures (§4, §7). When debt cannot be valued (§4: a `debt_unknown`
    warning), `debt_usd`, `equity_usd`, `free_margin_usd`, `health` and `liquidatable`
    are null; the collateral and the requirement are those of what could be valued."""

    collateral_usd: str
    debt_usd: str | None
    equity_usd: str | None
    margin_requirement_usd: str | None
    free_margin_usd: str | None
    health: str | None
    liquidatable: bool | None


class Haircuts(Model):
    market: str | None
    bridge_latency: str | None
    correlation: str | None
    bridge_risk: str | None
    concentration: str | None
    floor: str | None


def _absent(value: object) -> bool:
    return value is None


class ChainSummary(Model):
    """One chain's share of the account. `address`, `contract` and `note` (METHOD.md
    §1) are there only when the account is read at another address on some chain:
    the address read on this chain, whether it holds code at the pin, and a note when
    it is a contract here and not elsewhere (or the reverse). `proven` of `positions`
    (§13) only on a chain in verified mode. Absent (not null) otherwise, so reports
    (and snapshot ids) of plain reads of one address are as they were before."""

    chain_id: int
    name: str
    status: Literal["ok", "unavailable"]
    reason: str | None = None
    collateral_usd: str | None
    debt_usd: str | None
    margin_usd: str | None = None
    address: str | None = None
    contract: bool | None = None
    note: str | None = None
    proven: int | None = Field(default=None, exclude_if=_absent)
    positions: int | None = Field(default=None, exclude_if=_absent)

    @model_serializer(mode="wrap")
    def _additive(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if self.address is None:
            for key in ADDRESS_FIELDS:
                out.pop(key, None)
        return out


ADDRESS_FIELDS = ("address", "contract", "note")


# implausible: a collateral balance above its token's totalSupply() or worth more than
# its asset's max_position_usd (METHOD.md §4); listed with its price, counted 0.
# unverified: in verified mode (§13), a collateral balance its proofs do not establish;
# listed with its price, counted 0. not_collateral: a protocol supply the account does
# not use as collateral there (§12); listed with its price, counted 0.
PositionStatus = Literal[
    "ok", "error", "unavailable", "unpriced", "implausible", "unverified", "not_collateral"
]


class Position(Model):
    chain_id: int
    asset: str
    token: str
    symbol: str
    kind: Literal["collateral", "debt"]
    bridged: bool
    status: PositionStatus
    reason: str | None = None
    raw_amount: str | None
    decimals: int
    price_usd: str | None
    value_usd: str | None
    horizon_days: str | None = None
    haircut: str | None = None
    margin_usd: str | None = None


class PriceSource(Model):
    """One feed reading. `kind` is the feed kind (chainlink, pyth); a Pyth source names its
    `price_id`, has no round id, and its `confidence` (raw units, like `answer`) widens
    it to [answer - confidence, answer + confidence] in the min/max."""

    chain_id: int
    feed: str
    round_id: str | None
    answer: str | None
    decimals: int
    updated_at: int | None
    valid: bool
    reason: str | None
    kind: str = "chainlink"
    price_id: str | None = None
    confidence: str | None = None


class Price(Model):
    asset: str
    collateral_usd: str | None
    debt_usd: str | None
    deviation: str | None
    sources: list[PriceSource]


class HistoryUsed(Model):
    """The daily returns behind the EWMA estimates (0 observations: none were used)."""

    observations: int
    first_day: str | None
    last_day: str | None


class Parameters(Model):
    """The risk inputs used, so an auditor can redo any figure (METHOD.md §6-§7).

    `sigma_source` / `correlation_source` say where each came from: `ewma` (price
    history), `floor` (EWMA below sigma_floor), `default` (sigma_default or
    default_correlation), `config` (a configured pair's rho), `override` (config, outright).
    """

    z: str
    kappa: str
    sigma: dict[str, str]
    correlation: dict[str, dict[str, str]]
    latency_days: dict[str, str]
    config_hash: str
    sigma_source: dict[str, str] = Field(default_factory=dict)
    correlation_source: dict[str, dict[str, str]] = Field(default_factory=dict)
    history: HistoryUsed | None = None


class ProtocolAccount(Model):
    """METHOD.md §12: the account in one protocol market, as the protocol itself counts
    it at the pinned block. Raw figures are the protocol's own integers (Aave v3: USD
    with 8 decimals, health factor in WAD); `*_usd` are the same as fixed-6 decimals.
    `health_factor` is null when the account has no debt there (Aave: unbounded) or the
    figures could not be read (`status` "error", with `reason`). `listed_debt_usd` is
    the debt valued from the market's configured representations (§3 prices);
    `unlisted_debt` is true when the protocol reports more than 0.01 USD beyond it.

    Morpho Blue (`protocol` "morpho_blue", `pool` the Morpho contract, `market` the
    configured market's name): the raw figures are token base units (collateral in the
    collateral token, debt and available borrows in the loan token), the health factor
    is Morpho's own (collateral at the market oracle's price times LLTV over the debt)
    and the `*_usd` figures are at §3 prices. For Aave, `market` is the [[protocols]]
    entry's name (null when the chain has one Aave pool)."""

    protocol: str
    chain_id: int
    chain: str
    pool: str
    market: str | None = None
    collateral_off: list[str] = Field(default_factory=list)  # Aave: supplies not collateral
    status: Literal["ok", "error"]
    reason: str | None = None
    health_factor: str | None
    health_factor_wad: str | None
    total_collateral_base: str | None
    total_debt_base: str | None
    available_borrows_base: str | None
    total_collateral_usd: str | None
    total_debt_usd: str | None
    available_borrows_usd: str | None
    listed_debt_usd: str | None
    unlisted_debt: bool | None
    liquidatable: bool | None


class MarginReport(Model):
    account: str
    target_chain: ChainRef
    status: Literal["ok", "partial"]
    method: Literal["var", "es"]
    as_of: list[BlockRef]
    max_time_skew_s: int | None
    totals: Totals
    haircuts: Haircuts
    chains: list[ChainSummary]
    positions: list[Position]
    prices: list[Price]
    parameters: Parameters
    warnings: list[Warning_]
    protocols: list[ProtocolAccount] = Field(default_factory=list)  # §12


class Capacity(Model):
    asset: str
    capacity_usd: str | None
    amount: str | None
    price_usd: str | None
    reason: str | None = None


class CapacityReport(Model):
    """METHOD.md §8: how much more can be borrowed on the target chain, per asset."""

    account: str
    target_chain: ChainRef
    status: Literal["ok", "partial"]
    as_of: list[BlockRef]
    free_margin_usd: str | None
    capacities: list[Capacity]
    warnings: list[Warning_]


class ScenarioOutcome(Model):
    """One §9 scenario. When debt cannot be valued (§4), debt, equity and solvency after
    the shock are null; the collateral after the shock is that of what could be valued."""

    name: str
    collateral_usd: str
    debt_usd: str | None
    equity_usd: str | None
    solvent: bool | None


class StressReport(Model):
    """METHOD.md §9: equity and solvency after each configured scenario; the worst named
    (null, like `equity_usd`, when debt cannot be valued)."""

    account: str
    status: Literal["ok", "partial"]
    as_of: list[BlockRef]
    equity_usd: str | None
    scenarios: list[ScenarioOutcome]
    worst: str | None
    warnings: list[Warning_]
