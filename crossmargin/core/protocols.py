"""Lending-protocol markets in config (METHOD.md §12): Aave v3 pools and Morpho Blue
markets whose own account figures are read beside the balances.

Kept apart from config.py (which re-exports them) so the protocol schema reads on its
own; the cross-checks against chains and representations live in `Config`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal, Self

from eth_abi.abi import encode
from eth_utils.crypto import keccak
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from crossmargin.core.addresses import Address

WAD = 10**18
MARKET_PARAMS = "(address,address,address,address,uint256)"

MarketName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._/+-]{0,39}$")]
MarketId = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$"), AfterValidator(str.lower)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MorphoMarketConfig(_Frozen):
    """One Morpho Blue market, named by its parameters (what Morpho hashes into the id).
    `id`, if given, must be keccak256(abi.encode(params)): a typo guard for ids copied
    from an explorer. Both tokens must be configured representations on the chain, so
    the collateral and the debt are valued as those assets (§3), never by `oracle`;
    the oracle is read only for Morpho's own health factor (the local floor)."""

    name: MarketName
    loan_token: Address
    collateral_token: Address
    oracle: Address
    irm: Address
    lltv: int = Field(gt=0, lt=WAD)  # WAD: 860000000000000000 is 86 %
    id: MarketId | None = None

    @model_validator(mode="after")
    def _id_matches(self) -> Self:
        if self.id is not None and self.id != self.market_id_hex:
            raise ValueError(
                f"id {self.id} is not keccak256(abi.encode(params)) = {self.market_id_hex}"
            )
        return self

    @property
    def params(self) -> tuple[str, str, str, str, int]:
        return (self.loan_token, self.collateral_token, self.oracle, self.irm, self.lltv)

    @property
    def market_id(self) -> bytes:
        """Memoised by the parameters (not on the model: a `model_copy(update=...)`
        would carry a stale id): a batch asks for it once per account and market."""
        return _market_id(self.params)

    @property
    def market_id_hex(self) -> str:
        return "0x" + self.market_id.hex()


@lru_cache(maxsize=1024)
def _market_id(params: tuple[str, str, str, str, int]) -> bytes:
    return bytes(keccak(encode([MARKET_PARAMS], [params])))


class ProtocolConfig(_Frozen):
    """A lending-protocol market on one chain whose own account figures are read
    (METHOD.md §12), in the same pinned multicall as the balances.

    - `aave_v3`: `pool` is the Pool (or L2Pool) proxy users call; getUserAccountData and
      getUserConfiguration are read there. Its positions are the representations tagged
      `protocol = "aave_v3"` on that chain (and `market = <name>` where the chain has
      several Aave pools, e.g. Core and Prime on ethereum).
    - `morpho_blue`: `morpho` is the singleton and `markets` the markets read there; the
      positions come from Morpho itself (collateral, borrow shares), so no
      representation is tagged with it.

    `name` tells apart several entries of one kind on one chain (required then)."""

    kind: Literal["aave_v3", "morpho_blue"]
    chain: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=40)]
    name: MarketName | None = None
    pool: Address | None = None
    morpho: Address | None = None
    markets: list[MorphoMarketConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Self:
        if self.kind == "aave_v3":
            if self.pool is None or self.morpho is not None or self.markets:
                raise ValueError("an aave_v3 entry takes `pool` (and no morpho, markets)")
        else:
            if self.morpho is None or self.pool is not None or not self.markets:
                raise ValueError("a morpho_blue entry takes `morpho` and `markets` (no pool)")
            names = [m.name for m in self.markets]
            ids = [m.market_id for m in self.markets]
            if len(set(names)) != len(names) or len(set(ids)) != len(ids):
                raise ValueError("a morpho_blue entry lists a market twice")
        return self

    @property
    def label(self) -> str:
        """How reports and warnings name this entry: its name, else its kind."""
        return self.name or self.kind

    @property
    def address(self) -> str:
        """The contract the account's figures are read from (Aave pool, Morpho)."""
        address = self.pool if self.kind == "aave_v3" else self.morpho
        assert address is not None  # _fields_of_kind
        return address

    def market(self, name: str) -> MorphoMarketConfig:
        for m in self.markets:
            if m.name == name:
                return m
        raise KeyError(name)
