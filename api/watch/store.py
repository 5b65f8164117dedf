"""Watches, alert state and the alert outbox, in the snapshot store's database.

Synchronous (callers use worker threads), on the `Store`'s engine. `record` is the
outbox's one rule: an alert row and the state it moves are written in one
transaction, before anything is sent, so a crash loses no alert, and a crossing
already recorded is not raised again after a restart.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, update

from api.store import Store
from api.watch.rules import Condition, Thresholds
from api.watch.tables import ALERT, STATE, WATCH, WATCH_ACCOUNT

CHUNK = 500


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class WatchRow:
    id: str
    owner: str
    name: str | None
    accounts: list[str]
    target: str
    method: str
    thresholds: Thresholds
    webhook_url: str
    secret: str
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class NewAlert:
    watch_id: str
    owner: str
    account: str
    condition: Condition
    breached: bool
    snapshot_id: str
    body: dict[str, Any]  # the payload without id and created_at (added here)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A pending alert with where it goes and how it is signed."""

    id: str
    body: str
    attempts: int
    webhook_url: str | None  # None: its watch was deleted
    secret: str | None


class WatchStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._tx = store._tx  # one transaction discipline (and close() waits for it)

    # ------------------------------------------------------------ subscriptions

    def create(self, owner: str, fields: dict[str, Any]) -> WatchRow:
        wid, at = secrets.token_hex(16), now_iso()
        accounts: list[str] = fields["accounts"]
        with self._tx(write=True) as conn:
            conn.execute(
                insert(WATCH).values(
                    id=wid,
                    owner=owner,
                    name=fields.get("name"),
                    target=fields["target"],
                    method=fields["method"],
                    thresholds=fields["thresholds"].model_dump_json(),
                    webhook_url=fields["webhook_url"],
                    secret=fields["secret"],
                    created_at=at,
                    updated_at=at,
                )
            )
            self._put_accounts(conn, wid, accounts)
        found = self.get(owner, wid)
        assert found is not None
        return found

    def _put_accounts(self, conn: Connection, wid: str, accounts: Sequence[str]) -> None:
        rows = [{"watch_id": wid, "account": a} for a in accounts]
        for i in range(0, len(rows), CHUNK):
            conn.execute(insert(WATCH_ACCOUNT), rows[i : i + CHUNK])

    def update(self, owner: str, wid: str, fields: dict[str, Any]) -> WatchRow | None:
        """Change the given fields. New accounts start clear; dropped accounts lose
        their state; changed thresholds restart every state (the old crossings were of
        other thresholds)."""
        with self._tx(write=True) as conn:
            if not self._owned(conn, owner, wid):
                return None
            values: dict[str, Any] = {"updated_at": now_iso()}
            for key in ("name", "target", "method", "webhook_url", "secret"):
                if key in fields:
                    values[key] = fields[key]
            if "thresholds" in fields:
                values["thresholds"] = fields["thresholds"].model_dump_json()
            conn.execute(update(WATCH).where(WATCH.c.id == wid).values(**values))
            if "accounts" in fields:
                conn.execute(delete(WATCH_ACCOUNT).where(WATCH_ACCOUNT.c.watch_id == wid))
                self._put_accounts(conn, wid, fields["accounts"])
                kept = set(fields["accounts"])
                for (acct,) in conn.execute(
                    select(STATE.c.account).where(STATE.c.watch_id == wid).distinct()
                ).all():
                    if acct not in kept:
                        conn.execute(
                            delete(STATE).where(STATE.c.watch_id == wid, STATE.c.account == acct)
                        )
            if {"thresholds", "target", "method"} & set(fields):
                conn.execute(delete(STATE).where(STATE.c.watch_id == wid))
        return self.get(owner, wid)

    def delete(self, owner: str, wid: str) -> bool:
        """Remove a watch, its accounts and states; its undelivered alerts go dead."""
        with self._tx(write=True) as conn:
            if not self._owned(conn, owner, wid):
                return False
            for table in (WATCH_ACCOUNT, STATE):
                conn.execute(delete(table).where(table.c.watch_id == wid))
            conn.execute(delete(WATCH).where(WATCH.c.id == wid))
            conn.execute(
                update(ALERT)
                .where(ALERT.c.watch_id == wid, ALERT.c.status == "pending")
                .values(status="dead", last_error="the watch was deleted")
            )
        return True

    def _owned(self, conn: Connection, owner: str, wid: str) -> bool:
        q = select(WATCH.c.id).where(WATCH.c.id == wid, WATCH.c.owner == owner)
        return conn.execute(q).first() is not None

    def get(self, owner: str, wid: str) -> WatchRow | None:
        found = self._load(WATCH.c.id == wid, WATCH.c.owner == owner)
        return found[0] if found else None

    def owned(self, owner: str) -> list[WatchRow]:
        return self._load(WATCH.c.owner == owner)

    def all(self) -> list[WatchRow]:
        """Every watch (the watcher's view)."""
        return self._load()

    def version(self) -> tuple[int, str | None]:
        """Changes when a watch is created, changed or deleted (the watcher reloads)."""
        with self._tx() as conn:
            n, last = conn.execute(select(func.count(), func.max(WATCH.c.updated_at))).one()
        return int(n), last

    def _load(self, *where: Any) -> list[WatchRow]:
        with self._tx() as conn:
            rows = conn.execute(select(WATCH).where(*where).order_by(WATCH.c.created_at)).all()
            ids = [r.id for r in rows]
            accounts: dict[str, list[str]] = {i: [] for i in ids}
            for i in range(0, len(ids), CHUNK):
                q = select(WATCH_ACCOUNT).where(WATCH_ACCOUNT.c.watch_id.in_(ids[i : i + CHUNK]))
                for wa in conn.execute(q):
                    accounts[wa.watch_id].append(wa.account)
        return [
            WatchRow(
                id=r.id,
                owner=r.owner,
                name=r.name,
                accounts=sorted(accounts[r.id]),
                target=r.target,
                method=r.method,
                thresholds=Thresholds.model_validate_json(r.thresholds),
                webhook_url=r.webhook_url,
                secret=r.secret,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
            for r in rows
        ]

    # ------------------------------------------------------------ state and outbox

    def states(self) -> dict[tuple[str, str], dict[Condition, bool]]:
        """(watch id, account) -> condition -> breached, as last recorded."""
        out: dict[tuple[str, str], dict[Condition, bool]] = {}
        with self._tx() as conn:
            for r in conn.execute(select(STATE)):
                out.setdefault((r.watch_id, r.account), {})[r.condition] = bool(r.breached)
        return out

    def record(self, alerts: Sequence[NewAlert]) -> list[str]:
        """Store the alerts and the states they move, in one transaction; their ids."""
        if not alerts:
            return []
        at = now_iso()
        rows, ids = [], []
        with self._tx(write=True) as conn:
            for a in alerts:
                aid = secrets.token_hex(16)
                body = {"id": aid, "created_at": at, **a.body}
                rows.append(
                    {
                        "id": aid,
                        "watch_id": a.watch_id,
                        "owner": a.owner,
                        "account": a.account,
                        "condition": a.condition,
                        "kind": "breached" if a.breached else "recovered",
                        "snapshot_id": a.snapshot_id,
                        "created_at": at,
                        "body": json.dumps(body, separators=(",", ":"), sort_keys=True),
                        "status": "pending",
                        "attempts": 0,
                        "next_at": 0.0,
                    }
                )
                ids.append(aid)
                key = and_(
                    STATE.c.watch_id == a.watch_id,
                    STATE.c.account == a.account,
                    STATE.c.condition == a.condition,
                )
                conn.execute(delete(STATE).where(key))
                conn.execute(
                    insert(STATE).values(
                        watch_id=a.watch_id,
                        account=a.account,
                        condition=a.condition,
                        breached=a.breached,
                        snapshot_id=a.snapshot_id,
                    )
                )
            conn.execute(insert(ALERT), rows)
        return ids

    def due(self, now: float, limit: int) -> list[Outgoing]:
        q = (
            select(ALERT.c.id, ALERT.c.body, ALERT.c.attempts, WATCH.c.webhook_url, WATCH.c.secret)
            .select_from(ALERT.outerjoin(WATCH, WATCH.c.id == ALERT.c.watch_id))
            .where(ALERT.c.status == "pending", ALERT.c.next_at <= now)
            .order_by(ALERT.c.next_at, ALERT.c.created_at)
            .limit(limit)
        )
        with self._tx() as conn:
            return [Outgoing(*r) for r in conn.execute(q).all()]

    def next_due(self) -> float | None:
        q = select(func.min(ALERT.c.next_at)).where(ALERT.c.status == "pending")
        with self._tx() as conn:
            value = conn.execute(q).scalar()
        return None if value is None else float(value)

    def delivered(self, aid: str, attempts: int) -> None:
        self._set(aid, status="delivered", attempts=attempts, delivered_at=now_iso())

    def failed(self, aid: str, attempts: int, next_at: float, error: str, dead: bool) -> None:
        status = "dead" if dead else "pending"
        self._set(aid, status=status, attempts=attempts, next_at=next_at, last_error=error)

    def _set(self, aid: str, **values: Any) -> None:
        with self._tx(write=True) as conn:
            conn.execute(
                update(ALERT).where(ALERT.c.id == aid, ALERT.c.status == "pending").values(**values)
            )

    def alerts(
        self,
        owner: str,
        watch_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        q = select(ALERT).where(ALERT.c.owner == owner)
        if watch_id is not None:
            q = q.where(ALERT.c.watch_id == watch_id)
        if status is not None:
            q = q.where(ALERT.c.status == status)
        q = q.order_by(ALERT.c.created_at.desc(), ALERT.c.id).limit(limit)
        with self._tx() as conn:
            return [dict(r._mapping) for r in conn.execute(q).all()]
