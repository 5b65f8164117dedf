"""The JSON-RPC client's decisions without a network: error mapping, back-off parsing,
retry policy (bugs are never retried), failover order and the adaptive chunk size."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from adapter_helpers import FAST
from hypothesis import given
from hypothesis import strategies as st

from adapters import rpc
from adapters.rpc import Endpoint, JsonRpcClient, classify, retry_after_header
from crossmargin.core.config import ChainConfig
from crossmargin.core.errors import (
    ChainError,
    ChainIdMismatch,
    PayloadTooLarge,
    PinUnavailable,
    RateLimited,
    RpcError,
    TransportError,
)

CHAIN = ChainConfig(name="test", chain_id=1, rpc_urls=["http://a", "http://b"], **FAST)


@pytest.mark.parametrize(
    ("error", "n_calls", "kind", "retry_after"),
    [
        (
            {"code": -32005, "message": "limit exceeded", "data": {"backoff_seconds": 2}},
            1,
            RateLimited,
            2.0,
        ),
        ({"code": 429, "message": "Too Many Requests"}, 1, RateLimited, None),
        ({"code": -32000, "message": "Rate limit reached, slow down"}, 1, RateLimited, None),
        ({"code": -32600, "message": "Invalid request"}, 500, PayloadTooLarge, None),
        ({"code": -32600, "message": "Invalid request"}, 1, RpcError, None),
        ({"code": -32000, "message": "out of gas"}, 9, PayloadTooLarge, None),
        ({"code": -32000, "message": "response size exceeded"}, 9, PayloadTooLarge, None),
        ({"code": -32000, "message": "header not found"}, 9, PinUnavailable, None),
        ({"code": -32001, "message": "Resource not found"}, 9, PinUnavailable, None),
        ({"code": 3, "message": "execution reverted", "data": "0x"}, 9, RpcError, None),
        ("a bare string", 1, RpcError, None),
    ],
)
def test_classify(error: Any, n_calls: int, kind: type, retry_after: float | None) -> None:
    err = classify(1, "http://a", error, n_calls)
    assert type(err) is kind
    assert err.endpoint == "http://a"
    assert err.chain_id == 1
    if isinstance(err, RateLimited):
        assert err.retry_after == retry_after
    if isinstance(err, PayloadTooLarge):
        assert err.n_calls == n_calls


def test_retry_after_header_forms() -> None:
    assert retry_after_header("3") == 3.0
    assert retry_after_header("0.5") == 0.5
    assert retry_after_header(None) is None
    assert retry_after_header("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    got = retry_after_header(later)
    assert got is not None
    assert 25 < got <= 31


def test_chunk_size_halves_and_grows_back() -> None:
    ep = Endpoint("http://a", CHAIN.model_copy(update={"max_calls_per_batch": 1000}))
    ep.shrink(1000)
    ep.shrink(500)
    assert ep.chunk == 250
    ep.succeeded(100)  # smaller requests say nothing about the current size
    assert ep.chunk == 250
    for _ in range(rpc.GROW_AFTER):
        ep.succeeded(250)
    assert ep.chunk == 500
    for _ in range(3 * rpc.GROW_AFTER):
        ep.succeeded(1000)
    assert ep.chunk == 1000  # never above the configured maximum
    ep.shrink(1)
    assert ep.chunk == 1


@pytest.mark.asyncio
async def test_bugs_are_not_retried_and_node_answers_not_repeated() -> None:
    async with aiohttp.ClientSession() as session:
        client = JsonRpcClient(CHAIN, session)
        calls: list[str] = []

        async def bug(ep: Endpoint) -> None:
            calls.append(ep.url)
            raise TypeError("a programming error")

        with pytest.raises(TypeError):
            await client.attempt(bug, verify=False)
        assert calls == ["http://a"]

        async def answer(ep: Endpoint) -> None:
            calls.append(ep.url)
            raise RpcError(1, -32602, "invalid params", endpoint=ep.url)

        calls.clear()
        with pytest.raises(RpcError):
            await client.attempt(answer, verify=False)
        assert calls == ["http://a"]


@pytest.mark.asyncio
async def test_failover_order_and_refusal() -> None:
    async with aiohttp.ClientSession() as session:
        client = JsonRpcClient(CHAIN, session)
        seen: list[str] = []

        async def flaky(ep: Endpoint) -> str:
            seen.append(ep.url)
            if ep.url == "http://a":
                raise TransportError(1, "connection refused", endpoint=ep.url)
            return "ok"

        assert await client.attempt(flaky, verify=False) == "ok"
        assert seen == ["http://a", "http://b"]
        seen.clear()  # a is cooling down: b first now
        assert await client.attempt(flaky, verify=False) == "ok"
        assert seen == ["http://b"]

        async def impostor(ep: Endpoint) -> str:
            raise ChainIdMismatch(1, 5, endpoint=ep.url)

        with pytest.raises(ChainIdMismatch):
            await client.attempt(impostor, verify=False)
        assert all(ep.refused for ep in client.endpoints)
        with pytest.raises(ChainError, match=r"no usable endpoint.*serves chain id 5"):
            await client.attempt(flaky, verify=False)  # nothing left to use


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=10**12))
def test_hex_result_is_what_json_and_unhexlify_give_or_nothing(data: bytes, rid: int) -> None:
    """The multicall reply's shortcut: the node's compact reply (any case, trailing
    newline) decodes to exactly the bytes json.loads plus unhexlify give; every other
    reply, a JSON-valid one included, is left to json.loads (None)."""
    text = "0x" + data.hex()
    reply = json.dumps({"jsonrpc": "2.0", "id": rid, "result": text}, separators=(",", ":"))
    upper = reply.replace(text, "0x" + data.hex().upper())
    for raw in (reply.encode(), reply.encode() + b"\n", upper.encode()):
        assert rpc.hex_result(raw, rid) == bytes.fromhex(json.loads(raw)["result"][2:]) == data
    others = [
        json.dumps({"jsonrpc": "2.0", "id": rid, "result": text}).encode(),  # spaces
        reply.replace(f'"id":{rid},', f'"id":{rid + 1},').encode(),  # another request's
        reply.replace('"0x', '"0x0').encode(),  # odd length
        reply.replace('"0x', '"0x\\u0030').encode() if data else b"",  # an escape
        reply.replace('"}', '","error":{}}').encode(),
        json.dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": 3}}).encode(),
    ]
    for raw in others:
        assert rpc.hex_result(raw, rid) is None
