"""Read accounts' state on one chain: balances and price feeds in one multicall.

This is where adapters meet oracle: a plan of calls is built from config, sent as a single
block-pinned batch, and every slot is decoded on its own, so one bad token is one flagged
position, not a lost chain. `read_chain_many` reads any number of accounts with one pin
and shared batches (feeds once); one account is a batch of one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from adapters.balances import BalancePlan, BalanceRead
from adapters.calls import Call
from adapters.evm import BlockPin, ChainReader
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

    @property
    def available(self) -> bool:
        return self.pin is not None and self.error is None


async def read_chain_many(
    config: Config, reader: ChainReader, accounts: Sequence[str], pin: BlockPin | None = None
) -> list[ChainState]:
    """One state per account, all at one pin: every balance and the chain's feeds go out in
    one block-pinned multicall batch (chunked by the adapter), feeds read once and shared.
    Vault shares take one more multicall at the same pin (adapters/balances.py).

    A pin the endpoints cannot serve (reorged out, not yet propagated) restarts the whole
    read once at a fresh pin, unless the caller gave the pin: nothing of the first pin is
    kept, so two blocks are never mixed."""
    chain = reader.chain
    balances = BalancePlan([r for r in config.representations if r.chain == chain.name], accounts)
    feeds = plan_feeds(config, chain)  # oracle/feeds.py: calls and decoding per feed kind
    protocols = ProtocolPlan(config, chain, accounts)  # §12: the accounts' own figures
    calls: list[Call] = balances.calls + list(feeds.calls) + protocols.calls
    at: BlockPin | None = None
    for attempt in range(1 if pin is not None else 2):
        try:
            at = pin or await reader.pin()
            results = await reader.read(calls, at)
            reads = await balances.finish(reader, results[: len(balances.calls)], at)
            n_feeds = len(balances.calls) + len(feeds.calls)
            own = await protocols.finish(reader, results[n_feeds:], at)
            break
        except PinUnavailable as exc:
            if attempt or pin is not None:
                return _failed(chain, at, exc, accounts)
        except (ChainError, DecodeError) as exc:
            return _failed(chain, at, exc, accounts)
    assert at is not None
    feed_results = results[len(balances.calls) : n_feeds]  # the feed plan follows balances
    readings, sequencer = read_feeds(feeds, feed_results, at.timestamp)
    return [
        ChainState(chain, at, None, reads[a], list(readings), sequencer, own[i])
        for i, a in enumerate(accounts)
    ]


def _failed(
    chain: ChainConfig, at: BlockPin | None, exc: ChainError | DecodeError, accounts: Sequence[str]
) -> list[ChainState]:
    """The chain is unavailable: the details go to the log, the public form to the states."""
    log.info("chain %s unreadable: %s", chain.name, exc)
    return [ChainState(chain, at, exc.public(chain.name)) for _ in accounts]
