"""`crossmargin serve --workers 2`: both workers answer on one port, a new connection
going to the worker holding fewer (crossmargin/cli/accept.py); each names itself
(`X-Worker`, /metrics `crossmargin_worker_info`), a killed worker is restarted, rate
limits are divided between them, and SIGTERM stops the supervisor and every worker,
leaving no process behind, as does SIGKILL to the supervisor (its workers are sent
SIGTERM by the kernel: crossmargin.workers.die_with_parent)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from api_helpers import CROSSMARGIN, ROOT, free_port, wait_up

from api.security import Gate
from crossmargin.core.config import ApiConfig, ApiKeyConfig
from tests.processes import running

WORKER_PIDS = re.compile(r"^workers: 2 \(pids (\d+), (\d+)\)$", re.M)  # the supervisor's
WORKER_INFO = re.compile(r'^crossmargin_worker_info\{pid="(\d+)",worker="(\d+)"\} 1\.0$', re.M)
RESULT_LOOKUPS = re.compile(
    r'^crossmargin_cache_lookups_total\{layer="result",outcome="(\w+)"\} ([0-9.]+)$', re.M
)


def _children(pid: int) -> set[int]:
    """Live processes whose parent is `pid` (from /proc)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry.name))
    return out


async def _fresh(base: str, path: str) -> tuple[int, dict[str, str], str]:
    """One request on a new connection (connections are spread, not requests)."""
    conn = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=conn) as session:
        async with session.get(base + path) as resp:
            return resp.status, dict(resp.headers), await resp.text()


async def _held_open(host: str, port: int, count: int) -> list[str]:
    """`count` connections opened one after another and all kept open: the worker
    (X-Worker) that answered on each."""
    opened: list[asyncio.StreamWriter] = []
    workers: list[str] = []
    try:
        for _ in range(count):
            reader, writer = await asyncio.open_connection(host, port)
            opened.append(writer)
            writer.write(b"GET /v1/health/live HTTP/1.1\r\nHost: test\r\n\r\n")
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            found = re.search(r"^X-Worker: (\d+)\r$", head, re.M | re.I)
            assert found is not None, head
            workers.append(found.group(1))
    finally:
        for writer in opened:
            writer.close()
    return workers


async def _result_lookups(base: str) -> dict[str, dict[str, float]]:
    """Per worker, its result-cache lookups by outcome (hit, coalesced, store, miss)."""
    seen: dict[str, dict[str, float]] = {}
    for _ in range(200):
        status, _, text = await _fresh(base, "/metrics")
        assert status == 200
        (worker,) = {w for _, w in WORKER_INFO.findall(text)}
        seen[worker] = {k: float(v) for k, v in RESULT_LOOKUPS.findall(text)}
        if len(seen) == 2:
            break
    return seen


async def _workers_seen(base: str, want: int, tries: int = 200) -> dict[str, int]:
    """worker index -> pid, from /metrics scraped on fresh connections."""
    seen: dict[str, int] = {}
    for _ in range(tries):
        status, _, text = await _fresh(base, "/metrics")
        assert status == 200
        for pid, worker in WORKER_INFO.findall(text):
            seen[worker] = int(pid)
        if len(seen) >= want:
            break
    return seen


