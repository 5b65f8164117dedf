"""Shared fixtures.

`devnet`: the local chains (devnet), started once per test session in a
helper thread and stopped at session end, also when tests fail or the run is
interrupted. The keeper is off, so every feed keeps exactly its generated rounds
(1..N, the last at start-up chain time). Chain time only moves when a block is mined;
a test that mines blocks past a heartbeat (or calls evm_increaseTime) should call
`asyncio.run(devnet.refresh_feeds())` or start its own Devnet.

`anvils`: extra anvil nodes a test owns (a replica of a devnet chain it may SIGSTOP);
`impostor`: one with ethereum's chain id and other state; `closed_port_url` and
`silent_port_url`: endpoints that refuse connections, and that accept them and never
answer.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devnet import BackgroundDevnet, Devnet
from devnet.anvil import anvil_binary
from devnet.evm import MULTICALL3, repo_root
from tests.jsonrpc import rpc_call


@pytest.fixture(scope="session")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with BackgroundDevnet(state_dir=tmp_path_factory.mktemp("devnet"), keeper=False) as net:
        yield net


@pytest.fixture(scope="session", autouse=True)
def isolated_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Commands that default to the deployment database (.devnet/crossmargin.db) use a
    per-session one instead, so a developer's `make run` history never leaks into tests."""
    url = f"sqlite:///{tmp_path_factory.mktemp('database') / 'crossmargin.db'}"
    old = os.environ.get("CROSSMARGIN_DATABASE_URL")
    os.environ["CROSSMARGIN_DATABASE_URL"] = url
    yield url
    if old is None:
        os.environ.pop("CROSSMARGIN_DATABASE_URL", None)
    else:
        os.environ["CROSSMARGIN_DATABASE_URL"] = old


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Anvil:
    """One anvil process started by a test, with a blocking JSON-RPC helper."""

    def __init__(self, binary: Path, log: Path, chain_id: int, *flags: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [str(binary), "--silent", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--chain-id", str(chain_id), *flags]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                self.rpc("eth_chainId")
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"anvil did not start: {log.read_text()[-500:]}") from None
                time.sleep(0.05)

    def rpc(self, method: str, *params: Any) -> Any:
        return rpc_call(self.url, method, *params)

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def json_rpc() -> Callable[..., Any]:
    """`json_rpc(url, method, *params)`: one plain JSON-RPC call, independent of the code
    under test."""
    return rpc_call


class Anvils:
    """Anvil nodes owned by one test (the `anvils` fixture)."""

    def __init__(self, log_dir: Path) -> None:
        self.binary = anvil_binary(repo_root())
        self.log_dir = log_dir
        self.started: list[Anvil] = []

    def start(self, chain_id: int, *flags: str) -> Anvil:
        node = Anvil(self.binary, self.log_dir / f"anvil-{len(self.started)}.log", chain_id, *flags)
        self.started.append(node)
        return node

    def replica(self, url: str, chain_id: int) -> Anvil:
        """A second node of the same chain: the source's state and blocks
        (anvil_dumpState, anvil_loadState), so the same genesis and block hashes."""
        node = self.start(chain_id)
        node.rpc("anvil_loadState", rpc_call(url, "anvil_dumpState"))
        return node

    def stop(self) -> None:
        for node in self.started:
            node.stop()


@pytest.fixture
def anvils(tmp_path: Path) -> Iterator[Anvils]:
    """Every node started through it is resumed (if the test SIGSTOPped it) and stopped
    at teardown, however the test ended."""
    nodes = Anvils(tmp_path)
    try:
        yield nodes
    finally:
        nodes.stop()


@pytest.fixture
def impostor(devnet: Devnet, anvils: Anvils) -> Anvil:
    """A node with the devnet ethereum's chain id (1) but its own state: its own genesis
    block (a day earlier), Multicall3 copied from ethereum, and 12,345 ETH in every demo
    account. Only METHOD.md §2's identity check tells it from ethereum."""
    real = devnet.rpc_url("ethereum")
    genesis = rpc_call(real, "eth_getBlockByNumber", "0x0", False)
    node = anvils.start(1, "--timestamp", str(int(genesis["timestamp"], 16) - 86_400))
    node.rpc("anvil_setCode", MULTICALL3, rpc_call(real, "eth_getCode", MULTICALL3, "latest"))
    for address in devnet.demo_accounts.values():
        node.rpc("anvil_setBalance", address, hex(12_345 * 10**18))
    node.rpc("evm_mine")
    assert node.rpc("eth_getBlockByNumber", "0x0", False)["hash"] != genesis["hash"]
    return node


@pytest.fixture
def closed_port_url() -> str:
    """An endpoint nobody listens on: every connection is refused."""
    return f"http://127.0.0.1:{_free_port()}"


@pytest.fixture
def silent_port_url() -> Iterator[str]:
    """An endpoint that accepts connections and never answers (the kernel completes the
    handshake for the listen backlog; nothing ever reads the request)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
