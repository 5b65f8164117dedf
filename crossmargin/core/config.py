"""Configuration schema: frozen pydantic models built once from a TOML file in configs/.

Every risk number METHOD.md calls "config" lives here and nowhere in code. Environment
variables may fill secrets only (RPC URLs), written `${NAME}` or `${NAME:-default}`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from crossmargin.core.addresses import Address
from crossmargin.core.addresses import checksummed as checksummed  # re-exported
from crossmargin.core.errors import ConfigError
from crossmargin.core.protocols import MorphoMarketConfig, ProtocolConfig

NATIVE = "native"


Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=40)]
Fraction01 = Annotated[float, Field(ge=0.0, le=1.0)]
NonNeg = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


BlockHash = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$"), AfterValidator(str.lower)]


class ChainIdentity(Frozen):
    """METHOD.md §2: beyond its chain id, an endpoint proves it is the chain by having
    block `block` with hash `hash` (checked once per endpoint, batched with eth_chainId).
    The genesis block (`block = 0`) is the natural choice: every honest node of the
    chain has it, while a fork, a test chain or a misrouted URL with the same chain id
    does not. An endpoint with another hash there is refused for good; one that cannot
    return that block (null) is passed over and asked again later."""

    block: int = Field(default=0, ge=0)
    hash: BlockHash


class ChainConfig(Frozen):
    """A chain is data: a new network is a config entry, not a subclass.

    `identity` (optional, `{ block = 0, hash = "0x..." }`): see ChainIdentity; without
    it an endpoint proves only its chain id. The devnet writes its genesis hashes."""

    name: Name
    chain_id: int = Field(gt=0)
    rpc_urls: list[str] = Field(min_length=1)
    identity: ChainIdentity | None = None
    confirmations: int = Field(default=0, ge=0)
    block_tag: Literal["latest", "safe", "finalized"] = "latest"
    sequencer_uptime_feed: Address | None = None
    sequencer_grace_period_s: int = Field(default=3600, ge=0)
    to_hub_days: NonNeg = 0.0
    from_hub_days: NonNeg = 0.0
    rate_limit_rps: float = Field(default=50.0, gt=0)
    max_calls_per_batch: int = Field(default=1000, ge=1, le=5000)
    timeout_s: float = Field(default=10.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)
    # Transport tuning (adapters/): requests in flight per endpoint; seconds a failing
    # endpoint is passed over while another is healthy; wall-clock budget for one read
    # with all its retries; gas sent with every eth_call (nodes cap it at their own limit).
    max_concurrency: int = Field(default=8, ge=1, le=256)
    cooldown_s: float = Field(default=30.0, ge=0, allow_inf_nan=False)
    retry_budget_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    call_gas: int = Field(default=1_000_000_000, ge=1_000_000)
    # METHOD.md §13: "proof" proves every balance against the pinned block's header
    # (adapters/proof.py); "plain" takes the node's word. Hashed only when not "plain",
    # so plain configs keep their config hash (and snapshots their ids).
    verification: Literal["plain", "proof"] = "plain"


class _FeedBase(Frozen):
    """Fields every feed kind has. Bounds are in the feed's raw answer units, as Chainlink's
    own; `decimals` is what the feed reports on-chain (checked on every read)."""

    chain: Name
    address: Address
    kind: str
    decimals: int = Field(default=8, ge=0, le=36)
    heartbeat_s: int = Field(gt=0)
    min_answer: int | None = None
    max_answer: int | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.min_answer is not None and self.max_answer is not None:
            if self.min_answer > self.max_answer:
                raise ValueError("min_answer is above max_answer")
        return self


class ChainlinkFeedConfig(_FeedBase):
    """A Chainlink AggregatorV3 feed (proxy): latestRoundData() and decimals() at the
    pinned block; its rounds (getRoundData) are the price history."""

    kind: Literal["chainlink"] = "chainlink"


class PythFeedConfig(_FeedBase):
    """A Pyth price feed: `address` is the chain's Pyth contract, `price_id` the feed.
    getPriceUnsafe(id) gives price, conf, expo and publishTime; `decimals` must equal
    -expo. A reading whose conf / price exceeds `max_confidence` is rejected; a valid one
    counts as the interval [price - conf, price + conf] (oracle/validity.py)."""

    kind: Literal["pyth"]
    price_id: Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{64}$")]
    max_confidence: Annotated[float, Field(gt=0.0, le=1.0)] | None = None


def _feed_kind(value: Any) -> str:
    """`kind` picks the model; a feed without one is a Chainlink feed."""
    if isinstance(value, dict):
        return str(value.get("kind", "chainlink"))
    return str(getattr(value, "kind", "chainlink"))


FeedConfig = Annotated[
    Annotated[ChainlinkFeedConfig, Tag("chainlink")] | Annotated[PythFeedConfig, Tag("pyth")],
    Discriminator(_feed_kind),
]


class AssetConfig(Frozen):
    """Risk parameters of one economic asset (METHOD.md §5-§7); vols are daily.

    `liquidity_depth_usd` (D_a of the §7 concentration add-on) is required for every
    asset that has a collateral representation (`Config` checks it); it may be left out
    only for an asset that is never collateral.
    """

    symbol: Annotated[str, Field(pattern=r"^[A-Z0-9.]{1,16}$")]
    liquidation_horizon_days: NonNeg
    sigma_default: NonNeg
    sigma_floor: NonNeg = 0.0
    sigma: NonNeg | None = None
    h_min: Fraction01 = 0.0
    concentration_k: NonNeg = 0.0
    liquidity_depth_usd: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] | None = None
    # §4 plausibility: a collateral position (one representation on one chain) worth
    # more than this counts 0 and is flagged `implausible`; None: no limit.
    max_position_usd: Annotated[float, Field(gt=0.0, allow_inf_nan=False)] | None = None
    feeds: list[FeedConfig] = Field(min_length=1)


class RepresentationConfig(Frozen):
    """A token on one chain standing for an asset (METHOD.md §1).

    `standard` says how its amount is read: `native` (the chain's coin, the default for
    address "native"), `erc20` (balanceOf, the default otherwise) or `erc4626` (vault
    shares counted at convertToAssets(balanceOf), so `decimals` are the underlying
    asset's). `native_alias` marks an ERC-20 view of the native coin (CELO-style): it is
    not read where the chain's native coin is configured, so nothing is counted twice.
    """

    chain: Name
    asset: str
    symbol: str = Field(min_length=1, max_length=32)
    address: Address | Literal["native"]
    decimals: int = Field(ge=0, le=77)
    kind: Literal["collateral", "debt"] = "collateral"
    bridged: bool = False
    bridge_addon: Fraction01 = 0.0
    standard: Literal["native", "erc20", "erc4626"] = "erc20"
    native_alias: bool = False
    # §12: a position inside a lending protocol (an Aave v3 aToken or variable-debt
    # token), read as an ordinary ERC-20 balance; names the kind of the chain's
    # `[[protocols]]` entry whose market it belongs to, and that entry's `name` in
    # `market` where the chain has several of the kind. "morpho_blue" is only given
    # to the positions Config derives from Morpho markets (never written in config).
    protocol: Literal["aave_v3", "morpho_blue"] | None = None
    market: str | None = None
    # §13 verified mode: where balanceOf's value is stored, when it is not discovered
    # (adapters/proof.py): "solidity:N" (a mapping at slot N), "vyper:N" (Vyper's
    # keccak(slot . key) order) or "erc7201:NAMESPACE" (OpenZeppelin 5 namespaced
    # storage, `_balances` first in the struct). Hashed only when given.
    balance_slot: str | None = Field(
        default=None, pattern=r"^((solidity|vyper):[0-9]{1,78}|erc7201:[A-Za-z0-9_.]{1,100})$"
    )

    @property
    def is_native(self) -> bool:
        return self.address == NATIVE

    @model_validator(mode="before")
    @classmethod
    def _infer_standard(cls, data: Any) -> Any:
        if isinstance(data, dict) and "standard" not in data and data.get("address") == NATIVE:
            return {**data, "standard": "native"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.bridge_addon and not self.bridged:
            raise ValueError("bridge_addon is only for bridged representations")
        if self.is_native and self.kind == "debt":
            raise ValueError("a native coin cannot be a debt representation")
        if self.is_native != (self.standard == "native"):
            raise ValueError('standard "native" goes with address "native", and only with it')
        if self.native_alias and self.standard != "erc20":
            raise ValueError("native_alias is only for erc20 representations")
        if self.protocol is not None and self.standard != "erc20":
            raise ValueError("a protocol representation is an erc20 balance (aToken, debt token)")
        if self.market is not None and self.protocol is None:
            raise ValueError("market names the [[protocols]] entry of a protocol representation")
        return self


class LatencyConfig(Frozen):
    from_chain: Name = Field(alias="from")
    to_chain: Name = Field(alias="to")
    days: NonNeg


class BridgeConfig(Frozen):
    """Pairs given here win; others are derived as to_hub(c) + from_hub(t) (METHOD.md §5)."""

    hub: Name
    latency: list[LatencyConfig] = Field(default_factory=list)


class CorrelationConfig(Frozen):
    """A pair's rho when the price history cannot estimate it (METHOD.md §6); with
    `override = true` it is used outright, whatever the history says."""

    a: str
    b: str
    rho: float = Field(ge=-1.0, le=1.0)
    override: bool = False


PSD_TOLERANCE = 1e-10  # as oracle/estimation.py's run-time check


def _override_blocks(pairs: list[CorrelationConfig]) -> list[list[str]]:
    """The maximal sets of assets whose every pair is overridden (cliques of the override
    graph), by eliminating simplicial assets. Exact for a chordal graph (Grone et al. 1984:
    then the overrides fit in a correlation matrix iff every such block is PSD); a
    chordless cycle of four or more is refused, as no block-wise check decides it."""
    adj: dict[str, set[str]] = {}
    for p in pairs:
        adj.setdefault(p.a, set()).add(p.b)
        adj.setdefault(p.b, set()).add(p.a)
    left, blocks = set(adj), list[list[str]]()
    while left:
        for v in sorted(left):
            near = adj[v] & left
            if all(y in adj[x] for x in near for y in near if x != y):
                break
        else:
            raise ValueError(
                "overridden pairs among " + ", ".join(sorted(left)) + " form a cycle of four "
                "or more assets with no overridden chord, which cannot be checked to be "
                "positive semidefinite; override a chord pair too"
            )
        block = sorted({v} | near)
        if not any(set(block) <= set(b) for b in blocks):
            blocks.append(block)
        left.remove(v)
    return blocks


class RiskConfig(Frozen):
    alpha: float = Field(default=0.99, gt=0.5, lt=1.0)
    method: Literal["var", "es"] = "var"
    alpha_es: float = Field(default=0.975, gt=0.5, lt=1.0)
    kappa: Fraction01 = 0.5
    ewma_lambda: float = Field(default=0.94, gt=0.0, lt=1.0)
    min_observations: int = Field(default=30, ge=2)
    default_correlation: float = Field(ge=-1.0, le=1.0)
    max_deviation: NonNeg = 0.02
    max_time_skew_s: int = Field(default=300, ge=0)
    # §3.5: a feed reading stamped more than this after the pinned block is invalid.
    # One value for every feed: it absorbs clock differences between a chain and a
    # feed's publishers (Pyth), and METHOD gives it no per-feed or per-chain scope.
    future_tolerance_s: int = Field(default=60, ge=0)
    correlations: list[CorrelationConfig] = Field(default_factory=list)
    # §12: a protocol account whose own health factor is below this is warned
    # (`local_liquidation_risk`); below 1 it is liquidatable.
    local_health_warn: float = Field(default=1.05, ge=1.0, allow_inf_nan=False)

    @field_validator("correlations")
    @classmethod
    def _overrides_psd(cls, pairs: list[CorrelationConfig]) -> list[CorrelationConfig]:
        """Overrides are used outright, so with the unit diagonal they must fit in one
        correlation matrix; otherwise the run-time repair would move them. Fallback pairs
        are not checked: they mix with EWMA estimates at run time (docs/methodology.md)."""
        seen: set[frozenset[str]] = set()
        for i, p in enumerate(pairs):
            key = frozenset((p.a, p.b))
            if len(key) == 1:
                raise ValueError(f"item {i} pairs {p.a} with itself (its rho is 1)")
            if key in seen:
                raise ValueError(f"item {i}: the pair {p.a}, {p.b} is given twice")
            seen.add(key)
        overrides = [p for p in pairs if p.override]
        rho = {frozenset((p.a, p.b)): p.rho for p in overrides}
        worst: tuple[float, list[str]] | None = None
        for block in _override_blocks(overrides):
            m = np.array(
                [[1.0 if a == b else rho[frozenset((a, b))] for b in block] for a in block]
            )
            low = float(np.linalg.eigvalsh(m)[0])
            if worst is None or low < worst[0]:
                worst = (low, block)
        if worst is not None and worst[0] < -PSD_TOLERANCE:
            raise ValueError(
                f"overrides are not positive semidefinite (smallest eigenvalue {worst[0]:.3g}, "
                f"among {', '.join(worst[1])})"
            )
        return pairs


class ScenarioConfig(Frozen):
    """A named stress (METHOD.md §9): price shocks, a bridged depeg, halted chains."""

    name: str = Field(min_length=1, max_length=64)
    shocks: dict[str, Annotated[float, Field(ge=-1.0, allow_inf_nan=False)]] = Field(
        default_factory=dict
    )
    bridged_depeg: Fraction01 = 0.0
    halted_chains: list[Name] = Field(default_factory=list)


class ApiKeyConfig(Frozen):
    """An API key as the sha256 (hex) of the key: the key itself never sits in config."""

    name: Name
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    rate_per_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    burst: int = Field(default=20, ge=1)


class ApiConfig(Frozen):
    """The HTTP API. `database_url` may be overridden by CROSSMARGIN_DATABASE_URL (secrets)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # Processes of `crossmargin serve` sharing the port (cli/accept.py); --workers wins.
    workers: int = Field(default=1, ge=1, le=64)
    anonymous: bool = False
    anonymous_rate_per_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    anonymous_burst: int = Field(default=20, ge=1)
    keys: list[ApiKeyConfig] = Field(default_factory=list)
    max_batch: int = Field(default=100, ge=1, le=1000)
    request_timeout_s: float = Field(default=15.0, gt=0, allow_inf_nan=False)
    pin_ttl_s: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    cache_entries: int = Field(default=4096, ge=0)
    database_url: str = "sqlite:///.devnet/crossmargin.db"
    # The Ed25519 key (PEM file) that signs the transparency log's tree heads (METHOD.md
    # §10); none: the log grows, and no tree head is signed or served.
    tlog_key: str | None = None

    @model_validator(mode="after")
    def _keys(self) -> Self:
        for field in ("name", "sha256"):
            values = [getattr(k, field) for k in self.keys]
            if len(set(values)) != len(values):
                raise ValueError(f"api.keys: duplicate {field}")
        return self


class HistoryConfig(Frozen):
    """Daily closes for §6 (`crossmargin prices sync`, oracle/history.py): how many days
    back to fill, and how many getRoundData calls per feed go in one multicall."""

    days: int = Field(default=365, ge=2, le=3650)
    batch_rounds: int = Field(default=250, ge=1, le=5000)


class AccountConfig(Frozen):
    """METHOD.md §1: an account read at other addresses on some chains (a smart-contract
    wallet deployed at different addresses). `address` is the account (and its address
    on every chain not in `addresses`); `addresses` maps chain names to the address read
    there. A request may give more (`addresses=chain:0x..`); the request wins."""

    address: Address
    name: str | None = Field(default=None, max_length=60)
    addresses: dict[Name, Address] = Field(default_factory=dict)


class WatchConfig(Frozen):
    """METHOD.md §14, the watcher (api/watch/): how often heads are polled, how often every
    watched account is recomputed whatever changed (`sweep_s`), how many accounts go in
    one engine batch at most, about how long one slice of recomputation may take before
    the watcher looks for a new head (`slice_s`), and webhook delivery (exponential
    back-off with jitter from `retry_base_s` up to `retry_max_s`; dead-lettered after
    `max_attempts` failures)."""

    enabled: bool = True  # run the watcher inside `crossmargin serve` / `up`
    poll_s: float = Field(default=0.25, gt=0, le=60, allow_inf_nan=False)
    sweep_s: float = Field(default=300.0, gt=0, allow_inf_nan=False)
    batch: int = Field(default=1000, ge=1, le=20_000)
    slice_s: float = Field(default=0.2, gt=0, le=60, allow_inf_nan=False)
    max_accounts: int = Field(default=10_000, ge=1, le=100_000)  # per subscription
    max_attempts: int = Field(default=8, ge=1, le=100)
    retry_base_s: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    retry_max_s: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    delivery_timeout_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    delivery_concurrency: int = Field(default=16, ge=1, le=256)


class Config(Frozen):
    """The whole service configuration; cross-references are checked here, once."""

    settlement_chain: Name
    chains: list[ChainConfig] = Field(min_length=1)
    assets: list[AssetConfig] = Field(min_length=1)
    representations: list[RepresentationConfig] = Field(min_length=1)
    protocols: list[ProtocolConfig] = Field(default_factory=list)
    risk: RiskConfig
    bridges: BridgeConfig
    scenarios: list[ScenarioConfig] = Field(default_factory=list)
    api: ApiConfig = ApiConfig()
    history: HistoryConfig = HistoryConfig()
    # The hash of the stored `risk_document` this config was rebuilt from (replay): a
    # field added later with a default must not change the identity of an old config.
    _stored_as: str | None = PrivateAttr(default=None)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A changed copy is another config: it does not keep the stored hash."""
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy._stored_as = None
        return copy

    accounts: list[AccountConfig] = Field(default_factory=list)
    watch: WatchConfig = WatchConfig()

    @model_validator(mode="after")
    def _references(self) -> Self:
        chains = _unique([c.name for c in self.chains], "chains", "name")
        _unique([str(c.chain_id) for c in self.chains], "chains", "chain_id")
        assets = _unique([a.symbol for a in self.assets], "assets", "symbol")
        _need(self.settlement_chain, chains, "settlement_chain", "chain")
        _need(self.bridges.hub, chains, "bridges.hub", "chain")
        for i, pair in enumerate(self.bridges.latency):
            _need(pair.from_chain, chains, f"bridges.latency.{i}.from", "chain")
            _need(pair.to_chain, chains, f"bridges.latency.{i}.to", "chain")
        for i, asset in enumerate(self.assets):
            for j, feed in enumerate(asset.feeds):
                _need(feed.chain, chains, f"assets.{i}.feeds.{j}.chain", "chain")
        for i, corr in enumerate(self.risk.correlations):
            _need(corr.a, assets, f"risk.correlations.{i}.a", "asset")
            _need(corr.b, assets, f"risk.correlations.{i}.b", "asset")
        self._check_scenarios(chains, assets)
        self._check_representations(chains, assets)
        self._check_protocols(chains)
        _unique([a.address for a in self.accounts], "accounts", "address")
        for i, acct in enumerate(self.accounts):
            for chain in acct.addresses:
                _need(chain, chains, f"accounts.{i}.addresses", "chain")
        return self

    def addresses_of(self, account: str) -> dict[str, str]:
        """§1: the configured address per chain of `account` (checksummed), if mapped."""
        for a in self.accounts:
            if a.address == account:
                return dict(a.addresses)
        return {}

    def _check_protocols(self, chains: set[str]) -> None:
        """Entries on known chains, one per (kind, chain, name), a `name` on each where
        a chain has several of a kind; every protocol-tagged representation resolves to
        its entry (§12 reads it there); Morpho markets' tokens are configured."""
        seen: set[tuple[str, str, str | None]] = set()
        for i, p in enumerate(self.protocols):
            _need(p.chain, chains, f"protocols.{i}.chain", "chain")
            if (p.kind, p.chain, p.name) in seen:
                raise ValueError(f"protocols.{i}: a second {p.kind} {p.label} on {p.chain}")
            seen.add((p.kind, p.chain, p.name))
            same = [q for q in self.protocols if (q.kind, q.chain) == (p.kind, p.chain)]
            if len(same) > 1 and p.name is None:
                raise ValueError(f"protocols.{i}.name: required, {p.chain} has several {p.kind}")
            for j, m in enumerate(p.markets):
                for side in ("loan_token", "collateral_token"):
                    if self._plain_rep(p.chain, getattr(m, side)) is None:
                        raise ValueError(
                            f"protocols.{i}.markets.{j}.{side}: not a configured erc20 "
                            f"representation on {p.chain}"
                        )
        for i, rep in enumerate(self.representations):
            if rep.protocol == "morpho_blue":
                raise ValueError(
                    f"representations.{i}.protocol: Morpho positions come from its markets"
                )
            if rep.protocol is not None and self.protocol_of(rep) is None:
                raise ValueError(
                    f"representations.{i}.protocol: no [[protocols]] entry of kind "
                    f"{rep.protocol} on {rep.chain}"
                    + (f" named {rep.market!r}" if rep.market else " (or several: name one)")
                )

    def protocol(self, kind: str, chain: str, name: str | None = None) -> ProtocolConfig | None:
        """The chain's entry of that kind (and name, where it has several), if any."""
        found = [
            p
            for p in self.protocols
            if p.kind == kind and p.chain == chain and (name is None or p.name == name)
        ]
        return found[0] if len(found) == 1 else None

    def protocol_of(self, rep: RepresentationConfig) -> ProtocolConfig | None:
        """The [[protocols]] entry a protocol-tagged representation belongs to."""
        if rep.protocol is None:
            return None
        return self.protocol(rep.protocol, rep.chain, rep.market)

    def _plain_rep(self, chain: str, address: str) -> RepresentationConfig | None:
        for r in self.representations:
            if r.chain == chain and r.protocol is None and r.standard == "erc20":
                if r.address.lower() == address.lower():
                    return r
        return None

    def morpho_representations(self, chain: str) -> list[RepresentationConfig]:
        """The positions every Morpho market on `chain` may hold for an account (§12):
        its collateral as the collateral token's asset, its debt as the loan token's,
        each tagged `protocol = "morpho_blue"`, `market = "<entry>:<market>"`. Built
        once per chain (every account of a batch asks)."""
        key = (id(self.protocols), id(self.representations), chain)
        hit = _MORPHO_REPS.get(key)  # the lists are kept with the entry: ids stay theirs
        if hit is not None and hit[0] is self.protocols and hit[1] is self.representations:
            return hit[2]
        out = []
        for p in self.protocols:
            if p.kind != "morpho_blue" or p.chain != chain:
                continue
            for m in p.markets:
                for kind, token in (("collateral", m.collateral_token), ("debt", m.loan_token)):
                    base = self._plain_rep(chain, token)
                    assert base is not None  # _check_protocols
                    out.append(
                        base.model_copy(
                            update={
                                "symbol": f"{base.symbol} (Morpho {m.name})"[:32],
                                "kind": kind,
                                "protocol": "morpho_blue",
                                "market": morpho_market_key(p, m),
                                "native_alias": False,
                            }
                        )
                    )
        if len(_MORPHO_REPS) > 256:
            _MORPHO_REPS.clear()
        _MORPHO_REPS[key] = (self.protocols, self.representations, out)
        return out

    def _check_scenarios(self, chains: set[str], assets: set[str]) -> None:
        _unique([s.name for s in self.scenarios], "scenarios", "name")
        for i, sc in enumerate(self.scenarios):
            for shocked in sc.shocks:
                _need(shocked, assets, f"scenarios.{i}.shocks", "asset")
            for chain in sc.halted_chains:
                _need(chain, chains, f"scenarios.{i}.halted_chains", "chain")

    def _check_representations(self, chains: set[str], assets: set[str]) -> None:
        """Each names a known chain and asset, once per (chain, address); an asset that
        can be collateral has a liquidity depth (METHOD.md §7 concentration)."""
        seen: dict[tuple[str, str], int] = {}
        collateral: dict[str, int] = {}  # asset -> its first collateral representation
        for i, rep in enumerate(self.representations):
            _need(rep.chain, chains, f"representations.{i}.chain", "chain")
            _need(rep.asset, assets, f"representations.{i}.asset", "asset")
            key = (rep.chain, rep.address.lower())
            if key in seen:
                raise ValueError(
                    f"representations.{i}: {rep.address} on {rep.chain} is already "
                    f"representations.{seen[key]}"
                )
            seen[key] = i
            if rep.kind == "collateral":
                collateral.setdefault(rep.asset, i)
        for i, asset in enumerate(self.assets):
            if asset.liquidity_depth_usd is None and asset.symbol in collateral:
                raise ValueError(
                    f"assets.{i}.liquidity_depth_usd: required, {asset.symbol} can be "
                    f"collateral (representations.{collateral[asset.symbol]}; METHOD.md §7)"
                )

    def chain(self, key: str | int) -> ChainConfig:
        """Look a chain up by name or chain id (as users type either)."""
        for c in self.chains:
            if c.name == key or str(c.chain_id) == str(key):
                return c
        raise KeyError(key)

    def asset(self, symbol: str) -> AssetConfig:
        for a in self.assets:
            if a.symbol == symbol:
                return a
        raise KeyError(symbol)


def _unique(values: list[str], where: str, field: str) -> set[str]:
    seen: set[str] = set()
    for i, v in enumerate(values):
        if v in seen:
            raise ValueError(f"{where}.{i}.{field}: duplicate {v!r}")
        seen.add(v)
    return seen


def _need(value: str, known: set[str], path: str, what: str) -> None:
    if value not in known:
        raise ValueError(f"{path}: unknown {what} {value!r} (known: {', '.join(sorted(known))})")


_ENV = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: str, env: Mapping[str, str], path: str, source: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{source}: {path}: environment variable {name} is not set")

    return _ENV.sub(sub, value)


def _fill_secrets(raw: dict[str, Any], env: Mapping[str, str], source: str) -> dict[str, Any]:
    """Expand ${VAR} only in rpc_urls: env vars fill secrets, never risk numbers."""
    for i, chain in enumerate(raw.get("chains", [])):
        if isinstance(chain, dict) and isinstance(chain.get("rpc_urls"), list):
            chain["rpc_urls"] = [
                _expand(u, env, f"chains.{i}.rpc_urls.{j}", source) if isinstance(u, str) else u
                for j, u in enumerate(chain["rpc_urls"])
            ]
    return raw


def _without_feed_kind(loc: tuple[int | str, ...]) -> list[int | str]:
    """Drop the feed kind pydantic puts in the path of a feed's error (feeds.0.pyth.x)."""
    return [
        p
        for i, p in enumerate(loc)
        if not (i >= 2 and loc[i - 2] == "feeds" and isinstance(loc[i - 1], int) and p in _KINDS)
    ]


_KINDS = frozenset({"chainlink", "pyth"})


def _non_finite(value: Any, path: str) -> Iterator[str]:
    """Paths of the NaN and infinite floats in parsed TOML (which allows `nan`, `inf`)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield f"{path or '(top level)'}: {value} is not a finite number"
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _non_finite(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _non_finite(v, f"{path}.{i}" if path else str(i))


def parse_config(
    text: str, env: Mapping[str, str] | None = None, source: str = "<config>"
) -> Config:
    """Parse and validate; every problem is reported with its path inside the file."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    # No figure can stand on a NaN or an infinity, and a one-sided bound (gt=0) lets inf
    # through: refuse them wherever they are.
    bad = list(_non_finite(raw, ""))
    if bad:
        raise ConfigError("\n".join(f"{source}: {b}" for b in bad))
    raw = _fill_secrets(raw, os.environ if env is None else env, source)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in _without_feed_kind(err["loc"])) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {loc}: {msg}")
        raise ConfigError("\n".join(lines)) from exc


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start})") from exc
    return parse_config(text, env, source=str(p))


