"""The snapshot store: SQLite by default (WAL, busy timeout, writes under BEGIN IMMEDIATE),
PostgreSQL by URL (psycopg 3). Synchronous; the API calls it from worker threads.

Appending is the one subtle operation: read the account's head, build the document
naming it as `prev`, insert, and move the head with a compare-and-swap, all in one
transaction. A concurrent writer (another thread or another process) makes the insert
or the swap fail on a unique constraint; the append is then retried on the new head,
so every account's chain stays linear. `append_many` does this for a whole batch (many
accounts) in one transaction, and inserts the blobs its documents name once; the same
transaction makes the new ids the next leaves of the transparency log (api/store/tlog.py).

Writability (for /v1/health): every append and configuration write records whether
the database took it (`last_write`); `probe_write` tests it when nothing was written
lately, with the statements an append runs, rolled back.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    insert,
    inspect,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from api.store import tlog
from api.store.tables import (
    BlobRow,
    ConfigRow,
    HeadRow,
    SnapshotRow,
    insert_rows,
    update_rows,
)
from crossmargin.core.canonical import digest
from crossmargin.core.errors import CrossmarginError
from crossmargin.pipeline.snapshot import GENESIS, Built
from crossmargin.pipeline.stored import blob_refs

log = logging.getLogger("api.store")

MIGRATIONS = Path(__file__).parent / "migrations"
APPEND_ATTEMPTS = 50
SNAP = SnapshotRow.__table__  # type: ignore[attr-defined]
HEAD = HeadRow.__table__  # type: ignore[attr-defined]
CONF = ConfigRow.__table__  # type: ignore[attr-defined]
BLOB = BlobRow.__table__  # type: ignore[attr-defined]
CHUNK = 500  # values per IN (...): under every driver's parameter limit
BLOB_MEMO = 4096  # blob texts kept by `Store.blobs` (a few hundred bytes to ~10 KB each)


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
    leaf_index: int | None = None  # in the transparency log (api/store/tlog.py)


@dataclass(frozen=True, slots=True)
class Item:
    """One snapshot to append: `build(prev_id)` gives its document (a v2 `Built` with
    its blobs, or a bare document text)."""

    account: str
    kind: str
    build: Callable[[str], Built | str]
    target: str | None = None
    asset: str | None = None
    cache_key: str | None = None


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
        self._busy = 0  # connections in use (`connect`), which close() waits for
        self._idle = threading.Condition()
        self.log = tlog.Log(self._tx)  # the transparency log's reads
        # blobs are content-addressed and never rewritten: for serving
        # (`blobs(remembered=True)`) a hash read once is not queried again (every served
        # stored result names the same few pins, feeds and parameters); the reader
        # still checks each text against its hash
        self._blob_memo: dict[str, str] = {}
        self.has_log = True  # False on a store kept at a revision before the log

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, revision: str = "head") -> Store:
        """Connect; with `migrate`, first bring the schema to `revision` (the newest)."""
        url = normalise_url(url)
        if url.startswith("sqlite"):
            engine = _sqlite_engine(url, create=migrate)
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
        store = cls(engine)
        try:
            if migrate:
                store.migrate(revision)
            else:
                with store._tx() as conn:  # fail now, not halfway through an audit
                    conn.execute(select(CONF.c.hash).limit(1))
            store.has_log = inspect(engine).has_table(tlog.SIZE.name)
        except SQLAlchemyError as exc:
            engine.dispose()
            cause = getattr(exc, "orig", None) or exc
            raise StoreError(f"cannot use the snapshot store: {type(cause).__name__}") from exc
        except Exception:
            engine.dispose()
            raise
        return store

    def close(self, wait_s: float = 10.0) -> None:
        """Dispose of the pool once no thread uses a connection any more (at most
        `wait_s`): a cancelled request's worker thread may still hold one, and a
        connection checked in after dispose stays open in the old pool until collected."""
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout=wait_s)
        self.engine.dispose()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A pooled connection, counted for close()."""
        with self._idle:
            self._busy += 1
        try:
            with self.engine.connect() as conn:
                yield conn
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()

    @contextmanager
    def _tx(self, write: bool = False) -> Iterator[Connection]:
        with self.connect() as conn:
            if write:
                conn.execution_options(cm_write=True)
            with conn.begin():
                yield conn

    def migrate(self, revision: str = "head") -> None:
        """alembic upgrade, serialised across processes (advisory lock / write lock).
        alembic is imported here, not with the module: it is a fifth of a second of
        start-up that the CLI's commands reading the store's URL (scan, margin) pay for
        nothing."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._tx(write=True) as conn:
            if not self.is_sqlite:
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(726354019)")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    # ------------------------------------------------------------ configs

    def _noted(self, ok: bool) -> None:
        self.last_write = WriteCheck(ok, time.monotonic())

    def probe_write(self) -> WriteCheck | None:
        """Can a snapshot be stored now? Inserts a snapshot, a head and a blob row in a
        write transaction, as `append` does, and rolls back: same locks and permissions (a
        read-only file, a role without INSERT, a full disk fail here), nothing kept.
        Returns None, without waiting, if another probe is running."""
        if not self._probing.acquire(blocking=False):
            return None
        self.probe_started = time.monotonic()
        account = "0xprobe" + secrets.token_hex(17)  # 42 characters, never an address
        try:
            with self.connect() as conn:
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
                    conn.execute(insert(BLOB).values(hash=secrets.token_hex(32), document=""))
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
        build: Callable[[str], Built | str],
        *,
        target: str | None = None,
        asset: str | None = None,
        cache_key: str | None = None,
    ) -> Stored:
        """Store the document `build(prev_id)` as the account's newest snapshot."""
        return self.append_many([Item(account, kind, build, target, asset, cache_key)])[0]

    def append_many(self, items: Sequence[Item]) -> list[Stored]:
        """Store a batch's snapshots (any accounts, an account any number of times, in
        order) in one transaction, each document `item.build(prev_id)` onto its account's
        head, and every blob the documents name (insert if absent), and their ids as the
        next leaves of the transparency log. One `Stored` per item, in order. A conflict
        with a concurrent writer retries the whole batch on the new heads (builds are
        called again), so every chain stays linear."""
        if not items:
            return []
        try:
            stored = self._append_many(items)
        except SQLAlchemyError:
            self._noted(False)
            raise
        self._noted(True)
        return stored

    def _append_many(self, items: Sequence[Item]) -> list[Stored]:
        for attempt in range(APPEND_ATTEMPTS):
            try:
                return self._append_batch(items)
            except IntegrityError:
                pass  # a concurrent append won the race for a head
            except OperationalError as exc:
                if not _transient(str(exc.orig)):
                    raise
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        raise StoreError(f"could not append {len(items)} snapshot(s): too much contention")

    def _heads(self, conn: Connection, accounts: list[str]) -> dict[str, tuple[str, int]]:
        heads: dict[str, tuple[str, int]] = {}
        for i in range(0, len(accounts), CHUNK):
            q = select(HEAD.c.account, HEAD.c.head_id, HEAD.c.height).where(
                HEAD.c.account.in_(accounts[i : i + CHUNK])
            )
            heads.update({str(a): (str(h), int(n)) for a, h, n in conn.execute(q)})
        return heads

    def _append_batch(self, items: Sequence[Item]) -> list[Stored]:
        """The documents are built outside the write transaction, on the heads as read
        just before (building is most of a batch's CPU, and a write transaction holds the
        store's one write lock: processes sharing a store would take turns at building);
        if a concurrent writer has moved one of those heads meanwhile, they are built
        again inside it on the heads it reads."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        accounts = sorted({i.account for i in items})
        with self._tx() as conn:
            seen = self._heads(conn, accounts)
        rows, blobs, heads = _build(items, seen, now)
        with self._tx(write=True) as conn:
            old = self._heads(conn, accounts)
            if old != seen:
                rows, blobs, heads = _build(items, old, now)
            self._put_blobs(conn, blobs)
            # one lock order for all: by account and height (rows stay in item order)
            insert_rows(conn, SNAP, SNAP_COLUMNS, sorted(rows, key=_account_height))
            self._move_heads(conn, old, heads)
            if not self.has_log:
                return [Stored(r[0], r[1], r[2], r[3]) for r in rows]
            first = tlog.append(conn, [r[0] for r in rows], lock=not self.is_sqlite)
        return [Stored(r[0], r[1], r[2], r[3], first + i) for i, r in enumerate(rows)]

    def _put_blobs(self, conn: Connection, blobs: Mapping[str, str]) -> None:
        """Insert the blobs not stored yet; a blob is its hash, so an existing row with
        that hash is the same blob (audit verify checks it)."""
        if not blobs:
            return
        values = [{"hash": h, "document": blobs[h]} for h in sorted(blobs)]
        stmt = (sqlite_insert if self.is_sqlite else pg_insert)(BLOB).on_conflict_do_nothing()
        conn.execute(stmt, values)

    def _move_heads(
        self, conn: Connection, old: dict[str, tuple[str, int]], heads: dict[str, tuple[str, int]]
    ) -> None:
        """New accounts get a head row; the others a compare-and-swap from the head read."""
        new = sorted((a, h, n) for a, (h, n) in heads.items() if a not in old)
        insert_rows(conn, HEAD, ("account", "head_id", "height"), new)
        moved = [(h, n, a, old[a][0]) for a, (h, n) in sorted(heads.items()) if a in old]
        swapped = update_rows(conn, HEAD, ("head_id", "height"), ("account", "head_id"), moved)
        if swapped != len(moved):
            raise IntegrityError("head moved", None, Exception("head moved"))

    def blobs(self, hashes: Iterable[str], *, remembered: bool = False) -> dict[str, str]:
        """The stored blobs among `hashes` (a missing one is simply absent). With
        `remembered`, a blob read before comes from memory: for serving, which checks
        each text against its hash; never for an audit or a snapshot shown to one,
        which must see what the database holds now."""
        memo = self._blob_memo if remembered else {}
        found: dict[str, str] = {}
        wanted: list[str] = []
        for h in sorted(set(hashes)):
            text = memo.get(h)
            if text is None:
                wanted.append(h)
            else:
                found[h] = text
        if not wanted:
            return found
        with self._tx() as conn:
            for i in range(0, len(wanted), CHUNK):
                q = select(BLOB.c.hash, BLOB.c.document).where(
                    BLOB.c.hash.in_(wanted[i : i + CHUNK])
                )
                found.update({str(h): str(d) for h, d in conn.execute(q)})
        if remembered:
            if len(memo) > BLOB_MEMO:
                memo.clear()  # bounded; refilled by the next reads
            memo.update((h, found[h]) for h in wanted if h in found)
        return found

    def blobs_for(self, text: str, *, remembered: bool = False) -> dict[str, str]:
        """The stored blobs a document names (`blobs`); {} for a document that does not
        parse (whoever reads it finds that out, and says so)."""
        try:
            doc = json.loads(text)
            refs = blob_refs(doc) if isinstance(doc, dict) else []
        except (ValueError, CrossmarginError):
            return {}
        return self.blobs(refs, remembered=remembered) if refs else {}

    def all_blobs(self) -> Iterator[tuple[str, str]]:
        """Every stored blob (hash, text), for the audit."""
        with self._tx() as conn:
            yield from (
                (str(h), str(d)) for h, d in conn.execute(select(BLOB.c.hash, BLOB.c.document))
            )

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

    def find_cached_many(self, wanted: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
        """`find_cached` for many (cache key, account) pairs, one query per chunk: cache
        key -> (id, document) of the account's newest match. A batch of fresh accounts
        asks this once instead of once per account."""
        accounts = dict(wanted)
        keys = list(accounts)
        best: dict[str, tuple[int, str, str]] = {}
        with self._tx() as conn:
            for i in range(0, len(keys), 500):  # well under every driver's parameter limit
                q = select(SNAP.c.cache_key, SNAP.c.account, SNAP.c.height, SNAP.c.id)
                q = q.add_columns(SNAP.c.document).where(SNAP.c.cache_key.in_(keys[i : i + 500]))
                for key, account, height, sid, doc in conn.execute(q):
                    hit = best.get(key)
                    if accounts.get(key) == account and (hit is None or height > hit[0]):
                        best[key] = (int(height), str(sid), str(doc))
        return {k: (sid, doc) for k, (_, sid, doc) in best.items()}

    def get(self, snapshot_id: str) -> tuple[Summary, str] | None:
        with self._tx() as conn:
            row = conn.execute(select(SNAP).where(SNAP.c.id == snapshot_id)).first()
        return None if row is None else (_summary(row._mapping), str(row.document))

    def page(
        self, account: str, limit: int, below: int | None = None, kind: str | None = None
    ) -> list[Summary]:
        """An account's snapshots, newest first, with height < `below` when given, of
        one `kind` when given."""
        return [s for s, _ in self._page(account, limit, below, kind, documents=False)]

    def page_documents(
        self, account: str, limit: int, below: int | None = None, kind: str | None = None
    ) -> list[tuple[Summary, str]]:
        """`page` with each snapshot's document text (a history chart reads its figures)."""
        return self._page(account, limit, below, kind, documents=True)

    def _page(
        self, account: str, limit: int, below: int | None, kind: str | None, *, documents: bool
    ) -> list[tuple[Summary, str]]:
        skip = ("cache_key",) if documents else ("document", "cache_key")
        q = select(*[c for c in SNAP.c if c.name not in skip]).where(SNAP.c.account == account)
        if below is not None:
            q = q.where(SNAP.c.height < below)
        if kind is not None:
            q = q.where(SNAP.c.kind == kind)
        with self._tx() as conn:
            rows = conn.execute(q.order_by(SNAP.c.height.desc()).limit(limit)).all()
        return [(_summary(r._mapping), str(r.document) if documents else "") for r in rows]

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


