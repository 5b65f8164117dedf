"""crossmargin/cli/accept.py in one process: two aiohttp servers on one listening
socket (each its own descriptor of it, as each worker process has), their counts in a
plain array, as `serve --workers 2`'s workers share them."""

from __future__ import annotations

import array
import asyncio
import socket
import time

import pytest
from aiohttp import web

from crossmargin.cli import accept
from crossmargin.cli.accept import ABSENT, BalancedSite, listening_socket


def _app(name: str) -> web.Application:
    async def who(_: web.Request) -> web.Response:
        return web.Response(text=name)

    app = web.Application()
    app.router.add_get("/", who)
    return app


async def _ask(host: str, port: int) -> tuple[asyncio.StreamWriter, str]:
    """A new connection kept open, and which server answered on it."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = int(next(h for h in lines if h.startswith(b"content-length:"))[15:])
    return writer, (await reader.readexactly(length)).decode()


async def _serve(
    socks: list[socket.socket], counts: array.array[int], names: list[str]
) -> list[web.AppRunner]:
    runners = []
    for i, (sock, name) in enumerate(zip(socks, names, strict=True)):
        runner = web.AppRunner(_app(name))
        await runner.setup()
        await BalancedSite(runner, sock, counts, i).start()
        runners.append(runner)
    return runners


def _socket() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return listening_socket(sock)


@pytest.mark.asyncio
async def test_connections_kept_open_are_shared_evenly() -> None:
    sock = _socket()
    other = sock.dup()
    counts = array.array("i", [ABSENT, ABSENT, 0, 0])
    runners = await _serve([sock, other], counts, ["a", "b"])
    opened = []
    try:
        for _ in range(10):
            opened.append(await _ask(*sock.getsockname()))
        names = [name for _, name in opened]
        assert sorted(names.count(n) for n in "ab") == [5, 5], names
        assert list(counts) == [5, 5, 5, 5]
    finally:
        for writer, _ in opened:
            writer.close()
        for runner in runners:
            await runner.cleanup()
        sock.close()
        other.close()
    assert counts[0] == counts[1] == ABSENT  # a closed site is nobody's least


@pytest.mark.asyncio
async def test_a_peer_that_never_accepts_delays_a_connection_a_little() -> None:
    """The peer's count says it holds fewer, but it takes nothing (busy, restarting):
    after MAX_DEFERRALS looks this worker takes the connection itself."""
    sock = _socket()
    counts = array.array("i", [ABSENT, 0, 0, 0])  # worker 1: holds none, never accepts
    (runner,) = await _serve([sock], counts, ["a"])
    opened = []
    try:
        opened.append(await _ask(*sock.getsockname()))  # 0 held: not behind anyone
        t0 = time.perf_counter()
        opened.append(await _ask(*sock.getsockname()))  # 1 held: behind worker 1
        waited = time.perf_counter() - t0
        assert [name for _, name in opened] == ["a", "a"]
        assert accept.MAX_DEFERRALS * accept.DEFER_S <= waited < 5.0
    finally:
        for writer, _ in opened:
            writer.close()
        await runner.cleanup()
        sock.close()
