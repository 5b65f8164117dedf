"""As of a past time (METHOD.md §15): pin a chain at its last block with timestamp <= τ,
or at a given block number; and which addresses hold code at a pin (§1).

Only final blocks are candidates: the search runs at or below the chain's pin of now
(head minus confirmations, or its safe/finalized tag). τ at or after that pin's
timestamp gives that pin (a later block could still be stamped <= τ: the uncertainty
every live pin has), unless τ is after the wall clock: the future is refused.

The search is interpolation with a bisection guard: each round is one JSON-RPC batch of
the interpolated guess, the block after it and the midpoint, so a chain with regular
block times is found in one or two round trips and any chain in at most log2(n)
rounds. Final blocks never change, so headers are cached per adapter (bounded) and
answers per τ; a τ after the pin of now is never cached (that answer can still move).

Once pinned, the block is read exactly like a live pin: every read names its hash.
A node that has the header but not the state (not an archive node, history pruned)
fails those reads: the engine refuses the request (`StateUnavailable`), never mixing
the state of another block in.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from adapters.evm import BlockPin, EvmAdapter
from adapters.rpc import Endpoint
from crossmargin.core.errors import (
    AsOfInFuture,
    BeforeGenesis,
    PinUnavailable,
    StateUnavailable,
)

MAX_HEADERS = 4096  # cached headers per chain (a search touches ~2 log2(n) of them)
MAX_TIMES = 256  # cached answers per chain (τ -> pin)


def _put(cache: dict[int, BlockPin], key: int, value: BlockPin, limit: int) -> None:
    """Bounded: cleared when full (entries are cheap to fetch again)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value


async def headers(adapter: EvmAdapter, numbers: Sequence[int]) -> dict[int, BlockPin]:
    """The headers of blocks `numbers` (one JSON-RPC batch for those not cached). A
    block the node does not have is `StateUnavailable`: it cannot serve that past."""
    cache = adapter.header_cache
    out = {n: p for n in numbers if (p := cache.get(n)) is not None}
    todo = sorted({n for n in numbers if n not in out})
    if not todo:
        return out
    name = adapter.chain.name

    async def op(ep: Endpoint) -> list[BlockPin]:
        replies = await adapter.rpc.send_batch(
            ep, [("eth_getBlockByNumber", [hex(n), False]) for n in todo]
        )
        got = []
        for n, reply in zip(todo, replies, strict=True):
            if reply is None:
                raise StateUnavailable(name, f"the endpoints of chain {name} lack block {n}")
            pin = adapter._block(ep, reply)
            if pin.number != n:
                raise PinUnavailable(adapter.chain.chain_id, 0, f"asked {n}, got {pin.number}")
            got.append(pin)
        return got

    for pin in await adapter.rpc.attempt(op, n_calls=len(todo)):
        _put(cache, pin.number, pin, MAX_HEADERS)
        out[pin.number] = pin
    return out


def _check_future(adapter: EvmAdapter, tau: int, now: float | None) -> None:
    clock = time.time() if now is None else now
    if tau > clock:
        raise AsOfInFuture(
            adapter.chain.name, f"the requested time {tau} is in the future (now {int(clock)})"
        )


async def pin_at(adapter: EvmAdapter, tau: int, now: float | None = None) -> BlockPin:
    """The chain's last final block with timestamp <= τ (unix seconds)."""
    _check_future(adapter, tau, now)
    hit = adapter.time_cache.get(tau)
    if hit is not None:
        return hit
    top = await adapter.pin()
    if top.timestamp <= tau:
        return top
    lo_pin = (await headers(adapter, [0]))[0]
    if lo_pin.timestamp > tau:
        name = adapter.chain.name
        raise BeforeGenesis(
            name,
            f"chain {name} has no block at or before time {tau} "
            f"(its first block is stamped {lo_pin.timestamp})",
        )
    found = await _search(adapter, tau, lo_pin, top)
    _put(adapter.time_cache, tau, found, MAX_TIMES)
    return found


async def _search(adapter: EvmAdapter, tau: int, lo: BlockPin, hi: BlockPin) -> BlockPin:
    """Invariant: lo.timestamp <= τ < hi.timestamp; ends when they are adjacent."""
    bisect = False
    while hi.number - lo.number > 1:
        span = hi.number - lo.number
        mid = lo.number + span // 2
        frac = (tau - lo.timestamp) / max(1, hi.timestamp - lo.timestamp)
        guess = min(hi.number - 1, max(lo.number + 1, lo.number + int(frac * span)))
        wanted = [mid] if bisect else [guess, guess + 1, mid]
        got = await headers(adapter, [n for n in wanted if lo.number < n < hi.number])
        for pin in got.values():
            if pin.timestamp <= tau and pin.number > lo.number:
                lo = pin
            elif pin.timestamp > tau and pin.number < hi.number:
                hi = pin
        bisect = hi.number - lo.number > span // 2  # interpolation did not halve it
    return lo


async def pin_number(adapter: EvmAdapter, number: int) -> BlockPin:
    """Block `number`, if it is final (at or below the chain's pin of now)."""
    top = await adapter.pin()
    if number > top.number:
        name = adapter.chain.name
        raise AsOfInFuture(
            name, f"block {number} of chain {name} is not final yet (final: {top.number})"
        )
    if number == top.number:
        return top
    return (await headers(adapter, [number]))[number]


async def has_code(adapter: EvmAdapter, addresses: Sequence[str], pin: BlockPin) -> list[bool]:
    """Whether each address holds code at `pin` (eth_getCode by block hash, one batch)."""
    if not addresses:
        return []
    at: dict[str, Any] = {"blockHash": pin.hash, "requireCanonical": True}

    async def op(ep: Endpoint) -> list[bool]:
        replies = await adapter.rpc.send_batch(ep, [("eth_getCode", [a, at]) for a in addresses])
        return [isinstance(r, str) and len(r) > 2 for r in replies]

    return await adapter.rpc.attempt(op, n_calls=len(addresses))