def _transient(message: str) -> bool:
    """A lock the database gave up waiting for (SQLite) or a deadlock it broke (PostgreSQL):
    the batch is retried."""
    return "locked" in message or "deadlock" in message


SNAP_COLUMNS = (
    "id",
    "account",
    "height",
    "prev_id",
    "kind",
    "target",
    "asset",
    "cache_key",
    "created_at",
    "document",
)


def _account_height(row: tuple[Any, ...]) -> tuple[str, int]:
    return row[1], row[2]


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


def _build(
    items: Sequence[Item], old: Mapping[str, tuple[str, int]], now: str
) -> tuple[list[tuple[Any, ...]], dict[str, str], dict[str, tuple[str, int]]]:
    """A batch's snapshot rows (in `SNAP_COLUMNS`' order), its blobs, and each account's
    new head, every document built onto its account's head in `old`, then on its own."""
    heads = dict(old)
    rows: list[tuple[Any, ...]] = []
    blobs: dict[str, str] = {}
    for item in items:
        prev, height = heads.get(item.account, (GENESIS, -1))
        built = item.build(prev)
        if isinstance(built, str):
            text = built
        else:
            text = built.text
            blobs.update(built.blobs)
        sid = digest(text)
        height += 1
        heads[item.account] = (sid, height)
        row = (sid, item.account, height, prev, item.kind, item.target, item.asset)
        rows.append((*row, item.cache_key, now, text))
    return rows, blobs, heads
