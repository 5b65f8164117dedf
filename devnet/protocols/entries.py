"""The protocols' part of the manifest: every address a reader needs, per chain.

These are what the service's config will name when protocol positions are configured
(pool, data provider, aToken and debt-token addresses, Morpho market ids); they follow
from the deploy order alone (see plan.py), so they are the same on every start.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AaveReserveEntry(_Model):
    symbol: str
    underlying: str
    decimals: int
    id: int  # the reserve's index: its bits in getUserConfiguration are 2*id, 2*id+1
    a_token: str
    a_token_symbol: str
    variable_debt_token: str
    variable_debt_symbol: str
    stable_debt_token: str
    price_source: str  # the AaveOracle's source (a Chainlink feed)
    in_config: bool  # false: a token configs/devnet.toml does not list (unlisted debt)
    ltv_bps: int
    liquidation_threshold_bps: int


class AaveEntry(_Model):
    chain: str
    pool_kind: Literal["Pool", "L2Pool"]
    addresses_provider: str
    acl_manager: str
    pool: str  # the proxy users call
    pool_impl: str
    pool_configurator: str
    oracle: str
    data_provider: str
    price_oracle_sentinel: str | None  # L2s: Aave's sequencer check
    treasury: str
    reserves: list[AaveReserveEntry]

    def reserve(self, symbol: str) -> AaveReserveEntry:
        for r in self.reserves:
            if r.symbol == symbol:
                return r
        raise KeyError(symbol)


class MorphoMarketEntry(_Model):
    name: str  # "COLLATERAL/LOAN"
    id: str  # 0x + 32 bytes: keccak256(abi.encode(marketParams))
    loan_token: str
    collateral_token: str
    oracle: str
    irm: str
    lltv: str  # WAD, decimal string
    fee: str  # WAD, decimal string


class MorphoEntry(_Model):
    chain: str
    morpho: str
    irm: str
    fee_recipient: str
    markets: list[MorphoMarketEntry]

    def market(self, name: str) -> MorphoMarketEntry:
        for m in self.markets:
            if m.name == name:
                return m
        raise KeyError(name)


class PositionEntry(_Model):
    """A demo account's protocol action as the scenario states it, with raw units."""

    chain: str
    protocol: Literal["aave_v3", "morpho_blue"]
    action: Literal["supply", "borrow", "collateral"]
    symbol: str
    token: str
    decimals: int
    amount: str
    raw: str
    market: str | None = None
    collateral: bool = True
