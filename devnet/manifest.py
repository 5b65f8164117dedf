"""The manifest (<state_dir>/manifest.json): what runs where, and what it should hold.

Written atomically when the devnet is ready (status "ready") and again on stop
(status "stopped"); a reader that waits for "ready" never sees a half-written file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from crossmargin.core.config import NATIVE, Config
from devnet.protocols.entries import AaveEntry, MorphoEntry, PositionEntry
from devnet.protocols.plan import position_entries
from devnet.scenario import Scenario, demo_address, demo_key, to_raw

MANIFEST_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class HoldingEntry(_Model):
    chain: str
    symbol: str
    asset: str
    address: str  # token address, or "native"
    kind: Literal["collateral", "debt"]
    decimals: int
    amount: str  # token units, as in the scenario
    raw: str  # base units, decimal string


class AccountEntry(_Model):
    name: str
    about: str
    address: str
    private_key: str  # devnet-only key, derived from (seed, name); see scenario.demo_key
    holdings: list[HoldingEntry]  # the wallet
    positions: list[PositionEntry] = []  # in lending protocols, in the order taken


class ChainEntry(_Model):
    name: str
    chain_id: int
    rpc_url: str
    port: int
    pid: int
    env_var: str
    multicall3: str
    tokens: dict[str, str]  # representation symbol -> address (no native)
    feeds: dict[str, str]  # asset symbol -> price feed address
    sequencer_uptime_feed: str | None
    log: str
    aave_v3: AaveEntry | None = None
    morpho_blue: MorphoEntry | None = None
    extra_tokens: dict[str, str] = {}  # tokens only the protocols list: symbol -> address


class HistoryEntry(_Model):
    rounds: int
    interval_s: int
    end_timestamp: int  # updatedAt of the last round = chain time at start
    chain_spread: float


class KeeperEntry(_Model):
    enabled: bool
    interval_s: float


class Manifest(_Model):
    version: int = MANIFEST_VERSION
    status: Literal["ready", "stopped"]
    seed: int
    started_at: str  # ISO 8601 UTC
    ready_after_s: float
    config_path: str  # generated config with concrete RPC URLs
    source_config: str
    scenario: str
    deployer: str
    env: dict[str, str]
    chains: list[ChainEntry]
    history: HistoryEntry
    keeper: KeeperEntry
    accounts: list[AccountEntry]

    def chain(self, name: str) -> ChainEntry:
        for c in self.chains:
            if c.name == name:
                return c
        raise KeyError(name)

    def account(self, name: str) -> AccountEntry:
        for a in self.accounts:
            if a.name == name:
                return a
        raise KeyError(name)


def build_accounts(config: Config, scenario: Scenario) -> list[AccountEntry]:
    """Demo accounts with their intended balances (scenario.check_against ran before)."""
    out = []
    for spec in scenario.accounts:
        holdings = []
        for h in spec.holdings:
            rep = next(
                r for r in config.representations if r.chain == h.chain and r.symbol == h.symbol
            )
            holdings.append(
                HoldingEntry(
                    chain=h.chain,
                    symbol=h.symbol,
                    asset=rep.asset,
                    address=NATIVE if rep.is_native else rep.address,
                    kind=rep.kind,
                    decimals=rep.decimals,
                    amount=h.amount,
                    raw=str(to_raw(h.amount, rep.decimals)),
                )
            )
        out.append(
            AccountEntry(
                name=spec.name,
                about=spec.about,
                address=demo_address(scenario.seed, spec.name),
                private_key="0x" + demo_key(scenario.seed, spec.name).hex(),
                holdings=holdings,
                positions=position_entries(config, scenario, spec.positions),
            )
        )
    return out


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_manifest(path: Path) -> Manifest:
    return Manifest.model_validate_json(path.read_text(encoding="utf-8"))