# Not part of what shapes a figure: endpoints (secrets), which endpoints are trusted
# (`identity`: every block read is named by its hash anyway), transport tuning, the API.
_MORPHO_REPS: dict[tuple[int, int, str], tuple[Any, Any, list[RepresentationConfig]]] = {}


def morpho_market_key(p: ProtocolConfig, m: MorphoMarketConfig) -> str:
    """How a derived Morpho representation names its market: `<entry label>:<market>`."""
    return f"{p.label}:{m.name}"


_NOT_HASHED: dict[str, Any] = {
    "api": True,
    "accounts": True,  # §1 addresses are recorded per request in each snapshot
    "chains": {
        "__all__": {
            "rpc_urls",
            "identity",
            "rate_limit_rps",
            "max_calls_per_batch",
            "timeout_s",
            "retries",
            "max_concurrency",
            "cooldown_s",
            "retry_budget_s",
            "call_gas",
        }
    },
}


def _not_hashed(config: Config) -> dict[str, Any]:
    """`_NOT_HASHED`, plus the §13 fields where they have their defaults: a config that
    does not use verified mode hashes as it did before the fields existed."""
    chains = _NOT_HASHED["chains"]["__all__"]
    return {
        **_NOT_HASHED,
        "chains": {
            i: chains | ({"verification"} if c.verification == "plain" else set())
            for i, c in enumerate(config.chains)
        },
        "representations": {
            i: {"balance_slot"}
            for i, r in enumerate(config.representations)
            if r.balance_slot is None
        },
    }


def risk_document(config: Config) -> str:
    """The config minus endpoints, transport tuning and API settings, as JSON: what a
    snapshot needs to be replayed (stored beside snapshots, keyed by `config_hash`)."""
    return config.model_dump_json(by_alias=True, exclude=_not_hashed(config))


def config_hash(config: Config) -> str:
    """sha256 of `risk_document`, recorded in every snapshot (METHOD.md §10); for a
    config rebuilt from a stored document (`stored_config`), the hash of that document."""
    if config._stored_as is not None:
        return config._stored_as
    return hashlib.sha256(risk_document(config).encode()).hexdigest()


def stored_config(text: str, raw: Any) -> Config:
    """`raw` (the parsed `text` of a stored `risk_document`, adjusted for loading) as a
    config whose hash stays the sha256 of `text`, whatever defaults were added since."""
    config = Config.model_validate(raw)
    config._stored_as = hashlib.sha256(text.encode()).hexdigest()
    return config
