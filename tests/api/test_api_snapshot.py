"""METHOD.md §10 documents: canonical JSON, engine inputs to JSON and back, version "2"
documents with their shared inputs in content-addressed blobs, and replay from stored
inputs giving byte-identical outputs (no database involved)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossmargin.core.canonical import canonical, decimal_str, digest, dumps, plain
from crossmargin.core.config import config_hash, risk_document
from crossmargin.core.errors import SnapshotError
from crossmargin.engine import Engine
from crossmargin.pipeline import snapshot as s
from crossmargin.pipeline.figures import Request, compute, compute_many
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.state_codec import decode_states, encode_states
from crossmargin.pipeline.stored import blob_refs, compact, expand, replay, replay_config, report_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))
from proof_helpers import verified

JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**260), max_value=2**260),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def read_states(devnet: Any, name: str) -> list[ChainState]:
    async def run() -> list[ChainState]:
        async with Engine.connect(devnet.config) as engine:
            return (await engine.read([devnet.demo_accounts[name]]))[0]

    return asyncio.run(run())


def test_canonical_form() -> None:
    value = {"b": 1, "a": [1.5, True, None, "x\u00e9"], "c": 1e-7, "d": 2**256, "e": 50e6}
    assert canonical(value) == (
        '{"a":["1.5",true,null,"x\\u00e9"],"b":"1","c":"0.0000001",'
        '"d":"115792089237316195423570985008687907853269984665640564039457584007913129639936",'
        '"e":"50000000.0"}'
    )
    with pytest.raises(SnapshotError):
        canonical({"x": float("nan")})


def stdlib_json(value: Any) -> str:
    """Canonical JSON as the standard library writes it: what every stored document is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@given(JSON)
def test_canonical_is_a_fixed_point_with_numbers_as_strings(value: Any) -> None:
    text = canonical(value)
    assert text.isascii()
    assert text == stdlib_json(plain(value))  # orjson writes it: the same bytes
    again = json.loads(text)
    assert canonical(again) == text

    def no_numbers(v: Any) -> bool:
        if isinstance(v, dict):
            return all(no_numbers(x) for x in v.values())
        if isinstance(v, list):
            return all(no_numbers(x) for x in v)
        return v is None or isinstance(v, bool | str)

    assert no_numbers(again)


def test_canonical_text_is_the_standard_librarys_byte_for_byte() -> None:
    """Every code point up to U+07FF in keys and values (control characters, DEL and
    non-ASCII: escaped as json escapes them), a lone surrogate and an integer past 64
    bits (orjson refuses both: json writes them) give json.dumps's bytes."""
    for c in range(0x800):
        ch = chr(c)
        value = {f"k{ch}": [ch, f"a{ch}b", {ch: None}], "z": True}
        assert dumps(value) == stdlib_json(value), hex(c)
    for odd in ({"a": "\ud800"}, {"a": [2**70, -(2**64)]}, ["x" * 10_000, "é"]):
        assert dumps(odd) == stdlib_json(odd)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_decimal_strings_round_trip_floats(x: float) -> None:
    text = decimal_str(x)
    assert "e" not in text.lower()
    assert float(text) == x


@pytest.mark.parametrize("name", ["alice", "bob", "carol", "dave"])
def test_states_round_trip(devnet: Any, name: str) -> None:
    states = read_states(devnet, name)
    text = canonical(encode_states(states))
    assert decode_states(devnet.config, json.loads(text)) == states


def test_unavailable_chain_round_trips(devnet: Any) -> None:
    states = read_states(devnet, "bob")
    states[1] = ChainState(states[1].chain, error="chain 42161: no answer in 5.0 s")
    back = decode_states(devnet.config, json.loads(canonical(encode_states(states))))
    assert back == states
    assert not back[1].available


