"""The `ChainReader` contract (adapters/evm.py), one behavioural suite run against every
implementation: the real `EvmAdapter` on the devnet and the in-memory `FakeChain` the
engine's pure suite runs on. If the fake passes what the adapter passes, the pure suite
tests the engine against the seam it really has. (`-k fake` runs it without anvil.)"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from eth_utils.address import to_checksum_address
from fake_chain import FakeChain

from adapters import calls as c
from adapters.evm import ChainReader, EvmAdapter
from crossmargin.core.config import Config, load_config

CHAIN = "ethereum"
CONFIG: Config = load_config(
    Path(__file__).resolve().parents[2] / "configs" / "devnet.toml", env={}
)
TOKEN = next(
    r for r in CONFIG.representations if r.chain == CHAIN and r.standard == "erc20"
)  # a token every implementation has, with its configured decimals


@dataclass
class Harness:
    reader: ChainReader
    pay: Callable[[str, int], Awaitable[None]]  # owner, wei more of the coin; a new block


def _fake() -> Harness:
    fake = FakeChain(CONFIG.chain(CHAIN))
    fake.set_decimals(TOKEN.address, TOKEN.decimals)

    async def pay(owner: str, wei: int) -> None:
        fake.set_balance("native", owner, fake.native(owner) + wei)

    return Harness(fake, pay)


@pytest_asyncio.fixture(params=["fake", "evm"], loop_scope="session")
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "fake":
        yield _fake()
        return
    devnet: Any = request.getfixturevalue("devnet")
    url = devnet.rpc_url(CHAIN)
    async with aiohttp.ClientSession() as session:
        adapter = EvmAdapter(devnet.config.chain(CHAIN), session)

        payer = fresh()  # impersonated: a real transfer, mined in its own block

        async def rpc(method: str, *params: Any) -> None:
            body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
            async with session.post(url, json=body) as resp:
                reply = await resp.json()
                assert "error" not in reply, reply

        await rpc("anvil_setBalance", payer, hex(10**20))
        await rpc("anvil_impersonateAccount", payer)

        async def pay(owner: str, wei: int) -> None:
            await rpc("eth_sendTransaction", {"from": payer, "to": owner, "value": hex(wei)})
            await rpc("evm_mine")  # the devnet mines on demand

        yield Harness(adapter, pay)


def fresh() -> str:
    return to_checksum_address("0x" + secrets.token_hex(20))


pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_pin_names_the_chain_and_moves_forward(harness: Harness) -> None:
    first = await harness.reader.pin()
    assert first.chain_id == harness.reader.chain.chain_id
    assert len(first.hash) == 66
    assert first.hash.startswith("0x")
    await harness.pay(fresh(), 1)
    second = await harness.reader.pin()
    assert second.number > first.number
    assert second.hash != first.hash
    assert second.timestamp >= first.timestamp


async def test_nothing_to_read_is_nothing_read(harness: Harness) -> None:
    assert await harness.reader.read([], await harness.reader.pin()) == []


async def test_results_come_in_call_order_and_a_revert_is_one_result(harness: Harness) -> None:
    a, b = fresh(), fresh()
    await harness.pay(a, 7)
    await harness.pay(b, 9)
    calls = [
        c.eth_balance(a),
        c.decimals(TOKEN.address),
        c.Call(TOKEN.address, bytes.fromhex("deadbeef")),  # no such function: reverts
        c.eth_balance(b),
    ]
    got = await harness.reader.read(calls, await harness.reader.pin())
    assert [r.success for r in got] == [True, True, False, True]
    assert c.decode_uint(got[0], "a") == 7
    assert c.decode_uint(got[3], "b") == 9
    assert c.decode_uint(got[1], "decimals") == TOKEN.decimals


async def test_a_read_at_a_pin_sees_that_blocks_state(harness: Harness) -> None:
    a = fresh()
    await harness.pay(a, 1)
    old = await harness.reader.pin()
    await harness.pay(a, 1)
    new = await harness.reader.pin()
    call = [c.eth_balance(a)]
    assert c.decode_uint((await harness.reader.read(call, old))[0], "old") == 1
    assert c.decode_uint((await harness.reader.read(call, new))[0], "new") == 2


async def test_a_pin_of_another_chain_is_refused(harness: Harness) -> None:
    pin = await harness.reader.pin()
    other = type(pin)(pin.chain_id + 1, pin.number, pin.hash, pin.timestamp)
    with pytest.raises(ValueError, match="pin of chain"):
        await harness.reader.read([c.eth_balance(fresh())], other)
