"""Snapshots (METHOD.md §10): a computation's inputs and outputs as one canonical JSON
document (crossmargin/core/canonical.py), whose sha256 is the snapshot's id.

The inputs are what the engine read (one `ChainState` per chain: pinned block, raw
balances, feed readings; recorded by state_codec.py) plus the risk parameters used;
`crossmargin.pipeline.figures.compute` is the one function that turns inputs into a
report, live and on replay, so `replay` of a stored document (stored.py) must give
byte-identical outputs. A document also names the previous snapshot of the
same account (`prev`), which makes each account's record a hash chain.

Version "2" documents name what many snapshots share (a chain's pin and feeds, the
parameters, the estimates, the report's shared sections) by the sha256 of a blob
stored once ("documents, v2" below); `expand` (stored.py) puts the blobs back, checked
against their hashes. Version "1" documents (all inline) are still read and replayed.

This module builds documents (`document`, `document_v1`), encoding what a batch's
documents share once; stored.py reads them back.
"""

from __future__ import annotations

import functools
import operator
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from adapters.evm import BlockPin
from adapters.prover import BlockProof
from crossmargin.core.canonical import canonical, digest, dumps, members, plain
from crossmargin.core.config import Config, config_hash
from crossmargin.core.memo import IdentityMemo
from crossmargin.pipeline.figures import Report, Request
from crossmargin.pipeline.protocol_read import ProtocolRead
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.risk import asset_sigma, correlation, margin_params
from crossmargin.pipeline.state_codec import encode, encode_states, lean, plain_encoded
from oracle.estimation import RiskEstimates
from oracle.validity import FeedReading, SequencerState

VERSION = "2"  # blobs by reference (below)
V1 = "1"  # every input inline: stored before v2, still replayed
GENESIS = "0" * 64  # `prev` of an account's first snapshot


# ---------------------------------------------------------------- parameters


def parameters(config: Config, estimates: RiskEstimates | None = None) -> dict[str, Any]:
    """The risk parameters a computation used (§6-§7): recorded, and checked on replay."""
    symbols = [a.symbol for a in config.assets]
    names = [c.name for c in config.chains]
    mp = margin_params(config, config.settlement_chain)
    return {
        "method": config.risk.method,
        "z": mp.z,
        "kappa": mp.kappa,
        "sigma": dict(zip(symbols, asset_sigma(config, estimates), strict=True)),
        "correlation": {
            a: dict(zip(symbols, row, strict=True))
            for a, row in zip(symbols, correlation(config, estimates), strict=True)
        },
        "latency_days": {
            a: {b: float(mp.latency[i, j]) for j, b in enumerate(names)}
            for i, a in enumerate(names)
        },
        "config_hash": config_hash(config),
    }


# ---------------------------------------------------------------- documents, v2
#
# Version "2" stores what many snapshots share once, as content-addressed blobs (the
# canonical JSON text under its sha256), and names them by hash from each document:
# a chain's shared state (pin, chain error, feed readings, sequencer, and per token its
# decimals, warning and totalSupply), the §6 estimates and the parameters. What belongs
# to the account stays in the document: per position its raw amount, error and shares.
# The id (sha256 of the document) commits to the blobs through their hashes. Version
# "1" documents (everything inline) stay valid: they replay as they always did.

TOKEN_FIELDS = ("rep", "onchain_decimals", "warning", "total_supply", "supply_error")
ACCOUNT_FIELDS = ("raw_amount", "error", "shares")
# Report sections that depend on the pins and parameters only, not on the account:
# alike for every account of a batch, so stored once as a blob.
SHARED_OUTPUTS = ("as_of", "prices", "parameters")


@dataclass(frozen=True, slots=True)
class Built:
    """A snapshot document and the blobs it references (hash -> canonical text)."""

    text: str
    blobs: dict[str, str]

    @property
    def id(self) -> str:
        return digest(self.text)


def blob(value: Any) -> tuple[str, str]:
    text = canonical(value)
    return digest(text), text


_SHARED: dict[tuple[Any, ...], tuple[tuple[object, ...], object, str, str]] = {}
_SHARED_HELD: dict[tuple[int, ...], tuple[tuple[object, ...], str, str]] = {}