@pytest.mark.parametrize(
    ("kind", "target", "asset"),
    [
        ("margin", "arbitrum", None),
        ("margin", "ethereum", None),
        ("capacity", "base", "USDC"),
        ("capacity", "optimism", None),
        ("stress", None, None),
    ],
)
@pytest.mark.parametrize("name", ["bob", "carol"])
def test_replay_is_byte_identical(
    devnet: Any, name: str, kind: s.Kind, target: str | None, asset: str | None
) -> None:
    config = devnet.config
    states = read_states(devnet, name)
    req = Request(kind, devnet.demo_accounts[name], target, asset)
    report = compute(config, states, req)
    built = s.document(config, req, states, report, s.GENESIS)
    text = built.text
    assert canonical(json.loads(text)) == text
    assert json.loads(text)["v"] == "2"
    for sha, blob in built.blobs.items():
        assert digest(blob) == sha
        assert canonical(json.loads(blob)) == blob

    replay_cfg = replay_config(risk_document(config))  # endpoints are not stored
    assert config_hash(replay_cfg) == config_hash(config)
    doc = json.loads(text)
    full = expand(doc, built.blobs)
    params, outputs = replay(replay_cfg, doc, built.blobs)
    assert params == canonical(full["inputs"]["parameters"])
    assert outputs == canonical(full["outputs"])
    assert outputs == canonical(report.model_dump(mode="json"))
    assert report_of(full) == report  # what the API serves from a stored document
    with pytest.raises(SnapshotError):
        report_of(doc)  # not without its blobs
    assert decode_states(config, full["inputs"]["chains"]) == states

    # the version "1" document of the same computation: everything inline, replays as
    # it always did, and is what `expand` gives for the version "2" one
    v1 = json.loads(s.document_v1(config, req, states, report, s.GENESIS))
    assert replay(replay_cfg, v1) == (params, outputs)
    assert {**full, "v": "1"} == v1
    assert compact(v1) == built  # and back


def v2_doc(devnet: Any, name: str) -> tuple[dict[str, Any], dict[str, str]]:
    config = devnet.config
    states = read_states(devnet, name)
    req = Request("margin", devnet.demo_accounts[name], "base")
    built = s.document(config, req, states, compute(config, states, req), s.GENESIS)
    return json.loads(built.text), built.blobs


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("inputs", "chains", 0, "balances", 0, "raw_amount"), 5),  # a number, not a string
        (("inputs", "chains", 0, "balances", 0, "surprise"), "1"),  # an unknown field
        (("inputs", "chains", 0, "balances", 0, "rep", "address"), "0x" + "12" * 20),
        (("inputs", "chains", 0, "chain"), "solana"),
    ],
)
@pytest.mark.parametrize("version", ["1", "2"])
def test_malformed_inputs_are_refused(
    devnet: Any, path: tuple[Any, ...], value: Any, version: str
) -> None:
    """Changed inputs of either version (for "2": in the blob or in the document, then
    stored consistently under new hashes) are refused on replay."""
    doc, blobs = v2_doc(devnet, "alice")
    doc = expand(doc, blobs)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    if version == "2":
        built = compact(doc)  # (canonical: the number becomes a string again ...)
        doc, blobs = json.loads(built.text), built.blobs
        if path[-1] == "raw_amount":  # (... so it goes into the document as it stands)
            doc["inputs"]["chains"][0]["balances"][0][0] = value
    else:
        doc["v"] = "1"
    with pytest.raises(SnapshotError):
        replay(devnet.config, doc, blobs)


def test_blobs_are_checked_against_their_hashes(devnet: Any) -> None:
    doc, blobs = v2_doc(devnet, "carol")
    refs = blob_refs(doc)
    assert set(refs) == set(blobs)
    params = doc["inputs"]["parameters"]
    state = doc["inputs"]["chains"][0]["state"]
    for changed, problem in [
        ({k: v for k, v in blobs.items() if k != params}, "is missing"),
        ({**blobs, state: blobs[state].replace('"number":"', '"number":"1')}, "changed"),
        ({**blobs, params: " " + blobs[params]}, "changed"),
    ]:
        with pytest.raises(SnapshotError, match=problem):
            expand(doc, changed)
    bad = {**doc, "inputs": {**doc["inputs"], "parameters": "not-a-hash"}}
    with pytest.raises(SnapshotError, match="expected a blob hash"):
        expand(bad, blobs)
    short = json.loads(json.dumps(doc))
    short["inputs"]["chains"][0]["balances"].pop()
    with pytest.raises(SnapshotError, match="balances for"):
        expand(short, blobs)
    with pytest.raises(SnapshotError, match="version"):
        expand({**doc, "v": "3"}, blobs)


def test_accounts_read_together_share_their_blobs(devnet: Any) -> None:
    """One pin per chain for a batch: every account's document names the same chain and
    parameter blobs, and an empty account's document is small."""
    config = devnet.config
    empty = "0x" + "ee" * 20
    accounts = [*devnet.demo_accounts.values(), empty]

    async def run() -> list[list[ChainState]]:
        async with Engine.connect(config) as engine:
            return await engine.read(accounts)

    texts, shared = [], set()
    for account, states in zip(accounts, asyncio.run(run()), strict=True):
        req = Request("margin", account, "base")
        built = s.document(config, req, states, compute(config, states, req), s.GENESIS)
        texts.append(built.text)
        shared.add(frozenset(built.blobs))
        v1 = s.document_v1(config, req, states, compute(config, states, req), s.GENESIS)
        assert len(built.text) < len(v1) / 3
    assert len(shared) == 1  # the same blobs, stored once
    # the empty account (v1: ~18 KB); its own part includes its (empty) Aave account
    # data and collateral bitmap on the two chains with an Aave pool, and its (empty,
    # recorded alone) positions in the two Morpho markets on base (§12)
    assert len(texts[-1]) < 3800, len(texts[-1])


