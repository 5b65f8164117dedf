"""`crossmargin serve`: the API in this process, or in N worker processes on one port.

One Python process is bound by one core (the GIL). With `--workers N` (or `api.workers`)
this process is a supervisor: it runs what must run once (the snapshot store's
migrations, the price-history tables), opens the listening socket, then starts N
workers (multiprocessing `spawn`: fresh interpreters, nothing forked after threads or
loops exist), each the whole app accepting from that socket, a new connection going
to the worker that holds the fewest (crossmargin/cli/accept.py: not SO_REUSEPORT,
whose hash left one worker with most of a client's keep-alive connections). Worker 0
alone runs the stored watches' watcher and the webhook deliverer; rate limits are
divided by N (api/app.py `Worker`).

Supervision: a worker that exits unexpectedly is restarted (worker 0 as worker 0), at
most MAX_RESTARTS times within RESTART_WINDOW_S; past that, or if a worker cannot
start, every worker is stopped and the supervisor exits 1. SIGINT and SIGTERM stop
the workers (SIGTERM to each, SIGKILL after STOP_TIMEOUT_S) and exit 0; a worker whose
supervisor is gone stops by itself (the kernel sends it SIGTERM: `die_with_parent`), so
no process is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import TYPE_CHECKING

from api.peers import mailboxes
from crossmargin.cli.accept import ABSENT, BalancedSite, Counts, listening_socket
from crossmargin.core.errors import CrossmarginError
from crossmargin.workers import die_with_parent

if TYPE_CHECKING:
    from aiohttp import web

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
PARENT_CHECK_S = 1.0  # where the kernel cannot signal a supervisor's death


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    *,
    shared: tuple[socket.socket, Counts, int] | None = None,
    on_ready: Callable[[list[str]], None] | None = None,
    parent: int | None = None,
) -> None:
    """Run until SIGINT/SIGTERM. `shared`: a worker's (listening socket, connection
    counts, index), instead of binding host:port itself; a worker stops on SIGTERM only
    (SIGINT is its supervisor's), or once its supervisor `parent` is gone (polled; a
    worker passes it only where the kernel will not send SIGTERM then). `on_ready` gets
    the bound URLs; without it they are printed (`listening on URL`)."""
    from aiohttp import web

    from crossmargin.cli.main import bound_urls

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM,) if shared is not None else (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app)
    orphaned = None if parent is None else asyncio.create_task(_orphaned(parent, stop))
    try:
        await runner.setup()
        site: web.BaseSite
        if shared is not None:
            site = BalancedSite(runner, *shared)
        else:
            site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise CrossmarginError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        urls = bound_urls(runner)
        if on_ready is not None:
            on_ready(urls)
        else:
            for url in urls:
                print(f"listening on {url}", flush=True)
        await stop.wait()
    finally:
        if orphaned is not None:
            orphaned.cancel()
        await runner.cleanup()
        for sig in signals:
            loop.remove_signal_handler(sig)


async def _orphaned(parent: int, stop: asyncio.Event) -> None:
    """Stop when the supervisor is gone (killed): a worker never outlives it. Only where
    `die_with_parent` could not ask the kernel for SIGTERM then."""
    while True:
        await asyncio.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            stop.set()
            return


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What a worker needs; plain values, pickled to a spawned interpreter."""

    config_path: str
    db: str | None  # --db as given (the history store is found as the parent found it)
    url: str  # the snapshot store, resolved by the parent
    host: str
    port: int
    index: int
    count: int
    parent: int


def worker_main(
    spec: WorkerSpec,
    sock: socket.socket,
    counts: Counts,
    mail: tuple[socket.socket, list[socket.socket]],
    ready: Connection,
) -> None:
    """A worker process: the whole app on the shared port. Ctrl-C reaches the whole
    process group; the supervisor forwards it as SIGTERM, so the worker ignores SIGINT
    (no KeyboardInterrupt traceback half-way through start-up). The supervisor's death
    is a SIGTERM too (`die_with_parent`), so the worker stops as it does when stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch = die_with_parent(spec.parent, signal.SIGTERM)
    if watch.gone:  # the supervisor died before the kernel was asked: no signal will come
        sys.exit(0)
    from api.app import Worker, create_app
    from api.peers import Peers
    from crossmargin.cli.main import _config, open_history
    from crossmargin.engine import collect_less

    collect_less()  # as the console script does
    code = 0
    try:
        config = _config(spec.config_path)
        history = open_history(config, spec.db)
        try:
            app = create_app(
                config,
                database=spec.url,
                history=history,
                worker=Worker(spec.index, spec.count),
                peers=Peers(*mail),
            )
            asyncio.run(
                serve_app(
                    app,
                    spec.host,
                    spec.port,
                    shared=(sock, counts, spec.index),
                    on_ready=lambda urls: ready.send(urls),
                    parent=None if watch.signalled else spec.parent,
                )
            )
        finally:
            history.close()
    except CrossmarginError as exc:
        message = "; ".join(str(exc).splitlines()) or type(exc).__name__
        print(f"crossmargin: error: worker {spec.index}: {message}", file=sys.stderr, flush=True)
        code = 1
    finally:
        ready.close()
    sys.exit(code)


def reserve_port(host: str, port: int) -> socket.socket:
    """The workers' listening socket on host:port (`--port 0`: one port for all); fails
    early if another program holds the port. Held by the supervisor until the end, so
    a restarted worker takes it over with the connections waiting in its backlog."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise CrossmarginError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        listening_socket(sock)
    except OSError as exc:
        sock.close()
        raise CrossmarginError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


