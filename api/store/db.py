"""The snapshot store: SQLite by default (WAL, busy timeout, writes under BEGIN IMMEDIATE),
PostgreSQL by URL (psycopg 3). Synchronous; the API calls it from worker threads.

Appending is the one subtle operation: read the account's head, build the document
naming it as `prev`, insert, and move the head with a compare-and-swap, all in one
transaction. A concurrent writer (another thread or another process) makes the insert
or the swap fail on a unique constraint; the append is then retried on the new head,
so every account's chain stays linear.

Writability (for /v1/health): every append and configuration write records whether
the database took it (`last_write`); `probe_write` tests it when nothing was written
lately, with the statements an append runs, rolled back.
"""

from __future__ import annotations

import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Connection, Engine, create_engine, event, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from api.store.tables import ConfigRow, HeadRow, SnapshotRow
from crossmargin.core.errors import CrossmarginError
from crossmargin.pipeline.snapshot import GENESIS, digest

log = logging.getLogger("api.store")

MIGRATIONS = Path(__file__).parent / "migrations"
APPEND_ATTEMPTS = 50
SNAP = SnapshotRow.__table__  # type: ignore[attr-defined]
HEAD = HeadRow.__table__  # type: ignore[attr-defined]
CONF = ConfigRow.__table__  # type: ignore[attr-defined]


ENV_URL = "CROSSMARGIN_DATABASE_URL"


class StoreError(CrossmarginError):
    pass


def database_url(explicit: str | None, configured: str, env: Mapping[str, str] = os.environ) -> str:
    """Where snapshots live: an explicit URL, else $CROSSMARGIN_DATABASE_URL (keeps a
    password out of config files), else `api.database_url` from config."""
    return normalise_url(explicit or env.get(ENV_URL) or configured)


@dataclass(frozen=True, slots=True)
class Stored:
    id: str
    account: str
    height: int
    prev_id: str


