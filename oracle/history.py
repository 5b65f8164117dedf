"""Daily closes from Chainlink feed rounds: walk getRoundData back, store each UTC day's close.

The close of day D is the last round (in round order) updated before midnight after D.
It is final once that midnight is at or before the pinned block's timestamp: a later
round is mined later and stamped later. So only complete days are stored, and a stored
close never changes.

Each chain is walked at one pinned block. Per step, every feed still walking on that
chain contributes up to `history.batch_rounds` getRoundData calls (or one phase lookup)
to ONE multicall through the chain's adapter, so the RPC requests of a sync are about
(rounds to walk / batch_rounds) per chain, whatever the number of feeds.

Resumable and incremental (oracle/store.py, `FeedSync`):
- the backfill walks from the newest round back to `history.days` before the pin; its
  cursor is saved with every batch, so an interrupted sync continues where it stopped;
- a later sync walks only from the new newest round back to the last synced day;
- if the round stored as newest no longer reads the same (a restarted devnet, another
  chain behind the URL), that feed's stored history is dropped and walked again.

Chainlink round ids are (phase << 64) | aggregator round. Within a phase ids count down
to 1; before that, the proxy's phaseAggregators(phase - 1).latestRound() is the previous
phase's last round. Ids below 2^64 (a bare aggregator, the devnet's mocks) have no
earlier phase. Rounds that revert or are empty are skipped; two batches without a round
end the walk.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from adapters import calls as c
from adapters.calls import Call, CallResult, RoundData
from adapters.evm import BlockPin, ChainReader
from crossmargin.core.config import ChainConfig, ChainlinkFeedConfig, Config
from crossmargin.core.errors import ChainError, DecodeError
from oracle.feeds import (
    decode_address,
    decode_round,
    get_round_data,
    latest_round,
    phase_aggregator,
)
from oracle.store import DailyClose, FeedKey, FeedSync, HistoryStore

DAY_S = 86_400
PHASE_SHIFT = 64
AGG_MASK = (1 << PHASE_SHIFT) - 1
MAX_EMPTY_BATCHES = 2

Progress = Callable[[str, int, int], None]  # chain name, days done, days to do

log = logging.getLogger("oracle.history")


def day_of(ts: int) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def midnight_after(day: date) -> int:
    """The first second of the next UTC day: rounds updated before it close `day`."""
    return (day - date(1970, 1, 1)).days * DAY_S + DAY_S


def days_closed_by(lo: int, hi: int, window_start: date) -> list[date]:
    """Days D >= window_start with lo < midnight_after(D) <= hi, oldest first."""
    if hi <= lo:
        return []
    first = max(day_of(lo), window_start)  # midnight_after(day_of(lo)) > lo
    last = day_of(hi - DAY_S) if hi >= DAY_S else None  # midnight_after(last) <= hi
    if last is None or last < first:
        return []
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def closes_for(rounds: Sequence[RoundData], days: Sequence[date]) -> list[tuple[date, RoundData]]:
    """For each day, the last round (by round order) updated before midnight after it.

    `rounds` in ascending round order, their timestamps non-decreasing."""
    times = [r.updated_at for r in rounds]
    out = []
    for d in days:
        k = bisect_left(times, midnight_after(d))
        if k > 0:
            out.append((d, rounds[k - 1]))
    return out


@dataclass
class _Walk:
    """One backward walk over one feed's rounds. The days it closes lie in (floor, upper]:
    `upper` falls to the oldest round found, so every batch closes the days between it
    and the previous one; done once a round older than `target` is found."""

    key: FeedKey
    proxy: str
    next_id: int | None  # the next round id to read (descending); None: no more rounds
    upper: int
    floor: int
    target: int
    window_start: date
    backfill: bool  # True: moves the backfill cursor; False: catches up to `latest`
    latest: RoundData | None = None  # catch-up: the newest round at the pin
    stop_id: int | None = None  # catch-up: the stored newest round; nothing below it is read
    pending_phase: int | None = None  # waiting for phaseAggregators(phase)
    pending_agg: str | None = None  # waiting for latestRound() of a phase's aggregator
    ids: list[int] = field(default_factory=list)
    cursor: int | None = None  # the lowest round id read so far
    empty: int = 0
    done: bool = False

    def calls(self, batch: int) -> list[Call]:
        if self.pending_agg is not None:
            return [latest_round(self.pending_agg)]
        if self.pending_phase is not None:
            return [phase_aggregator(self.proxy, self.pending_phase)]
        assert self.next_id is not None
        agg, phase = self.next_id & AGG_MASK, self.next_id >> PHASE_SHIFT
        low = max(1, agg - batch + 1)
        if self.stop_id is not None and self.stop_id >> PHASE_SHIFT == phase:
            low = max(low, min(agg, self.stop_id & AGG_MASK))
        self.ids = [(phase << PHASE_SHIFT) | a for a in range(agg, low - 1, -1)]
        return [get_round_data(self.proxy, i) for i in self.ids]

    def step(self, results: Sequence[CallResult]) -> list[tuple[date, RoundData]]:
        """Consume the results of `calls()`; return the (day, close) pairs settled."""
        if self.pending_agg is not None:
            phase, self.pending_agg, self.pending_phase = self.pending_phase, None, None
            try:
                last = c.decode_uint(results[0], "latestRound()") & AGG_MASK
            except DecodeError:
                last = 0
            assert phase is not None
            self.move_to((phase << PHASE_SHIFT) | last if last else None)
            return []
        if self.pending_phase is not None:
            try:
                agg: str | None = decode_address(results[0], "phaseAggregators()")
            except DecodeError:
                agg = None
            if agg is None or int(agg, 16) == 0:
                self.pending_phase = None
                self.move_to(None)
            else:
                self.pending_agg = agg
            return []
        found = []
        for rid, res in zip(self.ids, results, strict=True):
            try:
                rd = decode_round(res)
            except DecodeError:
                continue  # a missing round reverts ("No data present")
            if rd.updated_at > 0 and rd.round_id == rid:
                found.append(rd)
        self.cursor = self.ids[-1]
        self.move_below(self.cursor)
        if not found:
            self.empty += 1
            self.done = self.done or self.empty >= MAX_EMPTY_BATCHES
            return []
        self.empty = 0
        found.reverse()  # ascending round order
        oldest = found[0].updated_at
        settled = closes_for(
            found, days_closed_by(max(oldest, self.floor), self.upper, self.window_start)
        )
        self.upper = min(self.upper, oldest)
        self.done = self.done or oldest < self.target
        return settled

    def move_below(self, round_id: int) -> None:
        """Continue with the round before `round_id` (in this phase, or the one before)."""
        if round_id & AGG_MASK > 1:
            self.move_to(round_id - 1)
        elif round_id >> PHASE_SHIFT > 1:
            self.pending_phase = (round_id >> PHASE_SHIFT) - 1
        else:
            self.move_to(None)

    def move_to(self, next_id: int | None) -> None:
        self.next_id = next_id
        self.done = self.done or next_id is None

    def days_left(self) -> int:
        return 0 if self.done else len(days_closed_by(self.floor, self.upper, self.window_start))


@dataclass
class FeedResult:
    chain: str
    asset: str
    feed: str
    closes_written: int = 0
    reset: bool = False
    skipped: str | None = None
    backfill_done: bool = False


@dataclass
class SyncReport:
    feeds: list[FeedResult]
    multicalls: dict[str, int]  # chain -> multicalls sent (reader.read calls)
    errors: dict[str, str]  # chain -> why it could not be synced (the rest still are)


async def sync_history(
    config: Config,
    readers: Mapping[str, ChainReader],
    store: HistoryStore,
    progress: Progress | None = None,
) -> SyncReport:
    """Sync every Chainlink feed on the chains in `readers`, the chains concurrently. A
    chain that fails is reported in `errors`; what it stored before failing is kept."""

    async def one(reader: ChainReader) -> tuple[list[FeedResult], int] | str:
        try:
            return await sync_chain(config, reader, store, progress)
        except (ChainError, DecodeError) as exc:
            log.info("history sync of %s failed: %s", reader.chain.name, exc)
            return exc.public(reader.chain.name)  # the code and sentence, never node text

    names = list(readers)
    outcomes = await asyncio.gather(*(one(readers[n]) for n in names))
    report = SyncReport([], {}, {})
    for name, outcome in zip(names, outcomes, strict=True):
        if isinstance(outcome, str):
            report.errors[name] = outcome
        else:
            report.feeds += outcome[0]
            report.multicalls[name] = outcome[1]
    return report


def _chain_feeds(config: Config, chain: ChainConfig) -> list[tuple[str, ChainlinkFeedConfig]]:
    seen: dict[str, tuple[str, ChainlinkFeedConfig]] = {}
    for a in config.assets:
        for f in a.feeds:
            if f.chain == chain.name and isinstance(f, ChainlinkFeedConfig):
                seen.setdefault(f.address, (a.symbol, f))
    return list(seen.values())


async def sync_chain(
    config: Config,
    reader: ChainReader,
    store: HistoryStore,
    progress: Progress | None = None,
) -> tuple[list[FeedResult], int]:
    """One chain's Chainlink feeds at one pinned block: (per-feed results, multicalls)."""
    chain = reader.chain
    feeds = _chain_feeds(config, chain)
    if not feeds:
        return [], 0
    pin = await reader.pin()
    stored = store.states()
    # Step 0, one multicall: every feed's latest round and decimals, and the round stored
    # as its newest, read again to see whether the stored history is still this feed's.
    head: list[Call] = []
    for _, f in feeds:
        head += [c.latest_round_data(f.address), c.decimals(f.address)]
        st = stored.get((chain.chain_id, f.address))
        if st is not None:
            head.append(get_round_data(f.address, int(st.newest_round_id)))
    answers = iter(await reader.read(head, pin))
    window = day_of(pin.timestamp) - timedelta(days=config.history.days)
    results: dict[FeedKey, FeedResult] = {}
    states: dict[FeedKey, FeedSync] = {}
    walks: list[_Walk] = []
    for asset, f in feeds:
        key = (chain.chain_id, f.address)
        res = results[key] = FeedResult(chain.name, asset, f.address)
        st = stored.get(key)
        latest_res, dec_res = next(answers), next(answers)
        check = next(answers) if st is not None else None
        planned = _plan_feed(
            store, pin, window, res, (asset, f.address), st, check, latest_res, dec_res
        )
        if planned is not None:
            states[key], feed_walks = planned
            walks += feed_walks
    store.save(states.values(), [])
    multicalls = 1 + await _walk(config, reader, store, pin, walks, states, results, progress)
    for key, st in states.items():
        results[key].backfill_done = st.backfill_done
    return list(results.values()), multicalls


