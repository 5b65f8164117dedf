"""What configs/devnet-scenario.toml says about the lending protocols on the devnet.

Aave v3 markets and Morpho Blue markets per chain, tokens only the protocols know (the
risk config does not list them: debt in them is `unlisted_debt`), and the demo
accounts' protocol positions. Percentages are decimal strings (exact): an LTV of
"80.5" is Aave's 8050 basis points, a Morpho LLTV of "86" is 0.86e18.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=40)]
Symbol = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9.]*$", max_length=20)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _decimal(value: str, *, high: Decimal | None = None) -> str:
    try:
        d = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal number: {value!r}") from exc
    if not d.is_finite() or d < 0 or (high is not None and d > high):
        raise ValueError(f"out of range: {value!r}")
    return value


def percent(value: str, unit: int) -> int:
    """A percentage string in `unit`s of 100% (10_000 for basis points, 10**18 for WAD)."""
    scaled = Decimal(value) * unit / 100
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value}% is finer than 1/{unit} of 100%")
    return int(scaled)


class RateStrategy(_Frozen):
    """Aave's DefaultReserveInterestRateStrategy, in percent (stable borrowing is off)."""

    optimal_usage: str
    base: str = "0"
    slope1: str
    slope2: str

    @field_validator("optimal_usage", "base", "slope1", "slope2")
    @classmethod
    def _pct(cls, value: str) -> str:
        return _decimal(value, high=Decimal(1000))


class AaveReserve(_Frozen):
    """One reserve: a token of the chain (config or `extra_tokens`) and its risk settings."""

    symbol: Symbol
    ltv: str
    liquidation_threshold: str
    liquidation_bonus: str  # the liquidator's bonus, e.g. "5" (Aave stores 10500)
    reserve_factor: str
    rates: str  # a key of [protocols.rates]
    liquidity: str  # token units the protocol deployer supplies

    @field_validator("ltv", "liquidation_threshold", "liquidation_bonus", "reserve_factor")
    @classmethod
    def _pct(cls, value: str) -> str:
        return _decimal(value, high=Decimal(100))

    @field_validator("liquidity")
    @classmethod
    def _amount(cls, value: str) -> str:
        return _decimal(value)


class AaveMarket(_Frozen):
    chain: Name
    pool: Literal["Pool", "L2Pool"]
    network: str  # "Ethereum" in "Aave Ethereum WETH"
    prefix: str  # "Eth" in "aEthWETH"
    sequencer_grace_period_s: int = Field(default=3600, gt=0)  # PriceOracleSentinel, L2 only
    reserves: list[AaveReserve] = Field(min_length=1)


class MorphoMarket(_Frozen):
    collateral: Symbol
    loan: Symbol
    lltv: str
    fee: str = "0"  # share of interest to the fee recipient, percent
    liquidity: str  # loan-token units the protocol deployer supplies

    @property
    def name(self) -> str:
        return f"{self.collateral}/{self.loan}"

    @field_validator("lltv", "fee")
    @classmethod
    def _pct(cls, value: str) -> str:
        return _decimal(value, high=Decimal(100))

    @field_validator("liquidity")
    @classmethod
    def _amount(cls, value: str) -> str:
        return _decimal(value)


class MorphoDeployment(_Frozen):
    chain: Name
    markets: list[MorphoMarket] = Field(min_length=1)


class ExtraToken(_Frozen):
    """A token only the protocols list (deployed with a constant USD feed of its own)."""

    chain: Name
    symbol: Symbol
    name: str
    decimals: int = Field(ge=0, le=36)
    price: str

    @field_validator("price")
    @classmethod
    def _price(cls, value: str) -> str:
        return _decimal(value)


class ProtocolsSpec(_Frozen):
    deployer_nonce: dict[str, int] = Field(default_factory=dict)
    rates: dict[str, RateStrategy] = Field(default_factory=dict)
    extra_tokens: list[ExtraToken] = Field(default_factory=list)
    aave_v3: list[AaveMarket] = Field(default_factory=list)
    morpho_blue: list[MorphoDeployment] = Field(default_factory=list)

    def aave(self, chain: str) -> AaveMarket | None:
        return next((m for m in self.aave_v3 if m.chain == chain), None)

    def morpho(self, chain: str) -> MorphoDeployment | None:
        return next((m for m in self.morpho_blue if m.chain == chain), None)

    def extra(self, chain: str) -> list[ExtraToken]:
        return [t for t in self.extra_tokens if t.chain == chain]


class PositionSpec(_Frozen):
    """One protocol action of a demo account, in the order listed.

    aave_v3: `supply` (with `collateral = false` it is then disabled as collateral),
    `borrow` (variable rate). morpho_blue (`market` = "COLLATERAL/LOAN"): `collateral`
    (supplyCollateral), `supply` (lend the loan token), `borrow`.
    """

    chain: Name
    protocol: Literal["aave_v3", "morpho_blue"]
    action: Literal["supply", "borrow", "collateral"]
    symbol: Symbol
    amount: str
    market: str | None = None
    collateral: bool = True

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: str) -> str:
        return _decimal(value)
