"""The API's computations: pinned, cached, coalesced, and stored as snapshots.

A request pins every chain (`Pins`, shared for `api.pin_ttl_s`), then looks its result
up by (kind, account, target, asset, method, pinned blocks, §6 estimates):

1. in this process's LRU (`hit`), or joined to the same computation already running
   (`coalesced`);
2. in the snapshot store, by the same key, so processes behind one database share
   results (`store`). The store is not trusted (METHOD.md §10): a document is served
   only if its id is the sha256 of its content and its request (kind, account, target,
   asset, method and config, every pin, the §6 estimates) is this one
   (`stored_check`); otherwise it is logged, counted
   (`crossmargin_store_rejected_total{reason}`) and the result computed afresh;
3. else the chains are read at the pins through the engine (reads shared across kinds
   and targets; concurrent reads share multicalls at the seam, `CoalescingReader`), and
   the report is computed by the engine and appended to the account's hash chain before
   it is served (`miss`). Requests that reach this step while others are being computed
   go out together: one pass (`Engine.evaluate_many`), one `Store.append_many`.

Results with a chain that could not be pinned are never cached: the next request
tries the chain again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import ValidationError

from adapters.evm import BlockPin, EvmAdapter
from api.cache import Coalescer
from api.metrics import Metrics
from api.peers import Peers
from api.pins import Pinned, Pins
from api.problems import Scrubber, as_of_type, problem_body
from api.store import Item, Store
from crossmargin.core.canonical import canonical, digest
from crossmargin.core.config import Config, config_hash, risk_document
from crossmargin.core.errors import AsOfUnavailable, CrossmarginError, InputError, Refused
from crossmargin.engine import Addresses, Engine, Pairs, Result
from crossmargin.pipeline.figures import Kind, Report, Request
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.snapshot import document
from crossmargin.pipeline.state_codec import encode
from crossmargin.pipeline.stored import expand, report_of, request_of
from oracle.estimation import RiskEstimates

log = logging.getLogger("api")

Source = Literal["hit", "coalesced", "store", "miss"]
PinKey = tuple[tuple[str, int, str] | tuple[str, None, None], ...]
ResultKey = tuple[Request, str, PinKey, str]
Found = tuple[str, str, int | None]  # a stored result: id, document, transparency-log leaf
Check = tuple[Request, str, PinKey, str]  # what a stored result must answer: request,
# config hash, pins, estimates key (`stored_check`)
_Finds = list[tuple[str, Check, "asyncio.Future[Served | None]"]]
_Reads = list[tuple[Request, "asyncio.Future[list[ChainState]]"]]
ESTIMATES_TTL_S = 1.0  # how long the current §6 estimates are reused
READ_CACHE = 512  # states of recent reads (many objects: kept few, for the GC's sake)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class _Pending:
    """A request waiting to be computed and stored with others (`_compute_and_store_soon`)."""

    method: str
    req: Request
    states: list[ChainState]
    est: RiskEstimates | None
    cache_key: str | None


@dataclass(frozen=True, slots=True)
class Served:
    body: bytes  # the report as JSON
    snapshot_id: str
    stored: bool  # found in the store rather than computed here
    leaf_index: int | None = None  # the snapshot's leaf in the transparency log


def _pin_key(pins: Mapping[str, Pinned]) -> PinKey:
    return tuple(
        (n, p.number, p.hash) if isinstance(p, BlockPin) else (n, None, None)
        for n, p in pins.items()
    )


def stored_check(
    sid: str,
    text: str,
    req: Request,
    config_hash: str,
    pins: PinKey,
    est_key: str,
    blobs: Mapping[str, str] | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """Why a stored document found by cache key may not answer `req` (None: it may),
    and the document as expanded to check it, served from when it may (expanding is
    most of a stored result's cost).

    `config_hash` names the method too (one config per method); `pins` and `est_key`
    are the request's pinned blocks and §6 estimates, as in its cache key; `blobs` the
    stored blobs the document names (checked against their hashes by `expand`)."""
    if not text.isascii() or digest(text) != sid:
        return "id_mismatch", {}
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or canonical(doc) != text:
            return "malformed", {}
        doc = expand(doc, blobs or {})
        asked = request_of(doc)
        inputs: dict[str, Any] = doc["inputs"]
        chains = {c["chain"]: c["pin"] for c in inputs["chains"]}
        stored_pins = {n: (p["number"], p["hash"]) if p else None for n, p in chains.items()}
        estimates = inputs["estimates"]
        config = inputs["parameters"]["config_hash"]
    except (CrossmarginError, ValueError, KeyError, TypeError):
        return "malformed", {}
    if asked != req or config != config_hash:
        return "request_mismatch", {}
    if stored_pins != {n: (str(num), h) if num is not None else None for n, num, h in pins}:
        return "pins_mismatch", {}
    if ("config" if estimates is None else digest(canonical(estimates))) != est_key:
        return "estimates_mismatch", {}
    return None, doc


class Service:
    """`engine` computes (and reads through its readers); `adapters` are the real chains
    behind it, for pinning and /v1/health."""

    def __init__(
        self,
        config: Config,
        engine: Engine,
        adapters: Mapping[str, EvmAdapter],
        store: Store,
        metrics: Metrics,
        peers: Peers | None = None,
    ) -> None:
        """`peers`: the other worker processes of `serve --workers N` (api/peers.py),
        which get the results computed here and give theirs."""
        self.config = config
        self.peers = peers
        self.engine = engine
        self.adapters = adapters
        self.store = store
        self.metrics = metrics
        self.scrub = Scrubber(config)
        self.methods = {m: engine.method(m) for m in ("var", "es")}
        self.hashes = {m: config_hash(c) for m, c in self.methods.items()}
        self.pins = Pins(self.adapters, config.api.pin_ttl_s)
        self.results: Coalescer[ResultKey, Served] = Coalescer(config.api.cache_entries)
        self.reads: Coalescer[tuple[str, Addresses, PinKey], list[ChainState]] = Coalescer(
            READ_CACHE
        )
        self._estimates: tuple[RiskEstimates | None, str] = (None, "config")
        self._estimates_until = 0.0  # time.monotonic() until which they are reused
        self.store_probe: asyncio.Future[Any] | None = None  # a write probe (/v1/health)
        self._pending: list[tuple[_Pending, asyncio.Future[Served]]] = []
        self._flushing = False
        self._tasks: set[asyncio.Task[list[Served | BaseException]]] = set()
        self._finds: _Finds = []  # store lookups waiting to go out together
        self._finding = False
        self._find_tasks: set[asyncio.Task[dict[str, Served | None]]] = set()
        self._reads_due: dict[PinKey, tuple[Mapping[str, Pinned], _Reads]] = {}
        self._read_tasks: set[asyncio.Task[dict[str, list[ChainState]]]] = set()

    async def start(self) -> None:
        """Store the configs snapshots will name (one per method), for replay."""
        for cfg in self.methods.values():
            await asyncio.to_thread(self.store.put_config, config_hash(cfg), risk_document(cfg))
        if self.peers is not None:
            self.peers.open(self._from_peer)

    def _share(self, key: ResultKey, served: Served) -> None:
        """A result this worker computed or found, to the other workers' caches, with
        the config it answers to."""
        if self.peers is not None:
            self.peers.send((self.hashes[key[1]], key, served))

    def _from_peer(self, message: object) -> None:
        """Another worker's result, kept if it answers to this worker's config of its
        method (a worker restarted on a changed config file differs): its key holds
        the request, the method, every pin and the §6 estimates, as ours do."""
        if not (isinstance(message, tuple) and len(message) == 3):
            return
        config, key, served = message
        if not (isinstance(key, tuple) and len(key) == 4 and isinstance(served, Served)):
            return
        if config == self.hashes.get(key[1]):
            self.results.put(key, dataclasses.replace(served, stored=True))

    async def close(self) -> None:
        if self.peers is not None:
            self.peers.close()
        if self.store_probe is not None:
            self.store_probe.cancel()
        for _, future in self._pending:
            future.cancel()
        for _, _, found in self._finds:
            found.cancel()
        for _, waiting in self._reads_due.values():
            for _, read in waiting:
                read.cancel()
        tasks = (*self._tasks, *self._find_tasks, *self._read_tasks)
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.results.close()
        await self.reads.close()
        await self.pins.close()

    def method(self, requested: str | None) -> str:
        return requested or self.config.risk.method

    def target(self, requested: str | None) -> str:
        """A chain name or id from the allowlist (already validated) -> its name."""
        return self.config.chain(requested or self.config.settlement_chain).name

    async def estimates(self, before: int | None = None) -> tuple[RiskEstimates | None, str]:
        """§6 sigma/rho from the engine's history store (None: config alone), and a key;
        `before` (§15): from the closes final before that time. The current estimates
        are looked up at most every ESTIMATES_TTL_S: the history store's check that its
        closes are unchanged is a query and a config hash (~0.5 ms in a worker thread),
        which every request had paid; new closes come once a day."""
        if before is None and time.monotonic() < self._estimates_until:
            return self._estimates
        est = await self.engine.estimates(before)
        if before is not None:
            return est, "config" if est is None else digest(canonical(encode(est)))
        if est is not self._estimates[0]:
            key = "config" if est is None else digest(canonical(encode(est)))
            self._estimates = (est, key)
        self._estimates_until = time.monotonic() + ESTIMATES_TTL_S
        return self._estimates

    def request(
        self,
        kind: Kind,
        account: str,
        target: str | None,
        asset: str | None,
        at: int | None = None,
        blocks: Sequence[tuple[str, int]] = (),
        addresses: Pairs | None = None,
    ) -> Request:
        """A request with its time (§15, chains by name) and its addresses per chain (§1:
        the config's, then the given ones)."""
        blocks_ = self.engine.blocks(blocks)
        return Request(
            kind, account, target, asset, at, blocks_, self.engine.addresses(account, addresses)
        )

    async def pins_for(self, req: Request) -> Mapping[str, Pinned]:
        """The chains' pins of now (shared, `Pins`), or of the time asked (§15)."""
        if req.as_of:
            return await self.engine.pin_as_of(req.at, req.blocks)
        return await self.pins.current()

    async def serve(
        self, req: Request, method: str, pins: Mapping[str, Pinned] | None = None
    ) -> tuple[Served, Source]:
        pins = pins if pins is not None else await self.pins_for(req)
        est, est_key = await self.estimates(Engine.cutoff(req.at, pins) if req.as_of else None)
        complete = all(isinstance(p, BlockPin) for p in pins.values())
        key = (req, method, _pin_key(pins), est_key)
        served, outcome = await self.results.get(
            key, lambda: self._compute(key, pins, est, complete), lambda _: complete
        )
        source: Source = "store" if outcome == "miss" and served.stored else outcome
        self.metrics.cache.labels("result", source).inc()
        if outcome == "miss" and complete:
            self._share(key, served)
        return served, source

    async def _compute(
        self, key: ResultKey, pins: Mapping[str, Pinned], est: RiskEstimates | None, complete: bool
    ) -> Served:
        req, method, pin_key, est_key = key
        cache_key = None
        if complete:
            cache_key = self._cache_key(req, method, pin_key, est_key)
            check = (req, self.hashes[method], pin_key, est_key)
            served = await self._stored_soon(cache_key, check)
            if served is not None:
                return served
        states, outcome = await self.reads.get(
            (req.account, req.addresses, pin_key),
            lambda: self._read(req, pins, pin_key),
            lambda _: complete,
        )
        self.metrics.cache.labels("reads", outcome).inc()
        served = await self._compute_and_store_soon(_Pending(method, req, states, est, cache_key))
        self.metrics.snapshots.inc()
        return served

    async def _stored_soon(self, cache_key: str, check: Check) -> Served | None:
        """The stored result under `cache_key` if it passes `check`, else None; the
        lookups of requests arriving meanwhile go together, into one worker thread that
        finds them in one query (`find_cached_many`) and checks each hit there too (one
        hop to a thread per request, not two), as the computations go together
        (`_compute_and_store_soon`)."""
        future: asyncio.Future[Served | None]
        future = asyncio.get_running_loop().create_future()
        self._finds.append((cache_key, check, future))
        if not self._finding:
            self._finding = True
            asyncio.get_running_loop().call_soon(self._flush_finds)
        return await future

    def _flush_finds(self) -> None:
        todo, self._finds = self._finds, []
        work = asyncio.to_thread(self._stored_many, {k: c for k, c, _ in todo})
        task = asyncio.get_running_loop().create_task(work)
        self._find_tasks.add(task)
        task.add_done_callback(self._find_tasks.discard)
        task.add_done_callback(lambda t: self._deliver_finds(t, todo))

    def _stored_many(self, wanted: dict[str, Check]) -> dict[str, Served | None]:
        """In a worker thread: per cache key found in the store, its result if it passes
        its check (`_stored`); each hit's log leaf comes from one query for them all."""
        found = self.store.find_cached_many([(k, c[0].account) for k, c in wanted.items()])
        ids = [sid for sid, _ in found.values()]
        leaves = self.store.log.leaf_indices(ids) if ids and self.store.has_log else {}
        return {
            k: self._stored((sid, text, leaves.get(sid)), *wanted[k])
            for k, (sid, text) in found.items()
        }

    def _deliver_finds(self, task: asyncio.Task[dict[str, Served | None]], todo: _Finds) -> None:
        for key, _, future in todo:
            _settle(future, task, operator.methodcaller("get", key))
        if self._finds:
            self._flush_finds()
        else:
            self._finding = False

    def _cache_key(self, req: Request, method: str, pin_key: PinKey, est_key: str) -> str:
        """The store's key of a result: the request, the config, the estimates, the pins."""
        parts = [req.kind, req.account, req.target, req.asset, self.hashes[method]]
        extra = req.as_json()  # §15 time, §1 addresses: in the key only when given
        past = [{k: extra[k] for k in ("at", "blocks", "addresses") if k in extra}]
        return digest(canonical([*parts, est_key, pin_key, *(past if past[0] else [])]))

    def _stored(
        self, found: Found, req: Request, config_hash: str, pins: PinKey, est_key: str
    ) -> Served | None:
        """In a worker thread: the stored result, if it passes `stored_check`; else
        None (logged, counted)."""
        sid, text, leaf = found
        blobs = self.store.blobs_for(text, remembered=True)
        reason, doc = stored_check(sid, text, req, config_hash, pins, est_key, blobs)
        if reason is None:
            try:
                body = report_of(doc).model_dump_json().encode()
            except (CrossmarginError, ValidationError, ValueError):
                reason = "malformed"
            else:
                return Served(body, sid, True, leaf)
        self.metrics.store_rejected.labels(reason).inc()
        log.warning(
            "stored snapshot %s not served for %s of %s: %s", sid, req.kind, req.account, reason
        )
        return None

    async def _compute_and_store_soon(self, item: _Pending) -> Served:
        """Requests computed while others are in flight go out together: one worker
        thread computes them in one pass and appends them in one transaction (Nagle's
        rule, as the reads at the seam). Each request still gets its own outcome."""
        future: asyncio.Future[Served] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush_pending)
        return await future

    def _flush_pending(self) -> None:
        todo, self._pending = self._pending, []
        work = asyncio.to_thread(self._compute_and_store_many, [i for i, _ in todo])
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda t: self._deliver(t, [f for _, f in todo]))

    def _deliver(
        self,
        task: asyncio.Future[list[Served | BaseException]],
        futures: list[asyncio.Future[Served]],
    ) -> None:
        outcomes: list[Served | BaseException]
        if task.cancelled():
            outcomes = [asyncio.CancelledError() for _ in futures]
        elif (exc := task.exception()) is not None:
            outcomes = [exc for _ in futures]
        else:
            outcomes = task.result()
        for future, outcome in zip(futures, outcomes, strict=True):
            if future.done():
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        if self._pending:
            self._flush_pending()
        else:
            self._flushing = False

    def _compute_and_store_many(self, items: list[_Pending]) -> list[Served | BaseException]:
        """In a worker thread, for the batcher: each item's outcome; a store failure is
        the outcome of every item it kept from being stored."""
        outcomes, store_failure = self._compute_and_append(items)
        done: list[Served | BaseException] = []
        for o in outcomes:
            if o is not None:
                done.append(o)
            else:  # only a failed append leaves an item without an outcome
                assert store_failure is not None
                done.append(store_failure)
        return done

    def _compute_and_append(
        self, items: list[_Pending]
    ) -> tuple[list[Served | CrossmarginError | None], Exception | None]:
        """The engine's pure step for every item (grouped by method, estimates and pins,
        each group in one pass), then one append of them all (§10). Per item: served,
        or its own engine error, or None where the append failed (the failure beside)."""
        out: list[Served | CrossmarginError | None] = [None] * len(items)
        groups: dict[tuple[object, ...], list[int]] = {}
        for i, it in enumerate(items):
            pins = tuple((st.pin.hash if st.pin else st.error) for st in it.states)
            # an account asked with other §1 addresses has other states: another pass
            groups.setdefault((it.method, id(it.est), pins, it.req.addresses), []).append(i)
        ok: list[tuple[int, Result]] = []
        for idx in groups.values():
            first = items[idx[0]]
            by_account = {items[i].req.account: items[i].states for i in idx}
            reqs = [items[i].req for i in idx]
            results = self.engine.evaluate_many(reqs, by_account, first.est, first.method)
            for i, r in zip(idx, results, strict=True):
                if r.error is not None:
                    out[i] = r.error
                else:
                    ok.append((i, r))
        if not ok:
            return out, None
        try:
            stored = self.store.append_many([self._item_for(items[i], r.unwrap()) for i, r in ok])
        except Exception as exc:  # the store's failure: whoever called decides
            return out, exc
        for (i, r), st in zip(ok, stored, strict=True):
            out[i] = Served(r.unwrap().model_dump_json().encode(), st.id, False, st.leaf_index)
        return out, None

    def _item_for(self, it: _Pending, report: Report) -> Item:
        cfg = self.methods[it.method]
        req, states, est = it.req, it.states, it.est
        return Item(
            req.account,
            req.kind,
            lambda prev: document(cfg, req, states, report, prev, est),
            target=req.target,
            asset=req.asset,
            cache_key=it.cache_key,
        )

    async def _read(
        self, req: Request, pins: Mapping[str, Pinned], pin_key: PinKey
    ) -> list[ChainState]:
        """One account's states, read with those of the requests arriving meanwhile at
        the same pins: one `Engine.read` of them all, which plans the reads and reads
        the feeds once for the group, not once per account (the multicalls are shared at
        the seam either way, `CoalescingReader`). About a past time (§15) a request is
        read alone: a node that lacks the old state refuses that request only."""
        if req.as_of:
            return (await self._read_many([req], pins))[req.account]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[ChainState]] = loop.create_future()
        if not self._reads_due:
            loop.call_soon(self._flush_reads)
        self._reads_due.setdefault(pin_key, (pins, []))[1].append((req, future))
        return await future

    def _flush_reads(self) -> None:
        due, self._reads_due = self._reads_due, {}
        for pins, waiting in due.values():
            groups: list[tuple[set[str], _Reads]] = []  # an account once per read (§1)
            for req, future in waiting:
                free = next((g for g in groups if req.account not in g[0]), None)
                if free is None:
                    groups.append(free := (set(), []))
                free[0].add(req.account)
                free[1].append((req, future))
            for _, group in groups:
                work = self._read_many([r for r, _ in group], pins)
                task = asyncio.get_running_loop().create_task(work)
                self._read_tasks.add(task)
                task.add_done_callback(self._read_tasks.discard)
                task.add_done_callback(functools.partial(_deliver_reads, group))

    async def _read_many(
        self, reqs: Sequence[Request], pins: Mapping[str, Pinned]
    ) -> dict[str, list[ChainState]]:
        """Every account on every chain at the pins: the one place the service reads,
        through the engine (shared multicalls per chain). About a past time (§15), a
        node that lacks the old state refuses the request (`Engine.check_as_of`)."""
        accounts = [r.account for r in reqs]
        addresses = {r.account: r.addresses for r in reqs}
        per_account = await self.engine.read(accounts, pins, addresses)
        for states in per_account:
            if reqs and reqs[0].as_of:
                self.engine.check_as_of(states)
            for state in states:
                if state.error is not None:
                    state.error = self.scrub(state.error)
        return dict(zip(accounts, per_account, strict=True))

    async def _batch_fresh(
        self,
        reqs: list[Request],
        method: str,
        pins: Mapping[str, Pinned],
        est: RiskEstimates | None,
        pin_key: PinKey,
        est_key: str,
    ) -> dict[str, Served]:
        """A batch's uncached requests: looked up in the store (with the lookups of every
        request meanwhile, `_stored_soon`), those not found read together, computed
        and stored by the shared batcher; each result cached. An account the engine gives
        a problem is left out (`batch` serves it alone). The store first, then the
        chains: under `serve --workers N` a result is often in the store (computed by
        another worker), and reading it from the chains too cost more than waiting for
        the one lookup query."""
        keys = [self._cache_key(r, method, pin_key, est_key) for r in reqs]
        config = self.hashes[method]
        results: list[Served | None] = await asyncio.gather(
            *(
                self._stored_soon(k, (r, config, pin_key, est_key))
                for k, r in zip(keys, reqs, strict=True)
            )
        )
        todo = [i for i, served in enumerate(results) if served is None]
        states = await self._read_many([reqs[i] for i in todo], pins) if todo else {}
        computed = await asyncio.gather(
            *(
                self._compute_and_store_soon(
                    _Pending(method, reqs[i], states[reqs[i].account], est, keys[i])
                )
                for i in todo
            ),
            return_exceptions=True,
        )
        for i, outcome in zip(todo, computed, strict=True):
            if isinstance(outcome, Served):
                results[i] = outcome
            elif not isinstance(outcome, CrossmarginError):
                raise outcome  # the store's failure (or a bug): the batch's
        done: dict[str, Served] = {}
        for req, served in zip(reqs, results, strict=True):
            if served is None:
                continue
            self.results.put(key := (req, method, pin_key, est_key), served)
            self._share(key, served)
            done[req.account] = served
            self.metrics.cache.labels("result", "store" if served.stored else "miss").inc()
            if not served.stored:
                self.metrics.snapshots.inc()
        return done

    async def batch(
        self,
        asked: list[Request],
        method: str,
        pins: Mapping[str, Pinned] | None = None,
    ) -> list[tuple[str, Served | bytes]]:
        """Margin of many accounts at one set of pins (all about one time): each its own
        snapshot; a failure is that account's problem (as problem+json bytes), not the
        batch's. Accounts not already cached are read together through the engine (one
        multicall batch per chain) while looked up in the store (with the lookups of every
        request meanwhile), and the rest computed and stored by the one batcher of every
        request (`_compute_and_store_soon`): concurrent batches share its passes and
        transactions instead of racing for the store's write lock from threads of their
        own. `pins`: the blocks to read at (the watcher's new pin set), else the request's."""
        first = asked[0]
        pins = pins if pins is not None else await self.pins_for(first)
        est, est_key = await self.estimates(Engine.cutoff(first.at, pins) if first.as_of else None)
        pin_key = _pin_key(pins)
        done: dict[str, Served] = {}
        by_account = {r.account: r for r in asked}
        if all(isinstance(p, BlockPin) for p in pins.values()):
            reqs = [
                r for r in by_account.values() if (r, method, pin_key, est_key) not in self.results
            ]
            if len(reqs) > 1:
                done = await self._batch_fresh(reqs, method, pins, est, pin_key, est_key)

        async def one(account: str) -> tuple[str, Served | bytes]:
            if account in done:
                return account, done[account]
            try:
                served, _ = await self.serve(by_account[account], method, pins)
            except Refused as exc:
                return account, problem_body(422, self.scrub(str(exc)), "/problems/refused")
            except AsOfUnavailable as exc:
                return account, problem_body(409, self.scrub(str(exc)), as_of_type(exc))
            except InputError as exc:
                return account, problem_body(400, self.scrub(str(exc)), "/problems/bad-input")
            except CrossmarginError as exc:
                log.warning("batch item %s failed: %s", account, exc)
                return account, problem_body(500, "this account could not be computed")
            return account, served

        return list(await asyncio.gather(*(one(r.account) for r in asked)))


def _deliver_reads(group: _Reads, task: asyncio.Future[dict[str, list[ChainState]]]) -> None:
    """A grouped read's outcome to each of its requests (its failure to every one)."""
    for req, future in group:
        _settle(future, task, operator.itemgetter(req.account))


def _settle(future: asyncio.Future[T], task: asyncio.Future[R], pick: Callable[[R], T]) -> None:
    """One waiter of a grouped task (store lookups, reads): the task's cancellation, its
    failure, or the waiter's part of its result (`pick`); nothing if the waiter left."""
    if future.done():
        return
    if task.cancelled():
        future.cancel()
    elif (exc := task.exception()) is not None:
        future.set_exception(exc)
    else:
        future.set_result(pick(task.result()))
