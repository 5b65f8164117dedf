"""`EvmAdapter(chain_config)`: one class for every EVM chain; chains are data.

The seam the rest of the system sees is `ChainReader`: pin a block, then read a list of
calls at exactly that block. Reads name the block by hash (EIP-1898, requireCanonical),
so a reorg between pinning and reading is an error, never a silent mix of two states.

Pinning: `latest` minus `confirmations`, or the `safe`/`finalized` tag. The adapter
remembers the highest head it has seen; an endpoint reporting a lower one is lagging
(or serving a shorter fork) and is passed over for another (`HeadWentBackwards`), so a
computation never goes back in time. The first request to an endpoint is a JSON-RPC
batch of `eth_chainId`, the configured identity block (if any) and the head block:
the endpoint proves it is the chain (METHOD.md §2) without costing a round trip.

Reading: calls go out as Multicall3 `aggregate3` (allowFailure=true, explicit `gas`),
in chunks of the endpoint's adaptive size, `max_concurrency` chunks in flight. A chunk
the node refuses as too large, out of gas or too slow is split in two and both halves
are re-sent (timeouts count against `retries`); the endpoint's chunk size is halved
and grows back after successes. Concurrent requests beat JSON-RPC batches here: anvil
(and most nodes) execute a batch's calls one after another.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import time
from collections import deque
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
from adapters.prover import Prover
from adapters.rpc import Endpoint, JsonRpcClient, RawParams
from crossmargin.core.config import ChainConfig
from crossmargin.core.errors import (
    BadResponse,
    ChainError,
    DecodeError,
    HeadWentBackwards,
    PayloadTooLarge,
    RequestTimeout,
)


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


Span = tuple[int, int, int]  # calls[lo:hi] still to read, and the timeouts it has had


def _hex_int(value: Any) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"not a hex quantity: {value!r}")
    return int(value, 16)


class EvmAdapter:
    """Reads calls through Multicall3 `aggregate3`, chunked, at a pinned block."""

    def __init__(self, chain: ChainConfig, session: aiohttp.ClientSession) -> None:
        self.chain = chain
        self.rpc = JsonRpcClient(chain, session)
        self.prover = Prover(chain, self.rpc)  # §13 verified reads (adapters/prover.py)
        self._high = -1  # highest head (or safe/finalized block) seen on any endpoint
        # as of a past time (adapters/asof.py): final headers by number, pins by time
        self.header_cache: dict[int, BlockPin] = {}
        self.time_cache: dict[int, BlockPin] = {}

    async def verify_chain_id(self) -> None:
        """Check the chain id (and identity block) of the endpoint reads would go to now."""
        await self.rpc.attempt(self.rpc.verify, verify=False)

    # ------------------------------------------------------------------ pinning

    async def pin(self) -> BlockPin:
        return await self.rpc.attempt(self._pin_on, verify=False)

    async def _pin_on(self, ep: Endpoint) -> BlockPin:
        verified = ep.verified
        requests: list[tuple[str, list[Any]]] = [
            ("eth_getBlockByNumber", [self.chain.block_tag, False])
        ]
        if not verified:
            requests[:0] = self.rpc.identity_requests()
        replies = await self.rpc.send_batch(ep, requests)
        if not verified:
            self.rpc.check_identity(ep, replies[:-1])
        head = self._block(ep, replies[-1])
        if head.number < self._high:
            raise HeadWentBackwards(self.chain.chain_id, self._high, head.number, endpoint=ep.url)
        self._high = head.number
        if self.chain.block_tag != "latest" or not self.chain.confirmations:
            return head
        number = max(0, head.number - self.chain.confirmations)
        pinned = self._block(
            ep, await self.rpc.send(ep, "eth_getBlockByNumber", [hex(number), False])
        )
        if pinned.number != number:
            raise BadResponse(
                self.chain.chain_id,
                f"asked for block {number}, got {pinned.number}",
                endpoint=ep.url,
            )
        return pinned

    def _block(self, ep: Endpoint, block: Any) -> BlockPin:
        if not isinstance(block, dict):
            raise BadResponse(
                self.chain.chain_id, f"no block in reply: {block!r}"[:200], endpoint=ep.url
            )
        try:
            number = _hex_int(block["number"])
            timestamp = _hex_int(block["timestamp"])
            block_hash = str(block["hash"])
            ok_hash = len(block_hash) == 66 and len(bytes.fromhex(block_hash[2:])) == 32
        except (KeyError, ValueError) as exc:
            raise BadResponse(
                self.chain.chain_id, f"malformed block: {exc}", endpoint=ep.url
            ) from exc
        if not ok_hash:
            raise BadResponse(
                self.chain.chain_id, f"bad block hash {block_hash!r}", endpoint=ep.url
            )
        return BlockPin(self.chain.chain_id, number, block_hash, timestamp)

    # ------------------------------------------------------------------ reading

    async def read(self, calls: list[Call], pin: BlockPin) -> list[CallResult]:
        """Results in call order, all at `pin`; any chunk that cannot be read fails it all."""
        if pin.chain_id != self.chain.chain_id:
            raise ValueError(f"pin of chain {pin.chain_id} used on chain {self.chain.chain_id}")
        n = len(calls)
        out: list[CallResult | None] = [None] * n
        if not n:
            return []
        deadline = time.monotonic() + self.chain.retry_budget_s
        todo: deque[Span] = deque([(0, n, 0)])
        size = self.rpc.chunk_size()
        workers = min(self.chain.max_concurrency * len(self.rpc.endpoints), -(-n // size))
        if workers <= 1:
            await self._drain(calls, pin, todo, out, deadline)
        else:
            await _all([self._drain(calls, pin, todo, out, deadline) for _ in range(workers)])
        if None in out:  # pragma: no cover - every range is read or raises
            raise AssertionError("multicall read left calls unanswered")
        return out  # type: ignore[return-value]

    async def _drain(
        self,
        calls: list[Call],
        pin: BlockPin,
        todo: deque[Span],
        out: list[CallResult | None],
        deadline: float,
    ) -> None:
        """One worker: read spans off `todo` in chunks of the endpoint's size; a span the
        node refuses as too large or too slow goes back as two halves."""
        while todo:
            lo, hi, timeouts = todo.popleft()
            size = self.rpc.chunk_size()
            if hi - lo > size:
                todo.appendleft((lo + size, hi, timeouts))
                hi = lo + size
            try:
                out[lo:hi] = await self._aggregate3(calls[lo:hi], pin, deadline)
            except (PayloadTooLarge, RequestTimeout) as exc:
                todo.extendleft(self._halves(exc, (lo, hi, timeouts), deadline))

    def _halves(self, exc: ChainError, span: Span, deadline: float) -> list[Span]:
        """The spans to send again after `exc` (in extendleft order), or `exc` raised: a
        single call too large, or timeouts beyond `retries` or the deadline."""
        lo, hi, timeouts = span
        mid = (lo + hi) // 2
        if isinstance(exc, PayloadTooLarge):
            if hi - lo == 1:
                raise exc
            return [(mid, hi, timeouts), (lo, mid, timeouts)]
        if timeouts >= self.chain.retries or time.monotonic() >= deadline:
            raise exc
        if mid == lo:
            return [(lo, hi, timeouts + 1)]
        return [(mid, hi, timeouts + 1), (lo, mid, timeouts + 1)]

    async def _aggregate3(
        self, calls: list[Call], pin: BlockPin, deadline: float
    ) -> list[CallResult]:
        # [{"to", "gas", "data"}, {"blockHash", "requireCanonical"}] as JSON, the calldata's
        # hex spliced in (adapters/rpc.py RawParams); json.dumps makes the rest. hexlify:
        # bytes.hex() and str.encode() took 3x as long (0.9 us per call of the multicall)
        tx = json.dumps({"to": MULTICALL3, "gas": hex(self.chain.call_gas)}, separators=(",", ":"))
        at = json.dumps({"blockHash": pin.hash, "requireCanonical": True}, separators=(",", ":"))
        params = RawParams(
            (
                b"[" + tx[:-1].encode() + b',"data":"0x',
                binascii.hexlify(encode_aggregate3(calls)),
                b'"},' + at.encode() + b"]",
            )
        )
        cid = self.chain.chain_id

        async def op(ep: Endpoint) -> list[CallResult]:
            data = await self.rpc.send_data(ep, "eth_call", params, len(calls))
            try:
                return decode_aggregate3(data, len(calls))
            except DecodeError as exc:
                # The envelope is Multicall3's own encoding: if it does not decode, the
                # reply was damaged on the way (or the node lies). Retried elsewhere.
                raise BadResponse(cid, f"aggregate3 reply: {exc}", endpoint=ep.url) from exc

        return await self.rpc.attempt(op, n_calls=len(calls), deadline=deadline)


async def _all(coros: list[Any]) -> None:
    """Run concurrently; on failure cancel the rest and raise the first error itself (a
    bug before a chain error), not an ExceptionGroup."""
    try:
        async with asyncio.TaskGroup() as tg:
            for c in coros:
                tg.create_task(c)
    except ExceptionGroup as group:
        flat: list[BaseException] = []
        stack: list[BaseException] = [group]
        while stack:
            e = stack.pop()
            if isinstance(e, BaseExceptionGroup):
                stack.extend(reversed(e.exceptions))
            else:
                flat.append(e)
        bugs = [e for e in flat if not isinstance(e, ChainError)]
        raise (bugs or flat)[0] from None