def test_batch_documents_are_the_bytes_they_always_were(devnet: Any) -> None:
    """Documents of a batch computed together (`compute_many`, as the engine does) are
    the bytes the standard library writes for them, blobs too, including a chain whose
    error holds non-ASCII, DEL and control characters (json's escapes); and the version
    "1" document of each compacts to it."""
    config = devnet.config
    accounts = [*devnet.demo_accounts.values(), "0x" + "ee" * 20]

    async def run() -> list[list[ChainState]]:
        async with Engine.connect(config) as engine:
            return await engine.read(accounts)

    read = asyncio.run(run())
    odd = read[1][2]
    read[1][2] = ChainState(odd.chain, error="chain down: n\u00e9ant \u20ac\x7f\n\x01 \U0001f600")
    states = dict(zip(accounts, read, strict=True))
    reqs = [Request("margin", a, "base") for a in accounts]
    reports = compute_many(config, reqs, states)
    texts = []
    for req, report in zip(reqs, reports, strict=True):
        assert not isinstance(report, Exception)
        built = s.document(config, req, states[req.account], report, s.GENESIS)
        assert built.text == stdlib_json(json.loads(built.text))
        for text in built.blobs.values():
            assert text == stdlib_json(json.loads(text))
        v1 = s.document_v1(config, req, states[req.account], report, s.GENESIS)
        assert v1 == stdlib_json(json.loads(v1))
        assert compact(json.loads(v1)) == built
        texts.append(built.text)
    assert "n\\u00e9ant \\u20ac\\u007f\\n\\u0001 \\ud83d\\ude00" in texts[1]  # a warning


@pytest.mark.parametrize(
    ("kind", "target", "asset"),
    [("margin", "base", None), ("capacity", "base", "USDC"), ("stress", None, None)],
)
def test_spliced_documents_are_the_canonical_dump(
    devnet: Any, kind: s.Kind, target: str | None, asset: str | None
) -> None:
    """`document` splices texts encoded once per object (chain entries, report fields,
    the document's frame) instead of dumping each document whole. For a real batch read
    in verified mode (§13 proofs), with protocol positions, odd characters, big integers
    and nulls in an account's own balances and §1 addresses on a chain, every document
    is the bytes of the plain canonical path (`compact` of the version "1" document,
    which `canonical` dumps whole), blobs too: with every part encoded afresh, and again
    with every part found encoded."""
    config = verified(devnet.config)
    accounts = [*devnet.demo_accounts.values(), "0x" + "ee" * 20, "0x" + "dd" * 20]

    async def run() -> list[list[ChainState]]:
        async with Engine.connect(config) as engine:
            return await engine.read(accounts)

    read = asyncio.run(run())
    assert any(st.holder_proof is not None for st in read[0])
    assert any(st.protocols for states in read for st in states)
    odd = read[0][0]
    balances = list(odd.balances)
    balances[0] = balances[0]._replace(raw_amount=None, error='n\u00e9ant\x7f\n"\\ \U0001f600')
    balances[1] = balances[1]._replace(raw_amount=2**200 + 1, shares=2**255)
    read[0][0] = dataclasses.replace(odd, balances=balances)
    read[1][0] = dataclasses.replace(read[1][0], address="0x" + "ab" * 20, has_code=True)
    states = dict(zip(accounts, read, strict=True))
    reqs = [Request(kind, a, target, asset) for a in accounts]
    reports = compute_many(config, reqs, states)
    texts = []
    for _ in range(2):
        texts.clear()
        for req, report in zip(reqs, reports, strict=True):
            assert not isinstance(report, Exception)
            built = s.document(config, req, states[req.account], report, s.GENESIS)
            v1 = s.document_v1(config, req, states[req.account], report, s.GENESIS)
            assert compact(json.loads(v1)) == built
            assert built.text == stdlib_json(json.loads(built.text))
            texts.append(built.text)
    assert '"n\\u00e9ant\\u007f\\n\\"\\\\ \\ud83d\\ude00"' in texts[0]
    assert f'"{2**200 + 1}"' in texts[0]
    assert '"address":"0x' + "ab" * 20 + '","balances"' in texts[1]


