"""Engine batches on every core: K worker processes, each with its own engine.

One Python process runs the engine on one core (the GIL), while reading, valuing and
serialising a batch costs ~0.8 ms of Python CPU per account. `WorkerPool` runs batches in
K processes instead. Each worker is given the config (pickled once, at start) and the
history store's URL, opens its own `Engine.connect(config, history)` on a persistent
event loop, and runs jobs: a batch of requests (at given pins or its own) through
`Engine.run`, then a `finish` function on the results in the worker, whose small return
value (scan's output lines, a bench's totals) is all that comes back. The figures are
the one engine's: the same `Engine.run` on the same inputs, in another process.

`finish(engine, results, extra)` must be a module-level function (pickled by reference)
and return picklable data. A worker runs several jobs at once (one reading while another
computes), so the caller keeps about `concurrency` jobs per worker in flight.

Failures: an exception in a job (in `Engine.run` or `finish`) is raised by that job's
`run` in the parent, the pool goes on. A worker that dies fails its jobs with
`WorkerError` (and every later `run`): no hang. `close()` (or leaving `with`) stops the
workers, and a worker whose parent goes away exits too (its pipe reads EOF; Linux also
sends it SIGTERM), so no process outlives the pool. Workers ignore SIGINT: Ctrl-C is the
parent's to handle, and it then closes the pool.

Start method (`choose_start_method`): `fork` when this process has one thread and no
running event loop: the workers inherit the imported modules, so starting costs
milliseconds. Forking a process with other threads can copy a lock some thread holds
(a deadlock in the child), so otherwise `forkserver`: a fresh single-threaded server
process imports this module once (~1 s) and forks the workers from itself. As with
`spawn`, each such worker first imports the main module (a script must guard its entry
point with `if __name__ == "__main__"`), and `finish` must be importable by name there.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, Literal, NamedTuple, TypeVar

from crossmargin.core.config import Config
from crossmargin.core.errors import CrossmarginError
from crossmargin.engine import Engine, Pinned, Result, collect_less
from crossmargin.pipeline.figures import Request

T = TypeVar("T")
Finish = Callable[[Engine, list[Result], Any], T]
StartMethod = Literal["fork", "forkserver", "spawn"]
STOP_WAIT_S = 10.0  # a worker finishing its jobs and closing its engine at close()
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class WorkerError(CrossmarginError):
    """A worker process died or could not be started; or a job failed with an exception
    that cannot be sent back as itself (its type and message are kept)."""


def choose_start_method() -> StartMethod:
    """`fork` when it is safe here (one thread, no running loop), else `forkserver`."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if threading.active_count() == 1:
            return "fork"
    return "forkserver"


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def vm_hwm_kib(pid: int | None = None) -> int:
    """A process's (None: this one's) peak resident set so far, KiB: its VmHWM, not
    ru_maxrss, which a child started by fork and exec inherits from its parent. 0 once
    the process is gone, or where there is no /proc. For bench/pipeline.py's scan and
    its workers; here, as the CLI imports this module anyway (no extra resident set)."""
    path = f"/proc/{'self' if pid is None else pid}/status"
    with contextlib.suppress(OSError), open(path, "rb") as f:
        for line in f:
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- the worker side


class ParentWatch(NamedTuple):
    """What `die_with_parent` found."""

    gone: bool  # the expected parent had already exited: this process was re-parented
    signalled: bool  # the kernel will signal its exit (else the caller must watch)


def die_with_parent(parent: int | None, sig: signal.Signals = signal.SIGTERM) -> ParentWatch:
    """Called at a child's start so that it never outlives the process that started it.
    Linux: the kernel sends `sig` when that parent (the thread that started this one)
    exits (PR_SET_PDEATHSIG); elsewhere, nothing. A parent that exited before the ask
    sends nothing, hence `gone`: this process's parent is no longer `parent` (None: not
    checked, e.g. under forkserver, whose server is the parent)."""
    signalled = False
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):  # no libc prctl to call
            libc = ctypes.CDLL(None, use_errno=True)
            signalled = libc.prctl(_PR_SET_PDEATHSIG, int(sig)) == 0
    return ParentWatch(parent is not None and os.getppid() != parent, signalled)


def _portable(exc: BaseException) -> BaseException:
    """`exc` if it survives pickling (with the worker's traceback as a note), else a
    `WorkerError` with its type and message."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        lines = traceback.format_exception_only(type(exc), exc)
        return WorkerError("a job failed in a worker: " + "".join(lines).strip())
    with contextlib.suppress(Exception):
        exc.add_note("in a worker:\n" + "".join(traceback.format_tb(exc.__traceback__)))
    return exc


def _post(conn: Connection, jid: int | str, ok: bool, value: object) -> None:
    """Send one answer, its value pickled on its own: a value that cannot be pickled is
    the job's error, and one that cannot be unpickled there still names its job."""
    try:
        blob = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        ok, blob = False, pickle.dumps(_portable(exc))
    conn.send((jid, ok, blob))


