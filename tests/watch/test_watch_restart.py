"""`crossmargin watch` killed (SIGKILL) after an alert was stored and while it was being
delivered, then restarted: the alert arrives again, is acknowledged, and is never sent
after that (METHOD.md §14: stored before delivery, at least once, de-duplicated by id)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from watch_helpers import Hit, Receiver, payloads, rpc, transfer

from api.watch.delivery import ID_HEADER
from crossmargin.engine import Engine
from devnet import Devnet

pytestmark = pytest.mark.asyncio(loop_scope="session")

CROSSMARGIN = Path(sys.executable).with_name("crossmargin")
SECRET = "restart-secret-0123456789"


class HangingOnce(Receiver):
    """Holds the first request open until released (the watcher is killed meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.first = asyncio.Event()
        self.release = asyncio.Event()

    async def _hook(self, request: web.Request) -> web.Response:
        if not self.first.is_set():
            self.first.set()
            body = await request.read()
            await self.release.wait()
            self.hits.append(Hit(dict(request.headers), body, 0))  # never answered
            return web.Response(status=200)
        return await super()._hook(request)


def start(net: Devnet, accounts: Path, url: str, db: str, threshold: str, log: Path) -> Any:
    argv = [str(CROSSMARGIN), "watch", "--config", str(net.config_path), "--db", db]
    argv += ["--accounts", str(accounts), "--webhook", url, "--secret", SECRET]
    argv += ["--free-margin-below", threshold]
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=os.environ)


async def test_killed_while_delivering_sends_once_after_restart(
    own_devnet: Devnet, tmp_path: Path
) -> None:
    net = own_devnet
    alice = net.demo_accounts["alice"]
    rpc(net.rpc_url("base"), "anvil_setBalance", alice, hex(10**17))  # gas for her transfer
    rpc(net.rpc_url("base"), "evm_mine")
    async with Engine.connect(net.config) as engine:
        free = Decimal((await engine.margin(alice)).totals.free_margin_usd or "0")
    threshold = str((free * Decimal("0.95")).quantize(Decimal("0.01")))
    accounts = tmp_path / "accounts.txt"
    accounts.write_text(f"# who\n{alice}\n")
    db = f"sqlite:///{tmp_path / 'watch.db'}"
    log = tmp_path / "watch.log"
    receiver = await HangingOnce().start()
    proc = start(net, accounts, receiver.url, db, threshold, log)
    try:
        await asyncio.sleep(4)  # first look: computed, above the threshold
        assert proc.poll() is None, log.read_text()
        # alice sends away her 12,500 USDC on base: free margin drops below 95%
        transfer(net, "base", "USDC", alice, "0x" + "22" * 20, 12_500 * 10**6)
        async with asyncio.timeout(60):
            await receiver.first.wait()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        receiver.release.set()
        await asyncio.sleep(0.2)

        proc = start(net, accounts, receiver.url, db, threshold, log)
        await receiver.wait_for(lambda r: len(r.acknowledged()) == 1)
        for _ in range(3):  # more blocks and steps: nothing more to say
            rpc(net.rpc_url("base"), "evm_mine")
        await asyncio.sleep(3)
        assert proc.poll() is None, log.read_text()
        assert len(receiver.hits) == 2, log.read_text()
        first, second = receiver.hits
        assert first.headers[ID_HEADER] == second.headers[ID_HEADER]
        assert first.body == second.body
        (alert,) = payloads([second])
        assert alert["kind"] == "breached"
        assert alert["condition"] == "free_margin_below"
        assert Decimal(alert["value"]) < Decimal(threshold)
        proc.terminate()  # SIGTERM: a clean stop, no traceback
        assert proc.wait(20) == 0
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(20)
        receiver.release.set()
        await receiver.stop()
