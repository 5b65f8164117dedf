"""METHOD.md §10 documents: canonical JSON, engine inputs to JSON and back, and replay
from stored inputs giving byte-identical outputs (no database involved)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crossmargin.core.config import config_hash, risk_document
from crossmargin.engine import Engine
from crossmargin.pipeline import snapshot as s
from crossmargin.pipeline.read import ChainState

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
    assert s.canonical(value) == (
        '{"a":["1.5",true,null,"x\\u00e9"],"b":"1","c":"0.0000001",'
        '"d":"115792089237316195423570985008687907853269984665640564039457584007913129639936",'
        '"e":"50000000.0"}'
    )
    with pytest.raises(s.SnapshotError):
        s.canonical({"x": float("nan")})


@given(JSON)
def test_canonical_is_a_fixed_point_with_numbers_as_strings(value: Any) -> None:
    text = s.canonical(value)
    assert text.isascii()
    again = json.loads(text)
    assert s.canonical(again) == text

    def no_numbers(v: Any) -> bool:
        if isinstance(v, dict):
            return all(no_numbers(x) for x in v.values())
        if isinstance(v, list):
            return all(no_numbers(x) for x in v)
        return v is None or isinstance(v, bool | str)

    assert no_numbers(again)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_decimal_strings_round_trip_floats(x: float) -> None:
    text = s.decimal_str(x)
    assert "e" not in text.lower()
    assert float(text) == x


@pytest.mark.parametrize("name", ["alice", "bob", "carol", "dave"])
def test_states_round_trip(devnet: Any, name: str) -> None:
    states = read_states(devnet, name)
    text = s.canonical(s.encode_states(states))
    assert s.decode_states(devnet.config, json.loads(text)) == states


def test_unavailable_chain_round_trips(devnet: Any) -> None:
    states = read_states(devnet, "bob")
    states[1] = ChainState(states[1].chain, error="chain 42161: no answer in 5.0 s")
    back = s.decode_states(devnet.config, json.loads(s.canonical(s.encode_states(states))))
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
    req = s.Request(kind, devnet.demo_accounts[name], target, asset)
    report = s.compute(config, states, req)
    text = s.document(config, req, states, report, s.GENESIS)
    assert s.canonical(json.loads(text)) == text

    replay_config = s.replay_config(risk_document(config))  # endpoints are not stored
    assert config_hash(replay_config) == config_hash(config)
    doc = json.loads(text)
    params, outputs = s.replay(replay_config, doc)
    assert params == s.canonical(doc["inputs"]["parameters"])
    assert outputs == s.canonical(doc["outputs"])
    assert outputs == s.canonical(report.model_dump(mode="json"))
    assert s.report_of(doc) == report  # what the API serves from a stored document


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("inputs", "chains", 0, "balances", 0, "raw_amount"), 5),  # a number, not a string
        (("inputs", "chains", 0, "balances", 0, "surprise"), "1"),  # an unknown field
        (("inputs", "chains", 0, "balances", 0, "rep", "address"), "0x" + "12" * 20),
        (("inputs", "chains", 0, "chain"), "solana"),
    ],
)
def test_malformed_inputs_are_refused(devnet: Any, path: tuple[Any, ...], value: Any) -> None:
    config = devnet.config
    states = read_states(devnet, "alice")
    req = s.Request("margin", devnet.demo_accounts["alice"], "base")
    doc = json.loads(s.document(config, req, states, s.compute(config, states, req), s.GENESIS))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(s.SnapshotError):
        s.replay(config, doc)