def _shared_blob(report: Report) -> tuple[str, str]:
    """The blob of a report's `SHARED_OUTPUTS`, built once per batch: the reports of a
    batch hold the same (frozen) price models, parameters and block references
    (margin.py builds them once), found by identity (kept alive in the entry, so an id
    is never reused while it is a key); else by the pinned blocks' content."""
    prices = tuple(getattr(report, "prices", ()))  # the list is the model's own copy
    held = (getattr(report, "parameters", None), *prices, *report.as_of)
    key = (len(prices), *map(id, held))
    hit = _SHARED_HELD.get(key)  # the entry holds them: their ids are not reused
    if hit is not None:
        return hit[1], hit[2]
    sha, text = _shared_blob_by_blocks(report, prices)
    if len(_SHARED_HELD) >= 64:
        _SHARED_HELD.clear()
    _SHARED_HELD[key] = (held, sha, text)
    return sha, text


def _shared_blob_by_blocks(report: Report, prices: tuple[object, ...]) -> tuple[str, str]:
    """`_shared_blob` of reports whose block references are not shared objects: the
    prices and parameters by identity, the pinned blocks by their content."""
    params = getattr(report, "parameters", None)
    as_of = tuple(
        (b.chain_id, b.name, b.block_number, b.block_hash, b.timestamp) for b in report.as_of
    )
    key = (tuple(map(id, prices)), id(params), as_of)
    hit = _SHARED.get(key)
    if hit is None or hit[1] is not params or any(map(operator.is_not, hit[0], prices)):
        sha, text = blob(report.model_dump(mode="json", include=set(SHARED_OUTPUTS)))
        if len(_SHARED) >= 64:
            _SHARED.clear()
        hit = _SHARED[key] = (prices, params, sha, text)
    return hit[2], hit[3]


# a token's shared part, flat: (chain, address, symbol, *TOKEN_FIELDS[1:])
_TOKEN_KEY = operator.attrgetter("rep.chain", "rep.address", "rep.symbol", *TOKEN_FIELDS[1:])


@functools.lru_cache(maxsize=256)
def _chain_blob(
    chain: str,
    pin: BlockPin | None,
    error: str | None,
    feeds: tuple[FeedReading, ...],
    sequencer: SequencerState | None,
    tokens: tuple[tuple[Any, ...], ...],
    block_proof: BlockProof | None = None,
) -> tuple[str, str]:
    """A batch's accounts share one pin, feeds and tokens per chain (and in verified
    mode, §13, the header and the tokens' account proofs): encoded once."""
    proof = {} if block_proof is None else {"block_proof": encode(block_proof)}
    return blob(
        {
            **proof,
            "chain": chain,
            "pin": encode(pin),
            "error": error,
            "feeds": encode(list(feeds)),
            "sequencer": encode(sequencer),
            "tokens": [
                {
                    "rep": {"chain": c, "address": a, "symbol": sym},
                    **dict(zip(TOKEN_FIELDS[1:], rest, strict=True)),
                }
                for c, a, sym, *rest in tokens
            ],
        }
    )


_OWN_FIELDS = operator.attrgetter(*ACCOUNT_FIELDS)


_STATES: dict[tuple[Any, ...], tuple[tuple[object, ...], tuple[Any, ...], str, str]] = {}
_REP = operator.attrgetter("rep")
_TOKEN_VALUES = operator.attrgetter(*TOKEN_FIELDS[1:])


def _state_blob(state: ChainState) -> tuple[str, str]:
    """`_chain_blob` of a state, found by the identity of what a batch's states share
    (one pin, feed list, sequencer and block proof per chain and read: kept alive in the
    entry, so an id is never reused while it is a key), then checked against the tokens
    (the same representation objects, equal values), without hashing the feed readings
    or the tokens for every account. One entry per chain and read: a batch's tokens are
    alike for all its accounts."""
    shared = (state.pin, state.feeds, state.sequencer, state.block_proof)
    key = (state.chain.name, state.error, *map(id, shared))
    tokens = (*map(_REP, state.balances), *map(_TOKEN_VALUES, state.balances))
    hit = _STATES.get(key)
    if hit is None or any(map(operator.is_not, hit[0], shared)) or hit[1] != tokens:
        sha, text = _chain_blob(
            state.chain.name,
            state.pin,
            state.error,
            tuple(state.feeds),
            state.sequencer,
            tuple(map(_TOKEN_KEY, state.balances)),
            state.block_proof,
        )
        if len(_STATES) >= 256:
            _STATES.clear()
        hit = _STATES[key] = (shared, tokens, sha, text)
    return hit[2], hit[3]


