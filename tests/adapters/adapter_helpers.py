"""Shared by the adapter tests: fast chain configs, reads compared with a clean path, and
transactions that deploy and drive the hostile contracts of contracts/src/weird/."""

from __future__ import annotations

import re
import socket
from typing import Any

import aiohttp

from adapters import calls as c
from adapters.evm import BlockPin, EvmAdapter
from crossmargin.core.config import ChainConfig, Config
from crossmargin.pipeline.read import ChainState, read_chain_many
from devnet.rpc import Rpc, wait_receipts

# Short everything: a fault test fails over or gives up in well under a second.
FAST: dict[str, Any] = {
    "timeout_s": 0.5,
    "retries": 3,
    "retry_budget_s": 5.0,
    "cooldown_s": 0.5,
}


def fast_chain(chain: ChainConfig, urls: list[str], **update: Any) -> ChainConfig:
    return chain.model_copy(update={"rpc_urls": urls, **FAST, **update})


def dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def read_states(
    config: Config,
    chain: ChainConfig,
    accounts: list[str],
    pin: BlockPin | None = None,
    adapter: EvmAdapter | None = None,
) -> list[ChainState]:
    """One computation on one chain (own session unless an adapter is given)."""
    if adapter is not None:
        return await read_chain_many(config, adapter, accounts, pin)
    async with aiohttp.ClientSession() as session:
        return await read_chain_many(config, EvmAdapter(chain, session), accounts, pin)


def figures(states: list[ChainState]) -> list[Any]:
    """Everything a valuation would use: pin, every balance (or its error), every feed."""
    return [
        (
            s.pin,
            s.error,
            [(b.rep.symbol, b.raw_amount, b.error, b.onchain_decimals) for b in s.balances],
            s.feeds,
            s.sequencer,
        )
        for s in states
    ]


async def truth(
    config: Config, chain: ChainConfig, accounts: list[str], pin: BlockPin
) -> list[ChainState]:
    """The same read straight from the node (no proxy, default tuning) at `pin`."""
    direct = chain.model_copy(update={"rpc_urls": [config.chain(chain.name).rpc_urls[0]]})
    return await read_states(config, direct, accounts, pin)


LEAKS = re.compile(r"https?:|127\.0\.0\.1|localhost|\d+\.\d+\.\d+\.\d+|:\d{2,5}\b|Error\b|\('")


def assert_flagged(states: list[ChainState], *codes: str) -> None:
    """A failed chain: its error is a public error code and sentence (crossmargin/core/errors.py)
    naming the cause, with no URL, IP, port or Python repr in it; and no number at all."""
    for s in states:
        assert s.error is not None
        assert not s.available
        assert s.balances == []
        assert s.feeds == []
        code, _, sentence = s.error.partition(": ")
        assert code in codes, s.error
        assert sentence, s.error
        assert not LEAKS.search(s.error), s.error


async def send(rpc: Rpc, sender: str, txs: list[tuple[str | None, str]]) -> list[str]:
    """Send (to, data) transactions from `sender` in order; return created addresses.
    One call each, not one JSON-RPC batch: anvil may take a batch's entries in any
    order, and once (a CI run) one of a batch's two transactions was never mined
    ("chain 1: 1 transactions not mined"); sent one after another, each nonce arrives
    after the one before."""
    nonce = int(await rpc.call("eth_getTransactionCount", [sender, "pending"]), 16)
    hashes = []
    for i, (to, data) in enumerate(txs):
        tx = {"from": sender, "data": data, "gas": hex(5_000_000), "nonce": hex(nonce + i)}
        if to is not None:
            tx["to"] = to
        hashes.append(await rpc.call("eth_sendTransaction", [tx]))
    receipts = await wait_receipts(rpc, hashes)
    assert all(r["status"] == "0x1" for r in receipts), receipts
    return [c.checksum(r["contractAddress"]) if r.get("contractAddress") else "" for r in receipts]
