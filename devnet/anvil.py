"""anvil processes: one per chain, on free loopback ports, always stopped again.

Every child is recorded in a NodeSet the moment it is spawned, so a failure anywhere
in start-up still stops it. Children run in their own process group (a terminal's
Ctrl-C reaches only us, and we stop them in order) and, where util-linux's `setpriv`
exists, with a parent-death signal, so even a SIGKILLed parent leaves no orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from crossmargin.core.errors import ChainError
from devnet.errors import DevnetError
from devnet.evm import DEV_MNEMONIC
from devnet.rpc import Rpc

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
_PORT_ATTEMPTS = 4


def anvil_binary(root: Path) -> Path:
    path = root / "node_modules" / ".bin" / "anvil"
    if not path.exists():
        raise DevnetError(f"{path} not found: run make setup (npm ci installs anvil)")
    return path


@dataclass
class Node:
    chain: str
    chain_id: int
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass
class NodeSet:
    """The anvil children of one devnet; stop() is idempotent and never raises."""

    binary: Path
    log_dir: Path
    nodes: list[Node] = field(default_factory=list)

    async def start(self, session: aiohttp.ClientSession, chain: str, chain_id: int) -> Node:
        """Spawn and wait until it serves `chain_id`; retries if the port was taken meanwhile."""
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            node = self._spawn(chain, chain_id)
            if await _ready(session, node):
                return node
            if attempt < _PORT_ATTEMPTS and _port_taken(node.port):
                continue  # someone bound it between _free_port() and anvil's bind
            tail = _tail(node.log_path)
            raise DevnetError(f"anvil for {chain} (chain id {chain_id}) did not start:\n{tail}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self, chain: str, chain_id: int) -> Node:
        port = _free_port()
        log_path = self.log_dir / f"anvil-{chain}.log"
        flags = {
            "--host": "127.0.0.1",
            "--port": str(port),
            "--chain-id": str(chain_id),
            "--accounts": "10",
            "--mnemonic": DEV_MNEMONIC,
        }
        argv = [str(self.binary), "--silent", *itertools.chain.from_iterable(flags.items())]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                _pdeathsig_prefix() + argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        node = Node(chain, chain_id, port, process, log_path)
        self.nodes.append(node)
        return node

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every child, wait up to `timeout` in total, then SIGKILL what is left."""
        for node in self.nodes:
            if node.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.process.terminate()
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            try:
                node.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    node.process.kill()
                node.process.wait()


async def _ready(session: aiohttp.ClientSession, node: Node) -> bool:
    """True once the node answers with its chain id; False if the process exited first."""
    # A short timeout: a foreign server on a port taken meanwhile must not stall us.
    rpc = Rpc(session, node.url, node.chain_id, timeout_s=1.0)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            return False
        try:
            got = int(await rpc.call("eth_chainId", []), 16)
        except ChainError:
            await asyncio.sleep(0.02)
            continue
        if got != node.chain_id:
            # another devnet's node took the port between _free_port() and our bind:
            # ours fails to bind and exits, and start() tries another port
            if await _exits(node.process, READY_TIMEOUT_S):
                return False
            raise DevnetError(f"{node.url} serves chain id {got}, not {node.chain_id}")
        if node.process.poll() is not None:
            return False  # someone else answered; ours failed to bind
        return True
    raise DevnetError(f"anvil for {node.chain} not ready after {READY_TIMEOUT_S} s")


async def _exits(process: subprocess.Popen[bytes], within_s: float) -> bool:
    """Whether `process` ends within `within_s` seconds (polled: the loop goes on)."""
    deadline = time.monotonic() + within_s
    while process.poll() is None:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (a race remains; start() retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


@functools.cache
def _pdeathsig_prefix() -> list[str]:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return []
    probe = subprocess.run(
        [setpriv, "--pdeathsig", "TERM", "--", "true"], capture_output=True, check=False
    )
    return [setpriv, "--pdeathsig", "TERM", "--"] if probe.returncode == 0 else []


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-limit:]
    except OSError:
        return "(no log)"
