"""Generator parameters of the devnet (configs/devnet-scenario.toml), not risk config.

The scenario says which prices the feeds carry, which demo accounts exist and what
they hold. Everything in it is deterministic given the seed: demo keys are hashes of
(seed, name), price paths come from numpy's default_rng(seed) (see prices.py).
"""

from __future__ import annotations

import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated

from eth_account import Account
from eth_utils.crypto import keccak
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crossmargin.core.config import Config
from devnet.errors import DevnetError
from devnet.protocols.spec import PositionSpec, ProtocolsSpec

# secp256k1 group order: a private key must be in [1, N).
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=40)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PricePath(_Frozen):
    """One asset's walk: `price` is the LAST (current) round; the walk is anchored there."""

    asset: str
    price: float = Field(gt=0)
    daily_vol: float = Field(ge=0, lt=1)


class Correlation(_Frozen):
    a: str
    b: str
    rho: float = Field(ge=-1, le=1)


class Holding(_Frozen):
    """An intended balance: `symbol` names a representation on `chain` in the config."""

    chain: Name
    symbol: str
    amount: str  # decimal string in token units; never a float

    @field_validator("amount")
    @classmethod
    def _decimal(cls, value: str) -> str:
        try:
            d = Decimal(value)
        except InvalidOperation as exc:
            raise ValueError(f"not a decimal number: {value!r}") from exc
        if not d.is_finite() or d < 0:
            raise ValueError(f"amount must be a finite number >= 0: {value!r}")
        return value


class AccountSpec(_Frozen):
    name: Name
    about: str = ""
    holdings: list[Holding] = Field(min_length=1)  # the wallet, after `positions`
    positions: list[PositionSpec] = Field(default_factory=list)  # lending protocols


class Scenario(_Frozen):
    seed: int = Field(ge=0)
    rounds: int = Field(ge=2, le=10_000)
    round_interval_s: int = Field(default=86_400, gt=0)
    chain_spread: float = Field(default=0.0, ge=0, lt=0.01)
    sequencer_up_for_s: int = Field(gt=0)
    keeper_interval_s: float = Field(default=1200.0, gt=0)
    prices: list[PricePath] = Field(min_length=1)
    correlations: list[Correlation] = Field(default_factory=list)
    deployer_nonce: dict[str, int] = Field(default_factory=dict)
    token_names: dict[str, str] = Field(default_factory=dict)
    accounts: list[AccountSpec] = Field(default_factory=list)
    protocols: ProtocolsSpec = Field(default_factory=ProtocolsSpec)

    def with_seed(self, seed: int | None) -> Scenario:
        return self if seed is None else self.model_copy(update={"seed": seed})

    def check_against(self, config: Config) -> None:
        """Every name the scenario uses must exist in the config it will be applied to."""
        assets = {a.symbol for a in config.assets}
        chains = {c.name for c in config.chains}
        problems = [f"prices: no price path for asset {a}" for a in sorted(assets - self._priced())]
        problems += [
            f"prices: unknown asset {p.asset}" for p in self.prices if p.asset not in assets
        ]
        problems += [
            f"deployer_nonce: unknown chain {c}" for c in self.deployer_nonce if c not in chains
        ]
        for acc in self.accounts:
            keys = [(h.chain, h.symbol) for h in acc.holdings]
            if len(set(keys)) != len(keys):
                problems.append(f"accounts.{acc.name}: a token is listed twice on one chain")
            for h in acc.holdings:
                reps = [
                    r for r in config.representations if r.chain == h.chain and r.symbol == h.symbol
                ]
                if len(reps) != 1:
                    problems.append(f"accounts.{acc.name}: no unique {h.symbol} on {h.chain}")
        protocol_chains = [
            *self.protocols.deployer_nonce,
            *(m.chain for m in self.protocols.aave_v3),
            *(m.chain for m in self.protocols.morpho_blue),
            *(t.chain for t in self.protocols.extra_tokens),
            *(p.chain for a in self.accounts for p in a.positions),
        ]
        problems += [f"protocols: unknown chain {c}" for c in protocol_chains if c not in chains]
        if len({a.name for a in self.accounts}) != len(self.accounts):
            problems.append("accounts: duplicate name")
        if problems:
            raise DevnetError("scenario does not fit the config:\n  " + "\n  ".join(problems))

    def _priced(self) -> set[str]:
        return {p.asset for p in self.prices}


def load_scenario(path: Path) -> Scenario:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        return Scenario.model_validate(raw)
    except OSError as exc:
        raise DevnetError(f"{path}: cannot read: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise DevnetError(f"{path}: {exc}") from exc


def demo_key(seed: int, name: str) -> bytes:
    """Private key of a demo account: keccak256("crossmargin-devnet:<seed>:<name>")."""
    key = keccak(f"crossmargin-devnet:{seed}:{name}".encode())
    if not 0 < int.from_bytes(key, "big") < _SECP256K1_N:  # pragma: no cover - 2^-128
        raise DevnetError(f"demo key for {name!r} with seed {seed} is out of range")
    return key


def demo_address(seed: int, name: str) -> str:
    address: str = Account.from_key(demo_key(seed, name)).address
    return address


def to_raw(amount: str, decimals: int) -> int:
    """Token units (decimal string) to base units; refuses amounts finer than 10^-decimals."""
    scaled = Decimal(amount).scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise DevnetError(f"{amount} has more than {decimals} decimals")
    return int(scaled)
