"""Which watched accounts' inputs may have changed between two pins of a chain
(METHOD.md §14), from the chain's own records:

- `Transfer` logs of the chain's configured tokens (collateral and debt): the sender
  and the receiver;
- for a chain with a native-coin representation, the senders and receivers of the
  blocks' transactions (an internal transfer of the native coin leaves no trace a
  node indexes: the sweep catches it);
- a changed `latestRoundData()` of one of the chain's Chainlink feeds (one multicall
  per chain per new pin, shared at the seam with the computation's own reads; a
  feed need not emit `AnswerUpdated`, and proxies do not): every holder of the asset
  (`Holdings`, from each account's last report). Pyth feeds are left to the sweep;
- any new block, for an account with a protocol position on the chain.

One `eth_getLogs` per chain per new block range (topic and addresses filtered at the
node), one feed multicall, plus one block read per new block where the native coin
is configured. A range
longer than MAX_RANGE, or a read that fails, marks every account of that chain as
changed: the conservative choice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.calls import SEL_LATEST_ROUND_DATA, Call
from adapters.evm import BlockPin, EvmAdapter
from crossmargin.core.config import Config
from crossmargin.core.errors import ChainError, DecodeError

TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
MAX_RANGE = 50


@dataclass
class Holdings:
    """From each account's last report: the assets it holds (any chain) and the chains
    where it has a protocol position."""

    assets: dict[str, set[str]] = field(default_factory=dict)  # asset -> accounts
    protocols: dict[str, set[str]] = field(default_factory=dict)  # chain -> accounts

    def update(self, account: str, report: Mapping[str, Any]) -> None:
        for holders in self.assets.values():
            holders.discard(account)
        for holders in self.protocols.values():
            holders.discard(account)
        for p in report.get("positions") or []:
            if p.get("raw_amount") not in ("0", None) or p.get("status") != "ok":
                self.assets.setdefault(str(p.get("asset")), set()).add(account)
        for acct in report.get("protocols") or []:
            self.protocols.setdefault(str(acct.get("chain")), set()).add(account)


@dataclass(frozen=True)
class ChainWatch:
    """What to look for on one chain (from config)."""

    name: str
    tokens: list[str]
    feeds: dict[str, str]  # feed address (checksummed) -> asset
    native: bool

    @classmethod
    def of(cls, config: Config, name: str) -> ChainWatch:
        reps = [r for r in config.representations if r.chain == name]
        feeds = {
            f.address: a.symbol
            for a in config.assets
            for f in a.feeds
            if f.chain == name and f.kind == "chainlink"
        }
        return cls(
            name,
            sorted({r.address for r in reps if r.address != "native"}),
            feeds,
            any(r.address == "native" for r in reps),
        )


def _topic_address(topic: str) -> str:
    return "0x" + topic[-40:].lower()


@dataclass
class Changed:
    accounts: set[str] = field(default_factory=set)  # lower case
    assets: set[str] = field(default_factory=set)
    everything: bool = False


async def changed_between(
    adapter: EvmAdapter,
    watch: ChainWatch,
    old: BlockPin | None,
    new: BlockPin,
    rounds: dict[str, bytes],
) -> Changed:
    """What changed on the chain in blocks old.number+1 .. new.number (everything
    without an old pin). `rounds`: each feed's last latestRoundData(), updated here."""
    out = Changed()
    if old is None or not old.number < new.number <= old.number + MAX_RANGE:
        out.everything = True  # the first look, a reorg below the old pin, a long gap
    try:
        lo, hi = (0, -1) if out.everything else (old.number + 1, new.number)  # type: ignore[union-attr]
        await asyncio.gather(
            _feeds(adapter, watch, new, rounds, out),
            _logs(adapter, watch, lo, hi, out),
            *(_block_txs(adapter, n, out) for n in range(lo, hi + 1) if watch.native),
        )
    except (ChainError, DecodeError, ValueError, KeyError, TypeError):
        out.everything = True
    return out


async def _feeds(
    adapter: EvmAdapter, watch: ChainWatch, pin: BlockPin, rounds: dict[str, bytes], out: Changed
) -> None:
    feeds = list(watch.feeds)
    if not feeds:
        return
    results = await adapter.read([Call(f, SEL_LATEST_ROUND_DATA) for f in feeds], pin)
    for feed, result in zip(feeds, results, strict=True):
        seen = result.data if result.success else b"reverted"
        if rounds.get(feed) != seen:
            if feed in rounds:
                out.assets.add(watch.feeds[feed])
            rounds[feed] = seen


async def _logs(adapter: EvmAdapter, watch: ChainWatch, lo: int, hi: int, out: Changed) -> None:
    if not watch.tokens or hi < lo:
        return
    flt = {"fromBlock": hex(lo), "toBlock": hex(hi), "address": watch.tokens, "topics": [TRANSFER]}
    logs = await adapter.rpc.request("eth_getLogs", [flt])
    if not isinstance(logs, list):
        raise TypeError("eth_getLogs did not answer a list")
    for log in logs:
        topics = log["topics"]
        if topics[0] == TRANSFER and len(topics) >= 3:
            out.accounts.update(_topic_address(t) for t in topics[1:3])


async def _block_txs(adapter: EvmAdapter, number: int, out: Changed) -> None:
    block = await adapter.rpc.request("eth_getBlockByNumber", [hex(number), True])
    for tx in block["transactions"]:
        for key in ("from", "to"):
            if tx.get(key):
                out.accounts.add(str(tx[key]).lower())


def affected(
    changed: Changed, chain: str, by_lower: Mapping[str, str], holdings: Holdings
) -> set[str]:
    """The watched accounts (checksummed; `by_lower`: lower case -> checksummed) one
    chain's changes may touch."""
    if changed.everything:
        return set(by_lower.values())
    out = {by_lower[a] for a in changed.accounts if a in by_lower}
    for asset in changed.assets:
        out |= holdings.assets.get(asset, set())
    out |= holdings.protocols.get(chain, set())
    return out
