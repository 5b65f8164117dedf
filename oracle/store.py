"""The price-history store: daily closes per feed and each feed's sync cursor (sqlmodel).

Two tables, on their own SQLAlchemy metadata (`METADATA`), so they never leak into
another component's `SQLModel.metadata` or its migrations by import; `create_tables`
makes exactly these two (checkfirst), for SQLite files and tests. A deployment that
manages its schema with migrations creates them from `METADATA` there.

- `oracle_daily_close`: (chain_id, feed, day) -> the last round at or before the end of
  that UTC day: round id, answer (decimal strings: uint80 / int256 exceed SQL
  integers), decimals, updatedAt. Written only for days that were complete at the
  pinned block, so a stored close is final.
- `oracle_feed_sync`: per feed, what is covered: the newest round seen and the time up
  to which every day is final (`synced_until`), and the backfill cursor (the oldest
  round walked, the time of the oldest round found) until `backfill_done`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

from sqlalchemy import Engine, create_engine, delete, func
from sqlalchemy import select as sa_select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, col, select

from crossmargin.core.config import Config, config_hash
from oracle.estimation import DAY_S, RiskEstimates, estimate_from_closes


class _OracleModel(SQLModel, registry=registry()):
    pass


METADATA = _OracleModel.metadata


class DailyClose(_OracleModel, table=True):
    __tablename__ = "oracle_daily_close"

    chain_id: int = Field(primary_key=True)
    feed: str = Field(primary_key=True, max_length=42)
    day: date = Field(primary_key=True)
    asset: str = Field(max_length=16)
    round_id: str = Field(max_length=32)
    answer: str = Field(max_length=80)
    decimals: int
    updated_at: int


class FeedSync(_OracleModel, table=True):
    __tablename__ = "oracle_feed_sync"

    chain_id: int = Field(primary_key=True)
    feed: str = Field(primary_key=True, max_length=42)
    asset: str = Field(max_length=16)
    decimals: int
    newest_round_id: str = Field(max_length=32)
    newest_answer: str = Field(max_length=80)
    newest_updated_at: int
    synced_until: int  # every UTC day ending at or before this time is stored (final)
    window_start: date  # the oldest day the backfill aims for
    oldest_round_id: str | None = Field(default=None, max_length=32)  # backfill cursor
    oldest_updated_at: int | None = None  # time of the oldest round found so far
    backfill_done: bool = False


TABLES = [DailyClose.__table__, FeedSync.__table__]  # type: ignore[attr-defined]

FeedKey = tuple[int, str]  # (chain_id, feed address)


def create_tables(engine: Engine) -> None:
    """Create the oracle's two tables where missing; nothing else.

    Several API processes may start at once against one database: a CREATE that loses
    the race to another process fails, and the retry then finds the tables there.
    """
    for attempt in range(3):
        try:
            METADATA.create_all(engine, tables=TABLES, checkfirst=True)
        except DBAPIError:
            if attempt == 2:
                raise
            time.sleep(0.1 * (attempt + 1))
        else:
            return


def open_engine(url: str) -> Engine:
    """An engine for `url`; a SQLite file's folder is created if missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url)


class HistoryStore:
    """Reads and writes the two tables; every write is one transaction.

    Synchronous (SQLAlchemy sessions); async callers run it in a worker thread. The
    last estimate is cached against the stored data's fingerprint and the config hash.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._cached: tuple[tuple[object, ...], RiskEstimates] | None = None
        self._past: dict[tuple[object, ...], RiskEstimates] = {}  # §15, by cutoff day

    @classmethod
    def open(cls, url: str) -> HistoryStore:
        engine = open_engine(url)
        create_tables(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ sync side

    def states(self) -> dict[FeedKey, FeedSync]:
        with Session(self.engine) as s:
            rows = s.exec(select(FeedSync)).all()
            for row in rows:
                s.expunge(row)
            return {(r.chain_id, r.feed): r for r in rows}

    def save(self, states: Iterable[FeedSync], closes: Sequence[DailyClose]) -> None:
        """Replace the closes of the same (feed, day) and upsert the states, atomically."""
        with Session(self.engine) as s, s.begin():
            by_feed: dict[FeedKey, list[date]] = {}
            for c in closes:
                by_feed.setdefault((c.chain_id, c.feed), []).append(c.day)
            for (chain_id, feed), days in by_feed.items():
                s.execute(
                    delete(DailyClose).where(
                        col(DailyClose.chain_id) == chain_id,
                        col(DailyClose.feed) == feed,
                        col(DailyClose.day).in_(days),
                    )
                )
            s.add_all([DailyClose.model_validate(c.model_dump()) for c in closes])
            for st in states:
                s.merge(FeedSync.model_validate(st.model_dump()))

    def reset(self, key: FeedKey) -> None:
        """Forget one feed (its history was rewritten: another chain, a restarted devnet)."""
        chain_id, feed = key
        with Session(self.engine) as s, s.begin():
            s.execute(
                delete(DailyClose).where(
                    col(DailyClose.chain_id) == chain_id, col(DailyClose.feed) == feed
                )
            )
            s.execute(
                delete(FeedSync).where(
                    col(FeedSync.chain_id) == chain_id, col(FeedSync.feed) == feed
                )
            )

    # ------------------------------------------------------------ estimation side

    def closes(self, feeds: Iterable[FeedKey] | None = None) -> dict[FeedKey, list[DailyClose]]:
        """Stored closes per feed, oldest day first (all feeds, or only `feeds`)."""
        wanted = None if feeds is None else set(feeds)
        out: dict[FeedKey, list[DailyClose]] = {}
        with Session(self.engine) as s:
            rows = s.exec(
                select(DailyClose).order_by(
                    col(DailyClose.chain_id), col(DailyClose.feed), col(DailyClose.day)
                )
            )
            for r in rows:
                key = (r.chain_id, r.feed)
                if wanted is None or key in wanted:
                    s.expunge(r)
                    out.setdefault(key, []).append(r)
        return out

    def _estimates_before(
        self, config: Config, key: tuple[object, ...], before: int
    ) -> RiskEstimates:
        day_key = (*key, before // DAY_S)  # every τ of one UTC day uses the same closes
        with self._lock:
            hit = self._past.get(day_key)
        if hit is not None:
            return hit
        result = estimate_from_closes(config, self.closes(), before)
        with self._lock:
            if len(self._past) >= 64:
                self._past.clear()
            self._past[day_key] = result
        return result

    def fingerprint(self) -> tuple[object, ...]:
        """Changes whenever the stored closes do (cheap: one aggregate query)."""
        with Session(self.engine) as s:
            row = s.execute(
                sa_select(
                    func.count(),
                    func.max(col(DailyClose.day)),
                    func.sum(col(DailyClose.updated_at)),
                ).select_from(DailyClose)
            ).one()
            return tuple(row)

    def estimates(self, config: Config, before: int | None = None) -> RiskEstimates:
        """The §6 estimates from the stored history (oracle.estimation), cached; `before`
        (§15): from the closes final before that time (cached per cutoff day)."""
        key = (*self.fingerprint(), config_hash(config))
        if before is not None:
            return self._estimates_before(config, key, before)
        with self._lock:
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1]
        result = estimate_from_closes(config, self.closes())
        with self._lock:
            self._cached = (key, result)
        return result
