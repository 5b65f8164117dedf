"""Daily closes from rounds (oracle/history.py) against a brute-force reference, on an
in-memory proxy with phases, reverting rounds, interruptions and incremental syncs."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path

import pytest
from fake_feed import FakeProxy, FakeReader, FakeRound
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossmargin.core.config import Config, load_config
from crossmargin.core.errors import ChainError
from oracle.history import (
    closes_for,
    day_of,
    days_closed_by,
    midnight_after,
    sync_chain,
)
from oracle.store import HistoryStore

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400
T0 = 1_750_000_000  # 2025-06-15 15:06:40 UTC
FEED = "0x5FC8d32690cc91D4c39d9d3abcBD16989F875707"  # devnet.toml: ETH on ethereum


BASE = load_config(ROOT / "configs" / "devnet.toml", env={})


def config(days: int = 3650, batch: int = 7) -> Config:
    """devnet.toml cut down to one asset (ETH) with one feed (FEED, on ethereum)."""
    eth = BASE.asset("ETH")
    return BASE.model_copy(
        update={
            "assets": [eth.model_copy(update={"feeds": [eth.feeds[0]]})],
            "representations": [r for r in BASE.representations if r.asset == "ETH"],
            "risk": BASE.risk.model_copy(update={"correlations": []}),
            "scenarios": [],
            "history": BASE.history.model_copy(update={"days": days, "batch_rounds": batch}),
        }
    )


def expected(rounds: list[FakeRound], now: int, days: int) -> dict[date, int]:
    """Day -> round id of its close, by definition: the last round (in round order)
    updated before midnight after the day, for days complete at `now` in the window."""
    visible = sorted((r for r in rounds if r.updated_at <= now), key=lambda r: r.round_id)
    start = day_of(now) - timedelta(days=days)
    out: dict[date, int] = {}
    d = start
    while midnight_after(d) <= now:
        before = [r for r in visible if r.updated_at < midnight_after(d)]
        if before:
            out[d] = before[-1].round_id
        d += timedelta(days=1)
    return out


def stored(store: HistoryStore) -> dict[date, int]:
    return {c.day: int(c.round_id) for c in store.closes().get((1, FEED), [])}


def run(cfg: Config, reader: FakeReader, store: HistoryStore) -> None:
    asyncio.run(sync_chain(cfg, reader, store))


@st.composite
def histories(draw: st.DrawFn) -> list[FakeRound]:
    """1-3 phases of rounds; gaps of a second to three days; sparse reverting rounds."""
    rounds: list[FakeRound] = []
    t = T0
    first_phase = draw(st.sampled_from([0, 1]))
    n_phases = 1 if first_phase == 0 else draw(st.integers(1, 3))
    for phase in range(first_phase, first_phase + n_phases):
        n = draw(st.integers(1, 25))
        for k in range(1, n + 1):
            t += draw(st.integers(1, 3 * DAY))
            missing = 1 < k < n and draw(st.integers(0, 9)) == 0 and not rounds[-1].missing
            rounds.append(FakeRound(phase, k, 3000_00000000 + len(rounds), t, missing))
    return rounds


def _reader(cfg: Config, rounds: list[FakeRound], now: int) -> FakeReader:
    return FakeReader(cfg.chain("ethereum"), [FakeProxy(FEED, rounds)], now)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rounds=histories(),
    tail=st.integers(0, 2 * DAY),
    days=st.integers(2, 40),
    batch=st.integers(3, 12),
)
def test_closes_match_the_definition(
    rounds: list[FakeRound], tail: int, days: int, batch: int
) -> None:
    cfg = config(days, batch)
    now = rounds[-1].updated_at + tail
    store = HistoryStore.open("sqlite://")
    run(cfg, _reader(cfg, rounds, now), store)
    # A reverting round does not exist for the walk: the reference leaves it out too.
    assert stored(store) == expected([r for r in rounds if not r.missing], now, days)
    assert store.states()[(1, FEED)].backfill_done


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rounds=histories(),
    split=st.floats(0.1, 0.9),
    fail_after=st.integers(1, 6),
    batch=st.integers(3, 9),
)
def test_interrupted_and_incremental_syncs_give_the_same_closes(
    rounds: list[FakeRound], split: float, fail_after: int, batch: int
) -> None:
    """Sync at an earlier time, interrupted; resume; sync again later: the closes are
    those of one clean sync at the later time."""
    rounds = [r for r in rounds if not r.missing]  # compare exactly
    cfg = config(3650, batch)
    t_first, t_last = rounds[0].updated_at, rounds[-1].updated_at
    early = int(t_first + split * (t_last - t_first))
    late = t_last + DAY
    store = HistoryStore.open("sqlite://")
    flaky = _reader(cfg, rounds, early)
    flaky.fail_after = fail_after
    try:
        run(cfg, flaky, store)
    except ChainError:
        pass
    run(cfg, _reader(cfg, rounds, early), store)  # resumes the backfill
    assert stored(store) == expected(rounds, early, 3650)
    later = _reader(cfg, rounds, late)
    run(cfg, later, store)  # catches up
    assert stored(store) == expected(rounds, late, 3650)
    again = _reader(cfg, rounds, late)
    run(cfg, again, store)
    assert again.reads == 1  # up to date: one multicall (latest rounds), nothing to walk


def test_catch_up_reads_only_new_rounds() -> None:
    rounds = [FakeRound(0, k, 100 + k, T0 + k * DAY) for k in range(1, 201)]
    cfg = config(3650, 50)
    store = HistoryStore.open("sqlite://")
    first = _reader(cfg, rounds[:150], rounds[149].updated_at + 10)
    run(cfg, first, store)
    assert first.calls[0] == 2  # step 0: latestRoundData + decimals
    assert sum(first.calls[1:]) >= 150
    second = _reader(cfg, rounds, rounds[-1].updated_at + 10)
    run(cfg, second, store)
    # step 0 (3 calls: latest, decimals, the stored newest again), then rounds 200..150
    assert second.calls == [3, 50, 1]
    assert stored(store) == expected(rounds, rounds[-1].updated_at + 10, 3650)


def test_rewritten_history_is_dropped_and_synced_again() -> None:
    cfg = config(3650, 50)
    store = HistoryStore.open("sqlite://")
    old = [FakeRound(0, k, 100 + k, T0 + k * DAY) for k in range(1, 31)]
    run(cfg, _reader(cfg, old, old[-1].updated_at + 5), store)
    new = [FakeRound(0, k, 900 + k, T0 + k * DAY + 7) for k in range(1, 31)]  # a restart
    reader = _reader(cfg, new, new[-1].updated_at + 5)
    feeds, _ = asyncio.run(sync_chain(cfg, reader, store))
    assert next(f for f in feeds if f.feed == FEED).reset
    closes = store.closes()[(1, FEED)]
    assert {int(c.answer) for c in closes} <= {r.answer for r in new}


def test_window_limits_the_backfill() -> None:
    rounds = [FakeRound(0, k, 100 + k, T0 + k * 3600) for k in range(1, 24 * 60)]
    cfg = config(10, 100)
    store = HistoryStore.open("sqlite://")
    reader = _reader(cfg, rounds, rounds[-1].updated_at + 1)
    run(cfg, reader, store)
    got = stored(store)
    assert len(got) == 10
    assert got == expected(rounds, rounds[-1].updated_at + 1, 10)
    assert sum(reader.calls[1:]) < 13 * 24 + 100  # stopped soon after the window start


@pytest.mark.parametrize(
    ("lo", "hi", "n"),
    [
        (T0, T0, 0),
        (T0, midnight_after(day_of(T0)) - 1, 0),
        (T0, midnight_after(day_of(T0)), 1),
        (-1, midnight_after(day_of(T0)), None),
    ],
)
def test_days_closed_by(lo: int, hi: int, n: int | None) -> None:
    start = day_of(T0) - timedelta(days=5)
    days = days_closed_by(lo, hi, start)
    if n is not None:
        assert len(days) == n
    else:
        assert days[0] == start
        assert days[-1] == day_of(T0)
    for d in days:
        assert lo < midnight_after(d) <= hi


def test_closes_for_takes_the_last_round_before_midnight() -> None:
    from adapters.calls import RoundData

    m = midnight_after(day_of(T0))
    rs = [RoundData(1, 1, m - 10, m - 10, 1), RoundData(2, 2, m - 1, m - 1, 2),
          RoundData(3, 3, m, m, 3)]  # fmt: skip
    (close,) = closes_for(rs, [day_of(T0)])
    assert close[1].round_id == 2
