"""Several API processes (`crossmargin serve`) against one snapshot store: every
account's chain stays linear, results computed by one process are served by the
other from the store, and the whole trail verifies."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from eth_utils.address import to_checksum_address

from api.store import Store
from crossmargin.cli import main as cli
from crossmargin.snapshot import GENESIS

ROOT = Path(__file__).resolve().parents[2]
CROSSMARGIN = Path(sys.executable).with_name("crossmargin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def api_process(config_path: Path, database: str, log: Path) -> Iterator[str]:
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
        yield f"http://127.0.0.1:{port}"
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


def test_two_processes_one_store(devnet: Any, database: str, tmp_path: Path) -> None:
    accounts = [to_checksum_address("0x" + secrets.token_hex(20)) for _ in range(3)]
    accounts.append(devnet.demo_accounts["bob"])

    async def drive(a: str, b: str) -> list[tuple[str, str, str]]:
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(wait_up(session, a), wait_up(session, b))

            async def get(base: str, path: str) -> tuple[str, str, str]:
                async with session.get(base + path) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()
                    return path, resp.headers["Snapshot-Id"], resp.headers["X-Cache"]

            # the same computations asked of both processes at once, twice over (16
            # requests each: within the devnet config's anonymous burst of 20)
            both = [
                get(base, f"/v1/accounts/{acc}/{what}")
                for acc in accounts
                for what in ("margin", "stress")
                for base in (a, b, a, b)
            ]
            out = list(await asyncio.gather(*both))
            # computed by one process only, then asked of the other: served from the store
            only_a = await get(a, f"/v1/accounts/{accounts[0]}/margin?target_chain=base")
            from_b = await get(b, f"/v1/accounts/{accounts[0]}/margin?target_chain=base")
            assert from_b[2] == "store"
            assert from_b[1] == only_a[1]
            return out

    with ExitStack() as stack:
        a = stack.enter_context(api_process(devnet.config_path, database, tmp_path / "a.log"))
        b = stack.enter_context(api_process(devnet.config_path, database, tmp_path / "b.log"))
        try:
            served = asyncio.run(drive(a, b))
        except BaseException:
            stack.close()
            print((tmp_path / "a.log").read_text(), (tmp_path / "b.log").read_text())
            raise
    assert {source for _, _, source in served} <= {"miss", "hit", "coalesced", "store"}

    store = Store.open(database)
    try:
        for account in accounts:
            rows, head = store.chain_rows(account)
            assert rows
            prev = GENESIS
            for height, (row, _) in enumerate(rows):
                assert (row.height, row.prev_id) == (height, prev)
                prev = row.id
            assert head == (prev, len(rows) - 1)
            stored = {r.id for r, _ in rows}
            assert {sid for path, sid, _ in served if account in path} <= stored
    finally:
        store.close()
    assert cli(["audit", "verify", "--all", "--database", database]) == 0
