"""The watcher (METHOD.md §14): follow every chain's head, recompute the watched
accounts whose inputs may have changed, raise and store alerts, wake the deliverer.

Each step pins every chain once (`Engine.pin`, the reads' own failover). When a pin
moved, the blocks since the last pin are scanned (api/watch/changes.py), and the
accounts they may touch, the accounts never computed, and every account once per
`sweep_s`, join the pending accounts. Pending accounts are recomputed most urgent
first: those a transfer named, then those a feed round, a protocol block or the
first look touched (closest to a threshold first, api/watch/rules.py `distance`),
then the sweep. They are recomputed through the API's compute-and-append path
(`Service.batch`, at exactly the step's pins), so every figure an alert names is a
stored snapshot, in slices sized to take about `watch.slice_s` (at most
`watch.batch` accounts). After each slice each watch's thresholds are evaluated on
the new reports (api/watch/rules.py), the crossings recorded with their snapshot
ids in the outbox (api/watch/store.py), and the deliverer woken. Live listeners
(api/watch/live.py) get every new report of their account.

The step stops between slices once a new head may be there (a websocket wake-up; or
`poll_s` since its pin, unless every chain has a live subscription), leaving the
rest pending for the next step at newer pins, which show the same changes and any
since. So a price round that touches thousands of holders never holds back the next
block's transfers; and there is still one loop, so no account is ever computed twice
at once or stored out of order.

Heads are polled every `watch.poll_s` (a cheap `eth_getBlockByNumber`), and a step
starts at once when a websocket `newHeads` subscription (where the endpoint offers
one) announces a block; nothing is pinned while nothing is watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.evm import BlockPin
from api.service import Served, Service
from api.watch.changes import ChainWatch, Changed, Holdings, affected, changed_between
from api.watch.heads import follow_heads
from api.watch.live import Hub
from api.watch.rules import Condition, crossings, distance, evaluate
from api.watch.store import NewAlert, WatchRow, WatchStore
from crossmargin.pipeline.figures import Request

log = logging.getLogger("api.watch")

Group = tuple[str, str]  # (target chain, method)
RELOAD_S = 2.0
TRANSFER, TOUCHED, SWEEP = 0, 1, 2  # pending accounts' priorities, most urgent first
GUESS_PER_ACCOUNT_S = 0.005  # one account's recomputation, until measured


@dataclass
class Step:
    """What one step did (for logs, tests and the benchmark)."""

    pins: dict[str, BlockPin | str] = field(default_factory=dict)
    moved: list[str] = field(default_factory=list)
    swept: bool = False
    recomputed: int = 0
    watched: int = 0
    pending: int = 0  # accounts left for the next step (at newer pins)
    alerts: list[str] = field(default_factory=list)
    snapshots: dict[str, str] = field(default_factory=dict)  # account -> snapshot id


class Watcher:
    def __init__(
        self,
        service: Service,
        store: WatchStore,
        hub: Hub | None = None,
        wake: Callable[[], None] | None = None,
        *,
        live_only: bool = False,
    ) -> None:
        """`live_only`: follow the hub's listeners only, never the stored watches (an
        API worker other than the one that watches them: `crossmargin serve --workers`)."""
        self.service = service
        self.live_only = live_only
        self.config = service.config
        self.cfg = service.config.watch
        self.store = store
        self.hub = hub
        self.wake = wake
        self.chains = {c.name: ChainWatch.of(self.config, c.name) for c in self.config.chains}
        self.watches: list[WatchRow] = []
        self.states: dict[tuple[str, str], dict[Condition, bool]] = {}
        self.holdings = Holdings()
        self.computed: set[tuple[Group, str]] = set()
        self.pending: dict[Group, dict[str, int]] = {}  # group -> account -> priority
        self.distance: dict[tuple[Group, str], float] = {}  # from a threshold, last look
        self.per_account_s = GUESS_PER_ACCOUNT_S  # measured, to size the slices
        self.last: dict[str, BlockPin] = {}
        self.rounds: dict[str, dict[str, bytes]] = {}  # chain -> feed -> latestRoundData
        self.last_sweep = 0.0
        self._version: tuple[int, str | None] | None = None
        self._checked = 0.0
        self._dirty_now = False
        self.on_step: Callable[[Step], None] | None = None
        self._woken = asyncio.Event()
        self._subscribed: set[str] = set()  # chains with a live newHeads subscription

    def reload_soon(self) -> None:
        """A watch changed (in this process) or a live listener came: look now."""
        self._checked = 0.0
        self._dirty_now = True

    async def _reload(self) -> None:
        if self.live_only:
            return
        now = time.monotonic()
        if now - self._checked < RELOAD_S:
            return
        self._checked = now
        version = await asyncio.to_thread(self.store.version)
        if version != self._version:
            self.watches = await asyncio.to_thread(self.store.all)
            self.states = await asyncio.to_thread(self.store.states)
            self._version = version
            self._dirty_now = True

    def groups(self) -> dict[Group, set[str]]:
        out: dict[Group, set[str]] = {}
        for w in self.watches:
            out.setdefault((w.target, w.method), set()).update(w.accounts)
        if self.hub is not None:
            for account, target in self.hub.keys():
                out.setdefault((target, self.config.risk.method), set()).add(account)
        return out

    async def run(self) -> None:
        """Step until cancelled: after `poll_s`, or as soon as a websocket new head
        arrives on any chain (api/watch/heads.py), or at once while accounts are
        pending."""
        heads = [
            asyncio.create_task(follow_heads(c, self._woken.set, self._subscription(c.name)))
            for c in self.config.chains
        ]
        try:
            while True:
                self._woken.clear()
                busy = False
                try:
                    step = await self.step()
                    busy = step.pending > 0
                    if self.on_step is not None:
                        self.on_step(step)
                except Exception:  # a bug or the store down: logged, tried again next step
                    log.exception("watch step failed")
                if busy:
                    await asyncio.sleep(0)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), self.cfg.poll_s)
        finally:
            for task in heads:
                task.cancel()
            await asyncio.gather(*heads, return_exceptions=True)

    def _subscription(self, chain: str) -> Callable[[bool], None]:
        def live(on: bool) -> None:
            if on:
                self._subscribed.add(chain)
            else:
                self._subscribed.discard(chain)

        return live

    async def step(self) -> Step:
        """One look at the chains; note what may have changed, recompute the pending
        accounts until a new head may be there, alert."""
        await self._reload()
        groups = self.groups()
        step = Step(watched=len(set().union(*groups.values())) if groups else 0)
        if not step.watched:
            self.pending.clear()
            return step
        step.pins = pins = await self.service.engine.pin()
        started = time.monotonic()
        step.moved = [
            n
            for n, p in pins.items()
            if isinstance(p, BlockPin) and (n not in self.last or self.last[n].hash != p.hash)
        ]
        step.swept = started - self.last_sweep >= self.cfg.sweep_s
        fresh = bool(step.moved or step.swept or self._dirty_now)
        if not fresh and not any(self.pending.values()):
            return step
        self._dirty_now = False
        changes = await self._changes(pins, step.moved)
        if step.swept:
            self.last_sweep = started
        self._enqueue(groups, changes, step.swept, fresh)
        for n in step.moved:  # what the scan found is pending now: recomputed at these
            pin = pins[n]  # pins or, if this step stops first, at newer ones
            assert isinstance(pin, BlockPin)
            self.last[n] = pin
        await self._drain(pins, step, started)
        step.pending = sum(len(p) for p in self.pending.values())
        return step

    async def _changes(
        self, pins: Mapping[str, BlockPin | str], moved: list[str]
    ) -> dict[str, Changed]:
        async def one(name: str) -> Changed:
            new, old = pins[name], self.last.get(name)
            assert isinstance(new, BlockPin)
            rounds = self.rounds.setdefault(name, {})
            adapter = self.service.adapters[name]
            return await changed_between(adapter, self.chains[name], old, new, rounds)

        done = await asyncio.gather(*(one(n) for n in moved))
        return dict(zip(moved, done, strict=True))

    def _enqueue(
        self, groups: dict[Group, set[str]], changes: dict[str, Changed], swept: bool, fresh: bool
    ) -> None:
        """Pending accounts: no longer watched ones dropped; when anything may have
        changed, those a transfer named, those touched or never computed, and on a
        sweep all, each at its most urgent priority."""
        self.pending = {
            g: {a: p for a, p in pending.items() if a in groups[g]}
            for g, pending in self.pending.items()
            if g in groups
        }
        if not fresh:
            return
        for group, accounts in groups.items():
            pending = self.pending.setdefault(group, {})

            def add(names: Iterable[str], priority: int, pending: dict[str, int] = pending) -> None:
                for a in names:
                    if pending.get(a, SWEEP + 1) > priority:
                        pending[a] = priority

            if swept:
                add(accounts, SWEEP)
            add((a for a in accounts if (group, a) not in self.computed), TOUCHED)
            by_lower = {a.lower(): a for a in accounts}
            for chain, changed in changes.items():
                if not changed.everything:
                    add((by_lower[a] for a in changed.accounts if a in by_lower), TRANSFER)
                add(affected(changed, chain, by_lower, self.holdings) & accounts, TOUCHED)

    def _preempted(self, started: float) -> bool:
        """A new head may be there: one announced, or `poll_s` since the step's pin
        (unless every chain would announce its new heads)."""
        if self._woken.is_set():
            return True
        polled = len(self._subscribed) < len(self.chains)
        return polled and time.monotonic() - started >= self.cfg.poll_s

    async def _drain(self, pins: Mapping[str, BlockPin | str], step: Step, started: float) -> None:
        """Recompute pending accounts, most urgent first, in slices of about `slice_s`,
        at least one slice, until a new head may be there."""
        for priority in (TRANSFER, TOUCHED, SWEEP):
            for group, pending in list(self.pending.items()):
                todo = self._nearest_first(group, [a for a, p in pending.items() if p == priority])
                i = 0
                while i < len(todo):
                    if step.recomputed and self._preempted(started):
                        return
                    size = int(self.cfg.slice_s / self.per_account_s)
                    size = max(1, min(self.cfg.batch, size))
                    await self._recompute(group, todo[i : i + size], pins, step)
                    i += size

    def _nearest_first(self, group: Group, accounts: list[str]) -> list[str]:
        """Closest to a threshold first; never computed (no distance yet) before all."""
        return sorted(accounts, key=lambda a: (self.distance.get((group, a), 0.0), a))

    async def _recompute(
        self, group: Group, chunk: list[str], pins: Mapping[str, BlockPin | str], step: Step
    ) -> None:
        """One slice: computed and stored, alerts recorded and the deliverer woken."""
        target, method = group
        t0 = time.monotonic()
        asked = [Request("margin", a, target) for a in chunk]
        results = await self.service.batch(asked, method, pins)
        pending = self.pending.get(group, {})
        reports: list[tuple[str, Served, dict[str, Any]]] = []
        for account, out in results:
            pending.pop(account, None)  # a failure too (as before: a later change or the sweep)
            if not isinstance(out, Served):
                log.warning("watch: %s on %s could not be computed", account, target)
                continue
            report = json.loads(out.body)
            reports.append((account, out, report))
            self.holdings.update(account, report)
            self.computed.add((group, account))
            step.snapshots[account] = out.snapshot_id
            if self.hub is not None and method == self.config.risk.method:
                self.hub.publish((account, target), out.snapshot_id, out.body)
        step.recomputed += len(chunk)
        alerts = self._alerts(group, reports)
        if alerts:
            step.alerts += await asyncio.to_thread(self.store.record, alerts)
            for a in alerts:
                self.states.setdefault((a.watch_id, a.account), {})[a.condition] = a.breached
            if self.wake is not None:
                self.wake()
        per_account = (time.monotonic() - t0) / len(chunk)
        self.per_account_s = (self.per_account_s + per_account) / 2

    def _alerts(
        self, group: Group, reports: list[tuple[str, Served, dict[str, Any]]]
    ) -> list[NewAlert]:
        """The crossings of one slice's reports; each account's distance from its
        nearest threshold noted for the order of later recomputations."""
        watches = [w for w in self.watches if (w.target, w.method) == group]
        if not watches:
            return []
        members = {w.id: set(w.accounts) for w in watches}
        out = []
        for account, served, report in reports:
            nearest = float("inf")
            for w in watches:
                if account not in members[w.id]:
                    continue
                nearest = min(nearest, distance(w.thresholds, report))
                now = evaluate(w.thresholds, report)
                before = self.states.get((w.id, account), {})
                for c in crossings(before, now):
                    out.append(_alert(w, account, c.condition, c.breached, served, report))
            self.distance[(group, account)] = nearest
        return out


def _alert(
    w: WatchRow,
    account: str,
    condition: Condition,
    breached: bool,
    served: Served,
    report: Mapping[str, Any],
) -> NewAlert:
    threshold = getattr(w.thresholds, condition)
    totals = report.get("totals") or {}
    value = {
        "health_below": totals.get("health"),
        "free_margin_below": totals.get("free_margin_usd"),
        "liquidatable": totals.get("liquidatable"),
        "partial": report.get("status"),
    }[condition]
    body = {
        "type": "crossmargin.alert",
        "watch_id": w.id,
        "account": account,
        "condition": condition,
        "kind": "breached" if breached else "recovered",
        "threshold": threshold,
        "value": value,
        "snapshot_id": served.snapshot_id,
        "target_chain": report.get("target_chain"),
        "method": w.method,
        "as_of": report.get("as_of"),
        "totals": totals,
        "status": report.get("status"),
    }
    return NewAlert(w.id, w.owner, account, condition, breached, served.snapshot_id, body)
