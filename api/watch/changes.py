"""Which watched accounts' inputs may have changed between two pins of a chain
(METHOD.md §14), from the chain's own records:

- `Transfer` logs of the chain's configured tokens (collateral and debt): the sender
  and the receiver;
- for a chain with a native-coin representation, the senders and receivers of the
  blocks' transactions (an internal transfer of the native coin leaves no trace a
  node indexes: the sweep catches it);
- `AnswerUpdated` logs of the chain's Chainlink feeds: every holder of the asset
  (`Holdings`, from each account's last report);
- any new block, for an account with a protocol position on the chain.

One `eth_getLogs` per chain per new block range (topics and addresses filtered at the
node), plus one block read per new block where the native coin is configured. A range
longer than MAX_RANGE, or a read that fails, marks every account of that chain as
changed: the conservative choice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.evm import BlockPin, EvmAdapter
from crossmargin.core.config import Config
from crossmargin.core.errors import ChainError, DecodeError

TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
ANSWER_UPDATED = "0x0559884fd3a460db3073b7fc896cc77986f16e378210ded43186175bf646fc5f"
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
    feeds: dict[str, str]  # feed address (lower case) -> asset
    native: bool

    @classmethod
    def of(cls, config: Config, name: str) -> ChainWatch:
        reps = [r for r in config.representations if r.chain == name]
        feeds = {
            f.address.lower(): a.symbol
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
    adapter: EvmAdapter, watch: ChainWatch, old: BlockPin, new: BlockPin
) -> Changed:
    """What changed on the chain in blocks old.number+1 .. new.number."""
    out = Changed()
    lo, hi = old.number + 1, new.number
    if hi < lo or hi - lo + 1 > MAX_RANGE:  # a reorg below the old pin, or a long gap
        out.everything = True
        return out
    try:
        await asyncio.gather(
            _logs(adapter, watch, lo, hi, out),
            *(_block_txs(adapter, n, out) for n in range(lo, hi + 1) if watch.native),
        )
    except (ChainError, DecodeError, ValueError, KeyError, TypeError):
        out.everything = True
    return out


async def _logs(adapter: EvmAdapter, watch: ChainWatch, lo: int, hi: int, out: Changed) -> None:
    addresses = [*watch.tokens, *watch.feeds]
    if not addresses:
        return
    flt = {
        "fromBlock": hex(lo),
        "toBlock": hex(hi),
        "address": addresses,
        "topics": [[TRANSFER, ANSWER_UPDATED]],
    }
    logs = await adapter.rpc.request("eth_getLogs", [flt])
    if not isinstance(logs, list):
        raise TypeError("eth_getLogs did not answer a list")
    for log in logs:
        topics = log["topics"]
        if topics[0] == TRANSFER and len(topics) >= 3:
            out.accounts.update(_topic_address(t) for t in topics[1:3])
        elif topics[0] == ANSWER_UPDATED:
            asset = watch.feeds.get(str(log["address"]).lower())
            if asset is not None:
                out.assets.add(asset)


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