@dataclass(frozen=True, slots=True)
class Summary:
    id: str
    account: str
    height: int
    prev_id: str
    kind: str
    target: str | None
    asset: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class WriteCheck:
    """Whether the store last took a write, and when (time.monotonic())."""

    ok: bool
    at: float


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3, the driver we ship."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_engine(url: str, create: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        if not create and not Path(database).exists():
            raise StoreError(f"no snapshot store at {database}")
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we say BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A writer takes the write lock up front: no deadlock upgrading a read lock.
        write = conn.get_execution_options().get("cm_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


class Store:
    """Open with `Store.open(url)` (runs the migrations); `close()` disposes the pool."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.last_write: WriteCheck | None = None
        self.probe_started: float | None = None  # a probe_write is running since then
        self._probing = threading.Lock()

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Connect; with `migrate`, first bring the schema to the newest revision."""
        url = normalise_url(url)
        if url.startswith("sqlite"):
            engine = _sqlite_engine(url, create=migrate)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
        store = cls(engine)
        try:
            if migrate:
                store.migrate()
            else:
                with store._tx() as conn:  # fail now, not halfway through an audit
                    conn.execute(select(CONF.c.hash).limit(1))
        except SQLAlchemyError as exc:
            engine.dispose()
            cause = getattr(exc, "orig", None) or exc
            raise StoreError(f"cannot use the snapshot store: {type(cause).__name__}") from exc
        except Exception:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            if write:
                conn.execution_options(cm_write=True)
            with conn.begin():
                yield conn

    def migrate(self) -> None:
        """alembic upgrade head, serialised across processes (advisory lock / write lock)."""
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._tx(write=True) as conn:
            if not self.is_sqlite:
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(726354019)")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    # ------------------------------------------------------------ configs

    def _noted(self, ok: bool) -> None:
        self.last_write = WriteCheck(ok, time.monotonic())

    def probe_write(self) -> WriteCheck | None:
        """Can a snapshot be stored now? Inserts a snapshot row and a head row in a write
        transaction, as `append` does, and rolls back: same locks and permissions (a
        read-only file, a role without INSERT, a full disk fail here), nothing kept.
        Returns None, without waiting, if another probe is running."""
        if not self._probing.acquire(blocking=False):
            return None
        self.probe_started = time.monotonic()
        account = "0xprobe" + secrets.token_hex(17)  # 42 characters, never an address
        try:
            with self.engine.connect() as conn:
                conn.execution_options(cm_write=True)
                tx = conn.begin()
                try:
                    conn.execute(
                        insert(SNAP).values(
                            id=secrets.token_hex(32),
                            account=account,
                            height=0,
                            prev_id=GENESIS,
                            kind="probe",
                            created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                            document="",
                        )
                    )
                    conn.execute(insert(HEAD).values(account=account, head_id="probe", height=0))
                finally:
                    tx.rollback()
        except SQLAlchemyError as exc:
            log.warning("the snapshot store refused a probe write: %s", exc)
            self._noted(False)
        else:
            self._noted(True)
        finally:
            self.probe_started = None
            self._probing.release()
        return self.last_write

    def put_config(self, hash_: str, text: str) -> None:
        try:
            inserted = self._put_config(hash_, text)
        except SQLAlchemyError:
            self._noted(False)
            raise
        if inserted:  # finding it stored already proves nothing about writing
            self._noted(True)

    def _put_config(self, hash_: str, text: str) -> bool:
        for _ in range(APPEND_ATTEMPTS):
            try:
                with self._tx(write=True) as conn:
                    if conn.execute(select(CONF.c.hash).where(CONF.c.hash == hash_)).first():
                        return False
                    conn.execute(insert(CONF).values(hash=hash_, document=text))
            except IntegrityError:
                continue  # another process stored it first: check again
            else:
                return True
        raise StoreError("could not store the configuration")

    def get_config(self, hash_: str) -> str | None:
        with self._tx() as conn:
            row = conn.execute(select(CONF.c.document).where(CONF.c.hash == hash_)).first()
        return None if row is None else str(row[0])

    # ------------------------------------------------------------ snapshots

    def append(
        self,
        account: str,
        kind: str,
        build: Callable[[str], str],
        *,
        target: str | None = None,
        asset: str | None = None,
        cache_key: str | None = None,
    ) -> Stored:
        """Store the document `build(prev_id)` as the account's newest snapshot."""
        try:
            stored = self._append(account, kind, build, target, asset, cache_key)
        except SQLAlchemyError:
            self._noted(False)
            raise
        self._noted(True)
        return stored

    def _append(
        self,
        account: str,
        kind: str,
        build: Callable[[str], str],
        target: str | None,
        asset: str | None,
        cache_key: str | None,
    ) -> Stored:
        for attempt in range(APPEND_ATTEMPTS):
            try:
                return self._append_once(account, kind, build, target, asset, cache_key)
            except IntegrityError:
                pass  # a concurrent append won the race for this head
            except OperationalError as exc:
                if not self.is_sqlite or "locked" not in str(exc.orig):
                    raise
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise StoreError(f"could not append a snapshot for {account}: too much contention")

    def _append_once(
        self,
        account: str,
        kind: str,
        build: Callable[[str], str],
        target: str | None,
        asset: str | None,
        cache_key: str | None,
    ) -> Stored:
        with self._tx(write=True) as conn:
            head = conn.execute(
                select(HEAD.c.head_id, HEAD.c.height).where(HEAD.c.account == account)
            ).first()
            prev, height = (str(head[0]), int(head[1]) + 1) if head else (GENESIS, 0)
            text = build(prev)
            sid = digest(text)
            conn.execute(
                insert(SNAP).values(
                    id=sid,
                    account=account,
                    height=height,
                    prev_id=prev,
                    kind=kind,
                    target=target,
                    asset=asset,
                    cache_key=cache_key,
                    created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
                    document=text,
                )
            )
            if head is None:
                conn.execute(insert(HEAD).values(account=account, head_id=sid, height=height))
            else:
                moved = conn.execute(
                    update(HEAD)
                    .where(HEAD.c.account == account, HEAD.c.head_id == prev)
                    .values(head_id=sid, height=height)
                )
                if moved.rowcount != 1:
                    raise IntegrityError("head moved", None, Exception("head moved"))
        return Stored(sid, account, height, prev)

    def find_cached(self, cache_key: str, account: str) -> tuple[str, str] | None:
        """(id, document) of the account's newest stored computation with this cache key,
        if any. Untrusted: the caller checks the document before serving it (§10)."""
        with self._tx() as conn:
            row = conn.execute(
                select(SNAP.c.id, SNAP.c.document)
                .where(SNAP.c.cache_key == cache_key, SNAP.c.account == account)
                .order_by(SNAP.c.height.desc())
                .limit(1)
            ).first()
        return None if row is None else (str(row[0]), str(row[1]))

    def get(self, snapshot_id: str) -> tuple[Summary, str] | None:
        with self._tx() as conn:
            row = conn.execute(select(SNAP).where(SNAP.c.id == snapshot_id)).first()
        return None if row is None else (_summary(row._mapping), str(row.document))

    def page(self, account: str, limit: int, below: int | None = None) -> list[Summary]:
        """An account's snapshots, newest first, with height < `below` when given."""
        cols = [c for c in SNAP.c if c.name not in ("document", "cache_key")]
        q = select(*cols).where(SNAP.c.account == account)
        if below is not None:
            q = q.where(SNAP.c.height < below)
        with self._tx() as conn:
            rows = conn.execute(q.order_by(SNAP.c.height.desc()).limit(limit)).all()
        return [_summary(r._mapping) for r in rows]

    # ------------------------------------------------------------ audit reads

    def accounts(self) -> list[str]:
        with self._tx() as conn:
            a = conn.execute(select(SNAP.c.account).distinct()).scalars().all()
            b = conn.execute(select(HEAD.c.account)).scalars().all()
        return sorted({str(x) for x in [*a, *b]})

    def chain_rows(self, account: str) -> tuple[list[tuple[Summary, str]], tuple[str, int] | None]:
        """Every stored snapshot of an account (by height) and its head row."""
        with self._tx() as conn:
            rows = conn.execute(
                select(SNAP).where(SNAP.c.account == account).order_by(SNAP.c.height)
            ).all()
            head = conn.execute(
                select(HEAD.c.head_id, HEAD.c.height).where(HEAD.c.account == account)
            ).first()
        return (
            [(_summary(r._mapping), str(r.document)) for r in rows],
            None if head is None else (str(head[0]), int(head[1])),
        )


def _summary(m: Any) -> Summary:
    return Summary(
        id=m["id"],
        account=m["account"],
        height=int(m["height"]),
        prev_id=m["prev_id"],
        kind=m["kind"],
        target=m["target"],
        asset=m["asset"],
        created_at=m["created_at"],
    )
