"""`crossmargin margin` with `--method`, the capacity table, and `--server` (or
$CROSSMARGIN_SERVER): the same reports asked of a running API through the typed client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestServer
from cli_helpers import CLI, child_env, dead_url

from api.app import create_app
from api.security import new_key
from crossmargin.client import Client
from crossmargin.core.config import ApiKeyConfig
from crossmargin.pipeline.report import MarginReport

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def crossmargin(
    *argv: str, env: Mapping[str, str | None] | None = None
) -> tuple[int, str, str]:
    """The console script in a child process, while this loop goes on serving the API."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, *argv, env=child_env({"CROSSMARGIN_SERVER": None, **(env or {})}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def with_api(devnet: Any, **api: Any) -> Any:
    config = devnet.config
    return config.model_copy(update={"api": config.api.model_copy(update=api)})


@pytest_asyncio.fixture(loop_scope="session")
async def keyed(devnet: Any, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    """A deployment that requires a key: its URL and a valid key."""
    key, digest = new_key()
    entry = ApiKeyConfig(name="cli", sha256=digest, rate_per_s=100.0, burst=100)
    config = with_api(devnet, anonymous=False, keys=[entry])
    app = create_app(config, database=f"sqlite:///{tmp_path / 'cli.db'}")
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/"), key


async def test_server_answers_as_the_api(devnet: Any, keyed: tuple[str, str]) -> None:
    url, key = keyed
    bob = devnet.demo_accounts["bob"]
    args = ("margin", bob.lower(), "--target-chain", "base", "--method", "es")
    code, out, _ = await crossmargin(*args, "--json", "--server", url,
                                     env={"CROSSMARGIN_API_KEY": key})  # fmt: skip
    assert code in (0, 3, 4)
    report = MarginReport.model_validate(json.loads(out))
    async with Client(url, key=key) as api:
        served = await api.get_margin(bob, target_chain="base", method="es")
        capacity = await api.get_capacity(bob, target_chain="base", method="es")
    assert report == served.report  # the server's cached report: same pins, same figures
    assert report.method == "es"
    # the environment names the server; the table shows the capacity per asset
    env = {"CROSSMARGIN_SERVER": url, "CROSSMARGIN_API_KEY": key}
    code, table, _ = await crossmargin(*args, env=env)
    assert "method expected shortfall" in table
    assert "Borrowing capacity on base" in table
    for c in capacity.report.capacities:
        row = next(line for line in table.splitlines() if line.strip().startswith(c.asset + " "))
        assert c.capacity_usd is not None
        assert c.capacity_usd in row
        assert c.amount is not None
        assert c.amount in row


async def test_server_problems_are_one_line(devnet: Any, keyed: tuple[str, str]) -> None:
    url, _ = keyed
    alice = devnet.demo_accounts["alice"]
    code, out, err = await crossmargin("margin", alice, "--server", url,
                                       env={"CROSSMARGIN_API_KEY": None})  # fmt: skip
    assert code == 1
    assert out == ""
    assert err.startswith("crossmargin: error: unauthorized: an API key is required")
    assert len(err.splitlines()) == 1
    dead = dead_url()
    code, _, err = await crossmargin("margin", alice, "--server", dead)
    assert code == 1
    assert err == f"crossmargin: error: cannot reach {dead} (ClientConnectorError)\n"
    code, _, err = await crossmargin("margin", alice, "--server", "ftp://x")
    assert (code, err) == (1, "crossmargin: error: --server: the server URL must be "
                              "http(s)://host[:port]\n")  # fmt: skip
    code, _, err = await crossmargin("margin", alice, "--server", url, "--config", "x.toml")
    assert code == 1
    assert "drop --config" in err


async def test_local_method_and_capacity(devnet: Any) -> None:
    """Without a server: --method changes the method, the table shows the capacity."""
    carol = devnet.demo_accounts["carol"]
    args = ("margin", carol, "--target-chain", "arbitrum", "--config", str(devnet.config_path))
    _, var_json, _ = await crossmargin(*args, "--json")
    _, es_json, _ = await crossmargin(*args, "--json", "--method", "es")
    var, es = MarginReport.model_validate_json(var_json), MarginReport.model_validate_json(es_json)
    assert (var.method, es.method) == ("var", "es")
    assert var.haircuts.market != es.haircuts.market  # §7: ES is a larger quantile of loss
    _, table, _ = await crossmargin(*args, "--method", "es")
    assert "Borrowing capacity on arbitrum" in table
    assert "method expected shortfall" in table
