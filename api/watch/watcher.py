"""The watcher (METHOD.md §14): follow every chain's head, recompute the watched
accounts whose inputs may have changed, raise and store alerts, wake the deliverer.

Each step pins every chain once (`Engine.pin`, the reads' own failover). When a pin
moved, the blocks since the last pin are scanned (api/watch/changes.py); the accounts
they may touch, the accounts never computed, and every account once per `sweep_s`,
are recomputed through the API's compute-and-append path (`Service.batch`, in
batches of `watch.batch`, at exactly the new pins), so every figure an alert names is
a stored snapshot. Then each watch's thresholds are evaluated on the new reports
(api/watch/rules.py) and the crossings recorded with their snapshot ids in the outbox
(api/watch/store.py) before the deliverer is woken. Live listeners (api/watch/live.py)
get every new report of their account.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.evm import BlockPin
from api.service import Served, Service
from api.watch.changes import ChainWatch, Changed, Holdings, affected, changed_between
from api.watch.heads import follow_heads
from api.watch.live import Hub
from api.watch.rules import Condition, crossings, evaluate
from api.watch.store import NewAlert, WatchRow, WatchStore
from crossmargin.pipeline.figures import Request

log = logging.getLogger("api.watch")

Group = tuple[str, str]  # (target chain, method)
RELOAD_S = 2.0


@dataclass
class Step:
    """What one step did (for logs, tests and the benchmark)."""

    pins: dict[str, BlockPin | str] = field(default_factory=dict)
    moved: list[str] = field(default_factory=list)
    swept: bool = False
    recomputed: int = 0
    watched: int = 0
    alerts: list[str] = field(default_factory=list)
    snapshots: dict[str, str] = field(default_factory=dict)  # account -> snapshot id


class Watcher:
    def __init__(
        self,
        service: Service,
        store: WatchStore,
        hub: Hub | None = None,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.service = service
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
        self.last: dict[str, BlockPin] = {}
        self.rounds: dict[str, dict[str, bytes]] = {}  # chain -> feed -> latestRoundData
        self.last_sweep = 0.0
        self._version: tuple[int, str | None] | None = None
        self._checked = 0.0
        self._dirty_now = False
        self.on_step: Callable[[Step], None] | None = None
        self._woken = asyncio.Event()

    def reload_soon(self) -> None:
        """A watch changed (in this process) or a live listener came: look now."""
        self._checked = 0.0
        self._dirty_now = True

    async def _reload(self) -> None:
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
        arrives on any chain (api/watch/heads.py)."""
        heads = [asyncio.create_task(follow_heads(c, self._woken.set)) for c in self.config.chains]
        try:
            while True:
                self._woken.clear()
                try:
                    step = await self.step()
                    if self.on_step is not None:
                        self.on_step(step)
                except Exception:  # a bug or the store down: logged, tried again next step
                    log.exception("watch step failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), self.cfg.poll_s)
        finally:
            for task in heads:
                task.cancel()
            await asyncio.gather(*heads, return_exceptions=True)

    async def step(self) -> Step:
        """One look at the chains; recompute and alert if anything may have changed."""
        await self._reload()
        groups = self.groups()
        step = Step(watched=len(set().union(*groups.values())) if groups else 0)
        if not step.watched:
            return step
        step.pins = pins = await self.service.engine.pin()
        step.moved = [
            n
            for n, p in pins.items()
            if isinstance(p, BlockPin) and (n not in self.last or self.last[n].hash != p.hash)
        ]
        now = time.monotonic()
        step.swept = now - self.last_sweep >= self.cfg.sweep_s
        if not step.moved and not step.swept and not self._dirty_now:
            return step
        self._dirty_now = False
        changes = await self._changes(pins, step.moved)
        if step.swept:
            self.last_sweep = now
        for group, accounts in groups.items():
            named, rest = self._todo(group, accounts, changes, step.swept)
            await self._recompute(group, named, pins, step)
            await self._recompute(group, rest, pins, step)
        for n in step.moved:
            pin = pins[n]
            assert isinstance(pin, BlockPin)
            self.last[n] = pin
        if step.alerts and self.wake is not None:
            self.wake()
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

    def _todo(
        self, group: Group, accounts: set[str], changes: dict[str, Changed], swept: bool
    ) -> tuple[list[str], list[str]]:
        """The accounts to recompute: those a transfer named, then the others (their
        batch is small, so their alerts go out before a price round's many holders
        are done)."""
        if swept:
            return [], sorted(accounts)
        by_lower = {a.lower(): a for a in accounts}
        named: set[str] = set()
        todo = {a for a in accounts if (group, a) not in self.computed}
        for chain, changed in changes.items():
            if not changed.everything:
                named |= {by_lower[a] for a in changed.accounts if a in by_lower}
            todo |= affected(changed, chain, by_lower, self.holdings) & accounts
        return sorted(named), sorted(todo - named)

    async def _recompute(
        self, group: Group, accounts: list[str], pins: Mapping[str, BlockPin | str], step: Step
    ) -> None:
        target, method = group
        size = self.cfg.batch
        for i in range(0, len(accounts), size):
            chunk = accounts[i : i + size]
            asked = [Request("margin", a, target) for a in chunk]
            results = await self.service.batch(asked, method, pins)
            reports: list[tuple[str, Served, dict[str, Any]]] = []
            for account, out in results:
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

    def _alerts(
        self, group: Group, reports: list[tuple[str, Served, dict[str, Any]]]
    ) -> list[NewAlert]:
        watches = [w for w in self.watches if (w.target, w.method) == group]
        if not watches:
            return []
        members = {w.id: set(w.accounts) for w in watches}
        out = []
        for account, served, report in reports:
            for w in watches:
                if account not in members[w.id]:
                    continue
                now = evaluate(w.thresholds, report)
                before = self.states.get((w.id, account), {})
                for c in crossings(before, now):
                    out.append(_alert(w, account, c.condition, c.breached, served, report))
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
