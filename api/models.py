"""Request and response models of the API; /openapi.json is generated from them.

Inputs are validated by these models and nothing else: addresses (`0x` and 40 hex
digits, EIP-55 when mixed case, emitted checksummed), the chain and asset allowlists
(built from config, so the schema lists them as enums), list caps and duplicates.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    create_model,
    model_validator,
)

from crossmargin.core.config import Config, checksummed
from crossmargin.pipeline.report import ChainRef, MarginReport

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
SNAPSHOT_ID_PATTERN = r"^[0-9a-f]{64}$"
CURSOR_PATTERN = r"^[0-9]{1,9}$"
# A regex cannot check EIP-55, so the schema says what it can: one case throughout
# (pattern), or mixed case in the `eip55-address` format, the checksum's own rule.
ADDRESS_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": r"^0x([0-9a-f]{40}|[0-9A-F]{40})$"},
        {"type": "string", "pattern": ADDRESS_PATTERN, "format": "eip55-address"},
    ],
    "description": "20-byte address: `0x` and 40 hex digits, all lower case or all upper "
    "case, or mixed case with a correct EIP-55 checksum (format `eip55-address`); bad "
    "mixed case is rejected. Responses are checksummed.",
}
ADDRESS_KEYS: dict[str, Any] = {"anyOf": ADDRESS_SCHEMA["anyOf"]}  # an address as a key
HEX_ADDRESS = re.compile(ADDRESS_PATTERN.strip("^$"))

# EIP-55 costs a keccak and a Python loop per address: remember recent answers.
checksum = lru_cache(maxsize=1 << 16)(checksummed)


def address(value: str) -> str:
    """An address as the API takes it, checksummed. The `0x` prefix is required (lower
    case): without it a 40-digit hex string could be anything, e.g. a hash."""
    if HEX_ADDRESS.fullmatch(value) is None:
        shown = repr(value) if len(value) <= 60 else repr(value[:60]) + "..."
        raise ValueError(f"not a 20-byte hex address (0x and 40 hex digits): {shown}")
    return checksum(value)


Address = Annotated[str, AfterValidator(address), WithJsonSchema(ADDRESS_SCHEMA)]
Method = Literal["var", "es"]
Kind = Literal["margin", "capacity", "stress"]


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def allowlist(values: list[str], what: str) -> Any:
    """A string that must be one of `values`; the schema shows them as an enum."""

    def check(value: str) -> str:
        if value not in values:
            raise ValueError(f"unknown {what} {value!r}; known: {', '.join(values)}")
        return value

    return Annotated[str, AfterValidator(check), WithJsonSchema({"type": "string", "enum": values})]


class Problem(BaseModel):
    """RFC 9457 problem details; `code` is stable (clients branch on it), `detail` is
    a sentence for people."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    code: str
    detail: str


class BatchBody(Strict):
    """Base of the batch request model: the same account twice is refused."""

    accounts: list[str]

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        seen: set[str] = set()
        for i, account in enumerate(self.accounts):
            if account in seen:
                raise ValueError(f"accounts.{i}: {account} is listed twice")
            seen.add(account)
        return self


# ---------------------------------------------------------------- query models (per config)


