"""`crossmargin margin` on the devnet: the table shows the figures of `--json`, and `--json`
is the API's margin JSON."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cli_helpers import run

from api.app import create_app
from crossmargin.cli import main
from crossmargin.cli.render import render_margin, units
from crossmargin.core.config import Config
from crossmargin.engine import Engine
from crossmargin.pipeline.report import MarginReport, Warning_


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def api_json(config: Config, path: str, database: Path) -> Any:
    async def get() -> Any:
        app = create_app(config, database=f"sqlite:///{database}")
        async with TestClient(TestServer(app)) as client:
            resp = await client.get(path)
            assert resp.status == 200
            return await resp.json()

    return asyncio.run(get())


def test_json_is_the_api_answer(
    capsys: pytest.CaptureFixture[str], devnet: Any, tmp_path: Path
) -> None:
    bob = devnet.demo_accounts["bob"]
    out = cli(capsys, "margin", bob.lower(), "--target-chain", "base", "--json",
              "--config", str(devnet.config_path))  # fmt: skip
    body = json.loads(out)
    MarginReport.model_validate(body)
    path = f"/v1/accounts/{bob}/margin?target_chain=base"
    assert body == api_json(devnet.config, path, tmp_path / "snapshots.db")


def test_table_shows_the_json_figures(capsys: pytest.CaptureFixture[str], devnet: Any) -> None:
    carol = devnet.demo_accounts["carol"]
    args = ("margin", carol, "--target-chain", "arbitrum", "--config", str(devnet.config_path))
    report = MarginReport.model_validate_json(cli(capsys, *args, "--json"))
    table = cli(capsys, *args)
    assert f"account {carol}" in table
    assert "status ok" in table
    figures = [v for v in report.totals.model_dump().values() if isinstance(v, str)]
    figures += [v for v in report.haircuts.model_dump().values() if v is not None]
    for c in report.chains:
        figures += [v for v in (c.collateral_usd, c.debt_usd, c.margin_usd) if v is not None]
    for p in report.positions:
        figures += [v for v in (p.price_usd, p.value_usd, p.haircut, p.margin_usd) if v]
        figures.append(units(p.raw_amount, p.decimals))
    for pr in report.prices:
        figures += [v for v in (pr.collateral_usd, pr.debt_usd) if v is not None]
    figures += [str(b.block_number) for b in report.as_of]
    missing = [f for f in figures if f not in table]
    assert missing == []
    assert report.totals.health is not None
    assert float(report.totals.health) > 1


def test_table_of_a_partial_report(devnet: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    chains = [
        c.model_copy(update={"rpc_urls": [dead], "retries": 1, "timeout_s": 2.0})
        if c.name == "base"
        else c
        for c in devnet.config.chains
    ]
    config = devnet.config.model_copy(update={"chains": chains})

    async def margin() -> MarginReport:
        async with Engine.connect(config) as engine:
            return await engine.margin(devnet.demo_accounts["bob"], "arbitrum")

    report = asyncio.run(margin())
    # text from the report is never read as rich markup
    report = report.model_copy(
        update={"warnings": [*report.warnings, Warning_(code="[x]", detail="[bold]y[/bold]")]}
    )
    table = render_margin(report, width=120)
    assert "status partial" in table
    assert "PARTIAL: unavailable chains count 0 as collateral: base (8453)" in table
    assert "DEBT UNKNOWN: debt cannot be valued (METHOD.md §4): base (8453)" in table
    assert "debt cannot be valued (see DEBT UNKNOWN above)" in table
    assert "[x]" in table
    assert "[bold]y[/bold]" in table
    base_rows = [line for line in table.splitlines() if line.strip().startswith("base")]
    assert base_rows
    assert all("unavailable" in line for line in base_rows)


@pytest.mark.parametrize(
    ("raw", "decimals", "shown"),
    [("1500000", 6, "1.5"), ("0", 18, "0"), ("5", 2, "0.05"), ("100", 2, "1"), (None, 8, "-")],
)
def test_units(raw: str | None, decimals: int, shown: str) -> None:
    assert units(raw, decimals) == shown


# ------------------------------------------------------------ exit status


def margin_json(res: subprocess.CompletedProcess[str]) -> MarginReport:
    assert "Traceback" not in res.stderr
    return MarginReport.model_validate_json(res.stdout)


def test_exit_status_ok(devnet: Any) -> None:
    res = run("margin", devnet.demo_accounts["carol"], "--json",
              "--config", str(devnet.config_path))  # fmt: skip
    report = margin_json(res)
    assert (report.status, report.totals.liquidatable) == ("ok", False)
    assert res.returncode == 0


def test_exit_status_4_when_liquidatable(devnet: Any, config_variant: Callable[..., Path]) -> None:
    """carol's health is just above 1; a 90% minimum haircut on ETH makes her
    liquidatable (config, not code, is what changes)."""
    strict = config_variant(("h_min = 0.05\nconcentration_k", "h_min = 0.9\nconcentration_k"))
    carol = devnet.demo_accounts["carol"]
    res = run("margin", carol, "--json", "--config", str(strict))
    report = margin_json(res)
    assert report.totals.liquidatable is True
    assert res.returncode == 4
    table = run("margin", carol, "--config", str(strict))
    assert table.returncode == 4
    assert f"account {carol}" in table.stdout


def test_exit_status_3_when_partial(devnet: Any, base_down: Path) -> None:
    """base is unreachable and may hold debt: every account's result is partial and its
    liquidation unknown, even alice's (collateral only, as far as can be seen)."""
    for name in ("alice", "bob"):
        res = run("margin", devnet.demo_accounts[name], "--json", "--config", str(base_down))
        report = margin_json(res)
        assert (report.status, report.totals.liquidatable) == ("partial", None)
        assert res.returncode == 3


