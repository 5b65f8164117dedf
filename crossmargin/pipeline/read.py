"""Read accounts' state on one chain: balances and price feeds in one multicall.

This is where adapters meet oracle: a plan of calls is built from config, sent as a single
block-pinned batch, and every slot is decoded on its own, so one bad token is one flagged
position, not a lost chain. `read_chain_many` reads any number of accounts with one pin
and shared batches (feeds once); one account is a batch of one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from adapters.asof import has_code
from adapters.balances import BalancePlan, BalanceRead
from adapters.calls import Call, CallResult
from adapters.evm import BlockPin, ChainReader, EvmAdapter
from adapters.proof import Verdict
from adapters.prover import BlockProof, HolderProof, Prover
from crossmargin.core.config import ChainConfig, Config
from crossmargin.core.errors import ChainError, DecodeError, PinUnavailable
from crossmargin.pipeline.protocol_read import ProtocolPlan, ProtocolRead
from oracle.feeds import plan_feeds, read_feeds
from oracle.validity import FeedReading, SequencerState

log = logging.getLogger("crossmargin.pipeline.read")


@dataclass(slots=True)
class ChainState:
    """Everything read from one chain for one computation, at one pinned block.

    `error` (a chain that could not be read) is the error's public form,
    `"<error_code>: <sentence>"` (crossmargin/core/errors.py): it is shown in reports and
    stored in snapshots, so it never carries a node's or a library's words."""

    chain: ChainConfig
    pin: BlockPin | None = None
    error: str | None = None
    balances: list[BalanceRead] = field(default_factory=list)
    feeds: list[FeedReading] = field(default_factory=list)
    sequencer: SequencerState | None = None
    protocols: list[ProtocolRead] = field(default_factory=list)
    # §1, only when the account is read at another address on some chain: the address
    # read on this chain, and whether it holds code at the pin (None: not checked)
    address: str | None = None
    has_code: bool | None = None
    # §13 verified mode only: the header and token proofs the batch shares, and this
    # account's proofs with a verdict per balance (adapters/prover.py)
    block_proof: BlockProof | None = None
    holder_proof: HolderProof | None = None

    @property
    def available(self) -> bool:
        return self.pin is not None and self.error is None


async def read_chain_many(
    config: Config,
    reader: ChainReader,
    accounts: Sequence[str],
    pin: BlockPin | None = None,
    addresses: Mapping[str, str] | None = None,
) -> list[ChainState]:
    """One state per account, all at one pin: every balance and the chain's feeds go out in
    one block-pinned multicall batch (chunked by the adapter), feeds read once and shared.
    Vault shares take one more multicall at the same pin (adapters/balances.py).

    `addresses` (METHOD.md §1): the address read on this chain for the accounts that
    are mapped to other addresses (on any chain); for those, whether the address holds
    code at the pin is asked beside the multicall (eth_getCode), for the report's note.

    A pin the endpoints cannot serve (reorged out, not yet propagated) restarts the whole
    read once at a fresh pin, unless the caller gave the pin: nothing of the first pin is
    kept, so two blocks are never mixed."""
    chain = reader.chain
    mapped = addresses or {}
    read_as = [mapped.get(a, a) for a in accounts]
    owners = list(dict.fromkeys(read_as))
    balances = BalancePlan([r for r in config.representations if r.chain == chain.name], owners)
    feeds = plan_feeds(config, chain)  # oracle/feeds.py: calls and decoding per feed kind
    protocols = ProtocolPlan(config, chain, owners)  # §12: the accounts' own figures
    calls: list[Call] = balances.calls + list(feeds.calls) + protocols.calls
    checked = list(dict.fromkeys(mapped[a] for a in accounts if a in mapped))
    code: dict[str, bool] = {}
    at: BlockPin | None = None
    for attempt in range(1 if pin is not None else 2):
        try:
            at = pin or await reader.pin()
            results, code = await _read_with_code(reader, calls, at, checked)
            reads = await balances.finish(reader, results[: len(balances.calls)], at)
            n_feeds = len(balances.calls) + len(feeds.calls)
            own = await protocols.finish(reader, results[n_feeds:], at)
            break
        except PinUnavailable as exc:
            if attempt or pin is not None:
                return _failed(chain, at, exc, accounts, mapped)
        except (ChainError, DecodeError) as exc:
            return _failed(chain, at, exc, accounts, mapped)
    assert at is not None
    feed_results = results[len(balances.calls) : n_feeds]  # the feed plan follows balances
    readings, sequencer = read_feeds(feeds, feed_results, at.timestamp)
    shared = list(readings)  # one list for every account: read once, valued once (§3)
    index = {a: i for i, a in enumerate(owners)}
    block, proofs = await _prove(reader, at, reads) if chain.verification == "proof" else (None, {})
    if not mapped and block is None:  # the common case, positionally: one state per account
        return [
            ChainState(chain, at, None, reads[a], shared, sequencer, own[index[a]])
            for a in accounts
        ]
    return [
        ChainState(
            chain,
            at,
            None,
            reads[a],
            shared,
            sequencer,
            own[index[a]],
            address=a if account in mapped else None,
            has_code=code.get(a) if account in mapped else None,
            block_proof=block,
            holder_proof=proofs.get(a),
        )
        for account, a in zip(accounts, read_as, strict=True)
    ]


async def _read_with_code(
    reader: ChainReader, calls: list[Call], at: BlockPin, checked: list[str]
) -> tuple[list[CallResult], dict[str, bool]]:
    """The multicall read and, concurrently, which of `checked` hold code at `at` (only
    a real adapter can say: a fake reader leaves it unknown)."""
    if not checked or not isinstance(reader, EvmAdapter):
        return await reader.read(calls, at), {}
    results, has = await asyncio.gather(reader.read(calls, at), has_code(reader, checked, at))
    return results, dict(zip(checked, has, strict=True))


async def _prove(
    reader: ChainReader, pin: BlockPin, reads: dict[str, list[BalanceRead]]
) -> tuple[BlockProof, dict[str, HolderProof]]:
    """§13: every balance proven against the pinned header. A reader that cannot fetch
    proofs (not an EvmAdapter) proves nothing: every position is unverified."""
    prover = getattr(reader, "prover", None)
    if isinstance(prover, Prover):
        return await prover.prove(pin, reads)
    block = BlockProof("", ())
    none = Verdict(None, False, "the reader cannot fetch proofs")
    return block, {a: HolderProof(a, (), tuple(none for _ in rows)) for a, rows in reads.items()}


def _failed(
    chain: ChainConfig,
    at: BlockPin | None,
    exc: ChainError | DecodeError,
    accounts: Sequence[str],
    mapped: Mapping[str, str],
) -> list[ChainState]:
    """The chain is unavailable: the details go to the log, the public form to the states
    (with the address that would have been read, for a mapped account)."""
    log.info("chain %s unreadable: %s", chain.name, exc)
    return [ChainState(chain, at, exc.public(chain.name), address=mapped.get(a)) for a in accounts]