class Queries:
    """The query-string models, built from config so the allowlists are in the schema."""

    def __init__(self, config: Config) -> None:
        chains = [c.name for c in config.chains] + [str(c.chain_id) for c in config.chains]
        chain = allowlist(chains, "chain")
        asset = allowlist([a.symbol for a in config.assets], "asset")
        strict = ConfigDict(extra="forbid", frozen=True)
        target_doc = "chain name or id (default: the settlement chain)"
        names = "|".join(re.escape(c) for c in chains)
        block = f"({names}):[0-9]{{1,15}}"
        addr = f"({names}):0x([0-9a-f]{{40}}|[0-9A-F]{{40}})"
        past: dict[str, Any] = {
            "at": (str | None, Field(None, pattern=AT_PATTERN, description=AT_DOC)),
            "blocks": (
                str | None,
                Field(None, pattern=f"^{block}(,{block}){{0,63}}$", description=BLOCKS_DOC),
            ),
            "addresses": (
                str | None,
                Field(None, pattern=f"^{addr}(,{addr}){{0,63}}$", description=ADDRESSES_DOC),
            ),
        }
        self.margin: type[BaseModel] = create_model(
            "MarginQuery",
            __config__=strict,
            target_chain=(chain | None, Field(None, description=target_doc)),
            method=(Method | None, Field(None, description="var or es (default: config)")),
            **past,
        )
        self.capacity: type[BaseModel] = create_model(
            "CapacityQuery",
            __config__=strict,
            target_chain=(chain | None, Field(None, description=target_doc)),
            asset=(asset | None, Field(None, description="borrow asset (default: every asset)")),
            method=(Method | None, Field(None, description="var or es (default: config)")),
            **past,
        )
        self.stress: type[BaseModel] = create_model("StressQuery", __config__=strict, **past)
        self.empty: type[BaseModel] = create_model("NoQuery", __config__=strict)
        self.page: type[BaseModel] = create_model(
            "SnapshotPageQuery",
            __config__=strict,
            limit=(int, Field(20, ge=1, le=100, description="items per page")),
            kind=(
                Kind | None,
                Field(None, description="only snapshots of this kind (default: every kind)"),
            ),
            cursor=(
                str | None,
                Field(None, pattern=CURSOR_PATTERN, description="`next_cursor` of a page"),
            ),
        )
        size_doc = "a tree size (default: the log's size now)"
        size: Any = (int | None, Field(None, ge=1, le=1 << 62, description=size_doc))
        self.inclusion: type[BaseModel] = create_model(
            "InclusionQuery", __config__=strict, tree_size=size
        )
        self.consistency: type[BaseModel] = create_model(
            "ConsistencyQuery",
            __config__=strict,
            first=(int, Field(ge=1, le=1 << 62, description="the older tree size")),
            second=size,
        )
        self.batch: type[BatchBody] = create_model(
            "MarginBatchRequest",
            __base__=BatchBody,
            accounts=(
                list[Address],
                Field(
                    min_length=1,
                    max_length=config.api.max_batch,
                    json_schema_extra={"uniqueItems": True},
                    description="accounts (same address on every chain), each at most once, "
                    "whatever its case",
                ),
            ),
            target_chain=(chain | None, Field(None, description=target_doc)),
            method=(Method | None, Field(None, description="var or es (default: config)")),
            at=(int | None, Field(None, ge=0, le=999_999_999_999, description=AT_DOC)),
            blocks=(
                dict[chain, Annotated[int, Field(ge=0, le=10**15)]] | None,  # type: ignore[valid-type]
                Field(None, description="§15: block number per chain"),
            ),
            addresses=(
                dict[Address, dict[chain, Address]] | None,  # type: ignore[valid-type]
                Field(
                    None,
                    max_length=config.api.max_batch,
                    json_schema_extra={"propertyNames": ADDRESS_KEYS},
                    description="§1: per account of `accounts`, its address per chain where "
                    "it differs",
                ),
            ),
        )


AT_PATTERN = r"^[0-9]{1,12}$"
AT_DOC = (
    "METHOD.md §15: the time the figures are about, unix seconds: each chain is read at "
    "its last final block stamped at or before it (409 when it cannot be)"
)
BLOCKS_DOC = "§15: explicit blocks, `chain:number,...` (every chain, or with `at` for the rest)"
ADDRESSES_DOC = (
    "§1: the account's address on other chains, `chain:0x...,...` (40 hex digits in one case)"
)


# ---------------------------------------------------------------- responses


class BatchItem(Strict):
    """One account of a batch: its report and snapshot id, or its problem."""

    account: str
    snapshot_id: str | None
    leaf_index: int | None = Field(None, description="the snapshot's leaf in the log")
    margin: MarginReport | None
    error: Problem | None


class MarginBatch(Strict):
    target_chain: ChainRef
    method: Method
    count: int
    results: list[BatchItem]


class ChainInfo(Strict):
    name: str
    chain_id: int
    block_tag: str
    confirmations: int
    sequencer_uptime_feed: str | None
    to_hub_days: float
    from_hub_days: float
    endpoints: int
    settlement: bool


class ChainList(Strict):
    settlement_chain: str
    chains: list[ChainInfo]


class RepresentationInfo(Strict):
    chain: str
    symbol: str
    token: str
    decimals: int
    kind: str
    bridged: bool


class AssetInfo(Strict):
    symbol: str
    liquidation_horizon_days: float
    sigma: float
    h_min: float
    feeds: list[dict[str, str]]
    representations: list[RepresentationInfo]


class AssetList(Strict):
    assets: list[AssetInfo]