def test_encoded_parts_are_found_by_every_field() -> None:
    """`_chain_entry` finds an encoded entry by each ChainState field (by value or by
    identity), `_request_text` a request's by each Request field: a field added to
    either must be added to its key too."""
    assert {f.name for f in dataclasses.fields(ChainState)} == s.ENTRY_KEY_FIELDS
    assert {f.name for f in dataclasses.fields(Request)} == s.REQUEST_KEY_FIELDS


DECIMAL = st.integers(min_value=0, max_value=2**256).map(str)
TEXT = st.none() | st.text(alphabet="abc :_", max_size=12)
BALANCE = st.fixed_dictionaries(
    {
        "rep": st.fixed_dictionaries({"chain": st.just("base"), "address": TEXT, "symbol": TEXT}),
        "raw_amount": st.none() | DECIMAL,
        "error": TEXT,
        "onchain_decimals": st.none() | DECIMAL,
        "warning": TEXT,
        "shares": st.none() | DECIMAL,
        "total_supply": st.none() | DECIMAL,
        "supply_error": TEXT,
    }
)
CHAIN = st.fixed_dictionaries(
    {
        "chain": st.sampled_from(["base", "ethereum"]),
        "pin": st.none() | st.fixed_dictionaries({"number": DECIMAL, "hash": TEXT}),
        "error": TEXT,
        "feeds": st.lists(st.dictionaries(st.text(max_size=5), DECIMAL, max_size=3), max_size=3),
        "sequencer": st.none(),
        "balances": st.lists(BALANCE, max_size=5),
    },
    optional={  # verified mode (§13): the batch's block proof, the account's own proofs
        "block_proof": st.fixed_dictionaries({"header": TEXT, "tokens": st.just([])}),
        "holder_proof": st.fixed_dictionaries(
            {"holder": TEXT, "nodes": st.lists(TEXT, max_size=3), "verdicts": st.just([])}
        ),
    },
)
EXPANDED = st.fixed_dictionaries(
    {
        "v": st.just("1"),
        "kind": st.just("margin"),
        "account": TEXT,
        "prev": st.just(s.GENESIS),
        "request": st.fixed_dictionaries({"target_chain": TEXT, "asset": TEXT}),
        "inputs": st.fixed_dictionaries(
            {
                "chains": st.lists(CHAIN, max_size=4),
                "estimates": st.none() | st.dictionaries(st.text(max_size=5), DECIMAL),
                "parameters": st.dictionaries(st.text(max_size=5), DECIMAL, min_size=1),
            }
        ),
        "outputs": st.dictionaries(
            st.sampled_from(["as_of", "prices", "parameters", "totals", "warnings"]), JSON
        ),
    }
)


# documents are big to draw: on a loaded 2-core machine drawing alone trips "too slow"
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(EXPANDED)
def test_compact_and_expand_are_inverse(doc: dict[str, Any]) -> None:
    """Whatever the inputs, splitting a document into its own part and blobs and putting
    it back gives the same document; the id names every blob by its hash."""
    built = compact(doc)
    stored = json.loads(built.text)
    assert set(blob_refs(stored)) == set(built.blobs)
    assert all(digest(text) == sha for sha, text in built.blobs.items())
    full = expand(stored, built.blobs)
    assert canonical({**full, "v": "1"}) == canonical(doc)
    assert compact(json.loads(canonical({**full, "v": "1"}))) == built


def test_a_config_stored_before_a_field_was_added_keeps_its_hash(devnet: Any) -> None:
    """A snapshot's config stays the one it names after the schema grows a field with a
    default: the stored document (here without `risk.local_health_warn`, as an older
    version stored it) hashes to the id recorded in the snapshot, and replay of a
    snapshot computed under it is still byte-identical."""
    old = json.loads(risk_document(devnet.config))
    del old["risk"]["local_health_warn"]  # not in the schema before METHOD v1.1 §12
    text = json.dumps(old, separators=(",", ":"))
    loaded = replay_config(text)
    assert config_hash(loaded) == digest(text) != config_hash(devnet.config)
    changed = loaded.model_copy(update={"risk": loaded.risk.model_copy(update={"kappa": 0.25})})
    assert config_hash(changed) == digest(risk_document(changed))  # another config now

    req = Request("margin", devnet.demo_accounts["bob"], "arbitrum", None)
    states = read_states(devnet, "bob")
    report = compute(loaded, states, req)
    assert report.parameters.config_hash == digest(text)
    built = s.document(loaded, req, states, report, s.GENESIS)
    again = replay(replay_config(text), json.loads(built.text), built.blobs)
    full = expand(json.loads(built.text), built.blobs)
    assert again == (canonical(full["inputs"]["parameters"]), canonical(full["outputs"]))
