"""METHOD.md §2: an endpoint serves a chain only if it proves it is that chain, by its
chain id and by its block hash at the configured height. The impostor (tests/conftest.py)
is a real anvil with ethereum's chain id and other state; nothing is ever read from it.
And every chain error's public form is built from fields, never from a node's or a
library's words."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from adapter_helpers import LEAKS, assert_flagged, fast_chain, figures, read_states, truth
from fault_proxy import FaultProxy
from hypothesis import given
from hypothesis import strategies as st

from adapters.evm import EvmAdapter
from crossmargin.core.config import ChainConfig, ChainIdentity, Config
from crossmargin.core.errors import (
    BadResponse,
    BlockHashMismatch,
    ChainError,
    ChainIdMismatch,
    HeadWentBackwards,
    NoUsableEndpoint,
    PayloadTooLarge,
    PinUnavailable,
    RateLimited,
    RequestTimeout,
    RpcError,
    TransportError,
)

CHAIN = "ethereum"


def native(states: list[Any]) -> list[int | None]:
    return [b.raw_amount for s in states for b in s.balances if b.rep.is_native]


def eth_calls(proxy: FaultProxy) -> int:
    return sum("eth_call" in methods for methods in proxy.log)


def identity_asks(proxy: FaultProxy) -> int:
    """Requests that asked for block 0 (the identity block)."""
    return sum(
        1
        for body in proxy.payloads
        for one in (body if isinstance(body, list) else [body])
        if one.get("method") == "eth_getBlockByNumber" and one["params"][0] == "0x0"
    )


@pytest.mark.asyncio
async def test_same_chain_id_other_state_is_refused(devnet: Any, impostor: Any) -> None:
    config: Config = devnet.config
    accounts = list(devnet.demo_accounts.values())
    real = config.chain(CHAIN)
    assert real.identity is not None
    fake_eth = [int(impostor.rpc("eth_getBalance", a, "latest"), 16) for a in accounts]
    async with FaultProxy(impostor.url) as fake, FaultProxy(real.rpc_urls[0]) as good:
        # Without an identity the impostor passes the chain id check, and its numbers
        # would be taken for ethereum's: the danger this check exists for.
        trusting = fast_chain(real, [fake.url], identity=None)
        fooled = await read_states(config, trusting, accounts)
        assert all(s.available for s in fooled)
        assert native(fooled) == fake_eth
        fake.log.clear()

        alone = fast_chain(real, [fake.url])
        refused = await read_states(config, alone, accounts)
        assert_flagged(refused, "wrong_chain_state")
        assert eth_calls(fake) == 0  # nothing read from it

        both = fast_chain(real, [fake.url, good.url])
        async with aiohttp.ClientSession() as session:
            adapter = EvmAdapter(both, session)
            first = await read_states(config, both, accounts, adapter=adapter)
            second = await read_states(config, both, accounts, adapter=adapter)
            bad = adapter.rpc.endpoints[0]
            assert isinstance(bad.refused, BlockHashMismatch)
            assert bad.refused.expected == real.identity.hash
            assert bad.refused.got != real.identity.hash
            # one endpoint refused for good: the chain now says so, by index
            solo = EvmAdapter(alone, session)
            await read_states(config, alone, accounts, adapter=solo)
            again = await read_states(config, alone, accounts, adapter=solo)
            assert_flagged(again, "no_usable_endpoint")
            assert "endpoint 0 has another block 0" in str(again[0].error)
        assert eth_calls(fake) == 0
        assert identity_asks(good) == 1  # checked once per endpoint, not per call
    assert all(s.available for s in first + second)
    for states in (first, second):
        pin = states[0].pin
        assert pin is not None
        assert figures(states) == figures(await truth(config, real, accounts, pin))
        assert not set(fake_eth) & set(native(states))


@pytest.mark.asyncio
async def test_an_endpoint_that_cannot_show_the_block_is_passed_over_not_refused(
    devnet: Any,
) -> None:
    """No block at the identity height (a node not synced that far) proves nothing: the
    endpoint is not used now, and asked again later."""
    config: Config = devnet.config
    accounts = list(devnet.demo_accounts.values())
    real = config.chain(CHAIN)
    assert real.identity is not None
    future = ChainIdentity(block=10**9, hash=real.identity.hash)
    async with aiohttp.ClientSession() as session:
        chain = fast_chain(real, real.rpc_urls, identity=future, retries=1)
        adapter = EvmAdapter(chain, session)
        assert_flagged(await read_states(config, chain, accounts, adapter=adapter), "bad_response")
        ep = adapter.rpc.endpoints[0]
        assert ep.refused is None
        assert not ep.verified


def test_identity_hash_is_checked_and_normalised() -> None:
    h = "0x" + "AB" * 32
    assert ChainIdentity(hash=h) == ChainIdentity(block=0, hash=h.lower())
    for bad in ("0x1234", "ab" * 32, "0x" + "zz" * 32):
        with pytest.raises(ValueError, match="hash"):
            ChainIdentity(hash=bad)
    with pytest.raises(ValueError, match="block"):
        ChainIdentity(block=-1, hash=h)
    chain = ChainConfig(name="x", chain_id=1, rpc_urls=["http://a"], identity={"hash": h})
    assert chain.identity is not None
    assert chain.identity.block == 0


# ------------------------------------------------------------- the public form

URL = "http://user:s3cret@10.20.30.40:8545/v2/KEY"
LIBRARY = (
    "ClientConnectorError: Cannot connect to host 10.20.30.40:8545 ssl:default "
    "[Connect call failed ('10.20.30.40', 8545)]"
)
words = st.text(min_size=0, max_size=200)
urls = st.one_of(st.just(URL), st.from_regex(r"https?://[a-z0-9.:@/]{1,60}", fullmatch=True))
chains = st.from_regex(r"[a-z][a-z0-9_-]{0,20}", fullmatch=True)


def every_error(message: str, url: str, n: int) -> list[ChainError]:
    return [
        ChainError(1, message, endpoint=url),
        RpcError(1, -n, message, endpoint=url),
        PinUnavailable(1, -32001, message, endpoint=url),
        RateLimited(1, message, retry_after=1.0, endpoint=url),
        PayloadTooLarge(1, n, message, endpoint=url),
        TransportError(1, message, endpoint=url),
        RequestTimeout(1, message, endpoint=url),
        BadResponse(1, message, endpoint=url),
        ChainIdMismatch(1, n, endpoint=url),
        BlockHashMismatch(1, n, "0x" + "1" * 64, "0x" + "2" * 64, endpoint=url),
        NoUsableEndpoint(1, [f"endpoint {n} serves chain id 5"]),
        HeadWentBackwards(1, n + 1, n, endpoint=url),
    ]


@given(message=words, url=urls, n=st.integers(0, 10**9), chain=chains)
def test_public_form_is_built_from_fields_only(message: str, url: str, n: int, chain: str) -> None:
    for exc in every_error(message, url, n):
        public = exc.public(chain)
        code, _, sentence = public.partition(": ")
        assert code == exc.error_code
        assert chain in sentence
    # the same whatever the node or the library said, and wherever it was
    for mine, other in zip(every_error(message, url, n), every_error(LIBRARY, URL, n), strict=True):
        assert mine.public(chain) == other.public(chain)


def test_public_forms_name_no_endpoint() -> None:
    codes = set()
    for exc in every_error(LIBRARY, URL, 7):
        public = exc.public("arbitrum")
        assert not LEAKS.search(public), public
        assert "8545" not in public
        for secret in ("10.20.30.40", "s3cret", "KEY", "Connect call", "ClientConnector"):
            assert secret not in public
        codes.add(exc.error_code)
    assert len(codes) == 12  # one code per kind of failure
