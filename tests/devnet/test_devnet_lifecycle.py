"""Starting and stopping: determinism across starts, the keeper, and no orphans."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from devnet_rpc import ROUND, batch, call_spec, dec, rpc, send

from devnet import Devnet, DevnetError, Manifest, anvil, read_manifest

ROOT = Path(__file__).resolve().parents[2]


def snapshot(net: Devnet) -> dict[str, Any]:
    """Everything the seed determines: addresses, balances, every round's answer."""
    n = net.manifest.history.rounds
    state: dict[str, Any] = {"accounts": net.demo_accounts}
    for chain in net.manifest.chains:
        balances = []
        for address in net.demo_accounts.values():
            balances.append(("eth_getBalance", [address, "latest"]))
            balances += [
                call_spec(t, "balanceOf(address)", ["address"], [address])
                for t in chain.tokens.values()
            ]
        rounds = [
            call_spec(f, "getRoundData(uint80)", ["uint80"], [i])
            for f in chain.feeds.values()
            for i in range(1, n + 1)
        ]
        state[chain.name] = {
            "tokens": chain.tokens,
            "feeds": chain.feeds,
            "sequencer": chain.sequencer_uptime_feed,
            "balances": batch(chain.rpc_url, balances),
            "answers": [dec(ROUND, r)[1] for r in batch(chain.rpc_url, rounds)],
        }
    return state