def _plan_feed(
    store: HistoryStore,
    pin: BlockPin,
    window: date,
    res: FeedResult,
    feed: tuple[str, str],
    st: FeedSync | None,
    check: CallResult | None,
    latest_res: CallResult,
    dec_res: CallResult,
) -> tuple[FeedSync, list[_Walk]] | None:
    """A feed's sync state after step 0 and the walks it still needs (None: skipped)."""
    asset, proxy = feed
    key = (pin.chain_id, proxy)
    try:
        latest, decimals = decode_round(latest_res), c.decode_decimals(dec_res)
    except DecodeError as exc:
        res.skipped = f"unreadable: {exc}"
        return None
    if st is not None and pin.timestamp < st.synced_until:
        res.skipped = "the pinned block is older than the last sync"
        return None
    if st is not None and not _still_same(st, check, decimals):
        store.reset(key)
        res.reset, st = True, None
    walks: list[_Walk] = []
    if st is None:
        st = FeedSync(
            chain_id=pin.chain_id,
            feed=proxy,
            asset=asset,
            decimals=decimals,
            newest_round_id=str(latest.round_id),
            newest_answer=str(latest.answer),
            newest_updated_at=latest.updated_at,
            synced_until=pin.timestamp,
            window_start=window,
        )
    elif days_closed_by(st.synced_until, pin.timestamp, st.window_start):
        walks.append(_catch_up(key, proxy, st, latest, pin))
    else:  # no day completed since the last sync: nothing to store yet
        _advance(st, latest, pin.timestamp)
    if window < st.window_start:  # history.days grew: extend the backfill
        st.window_start, st.backfill_done = window, False
    if not st.backfill_done:
        w = _backfill(key, proxy, st)
        if w.done:
            st.backfill_done = True
        else:
            walks.append(w)
    return st, walks