def test_usage_errors_exit_2_and_bad_input_1(devnet: Any) -> None:
    usage = run("margin")
    assert usage.returncode == 2
    assert "usage: crossmargin margin" in usage.stderr
    bad = run("margin", "0x1234", "--config", str(devnet.config_path))
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "crossmargin: error: not a 20-byte hex address: '0x1234'"
    ]


def test_margin_table_lists_protocol_accounts(devnet: Any) -> None:
    """METHOD.md §12 in the CLI table: frank's Aave market on ethereum, its own figures,
    and his Morpho Blue markets on base, by name."""

    async def margin() -> MarginReport:
        async with Engine.connect(devnet.config) as engine:
            return await engine.margin(devnet.demo_accounts["frank"], "ethereum")

    report = asyncio.run(margin())
    (p,) = [p for p in report.protocols if p.protocol == "aave_v3"]
    table = render_margin(report, width=160)
    morpho = [line.split() for line in table.splitlines() if "morpho_blue" in line]
    assert sorted(row[1] for row in morpho) == ["WBTC/USDC", "WETH/USDC"]  # its markets
    assert all(row[2] == "base" for row in morpho)
    assert "Lending protocols (their own figures)" in table
    (row,) = [line for line in table.splitlines() if line.strip().startswith("aave_v3")]
    assert row.split() == [
        "aave_v3",
        "ethereum",
        str(p.health_factor),
        str(p.total_debt_usd),
        "(unlisted)",
        str(p.listed_debt_usd),
        str(p.available_borrows_usd),
    ]


def test_margin_as_of_a_past_time(devnet: Any) -> None:
    """`--at` takes unix seconds or ISO-8601 with a zone (§15): the same blocks either
    way; a time before every chain's first block is one line on stderr, exit 1."""
    alice, cfg = devnet.demo_accounts["alice"], ["--config", str(devnet.config_path)]
    now = run("margin", alice, *cfg, "--json")
    assert now.returncode == 0, now.stderr
    at = max(b["timestamp"] for b in json.loads(now.stdout)["as_of"])
    iso = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    by_seconds = run("margin", alice, *cfg, "--json", "--at", str(at))
    by_iso = run("margin", alice, *cfg, "--json", "--at", iso)
    assert by_seconds.returncode == by_iso.returncode == 0, by_seconds.stderr + by_iso.stderr
    blocks = [json.loads(r.stdout)["as_of"] for r in (by_seconds, by_iso)]
    assert blocks[0] == blocks[1]
    assert all(b["timestamp"] <= at for b in blocks[0])
    pins = ",".join(f"{b['name']}:{b['block_number']}" for b in blocks[0])
    by_blocks = run("margin", alice, *cfg, "--json", "--blocks", pins)
    assert json.loads(by_blocks.stdout) == json.loads(by_seconds.stdout)
    early = run("margin", alice, *cfg, "--at", "1000")
    assert early.returncode == 1
    assert early.stdout == ""
    lines = early.stderr.strip().splitlines()
    assert len(lines) == 1, early.stderr
    assert lines[0].startswith("crossmargin: error: chain ")
    assert "no block at or before time 1000" in lines[0]
    assert "Traceback" not in early.stderr
    bad = run("margin", alice, *cfg, "--at", "yesterday")
    assert bad.returncode == 1
    assert "--at: expected unix seconds or an ISO-8601 date-time" in bad.stderr