def anvil_pids() -> set[int]:
    """Live anvil processes on this machine (Linux /proc)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"anvil" in cmd.split(b"\0")[0]:
                pids.add(int(entry.name))
    return pids


def assert_stopped(manifest: Manifest) -> None:
    alive = anvil_pids()
    for chain in manifest.chains:
        assert chain.pid not in alive, f"{chain.name} anvil (pid {chain.pid}) still running"
        with pytest.raises(urllib.error.URLError, match="refused"):
            rpc(chain.rpc_url, "eth_chainId")


def wait_for_ready(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> Manifest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.exists():
            return read_manifest(path)
        time.sleep(0.05)
    raise AssertionError("devnet not ready")


pytestmark = pytest.mark.skipif(not Path("/proc").exists(), reason="needs Linux /proc")


@pytest.mark.asyncio
async def test_same_seed_same_state_and_stop_leaves_no_process(tmp_path: Path) -> None:
    async with (
        Devnet.start(state_dir=tmp_path / "a", keeper=False) as a,
        Devnet.start(state_dir=tmp_path / "b", keeper=False) as b,
    ):
        assert {c.rpc_url for c in a.manifest.chains}.isdisjoint(
            c.rpc_url for c in b.manifest.chains
        )
        first, second = await asyncio.gather(
            asyncio.to_thread(snapshot, a), asyncio.to_thread(snapshot, b)
        )
        assert first == second
        assert a.manifest.ready_after_s < 30
    assert_stopped(a.manifest)
    assert_stopped(b.manifest)
    assert read_manifest(tmp_path / "a" / "manifest.json").status == "stopped"


def latest_rounds(net: Devnet) -> dict[tuple[str, str], tuple[Any, ...]]:
    """(chain, feed) -> latestRoundData for every configured price feed."""
    out = {}
    for asset in net.config.assets:
        for f in asset.feeds:
            spec = call_spec(f.address, "latestRoundData()")
            out[(f.chain, f.address)] = dec(ROUND, send(net.rpc_url(f.chain), spec))
    return out


async def check_keeper(net: Devnet) -> None:
    n = net.manifest.history.rounds
    paused = net.config.asset("ETH").feeds[0]
    net.keeper.pause(paused.chain, paused.address)  # before its first tick
    before = await asyncio.to_thread(latest_rounds, net)
    others = set(before) - {(paused.chain, paused.address)}
    deadline = time.monotonic() + 20
    while True:
        now = await asyncio.to_thread(latest_rounds, net)
        moved = {k for k in now if now[k][0] > n}
        if moved == others:
            break
        assert time.monotonic() < deadline, f"keeper refreshed only {len(moved)} feeds"
        await asyncio.sleep(0.1)
    for key in moved:
        assert now[key][1] == before[key][1]  # same price
        assert now[key][3] >= before[key][3]  # stamped at the current chain time
    assert now[(paused.chain, paused.address)] == before[(paused.chain, paused.address)]
    for chain in net.manifest.chains:  # sequencer feeds are never re-posted
        if chain.sequencer_uptime_feed:
            spec = call_spec(chain.sequencer_uptime_feed, "latestRound()")
            assert int(send(chain.rpc_url, spec), 16) == 1


@pytest.mark.asyncio
async def test_keeper_refreshes_feeds_and_an_error_still_stops_everything(tmp_path: Path) -> None:
    seen: list[Manifest] = []

    async def run() -> None:
        async with Devnet.start(state_dir=tmp_path, keeper=True, keeper_interval_s=0.2) as net:
            seen.append(net.manifest)
            await check_keeper(net)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await run()
    assert_stopped(seen[0])


def test_cli_runs_until_sigterm_and_stops_its_children(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "devnet", "--state-dir", str(tmp_path), "--no-keeper"]
    with subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            manifest = wait_for_ready(tmp_path / "manifest.json", proc)
            assert manifest.status == "ready"
            assert len(manifest.chains) == 4
            assert {c.pid for c in manifest.chains} <= anvil_pids()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert "alice" in out
    assert "CROSSMARGIN_RPC_ETHEREUM=" in out
    assert read_manifest(tmp_path / "manifest.json").status == "stopped"
    assert_stopped(manifest)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv")
def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "devnet", "--state-dir", str(tmp_path), "--no-keeper"]
    with subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    ) as proc:
        try:
            manifest = wait_for_ready(tmp_path / "manifest.json", proc)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    deadline = time.monotonic() + 10
    while {c.pid for c in manifest.chains} & anvil_pids():
        assert time.monotonic() < deadline, "anvil outlived its SIGKILLed parent"
        time.sleep(0.05)


@pytest.mark.asyncio
async def test_a_state_dir_serves_one_devnet_at_a_time(tmp_path: Path) -> None:
    async with Devnet.start(state_dir=tmp_path, keeper=False) as net:
        with pytest.raises(DevnetError, match="in use by another running devnet"):
            async with Devnet.start(state_dir=tmp_path, keeper=False):
                pass
        assert read_manifest(net.manifest_path).status == "ready"
    assert_stopped(net.manifest)


@pytest.mark.asyncio
async def test_a_port_taken_meanwhile_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1]])
        fresh = anvil._free_port
        monkeypatch.setattr(anvil, "_free_port", lambda: next(ports, None) or fresh())
        nodes = anvil.NodeSet(anvil.anvil_binary(ROOT), tmp_path)
        try:
            async with aiohttp.ClientSession() as session:
                node = await nodes.start(session, "base", 8453)
            assert node.port != taken.getsockname()[1]
            assert len(nodes.nodes) == 2  # the first attempt exited
            assert nodes.nodes[0].process.poll() is not None
        finally:
            nodes.stop()
    assert node.process.poll() is not None


@pytest.mark.asyncio
async def test_a_port_taken_by_another_chains_node_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two devnets starting at once: another devnet's anvil (another chain id) binds the
    port ours was given. Ours fails to bind; that is a retry, not 'serves chain id 10'."""
    other = anvil.NodeSet(anvil.anvil_binary(ROOT), tmp_path / "other")
    (tmp_path / "other").mkdir()
    nodes = anvil.NodeSet(anvil.anvil_binary(ROOT), tmp_path)
    try:
        async with aiohttp.ClientSession() as session:
            foreign = await other.start(session, "optimism", 10)
            ports = iter([foreign.port])
            fresh = anvil._free_port
            monkeypatch.setattr(anvil, "_free_port", lambda: next(ports, None) or fresh())
            node = await nodes.start(session, "arbitrum", 42161)
            assert node.port != foreign.port
        assert int(rpc(node.url, "eth_chainId"), 16) == 42161
        assert len(nodes.nodes) == 2  # the first attempt could not bind and exited
        assert nodes.nodes[0].process.poll() is not None
    finally:
        nodes.stop()
        other.stop()
    assert node.process.poll() is not None


def test_missing_anvil_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(DevnetError, match="run make setup"):
        anvil.anvil_binary(tmp_path)
