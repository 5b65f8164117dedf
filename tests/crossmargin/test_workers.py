"""The worker pool (crossmargin/workers.py) without chains: jobs of no requests, so the
workers' engines never read. Answers come from other processes, a failing `finish` is
that job's error, a dead worker is a clear error and never a hang, and no worker outlives
the pool, or its parent when that is killed (`die_with_parent`, which serve's workers
call too)."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from crossmargin.core.config import Config, config_hash, load_config
from crossmargin.engine import Engine, Result
from crossmargin.workers import WorkerError, WorkerPool, choose_start_method, vm_hwm_kib
from tests.processes import running

ROOT = Path(__file__).resolve().parents[2]
CONFIG: Config = load_config(ROOT / "configs" / "devnet.toml", env={})
METHODS = ["fork", "forkserver"]


def _where(engine: Engine, results: list[Result], extra: Any) -> tuple[int, Any, str]:
    time.sleep(0.2)  # long enough for two jobs at once to land on both workers
    return os.getpid(), extra, engine.config.settlement_chain


def _boom(engine: Engine, results: list[Result], extra: Any) -> None:
    raise ValueError(f"finish failed on {extra}")


def _die(engine: Engine, results: list[Result], extra: Any) -> None:
    os._exit(3)


def _unpicklable(engine: Engine, results: list[Result], extra: Any) -> Any:
    return lambda: None


def gone(pids: list[int], within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not any(running(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_the_config_pickles_whole() -> None:
    """A worker gets its config pickled (forkserver) or copied (fork): the same figures."""
    copy = pickle.loads(pickle.dumps(CONFIG))
    assert copy == CONFIG
    assert config_hash(copy) == config_hash(CONFIG)


@pytest.mark.parametrize("method", METHODS)
def test_jobs_run_in_the_workers_and_they_stop_with_the_pool(method: str) -> None:
    async def go(pool: WorkerPool) -> list[tuple[int, Any, str]]:
        return list(await asyncio.gather(*(pool.run([], _where, n) for n in range(4))))

    with WorkerPool(CONFIG, workers=2, start_method=method) as pool:  # type: ignore[arg-type]
        pids = pool.pids
        got = asyncio.run(go(pool))
        again = asyncio.run(go(pool))  # a second event loop: the pool follows it
    assert [g[1] for g in got] == [0, 1, 2, 3]  # each job's own answer, in order
    assert {g[0] for g in got} == set(pids)  # both workers, neither of them this process
    assert os.getpid() not in pids
    assert {g[2] for g in got + again} == {CONFIG.settlement_chain}  # the config, pickled
    assert gone(pids, within_s=0.5)


def test_a_failing_finish_is_that_jobs_error() -> None:
    async def go(pool: WorkerPool) -> None:
        with pytest.raises(ValueError, match="finish failed on 7"):
            await pool.run([], _boom, 7)
        with pytest.raises((TypeError, AttributeError, WorkerError), match="pickle"):
            await pool.run([], _unpicklable)
        assert (await pool.run([], _where, "still here"))[1] == "still here"

    with WorkerPool(CONFIG, workers=1) as pool:
        asyncio.run(go(pool))


def test_a_dead_worker_is_an_error_not_a_hang() -> None:
    async def go(pool: WorkerPool) -> None:
        with pytest.raises(WorkerError, match=r"died \(exit status 3\)"):
            await asyncio.wait_for(pool.run([], _die), 30)
        assert (await pool.run([], _where, "other"))[1] == "other"  # the other one
        with pytest.raises(WorkerError, match="died"):
            await asyncio.wait_for(pool.run([], _die), 30)
        with pytest.raises(WorkerError, match="died"):  # none left
            await pool.run([], _where)

    with WorkerPool(CONFIG, workers=2) as pool:
        pids = pool.pids
        asyncio.run(go(pool))
    assert gone(pids, within_s=0.5)


def test_close_on_error_terminates_at_once() -> None:
    pids: list[int] = []

    def interrupted() -> None:
        with WorkerPool(CONFIG, workers=2) as pool:
            pids.extend(pool.pids)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert len(pids) == 2
    assert gone(pids, within_s=0.5)


@pytest.mark.parametrize("method", METHODS)
def test_no_worker_outlives_a_killed_parent(method: str, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        sys.path[:0] = [{str(ROOT)!r}]
        from crossmargin.core.config import load_config
        from crossmargin.workers import WorkerPool
        pool = WorkerPool(load_config({str(ROOT / "configs" / "devnet.toml")!r}, env={{}}),
                          workers=2, start_method={method!r})
        pool.start()
        print(*pool.pids, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pids = [int(p) for p in proc.stdout.split()]
    assert len(pids) == 2
    assert gone(pids), "a worker outlived its killed parent"


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_that_asks_is_signalled_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A parent starts a child calling `die_with_parent` (and a SIGTERM handler that
    notes it), then is SIGKILLed: the child gets SIGTERM from the kernel."""
    flag = tmp_path / "signalled"
    child = textwrap.dedent(
        f"""
        import os, signal, sys, time
        sys.path[:0] = [{str(ROOT)!r}]
        from crossmargin.workers import die_with_parent
        def noted(signum, frame):
            open({str(flag)!r}, "w").write(signal.Signals(signum).name)
            os._exit(0)
        signal.signal(signal.SIGTERM, noted)
        other = die_with_parent(os.getpid())  # expects a parent it does not have: gone
        mine = die_with_parent(int(sys.argv[1]))
        print(other.gone, mine.gone, mine.signalled, flush=True)
        time.sleep(60)
        """
    )
    parent = textwrap.dedent(
        f"""
        import os, signal, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", {child!r}, str(os.getpid())],
                                 stdout=subprocess.PIPE, text=True)
        print(child.pid, child.stdout.readline().strip(), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    with (tmp_path / "child.err").open("w") as err:
        proc = subprocess.run(
            [sys.executable, "-c", parent],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=60,
            check=False,
        )
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "child.err").read_text()
    pid, found = proc.stdout.split(" ", 1)
    assert found.split() == ["True", "False", "True"]
    assert gone([int(pid)]), "the child outlived its killed parent"
    assert flag.read_text() == "SIGTERM"


@pytest.mark.skipif(sys.platform != "linux", reason="VmHWM is in Linux's /proc")
def test_vm_hwm_is_a_process_peak_and_0_once_it_is_gone() -> None:
    """bench/pipeline.py reads the scan's and its workers' peak RSS with it."""
    assert vm_hwm_kib() > 10_000  # KiB: this interpreter, at least
    assert vm_hwm_kib(os.getpid()) > 10_000
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert vm_hwm_kib(done.pid) == 0


def test_start_method_is_fork_only_without_threads_or_a_loop() -> None:
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert choose_start_method() == "forkserver"
    finally:
        stop.set()
        t.join()

    async def in_a_loop() -> str:
        return choose_start_method()

    assert asyncio.run(in_a_loop()) == "forkserver"
    if threading.active_count() == 1:  # pytest may run other threads (the devnet's)
        assert choose_start_method() == "fork"