async def _walk(
    config: Config,
    reader: ChainReader,
    store: HistoryStore,
    pin: BlockPin,
    walks: list[_Walk],
    states: dict[FeedKey, FeedSync],
    results: dict[FeedKey, FeedResult],
    progress: Progress | None,
) -> int:
    """Step every walk one batch of rounds per multicall until all are done, storing each
    batch's closes with the cursors (resumable after any batch). Returns the multicalls."""
    chain, multicalls = reader.chain.name, 0
    todo = {id(w): w.days_left() for w in walks}
    total, finished = sum(todo.values()), 0
    if progress:
        progress(chain, 0, total)
    batch = config.history.batch_rounds
    while walks:
        plan: list[tuple[_Walk, int, int]] = []
        calls: list[Call] = []
        for w in walks:
            cs = w.calls(batch)
            plan.append((w, len(calls), len(calls) + len(cs)))
            calls += cs
        out = await reader.read(calls, pin)
        multicalls += 1
        rows: list[DailyClose] = []
        for w, a, b in plan:
            rows += _step(w, states[w.key], results[w.key], out[a:b], pin)
            left = w.days_left()
            finished += todo[id(w)] - left
            todo[id(w)] = left
        store.save(states.values(), rows)  # closes and cursors together: resumable here
        walks = [w for w in walks if not w.done]
        if progress:
            progress(chain, finished, total)
    return multicalls


