"""`EvmAdapter(chain_config)`: one class for every EVM chain; chains are data.

The seam the rest of the system sees is `ChainReader`: pin a block, then read a list of
calls at exactly that block. Reads name the block by hash (EIP-1898, requireCanonical),
so a reorg between pinning and reading is an error, never a silent mix of two states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from adapters.calls import (
    MULTICALL3,
    Call,
    CallResult,
    decode_aggregate3,
    encode_aggregate3,
)
from adapters.rpc import JsonRpcClient
from crossmargin.config import ChainConfig
from crossmargin.errors import ChainIdMismatch, TransportError


@dataclass(frozen=True, slots=True)
class BlockPin:
    """The block every read of one chain in one computation is made at (METHOD.md §2)."""

    chain_id: int
    number: int
    hash: str
    timestamp: int


class ChainReader(Protocol):
    """The I/O seam: oracle and aggregator never touch the network."""

    chain: ChainConfig

    async def pin(self) -> BlockPin: ...

    async def read(self, calls: list[Call], pin: BlockPin) -> list[CallResult]: ...


class EvmAdapter:
    """Reads calls through Multicall3 `aggregate3`, chunked, at a pinned block."""

    def __init__(self, chain: ChainConfig, session: aiohttp.ClientSession) -> None:
        self.chain = chain
        self.rpc = JsonRpcClient(chain, session)
        self._verified = False

    async def verify_chain_id(self) -> None:
        """An endpoint serving another chain is refused before any number is read."""
        got = int(await self.rpc.request("eth_chainId", []), 16)
        if got != self.chain.chain_id:
            raise ChainIdMismatch(self.chain.chain_id, got)
        self._verified = True

    async def pin(self) -> BlockPin:
        if not self._verified:
            await self.verify_chain_id()
        if self.chain.block_tag != "latest":
            tag: str = self.chain.block_tag
        elif self.chain.confirmations:
            head = int(await self.rpc.request("eth_blockNumber", []), 16)
            tag = hex(max(0, head - self.chain.confirmations))
        else:
            tag = "latest"
        block = await self.rpc.request("eth_getBlockByNumber", [tag, False])
        if not isinstance(block, dict):
            raise TransportError(self.chain.chain_id, f"no block for {tag}")
        return BlockPin(
            chain_id=self.chain.chain_id,
            number=int(block["number"], 16),
            hash=str(block["hash"]),
            timestamp=int(block["timestamp"], 16),
        )

    async def read(self, calls: list[Call], pin: BlockPin) -> list[CallResult]:
        size = self.chain.max_calls_per_batch
        out: list[CallResult] = []
        for start in range(0, len(calls), size):
            out.extend(await self._aggregate3(calls[start : start + size], pin))
        return out

    async def _aggregate3(self, calls: list[Call], pin: BlockPin) -> list[CallResult]:
        tx: dict[str, Any] = {"to": MULTICALL3, "data": "0x" + encode_aggregate3(calls).hex()}
        block = {"blockHash": pin.hash, "requireCanonical": True}
        raw = await self.rpc.request("eth_call", [tx, block])
        if not isinstance(raw, str) or not raw.startswith("0x"):
            raise TransportError(self.chain.chain_id, "eth_call result is not hex data")
        return decode_aggregate3(bytes.fromhex(raw[2:]), len(calls))