def test_two_workers_serve_one_port(devnet: Any, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "CROSSMARGIN_DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}"}
    argv = [str(CROSSMARGIN), "serve", "--config", str(devnet.config_path)]
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*argv, "--port", str(port), "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    alice = devnet.demo_accounts["alice"]
    try:

        async def drive() -> tuple[dict[str, int], set[str], set[str], dict[str, float]]:
            async with aiohttp.ClientSession() as session:
                await wait_up(session, base)
            workers = await _workers_seen(base, 2)
            answered: set[str] = set()
            ids: set[str] = set()
            for _ in range(40):  # within the devnet's anonymous burst of 20, divided
                status, headers, _ = await _fresh(base, f"/v1/accounts/{alice}/margin")
                if status == 429:
                    await asyncio.sleep(float(headers["Retry-After"]))
                    continue
                assert status == 200
                answered.add(headers["X-Worker"])
                ids.add(headers["Snapshot-Id"])
                if len(answered) == 2:
                    break
            lookups = await _result_lookups(base)
            total = {o: sum(w.get(o, 0.0) for w in lookups.values()) for o in ("miss", "store")}
            return workers, answered, ids, total

        workers, answered, ids, lookups = asyncio.run(drive())
        assert set(workers) == {"0", "1"}, log.read_text()
        assert set(workers.values()) <= _children(proc.pid)  # + multiprocessing's tracker
        assert answered == {"0", "1"}
        assert len(ids) == 1  # the same pinned blocks: one computation, served by both
        # the other worker had it from the one that computed it (api/peers.py), in memory:
        # not from the snapshot store
        assert lookups == {"miss": 1.0, "store": 0.0}, lookups

        # a worker killed is restarted (same index, a new pid); the port keeps answering
        os.kill(workers["1"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        again: dict[str, int] = {}
        while time.monotonic() < deadline:
            again = asyncio.run(_workers_seen(base, 2, tries=20))
            if again.get("1") not in (None, workers["1"]):
                break
            time.sleep(0.5)
        assert again["1"] != workers["1"], log.read_text()
        assert again["0"] == workers["0"]
        assert "worker 1 (pid" in log.read_text()

        # connections kept open are spread evenly, the restarted worker included (a
        # hash, as SO_REUSEPORT's, gives 9/8 for 17 connections ~37% of the time)
        held = asyncio.run(_held_open("127.0.0.1", port, 17))
        assert sorted(held.count(w) for w in "01") == [8, 9], held

        pids = _children(proc.pid)
        assert set(again.values()) <= pids
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
        deadline = time.monotonic() + 10
        while any(running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(running(p) for p in pids)
        text = log.read_text()
        assert f"listening on {base}" in text
        assert "workers: 2" in text
        assert "Traceback" not in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_killed_supervisor_leaves_no_worker(tmp_path: Path) -> None:
    """SIGKILL to the supervisor: each worker is sent SIGTERM and stops as when stopped
    (no chain is needed to listen)."""
    log = tmp_path / "serve.log"
    env = {**os.environ, "CROSSMARGIN_DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}"}
    config = ROOT / "configs" / "devnet.toml"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(CROSSMARGIN), "serve", "--config", str(config), "--port", "0", "--workers", "2"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while (found := WORKER_PIDS.search(log.read_text())) is None:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        pids = [int(p) for p in found.groups()]
        assert all(running(p) for p in pids)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while any(running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(running(p) for p in pids), "a worker outlived its killed supervisor"
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_workers_divide_rate_limits() -> None:
    """With share=N every bucket fills at rate/N up to ceil(burst/N)."""
    key = ApiKeyConfig(name="k", sha256="0" * 64, rate_per_s=10, burst=5)
    api = ApiConfig(keys=[key], anonymous=True, anonymous_rate_per_s=4, anonymous_burst=3)
    now = [0.0]
    gate = Gate(api, lambda: now[0], share=2)
    bucket = gate._bucket("key:k", 0.0)
    assert (bucket.rate, bucket.capacity) == (5.0, 3.0)
    anon = gate._bucket("anon:1.2.3.4", 0.0)
    assert (anon.rate, anon.capacity) == (2.0, 2.0)
    whole = Gate(api, lambda: now[0])._bucket("key:k", 0.0)
    assert (whole.rate, whole.capacity) == (10.0, 5.0)


@pytest.mark.parametrize("bad", ["0", "65", "x"])
def test_workers_option_is_checked(bad: str) -> None:
    out = subprocess.run(
        [str(CROSSMARGIN), "serve", "--workers", bad], capture_output=True, text=True, check=False
    )
    assert out.returncode == 2
    assert "--workers" in out.stderr


def test_a_live_only_watcher_never_reads_the_stored_watches(devnet: Any) -> None:
    """Workers other than 0 follow their own live listeners only: the stored watches
    are worker 0's (one watcher, one alert per crossing)."""
    from api.watch.live import Hub
    from api.watch.watcher import Watcher

    class _Service:
        config = devnet.config

    class _Store:
        def version(self) -> Any:
            raise AssertionError("a live-only watcher read the stored watches")

    hub = Hub()
    watcher = Watcher(_Service(), _Store(), hub, live_only=True)  # type: ignore[arg-type]
    asyncio.run(watcher._reload())
    assert watcher.watches == []
    hub.subscribe((devnet.demo_accounts["alice"], "ethereum"))
    groups = watcher.groups()
    assert groups == {("ethereum", devnet.config.risk.method): {devnet.demo_accounts["alice"]}}