@functools.lru_cache(maxsize=4096)
def _protocol_entry(read: ProtocolRead) -> dict[str, Any]:
    """A protocol read as a document records it (plain, lean). Read-only: documents
    share it (an account without a position in a market reads what the others read)."""
    out: dict[str, Any] = lean(plain_encoded(read))
    return out


ENTRY_KEY_FIELDS = frozenset(
    {"chain", "error", "address", "has_code", "pin", "feeds", "sequencer", "block_proof"}
    | {"holder_proof", "balances", "protocols"}
)
_ENTRIES: dict[tuple[object, ...], tuple[tuple[object, ...], str, tuple[tuple[str, str], ...]]] = {}


def _chain_entry(state: ChainState) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A chain's entry in a document as canonical text, and the blobs it names. A batch
    reads one object per (token, balance) for all its accounts (an empty account's zero
    balances are the very objects of every other empty account's), one pin, feed list
    and protocol read per market state: the entry is found by the identity of what it
    is made of (kept alive in the entry, so an id is never reused while it is a key),
    and encoded (`_split_chain`, `dumps`) once per distinct entry."""
    # every field of ChainState (ENTRY_KEY_FIELDS: a test keeps the two lists alike)
    balances, protocols = state.balances, state.protocols
    shared = (state.pin, state.feeds, state.sequencer, state.block_proof, state.holder_proof)
    key: tuple[object, ...] = (state.chain.name, state.error, state.address, state.has_code)
    key += (len(balances), *map(id, shared), *map(id, balances), *map(id, protocols))
    hit = _ENTRIES.get(key)  # the entry holds them: their ids are not reused
    if hit is not None:
        return hit[1], hit[2]
    blobs: dict[str, str] = {}
    text = dumps(_split_chain(state, blobs))
    if len(_ENTRIES) >= 1024:
        _ENTRIES.clear()
    refs = tuple(blobs.items())
    _ENTRIES[key] = ((*shared, *balances, *protocols), text, refs)
    return text, refs


def _split_chain(state: ChainState, blobs: dict[str, str]) -> dict[str, Any]:
    """A chain's entry in a document, plain already (see `document`)."""
    sha, text = _state_blob(state)
    blobs[sha] = text
    entry: dict[str, Any] = {
        "state": sha,  # each balance's `ACCOUNT_FIELDS`, plain (as `plain` gives them)
        "balances": [
            [None if raw is None else str(raw), error, None if shares is None else str(shares)]
            for raw, error, shares in map(_OWN_FIELDS, state.balances)
        ],
    }
    if state.protocols:  # §12: the account's own figures in protocol markets
        entry["protocols"] = list(map(_protocol_entry, state.protocols))
    if state.address is not None:
        entry["address"] = state.address
    if state.has_code is not None:
        entry["has_code"] = state.has_code
    if state.holder_proof is not None:  # §13: the account's proofs, a blob of their own
        p_sha, p_text = blob(encode(state.holder_proof))
        blobs[p_sha] = p_text
        entry["proof"] = p_sha
    return entry


_PARAMS: IdentityMemo[tuple[str, str]] = IdentityMemo(64)


def _parameters_blob(config: Config, estimates: RiskEstimates | None) -> tuple[str, str]:
    """Parameters of a (config, estimates) pair, encoded once per pair of objects."""
    return _PARAMS.get((config, estimates), (), lambda: blob(parameters(config, estimates)))


_OUTPUTS: dict[tuple[Any, ...], tuple[tuple[object, ...], str, str]] = {}
_FRAGMENTS: dict[int, tuple[object, str]] = {}


@functools.cache
def _own_names(model: type[BaseModel]) -> tuple[str, ...] | None:
    """A report type's own output fields but the account, in the order `_held_fields`
    reads them; None if its dump is not simply its fields (a serializer, an alias, an
    excluded field: then the whole dump is encoded)."""
    decorators = model.__pydantic_decorators__
    if decorators.model_serializers or decorators.field_serializers or model.model_computed_fields:
        return None
    fields = model.model_fields
    for f in fields.values():
        if f.alias or f.serialization_alias or f.exclude or f.exclude_if is not None:
            return None
    return tuple(k for k in fields if k != "account" and k not in SHARED_OUTPUTS)


@functools.cache
def _held_fields(model: type[BaseModel]) -> operator.attrgetter[tuple[object, ...]]:
    """A report type's own output fields but the account, read in one call."""
    return operator.attrgetter(
        *(k for k in model.model_fields if k != "account" and k not in SHARED_OUTPUTS)
    )


def _textual_type(tp: Any) -> bool:
    """Whether every value of type `tp` is a string, a bool or None."""
    if tp is str or tp is bool or tp is type(None):
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return all(isinstance(a, str | bool) for a in typing.get_args(tp))
    if origin in (types.UnionType, typing.Union):
        return all(map(_textual_type, typing.get_args(tp)))
    return False


def _integer_type(tp: Any) -> bool:
    """Whether every value of type `tp` is an int or None (and not a bool)."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (types.UnionType, typing.Union) else ()
    return tp is int or (int in args and all(a is int or a is type(None) for a in args))


@functools.cache
def _integer_fields(model: type[BaseModel]) -> tuple[str, ...] | None:
    """The fields of a model's JSON dump that `plain` would change, if they are only its
    integers at the top (the rest strings, bools and None): a report's positions, its
    target; () for totals and haircuts. None: the dump needs `plain`'s whole walk."""
    if _own_names(model) is None or model.model_config.get("extra") == "allow":
        return None
    out = []
    for name, f in model.model_fields.items():
        if _integer_type(f.annotation):
            out.append(name)
        elif not _textual_type(f.annotation):
            return None
    return tuple(out)


def _fragment(value: Any) -> str:
    """Canonical text of a report field's value, as in the report's whole dump (`dumps`
    of `plain` of `model_dump`): a model or a list encoded once per object, for reports
    share many (every empty account's chain summaries, target, warnings; each chain's
    summary of the accounts with nothing on it). Kept alive in the entry, so an id is
    never reused while it is a key; reports are frozen."""
    if type(value) is str:
        return dumps(value)
    if type(value) is list:
        if not value:
            return "[]"
        hit = _FRAGMENTS.get(id(value))  # the entry holds it: the id is not reused
        if hit is not None:
            return hit[1]
        text = "[" + ",".join(map(_fragment, value)) + "]"
    elif isinstance(value, BaseModel):
        hit = _FRAGMENTS.get(id(value))
        if hit is not None:
            return hit[1]
        # model_dump(mode="json") less its argument handling: the same serializer call
        dump = value.__pydantic_serializer__.to_python(value, mode="json")
        numbers = _integer_fields(type(value))
        if numbers is None:
            dump = plain(dump)
        else:  # `plain` of a flat dump: its integers as decimal strings, the rest as is
            for name in numbers:
                if type(dump[name]) is int:
                    dump[name] = str(dump[name])
        text = dumps(dump)
    else:
        return dumps(plain(value))
    if len(_FRAGMENTS) >= 4096:
        _FRAGMENTS.clear()
    _FRAGMENTS[id(value)] = (value, text)
    return text


def _own_outputs(report: Report) -> str:
    """The canonical text of the report's own outputs (`plain(report.model_dump(...))`
    less `SHARED_OUTPUTS`), encoded once for reports that hold the very objects of an
    earlier one in every own field but the account (a batch's accounts with alike
    states: figures.compute_many), whose text is that one's with their account."""
    held = _held_fields(type(report))(report)
    key = (type(report), *map(id, held))
    hit = _OUTPUTS.get(key)  # the entry holds them: their ids are not reused
    if hit is None:
        names = _own_names(type(report))
        if names is None:  # not spliced: the whole dump, as `plain` gives it
            own = plain(report.model_dump(mode="json", exclude=set(SHARED_OUTPUTS)))
            return dumps(own)
        texts = dict(zip(names, map(_fragment, held), strict=True))
        # a NUL is never in canonical text (escaped): it marks where the account goes
        head, tail = members({**texts, "account": "\x00"}).split("\x00")
        if len(_OUTPUTS) >= 64:
            _OUTPUTS.clear()
        hit = _OUTPUTS[key] = (held, head, tail)
    return hit[1] + _fragment(report.account) + hit[2]


_ESTIMATES: IdentityMemo[tuple[str, str]] = IdentityMemo(64)


def _estimates_blob(estimates: RiskEstimates) -> tuple[str, str]:
    """The §6 estimates' blob, encoded once per estimates object (frozen; a batch and the
    engine's cache share one)."""
    return _ESTIMATES.get((estimates,), (), lambda: blob(encode(estimates)))


# A version "2" document and its inputs as `members` writes them, with a `%s` for each
# member's text (in the keys' order, sorted; no key has a `%`)
_DOCUMENT = members(
    dict.fromkeys(
        ("account", "inputs", "kind", "outputs", "prev", "request", "shared_outputs", "v"), "%s"
    )
)
_INPUTS = members(dict.fromkeys(("chains", "estimates", "parameters"), "%s"))
_VERSION = dumps(VERSION)
REQUEST_KEY_FIELDS = frozenset({"kind", "account", "target", "asset", "at", "blocks", "addresses"})
_REQUESTS: dict[tuple[object, ...], str] = {}


def _request_text(req: Request) -> str:
    """The request's recorded form (`as_json`), encoded once per distinct request but
    its account (which `as_json` leaves out): a batch asks one thing of many accounts.
    Keyed by every other field of Request (REQUEST_KEY_FIELDS, kept alike by a test)."""
    key = (req.kind, req.target, req.asset, req.at, req.blocks, req.addresses)
    text = _REQUESTS.get(key)
    if text is None:
        if len(_REQUESTS) >= 256:
            _REQUESTS.clear()
        text = _REQUESTS[key] = dumps(plain(req.as_json()))
    return text


def document(
    config: Config,
    req: Request,
    states: list[ChainState],
    report: Report,
    prev: str,
    estimates: RiskEstimates | None = None,
) -> Built:
    """The canonical snapshot document (its id is `digest` of `.text`) and its blobs:
    `canonical` of the document's value, spliced from texts its parts are encoded to
    (most of them once per batch: `_chain_entry`, `_own_outputs`) instead of dumped
    whole for every account."""
    blobs: dict[str, str] = {}
    p_sha, p_text = _parameters_blob(config, estimates)
    blobs[p_sha] = p_text
    e_sha = None
    if estimates is not None:
        e_sha, e_text = _estimates_blob(estimates)
        blobs[e_sha] = e_text
    chains = []
    for state in states:
        entry, refs = _chain_entry(state)
        chains.append(entry)
        blobs.update(refs)
    o_sha, o_text = _shared_blob(report)
    blobs[o_sha] = o_text
    inputs = _INPUTS % ("[" + ",".join(chains) + "]", dumps(e_sha), dumps(p_sha))
    text = _DOCUMENT % (
        dumps(req.account),
        inputs,
        dumps(req.kind),
        _own_outputs(report),
        dumps(prev),
        _request_text(req),
        dumps(o_sha),
        _VERSION,
    )
    return Built(text, blobs)


def document_v1(
    config: Config,
    req: Request,
    states: list[ChainState],
    report: Report,
    prev: str,
    estimates: RiskEstimates | None = None,
) -> str:
    """A version "1" document (every input inline), as stored before blobs existed."""
    return canonical(
        {
            "v": V1,
            "kind": req.kind,
            "account": req.account,
            "request": req.as_json(),
            "inputs": {
                "chains": encode_states(states),
                "estimates": encode(estimates),
                "parameters": parameters(config, estimates),
            },
            "outputs": report.model_dump(mode="json"),
            "prev": prev,
        }
    )