def _step(
    w: _Walk, st: FeedSync, res: FeedResult, out: list[CallResult], pin: BlockPin
) -> list[DailyClose]:
    """One batch of a walk's rounds: the closes it settles, the feed's cursors moved."""
    settled = w.step(out)
    rows = [_row(st, d, rd) for d, rd in settled]
    res.closes_written += len(settled)
    if w.backfill and w.cursor is not None:
        st.oldest_round_id, st.oldest_updated_at = str(w.cursor), w.upper
    if w.done:
        if w.backfill:
            st.backfill_done = True
        elif w.latest is not None:
            _advance(st, w.latest, pin.timestamp)
    return rows


def _catch_up(key: FeedKey, proxy: str, st: FeedSync, latest: RoundData, pin: BlockPin) -> _Walk:
    """From the newest round back to the last synced day: the days completed since."""
    return _Walk(
        key,
        proxy,
        latest.round_id,
        pin.timestamp,
        st.synced_until,
        midnight_after(day_of(st.synced_until)),
        st.window_start,
        backfill=False,
        latest=latest,
        stop_id=int(st.newest_round_id),
    )


def _backfill(key: FeedKey, proxy: str, st: FeedSync) -> _Walk:
    """From the backfill cursor (or the newest round, the first time) back to the window."""
    target = midnight_after(st.window_start)
    if st.oldest_round_id is None:
        return _Walk(
            key,
            proxy,
            int(st.newest_round_id),
            st.synced_until,
            -1,
            target,
            st.window_start,
            backfill=True,
        )
    upper = st.oldest_updated_at if st.oldest_updated_at is not None else st.synced_until
    w = _Walk(key, proxy, None, upper, -1, target, st.window_start, backfill=True)
    if upper < target:
        w.done = True
    else:
        w.move_below(int(st.oldest_round_id))
    return w


def _advance(st: FeedSync, latest: RoundData, synced_until: int) -> None:
    st.newest_round_id, st.newest_answer = str(latest.round_id), str(latest.answer)
    st.newest_updated_at, st.synced_until = latest.updated_at, synced_until


def _still_same(st: FeedSync, check: CallResult | None, decimals: int) -> bool:
    """Does the round stored as newest still read the same (same feed, same history)?"""
    if check is None or decimals != st.decimals:
        return False
    try:
        rd = decode_round(check)
    except DecodeError:
        return False
    return str(rd.answer) == st.newest_answer and rd.updated_at == st.newest_updated_at


def _row(st: FeedSync, day: date, rd: RoundData) -> DailyClose:
    return DailyClose(
        chain_id=st.chain_id,
        feed=st.feed,
        day=day,
        asset=st.asset,
        round_id=str(rd.round_id),
        answer=str(rd.answer),
        decimals=st.decimals,
        updated_at=rd.updated_at,
    )