def _worker(
    conn: Connection,
    config: Config,
    history_url: str | None,
    inherited: list[Any],
    parent: int | None,
) -> None:
    """A worker process's main: serve jobs from `conn` until told to stop or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if die_with_parent(parent).gone:  # no signal will come: exit now
        os._exit(0)
    for other in inherited:  # fork: the parent's ends of the pipes (this one's too: EOF)
        other.close()
    collect_less()
    asyncio.run(_serve(conn, config, history_url))


async def _serve(conn: Connection, config: Config, history_url: str | None) -> None:
    from oracle.store import HistoryStore

    history = HistoryStore.open(history_url) if history_url else None
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    sender = ThreadPoolExecutor(1, thread_name_prefix="worker-send")  # pickles and writes

    def readable() -> None:
        try:
            inbox.put_nowait(conn.recv())
        except (EOFError, OSError):  # the parent is gone
            loop.remove_reader(conn.fileno())
            inbox.put_nowait(None)

    async def send(jid: int | str, ok: bool, value: object) -> None:
        with contextlib.suppress(OSError):  # the parent is gone: nothing to tell
            await loop.run_in_executor(sender, _post, conn, jid, ok, value)

    async def job(
        jid: int,
        requests: list[Request],
        method: str | None,
        pins: Mapping[str, Pinned] | None,
        finish: Finish[Any],
        extra: Any,
    ) -> None:
        try:
            results = await engine.run(requests, method, pins)
            value = await asyncio.to_thread(finish, engine, results, extra)
        except Exception as exc:
            await send(jid, False, _portable(exc))
        else:
            await send(jid, True, value)

    loop.add_reader(conn.fileno(), readable)
    running: set[asyncio.Task[None]] = set()
    try:
        async with Engine.connect(config, history) as engine:
            while (msg := await inbox.get()) is not None:
                task = asyncio.create_task(job(*msg))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.gather(*running)
        await send("bye", True, None)  # every answer sent
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(conn.fileno())
        sender.shutdown(wait=True)
        if history is not None:
            history.close()
        conn.close()


# ---------------------------------------------------------------- the parent side


class _Handle:
    """The parent's view of one worker: its process, pipe and jobs in flight."""

    def __init__(self, process: multiprocessing.process.BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.dead: str | None = None


class WorkerPool:
    """K worker processes, each with its own engine; `await pool.run(...)` per batch.

    Start it (`with WorkerPool(...)`) before this process starts threads or an event loop
    to get the cheap `fork` start; `run` may then be awaited from any one event loop at a
    time (`asyncio.run` after `start`)."""

    def __init__(
        self,
        config: Config,
        history_url: str | None = None,
        workers: int = 2,
        start_method: StartMethod | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.config = config
        self.history_url = history_url
        self.size = workers
        self.start_method: StartMethod = start_method or choose_start_method()
        self._handles: list[_Handle] = []
        self._ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(wait=exc_type is None)  # on an error or Ctrl-C: stop them now

    def start(self) -> None:
        ctx: Any = multiprocessing.get_context(self.start_method)  # typeshed: BaseContext
        if self.start_method == "forkserver":
            ctx.set_forkserver_preload(["crossmargin.workers"])
        try:
            for i in range(self.size):
                mine, theirs = ctx.Pipe()
                fork = self.start_method == "fork"
                parent = None if self.start_method == "forkserver" else os.getpid()
                inherited = [*(h.conn for h in self._handles), mine] if fork else []
                process = ctx.Process(
                    target=_worker,
                    args=(theirs, self.config, self.history_url, inherited, parent),
                    name=f"crossmargin-worker-{i}",
                    daemon=True,
                )
                process.start()
                theirs.close()
                self._handles.append(_Handle(process, mine))
        except BaseException:
            self.close()
            raise

    def close(self, wait: bool = True) -> None:
        """Stop every worker. `wait`: each finishes its jobs and closes its engine, and one
        that does not within STOP_WAIT_S is terminated; else all are terminated at once
        (SIGTERM), then killed if need be. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._detach()
        for h in self._handles:
            if h.dead is None and wait:
                with contextlib.suppress(OSError):
                    h.conn.send(None)
            elif h.process.is_alive():
                h.process.terminate()
        for h in self._handles:
            if wait:
                self._collect_bye(h)
            h.process.join(STOP_WAIT_S if wait else 2)
            if h.process.is_alive():
                h.process.terminate()
                h.process.join(2)
            if h.process.is_alive():
                h.process.kill()
                h.process.join()
            h.conn.close()
            self._fail(h, WorkerError("the worker pool was closed"))

    def _collect_bye(self, h: _Handle) -> None:
        """Read what a stopping worker still sends, up to its goodbye."""
        while h.dead is None:
            try:
                if not h.conn.poll(STOP_WAIT_S):
                    return
                msg = h.conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] == "bye":
                return

    @property
    def pids(self) -> list[int]:
        return [h.process.pid for h in self._handles if h.process.pid is not None]

    # ------------------------------------------------------------ jobs

    async def run(
        self,
        requests: Sequence[Request],
        finish: Finish[T],
        extra: Any = None,
        *,
        method: str | None = None,
        pins: Mapping[str, Pinned] | None = None,
    ) -> T:
        """`finish(engine, engine.run(requests, method, pins), extra)` in a worker (the
        least busy one); its value here, or its exception raised here."""
        if self._closed or not self._handles:
            raise WorkerError("the worker pool is not running")
        self._attach()
        live = [h for h in self._handles if h.dead is None]
        if not live:
            raise WorkerError(next(h.dead for h in self._handles if h.dead))
        h = min(live, key=lambda w: len(w.pending))
        jid = next(self._ids)
        assert self._loop is not None
        fut: asyncio.Future[Any] = self._loop.create_future()
        h.pending[jid] = fut
        try:
            h.conn.send((jid, list(requests), method, dict(pins) if pins else None, finish, extra))
        except (OSError, ValueError) as exc:
            self._died(h)
            raise WorkerError(h.dead or "a worker cannot be reached") from exc
        try:
            value: T = await fut
        finally:
            h.pending.pop(jid, None)
        return value

    async def map_ordered(
        self,
        jobs: Sequence[tuple[Sequence[Request], Any]],
        finish: Finish[T],
        window: int | None = None,
    ) -> AsyncIterator[T]:
        """Each (requests, extra) job's value in order, `window` in flight (default two
        per worker: one reading while another computes)."""
        size = window or 2 * self.size
        pending: list[asyncio.Task[T]] = []
        try:
            for requests, extra in jobs:
                pending.append(asyncio.ensure_future(self.run(requests, finish, extra)))
                if len(pending) >= size:
                    yield await pending.pop(0)
            while pending:
                yield await pending.pop(0)
        finally:
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    # ------------------------------------------------------------ plumbing

    def _attach(self) -> None:
        """Watch every worker's pipe and process from the running loop (once per loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._detach()
        self._loop = loop
        for h in self._handles:
            if h.dead is None:
                loop.add_reader(h.conn.fileno(), self._readable, h)
                loop.add_reader(h.process.sentinel, self._died, h)

    def _detach(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None or loop.is_closed():
            return
        for h in self._handles:
            with contextlib.suppress(Exception):
                loop.remove_reader(h.conn.fileno())
            with contextlib.suppress(Exception):
                loop.remove_reader(h.process.sentinel)

    def _readable(self, h: _Handle) -> None:
        try:
            jid, ok, blob = h.conn.recv()
        except (EOFError, OSError):
            self._died(h)
            return
        self._answer(h, jid, ok, blob)

    @staticmethod
    def _answer(h: _Handle, jid: int | str, ok: bool, blob: bytes) -> None:
        if jid == "bye":
            return
        try:
            value = pickle.loads(blob)
        except Exception as exc:  # e.g. a class this process cannot import
            ok, value = False, WorkerError(f"a job's answer cannot be read here: {exc}")
        fut = h.pending.pop(int(jid), None)
        if fut is None or fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def _died(self, h: _Handle) -> None:
        if h.dead is not None:
            return
        with contextlib.suppress(EOFError, OSError):  # answers sent before it died
            while h.conn.poll(0):
                self._answer(h, *h.conn.recv())
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(Exception):
                self._loop.remove_reader(h.conn.fileno())
            with contextlib.suppress(Exception):
                self._loop.remove_reader(h.process.sentinel)
        h.process.join(1)
        code = h.process.exitcode
        how = f"exit status {code}" if code is None or code >= 0 else f"signal {-code}"
        h.dead = f"worker {h.process.name} (pid {h.process.pid}) died ({how})"
        self._fail(h, WorkerError(h.dead))

    @staticmethod
    def _fail(h: _Handle, exc: WorkerError) -> None:
        for fut in h.pending.values():
            if not fut.done():
                fut.set_exception(exc)
        h.pending.clear()
