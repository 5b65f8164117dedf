"""`BalancedSite`: N worker processes accept from one listening socket, each taking a
new connection only while it holds no more connections than the least loaded other
(ties: no more accepted so far, so short-lived connections go round).

Why not SO_REUSEPORT: the kernel then gives each connection to a worker by a hash of
its address, blind to load. A client's keep-alive connections stay where they land:
of bench/api.py's 50, one worker could hold half again as many as the other and run
at its one core (the GIL) while the other idled; two single-request runs of the same
code gave 495 and 736 uncached accounts/s. Here the supervisor makes one listening
socket and every worker waits on it; the counts of held connections and of
connections accepted sit in shared memory (`counts`: held[0..N), then
accepted[0..N); each worker writes its own two only).

A worker behind which another comes first (it holds fewer; or as many, having
accepted fewer) steps aside for DEFER_S and looks again; after MAX_DEFERRALS it takes
the connection anyway, so a peer that is busy, restarting or gone delays a new
connection by at most ~MAX_DEFERRALS * DEFER_S. A worker not (yet) serving holds
ABSENT, so nobody waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any, Protocol

from aiohttp import web

ABSENT = 2**30  # the count of a worker that is not serving: never the least
DEFER_S = 0.002
MAX_DEFERRALS = 20
REFRESH_S = 0.25  # a worker's count also falls as its connections close
BACKOFF_S = 1.0  # accept() failed for want of resources (EMFILE...): as asyncio does

log = logging.getLogger(__name__)


class Counts(Protocol):
    """Per worker its held connections, then per worker its accepted ones: a
    `multiprocessing` RawArray of 2N C ints."""

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[int]: ...
    def __getitem__(self, index: int, /) -> int: ...
    def __setitem__(self, index: int, value: int, /) -> None: ...


def listening_socket(sock: socket.socket, backlog: int = 1024) -> socket.socket:
    """The supervisor's bound socket, listening and non-blocking (the flag belongs to
    the open file, shared by every worker: a worker that loses the race for a
    connection gets EAGAIN, not a blocked loop)."""
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


class _Acceptor:
    """What BaseSite keeps as its server: `sockets` (runner.addresses) and `close`."""

    def __init__(self, sock: socket.socket, server: web.Server, counts: Counts, index: int) -> None:
        self.sockets = [sock]
        self._sock = sock
        self._server = server
        self._counts = counts
        self._index = index
        self._workers = len(counts) // 2
        self._loop = asyncio.get_running_loop()
        self._deferrals = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def start(self) -> None:
        counts, n, i = self._counts, self._workers, self._index
        counts[i] = len(self._server.connections)
        # a restarted worker starts level with the others, not behind on the tie-break
        counts[n + i] = min((counts[n + j] for j in range(n) if j != i), default=0)
        self._loop.add_reader(self._sock.fileno(), self._readable)
        self._timer = self._loop.call_later(REFRESH_S, self._refresh)

    def _refresh(self) -> None:
        self._counts[self._index] = len(self._server.connections)
        self._timer = self._loop.call_later(REFRESH_S, self._refresh)

    def _pause(self, seconds: float) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._readable)

    def _others_first(self, held: int) -> bool:
        """Whether another worker comes before this one: fewer held, or as many held
        and fewer accepted."""
        counts, n, i = self._counts, self._workers, self._index
        mine = (held, counts[n + i])
        return any((counts[j], counts[n + j]) < mine for j in range(n) if j != i)

    def _readable(self) -> None:
        mine = len(self._server.connections)
        self._counts[self._index] = mine
        if self._deferrals < MAX_DEFERRALS and self._others_first(mine):
            self._deferrals += 1
            self._pause(DEFER_S)
            return
        self._deferrals = 0
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):  # another worker took it
            return
        except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ENOMEM
            log.warning("accept failed (%s); pausing %.0f s", exc.strerror, BACKOFF_S)
            self._pause(BACKOFF_S)
            return
        self._counts[self._index] = mine + 1
        self._counts[self._workers + self._index] += 1
        conn.setblocking(False)
        task = self._loop.create_task(self._connect(conn))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._server, conn)
        except OSError:  # the client went away before the transport was made
            conn.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._counts[self._index] = ABSENT
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._sock.fileno())
        if self._timer is not None:
            self._timer.cancel()
        for task in self._tasks:
            task.cancel()


class BalancedSite(web.BaseSite):
    """An aiohttp site on a listening socket shared with other workers (see module)."""

    def __init__(
        self,
        runner: web.AppRunner,
        sock: socket.socket,
        counts: Counts,
        index: int,
    ) -> None:
        super().__init__(runner)
        self._sock = sock
        self._counts = counts
        self._index = index
        host, port = sock.getsockname()[:2]
        self._name = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        acceptor = _Acceptor(self._sock, server, self._counts, self._index)
        acceptor.start()
        self._server = acceptor  # type: ignore[assignment]  # sockets + close(), as used