class EndpointHealth(Strict):
    """One RPC endpoint of a chain, by its position in the config (URLs are not shown).
    `error_code`: why it is refused, or its latest fault while it cools down or backs off."""

    index: int
    state: Literal["ok", "unused", "cooling_down", "rate_limited", "refused"]
    requests: int
    failures: int
    rate_limited: int
    error_code: str | None = None


class ChainHealth(Strict):
    """What this process last learned of a chain. `ok`: the latest pinning answered;
    `stale`: a new one is under way and has not answered within the health bound, so
    the figures are `known_age_s` old; `unavailable`: the latest pinning failed (or none
    has answered yet). `age_s` is the pinned block's age by its timestamp."""

    name: str
    chain_id: int
    status: Literal["ok", "stale", "unavailable"]
    head_block: int | None
    pinned_block: int | None
    pinned_block_timestamp: int | None
    lag_blocks: int | None
    age_s: int | None
    known_age_s: float | None = None
    error_code: str | None = None
    error: str | None
    endpoints: list[EndpointHealth]


class StoreHealth(Strict):
    """Whether the snapshot store takes writes (every served report is stored first):
    from the latest append, or a rolled-back probe write when none was made lately."""

    writable: bool
    checked_age_s: float | None
    error_code: str | None = None
    error: str | None = None


class Health(Strict):
    """`ok`: every chain ok and the store writable; `down`: the store cannot write or
    no chain is ok (answered with 503); else `degraded`."""

    status: Literal["ok", "degraded", "down"]
    store: StoreHealth
    chains: list[ChainHealth]


class Liveness(Strict):
    status: Literal["live"]


class SnapshotFigures(Strict):
    """A stored computation's headline figures, as its document's outputs hold them (for
    history charts; the snapshot itself is the evidence). `method`: var or es (margin
    reports only). `health` and `free_margin_usd` are null where the report has them
    null or has no such figure (stress);
    `unavailable_chains`: the chains the computation could not read."""

    status: str | None
    method: str | None
    health: str | None
    free_margin_usd: str | None
    unavailable_chains: list[str]


class SnapshotSummary(Strict):
    id: str
    account: str
    height: int
    prev_id: str
    kind: str
    target_chain: str | None
    asset: str | None
    created_at: str
    figures: SnapshotFigures | None = None
    leaf_index: int | None = Field(None, description="its leaf in the transparency log")


class Snapshot(Strict):
    """A stored snapshot. `document` is the canonical JSON object: serialised with sorted
    keys, no whitespace and ASCII escapes, its sha256 is `id`. `blobs`: the shared inputs
    and outputs a version "2" document names by hash, each a JSON object whose canonical
    form hashes to its key (empty for version "1")."""

    id: str
    account: str
    height: int
    prev_id: str
    kind: str
    created_at: str
    document: dict[str, Any]
    blobs: dict[str, dict[str, Any]] = {}
    leaf_index: int | None = Field(None, description="its leaf in the transparency log")


class SignedTreeHead(Strict):
    """The log's size, root and time, signed (METHOD.md §10). Ed25519 over the bytes
    `"crossmargin tree head v1\\n" || uint64be(tree_size) || uint64be(timestamp) ||
    root_hash`; keep it: `crossmargin audit verify --tree-head FILE` checks a store
    against it."""

    tree_size: int
    root_hash: str = Field(description="RFC 9162 Merkle tree hash, hex")
    timestamp: int = Field(description="milliseconds since the Unix epoch")
    key_id: str = Field(description="sha256 of the raw public key, hex")
    signature: str = Field(description="Ed25519 signature, hex")


class LogKey(Strict):
    """The public key that signs tree heads: pin it once."""

    algorithm: Literal["Ed25519"]
    public_key: str = Field(description="the raw 32-byte key, hex")
    public_key_pem: str
    key_id: str = Field(description="sha256 of the raw public key, hex")


class InclusionProof(Strict):
    """RFC 9162 §2.1.3: the snapshot's leaf (SHA-256(0x00 || id bytes)) with this audit
    path hashes to the root of the tree of `tree_size` leaves."""

    snapshot_id: str
    leaf_index: int
    tree_size: int
    root_hash: str
    audit_path: list[str]


class ConsistencyProof(Strict):
    """RFC 9162 §2.1.4: the tree of `first` leaves is a prefix of the tree of `second`."""

    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]


class SnapshotPage(Strict):
    account: str
    items: list[SnapshotSummary]
    next_cursor: str | None
