"""`Peers`: what one `crossmargin serve --workers N` worker computes, handed to the
other workers' result caches.

Why: connections, not requests, are spread over the workers, so a client asking again
about an account often lands on a worker that did not compute it. That worker found
it in the snapshot store (a query, then the document checked against its hash and
canonical form, expanded, re-encoded): bench/api.py's cached phase served 0.3-0.5x
the accounts of one process. Now the worker that computes (or finds) a result also
sends it, under its cache key, to every other worker, which keeps it in memory.

How: one Unix datagram socketpair per worker, made by the supervisor before the
workers start (only they hold the ends: nothing else on the machine can write to a
worker's inbox); a worker reads its own inbox and writes to the others'. A message is
one pickled value per datagram (a report is a few KB). Sending never waits: a full
inbox drops the message (counted), and the receiver then finds the result in the store
as before. What a message must match to be kept is its receiver's business
(`Service`: the config hash of the method).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import socket
from collections.abc import Callable, Sequence

INBOX_BYTES = 4 << 20  # a worker's receive buffer: ~1,000 reports waiting to be read
MAX_MESSAGE = 1 << 20  # larger results are not sent (the store serves them)

log = logging.getLogger("api.peers")


def mailboxes(count: int) -> list[tuple[socket.socket, socket.socket]]:
    """Per worker (reading end, writing end), non-blocking, made before the workers
    start so each inherits its own reading end and the others' writing ends."""
    boxes = []
    for _ in range(count):
        inbox, outbox = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):  # capped by net.core.rmem_max: best effort
            inbox.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, INBOX_BYTES)
        inbox.setblocking(False)
        outbox.setblocking(False)
        boxes.append((inbox, outbox))
    return boxes


class Peers:
    """This worker's inbox and the other workers' outboxes."""

    def __init__(self, inbox: socket.socket, outboxes: Sequence[socket.socket]) -> None:
        self.inbox = inbox
        self.outboxes = list(outboxes)
        self.sent = 0
        self.received = 0
        self.dropped = 0  # a peer's inbox was full, or the message too large
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self, deliver: Callable[[object], None]) -> None:
        """Hand every message that arrives to `deliver`, on this event loop."""
        loop = self._loop = asyncio.get_running_loop()
        loop.add_reader(self.inbox.fileno(), self._receive, deliver)

    def close(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(self.inbox.fileno())
            self._loop = None

    def send(self, message: object) -> None:
        """To every other worker, now or never (a full inbox drops it)."""
        if not self.outboxes:
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) > MAX_MESSAGE:
            self.dropped += len(self.outboxes)
            return
        for box in self.outboxes:
            try:
                box.send(data)
            except OSError:  # EAGAIN (the inbox is full), or the peer is being restarted
                self.dropped += 1
            else:
                self.sent += 1

    def _receive(self, deliver: Callable[[object], None]) -> None:
        while True:
            try:
                data = self.inbox.recv(MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            self.received += 1
            try:
                message = pickle.loads(data)  # from our own workers only (module docstring)
            except Exception:  # a worker of another version: not ours to read
                log.warning("a message from another worker could not be read")
                continue
            deliver(message)