class Supervisor:
    """N workers on one port: start, wait until all listen, restart, stop."""

    def __init__(
        self, make_spec: Callable[[int], WorkerSpec], count: int, sock: socket.socket
    ) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._make_spec = make_spec
        self.count = count
        self._sock = sock
        # held, then accepted, connections per worker (accept.py); held is ABSENT
        # until a worker serves
        self.counts: Counts = self._ctx.RawArray("i", [ABSENT] * count + [0] * count)
        # each worker's inbox of the others' results (api/peers.py), made before any
        # starts, kept here so a restarted worker reads the same one
        self._mail = mailboxes(count)
        self.procs: list[BaseProcess | None] = [None] * count
        self._ready: list[Connection | None] = [None] * count
        self._restarts: list[float] = []
        self.stopping = False

    def _start(self, index: int) -> None:
        reader, writer = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=worker_main,
            args=(self._make_spec(index), self._sock, self.counts, self._mailbox(index), writer),
            name=f"crossmargin-worker-{index}",
        )
        proc.start()
        writer.close()
        old = self._ready[index]
        if old is not None:
            old.close()
        self.procs[index], self._ready[index] = proc, reader

    def _mailbox(self, index: int) -> tuple[socket.socket, list[socket.socket]]:
        """Worker `index`'s inbox and the other workers' outboxes."""
        others = [out for j, (_, out) in enumerate(self._mail) if j != index]
        return self._mail[index][0], others

    def start(self) -> list[str]:
        """Start every worker and wait until all listen; their URLs (worker 0's)."""
        for i in range(self.count):
            self._start(i)
        urls: list[str] = []
        waiting = set(range(self.count))
        deadline = time.monotonic() + START_TIMEOUT_S
        while waiting and not self.stopping:
            if time.monotonic() > deadline:
                raise CrossmarginError(f"workers {sorted(waiting)} did not start in time")
            readers = {self._ready[i]: i for i in waiting}
            for conn in wait([c for c in readers if c is not None], timeout=0.2):
                assert isinstance(conn, Connection)
                i = readers[conn]
                try:
                    got: list[str] = conn.recv()
                except EOFError:  # it exited before listening: it said why on stderr
                    proc = self.procs[i]
                    assert proc is not None
                    proc.join()
                    raise CrossmarginError(
                        f"worker {i} did not start (exit status {proc.exitcode})"
                    ) from None
                waiting.discard(i)
                urls = got  # every worker listens on the same host:port
        return urls

    def supervise(self) -> None:
        """Until stopped: restart a worker that exits (bounded: CrossmarginError past
        MAX_RESTARTS in RESTART_WINDOW_S)."""
        while not self.stopping:
            alive = {p.sentinel: i for i, p in enumerate(self.procs) if p is not None}
            for sentinel in wait(list(alive), timeout=0.5):
                if self.stopping:
                    break
                assert isinstance(sentinel, int)
                i = alive[sentinel]
                proc = self.procs[i]
                assert proc is not None
                proc.join()
                now = time.monotonic()
                self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S]
                if len(self._restarts) >= MAX_RESTARTS:
                    raise CrossmarginError(
                        f"worker {i} exited (status {proc.exitcode}); "
                        f"{MAX_RESTARTS} restarts in {RESTART_WINDOW_S:g} s: giving up"
                    )
                self._restarts.append(now)
                self.counts[i] = ABSENT  # its connections died with it
                print(
                    f"crossmargin: worker {i} (pid {proc.pid}) exited with status "
                    f"{proc.exitcode}; restarting it",
                    file=sys.stderr,
                    flush=True,
                )
                self._start(i)

    def stop(self) -> None:
        """SIGTERM to every worker, SIGKILL to any still there after STOP_TIMEOUT_S."""
        self.stopping = True
        live = [p for p in self.procs if p is not None and p.exitcode is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in live:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join()
        for conn in self._ready:
            if conn is not None:
                conn.close()
        for inbox, outbox in self._mail:
            inbox.close()
            outbox.close()


def run_workers(
    config_path: str, db: str | None, url: str, host: str, port: int, count: int
) -> None:
    """The supervisor: migrations once, then `count` workers until SIGINT/SIGTERM."""
    from api.store import Store
    from crossmargin.cli.main import _config, open_history

    Store.open(url).close()  # alembic upgrade once, before any worker opens the store
    open_history(_config(config_path), db).close()  # its tables, once
    reserved = reserve_port(host, port)
    port = reserved.getsockname()[1]
    supervisor = Supervisor(
        lambda i: WorkerSpec(config_path, db, url, host, port, i, count, os.getpid()),
        count,
        reserved,
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        supervisor.stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        urls = supervisor.start()
        if not supervisor.stopping:
            for u in urls:
                print(f"listening on {u}", flush=True)
            pids = ", ".join(str(p.pid) for p in supervisor.procs if p is not None)
            print(f"workers: {count} (pids {pids})", flush=True)
            supervisor.supervise()
    finally:
        supervisor.stop()
        reserved.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
