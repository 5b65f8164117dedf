"""Helpers of the API tests: a real server in a thread or in its own process
(`crossmargin serve`), config variants, API keys."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from api.security import new_key
from api.store import Item, Store
from crossmargin.core.canonical import digest
from crossmargin.core.config import ApiKeyConfig
from crossmargin.pipeline.snapshot import GENESIS, Built


class ServerThread:
    """An aiohttp app served on 127.0.0.1:<free port> from a helper thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="api-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(self.app)
        try:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert isinstance(server, asyncio.Server)
            self.port = server.sockets[0].getsockname()[1]
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            await runner.cleanup()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(60) or self._error is not None:
            raise RuntimeError(f"API server did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


ROOT = Path(__file__).resolve().parents[2]
CROSSMARGIN = Path(sys.executable).with_name("crossmargin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dead_url(secret: str) -> tuple[str, str]:
    """An RPC URL nobody answers, with `secret` in its path; and its host:port."""
    port = free_port()
    return f"http://localhost:{port}/v2/{secret}", f"localhost:{port}"


@dataclass(frozen=True)
class ApiProcess:
    url: str
    port: int
    proc: subprocess.Popen[bytes]


@contextmanager
def api_process(config_path: Path, database: str, log: Path) -> Iterator[ApiProcess]:
    """`crossmargin serve` in its own process (output to `log`), stopped on exit."""
    port = free_port()
    env = {**os.environ, "CROSSMARGIN_DATABASE_URL": database}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(CROSSMARGIN), "serve", "--config", str(config_path), "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield ApiProcess(f"http://127.0.0.1:{port}", port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_up(session: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            async with session.get(f"{base}/v1/health") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base} did not come up")
        await asyncio.sleep(0.2)


async def problem(resp: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    """The body of `resp`, checked to be an RFC 9457 problem with this status, a stable
    `code`, no trace, and no version banner in `Server`."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = await resp.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "code"} <= body.keys()
    assert body["code"].replace("_", "").isalpha()
    assert "Traceback" not in str(body)
    assert resp.headers.get("Server", "crossmargin") == "crossmargin"
    return body


def api_config(devnet: Any, **api: Any) -> Any:
    """The devnet config with some `[api]` settings replaced."""
    config = devnet.config
    return config.model_copy(update={"api": config.api.model_copy(update=api)})


def with_chain(config: Any, name: str, **update: Any) -> Any:
    """`config` with some settings of one chain replaced."""
    chains = [c.model_copy(update=update) if c.name == name else c for c in config.chains]
    return config.model_copy(update={"chains": chains})


def make_key(name: str, rate_per_s: float, burst: int) -> tuple[str, ApiKeyConfig]:
    key, digest = new_key()
    return key, ApiKeyConfig(name=name, sha256=digest, rate_per_s=rate_per_s, burst=burst)


def append_many(url: str, account: str, tag: str, n: int) -> None:
    """A writer process of the store tests."""
    store = Store.open(url)
    try:
        for i in range(n):
            store.append(account, "margin", lambda prev, i=i: json.dumps([prev, tag, i]))
    finally:
        store.close()


SHARED_BLOBS = ('{"shared":"pin"}', '{"shared":"parameters"}')


def built_doc(prev: str, *parts: Any) -> Built:
    """A stand-in version "2" document naming the same two blobs as every other."""
    blobs = {digest(t): t for t in SHARED_BLOBS}
    return Built(json.dumps([prev, *parts, sorted(blobs)]), blobs)


def append_batches(url: str, accounts: list[str], tag: str, batches: int) -> None:
    """A writer process of the bulk-append tests: `batches` batches over `accounts`."""
    store = Store.open(url)
    try:
        for b in range(batches):
            store.append_many(
                [
                    Item(a, "margin", lambda prev, a=a, b=b: built_doc(prev, tag, a, b))
                    for a in accounts
                ]
            )
    finally:
        store.close()


def hammer(
    url: str, accounts: list[str], tag: str, batches: int, start_at: float
) -> tuple[float, float, int]:
    """A writer process of the concurrent-append test: from wall time `start_at` (so
    the writers start together), `batches` append_many calls as fast as it can, each
    over a varying overlapping subset of `accounts`, some of them twice in one batch.
    The wall times of its first append's start and its last one's end, and how many
    snapshots it appended."""
    import random

    store = Store.open(url)
    rng = random.Random(tag)
    try:
        time.sleep(max(0.0, start_at - time.time()))
        began, count = time.time(), 0
        for b in range(batches):
            chosen = rng.sample(accounts, rng.randint(1, len(accounts)))
            chosen += chosen[: rng.randint(0, 2)]  # an account twice in one batch
            count += len(chosen)
            store.append_many(
                [
                    Item(a, "margin", lambda prev, a=a, b=b, k=k: built_doc(prev, tag, a, b, k))
                    for k, a in enumerate(chosen)
                ]
            )
        return began, time.time(), count
    finally:
        store.close()


def logged(store: Store) -> list[str]:
    """The transparency log's snapshot ids, checked: no gap, each snapshot once."""
    n = store.log.size()
    leaves = list(store.log.leaves(0, n))
    assert [i for i, _ in leaves] == list(range(n))
    ids = [sid for _, sid in leaves]
    assert len(set(ids)) == n
    return ids


def linear_chain(store: Store, account: str) -> list[str]:
    """An account's snapshot ids by height, checked linear: each on the one before, each
    document its id, the head on the last."""
    rows, head = store.chain_rows(account)
    prev = GENESIS
    for height, (row, text) in enumerate(rows):
        assert (row.height, row.prev_id) == (height, prev)
        assert digest(text) == row.id
        prev = row.id
    assert head == (prev, len(rows) - 1)
    return [r.id for r, _ in rows]
