"""METHOD.md §4 "debt that cannot be valued", end to end on the devnet, through the HTTP
API, the CLI table and the CSV scan: an unavailable chain that has debt representations,
and an asset whose debt cannot be priced. Debt, equity, free margin, health and
liquidatable are null with the reason, capacity is 0, every stress scenario's equity and
solvency are null; what could be valued is still listed, and the served §7 shares still
sum exactly to the served requirement.

The hostile configs are the devnet's own file with one edit each: base's RPC URL points
at a port nobody listens on, or every USDC feed gets a `max_answer` below its answer
(every reading `out_of_bounds`, so USDC is unpriced).
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import socket
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from crossmargin.cli import main
from crossmargin.core.config import RepresentationConfig, load_config
from crossmargin.engine import Engine
from crossmargin.pipeline.capacity import capacity_report
from crossmargin.pipeline.margin import margin_report
from crossmargin.pipeline.stress import stress_report

BASE = 8453
FIGURES_NULL = ("debt_usd", "equity_usd", "free_margin_usd", "health", "liquidatable")


def _block(text: str, start: str) -> tuple[int, int]:
    """Span of the TOML table that contains `start` (up to the next `[[`)."""
    i = text.index(start)
    j = text.find("[[", i)
    return i, len(text) if j < 0 else j


def dead_chain_text(text: str, chain: str) -> str:
    """The config with `chain`'s RPC URL pointed at a closed loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    i, j = _block(text, f'name = "{chain}"')
    part = re.sub(r"rpc_urls = \[[^\]]*\]", f'rpc_urls = ["{dead}"]', text[i:j])
    part = re.sub(r"retries = \d+", "retries = 1", part)
    part = re.sub(r"timeout_s = [0-9.]+", "timeout_s = 2.0", part)
    return text[:i] + part + text[j:]


def unpriced_text(text: str, asset: str) -> str:
    """The config with every feed of `asset` bounded below its answer (out_of_bounds)."""
    i, j = _block(text, f'symbol = "{asset}"\nliquidation_horizon_days')
    part, n = re.subn(r"(heartbeat_s = \d+) \}", r"\1, max_answer = 1 }", text[i:j])
    assert n >= 2
    return text[:i] + part + text[j:]


@pytest.fixture(scope="module")
def configs(devnet: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    text = Path(devnet.config_path).read_text(encoding="utf-8")
    folder = tmp_path_factory.mktemp("debt-unknown")
    out = {"dead_base": folder / "dead-base.toml", "unpriced_usdc": folder / "unpriced.toml"}
    out["dead_base"].write_text(dead_chain_text(text, "base"), encoding="utf-8")
    out["unpriced_usdc"].write_text(unpriced_text(text, "USDC"), encoding="utf-8")
    return out


def api_get(config_path: Path, database: Path, paths: list[str]) -> list[Any]:
    """Each path's JSON as one API process serves it (all must be 200)."""

    async def get() -> list[Any]:
        cfg = load_config(config_path)  # one client asking many questions: no 429s
        api = cfg.api.model_copy(update={"anonymous_rate_per_s": 1e3, "anonymous_burst": 1000})
        app = create_app(cfg.model_copy(update={"api": api}), database=f"sqlite:///{database}")
        out = []
        async with TestClient(TestServer(app)) as client:
            for path in paths:
                resp = await client.get(path)
                assert resp.status == 200, await resp.text()
                out.append(await resp.json())
        return out

    return asyncio.run(get())


def served(config_path: Path, database: Path, account: str, target: str) -> dict[str, Any]:
    """margin, capacity and stress as the API serves them."""
    base, q = f"/v1/accounts/{account}", f"?target_chain={target}"
    paths = [f"{base}/margin{q}", f"{base}/capacity{q}", f"{base}/stress"]
    margin, capacity, stress = api_get(config_path, database, paths)
    return {"margin": margin, "capacity": capacity, "stress": stress}


def assert_shares_add_up(margin: dict[str, Any]) -> None:
    """§7: served position shares, and chain shares, sum exactly to the served M."""
    m = Fraction(margin["totals"]["margin_requirement_usd"])
    shares = [p["margin_usd"] for p in margin["positions"] if p["status"] == "ok"]
    assert all(s is not None for s in shares)
    assert sum((Fraction(s) for s in shares), Fraction(0)) == m
    chains = [c["margin_usd"] for c in margin["chains"] if c["status"] == "ok"]
    assert sum((Fraction(c) for c in chains), Fraction(0)) == m
    assert all(p["margin_usd"] is None for p in margin["positions"] if p["status"] != "ok")


def assert_debt_unknown(reports: dict[str, Any], reason: str) -> None:
    margin, capacity, stress = reports["margin"], reports["capacity"], reports["stress"]
    totals = margin["totals"]
    assert margin["status"] == "partial"
    for key in FIGURES_NULL:
        assert totals[key] is None, key
    assert Fraction(totals["collateral_usd"]) > 0  # what could be valued is still there
    assert Fraction(totals["margin_requirement_usd"]) > 0
    (warning,) = [w for w in margin["warnings"] if w["code"] == "debt_unknown"]
    assert reason in warning["detail"]
    assert "http" not in warning["detail"]  # no endpoint leaks into the reason
    assert_shares_add_up(margin)
    valued = [p for p in margin["positions"] if p["status"] == "ok"]
    assert valued
    assert all(p["value_usd"] is not None for p in valued)

    assert capacity["free_margin_usd"] is None
    assert capacity["capacities"]
    for cap in capacity["capacities"]:
        assert (cap["capacity_usd"], cap["amount"]) == ("0.000000", "0.000000"), cap
        assert cap["reason"]
    assert any(w["code"] == "capacity_zero" for w in capacity["warnings"])
    assert any(w["code"] == "debt_unknown" for w in capacity["warnings"])

    assert stress["status"] == "partial"
    assert stress["equity_usd"] is None
    assert stress["worst"] is None
    assert stress["scenarios"]
    for s in stress["scenarios"]:
        assert (s["solvent"], s["equity_usd"], s["debt_usd"]) == (None, None, None), s
        assert s["collateral_usd"] is not None
    assert any(w["code"] == "debt_unknown" for w in stress["warnings"])


def test_unavailable_chain_with_debt_representations(
    devnet: Any, configs: dict[str, Path], tmp_path: Path
) -> None:
    bob = devnet.demo_accounts["bob"]
    reports = served(configs["dead_base"], tmp_path / "s.db", bob, "arbitrum")
    assert_debt_unknown(reports, "base (8453) is unavailable and has debt representations")
    margin = reports["margin"]
    base = next(c for c in margin["chains"] if c["chain_id"] == BASE)
    assert (base["status"], base["debt_usd"], base["margin_usd"]) == ("unavailable", None, None)
    # the chains that were read still show their debt, as a number
    assert all(c["debt_usd"] is not None for c in margin["chains"] if c["status"] == "ok")


def test_unpriced_debt(devnet: Any, configs: dict[str, Path], tmp_path: Path) -> None:
    carol = devnet.demo_accounts["carol"]  # ETH against USDC debt
    reports = served(configs["unpriced_usdc"], tmp_path / "s.db", carol, "arbitrum")
    assert_debt_unknown(reports, "debt on")
    margin = reports["margin"]
    unpriced = [p for p in margin["positions"] if p["status"] == "unpriced"]
    assert unpriced
    assert {p["asset"] for p in unpriced} == {"USDC"}
    debt_chains = {p["chain_id"] for p in unpriced if p["kind"] == "debt"}
    assert debt_chains
    for c in margin["chains"]:  # null, not 0, where a debt could not be priced
        assert (c["debt_usd"] is None) == (c["chain_id"] in debt_chains), c
        assert c["collateral_usd"] is not None
    detail = next(w["detail"] for w in margin["warnings"] if w["code"] == "debt_unknown")
    assert "is unpriced (USDC has no valid price)" in detail
    # the borrow asset itself is unpriced: still 0 (0 USD is 0 units), price null
    usdc = next(c for c in reports["capacity"]["capacities"] if c["asset"] == "USDC")
    assert (usdc["capacity_usd"], usdc["price_usd"]) == ("0.000000", None)


def test_unreadable_debt_position(devnet: Any) -> None:
    # a debt representation whose "token" is an EOA: balanceOf returns no data, so the
    # position is an error (never read as 0) and the account's debt cannot be valued
    eoa = devnet.demo_accounts["alice"]
    broken = RepresentationConfig(
        chain="arbitrum", asset="USDC", symbol="brokenDebt", address=eoa, decimals=6, kind="debt"
    )
    config = devnet.config.model_copy(
        update={"representations": [*devnet.config.representations, broken]}
    )

    async def run() -> dict[str, Any]:
        async with Engine.connect(config) as engine:
            a = await engine.assess(devnet.demo_accounts["carol"])
        dump = {
            "margin": margin_report(a, "arbitrum"),
            "capacity": capacity_report(a, "arbitrum"),
            "stress": stress_report(a),
        }
        return {k: v.model_dump(mode="json") for k, v in dump.items()}

    reports = asyncio.run(run())
    assert_debt_unknown(reports, "brokenDebt debt on arbitrum (42161) could not be read")
    margin = reports["margin"]
    assert any(w["code"] == "read_error" for w in margin["warnings"])
    (pos,) = [p for p in margin["positions"] if p["symbol"] == "brokenDebt"]
    assert (pos["status"], pos["value_usd"], pos["margin_usd"]) == ("error", None, None)
    for c in margin["chains"]:
        assert (c["debt_usd"] is None) == (c["name"] == "arbitrum"), c


def test_cli_table_says_unknown_with_the_reason(
    capsys: pytest.CaptureFixture[str], devnet: Any, configs: dict[str, Path]
) -> None:
    bob = devnet.demo_accounts["bob"]
    args = ["margin", bob, "--target-chain", "arbitrum", "--config", str(configs["dead_base"])]
    assert main(args) == 3  # partial: the documented exit status
    table = capsys.readouterr().out
    assert "status partial" in table
    assert "DEBT UNKNOWN: debt cannot be valued (METHOD.md §4): base (8453)" in table
    rows: dict[str, str] = {}  # the first line starting with each word: the summary table's
    for line in table.splitlines():
        if line.strip():
            rows.setdefault(line.split()[0], line)
    for label in ("debt", "equity", "health", "liquidatable"):
        assert "unknown" in rows[label], rows[label]
        assert "0.000000" not in rows[label]
    free = next(line for line in table.splitlines() if line.strip().startswith("free margin"))
    assert "unknown" in free
    # the dead chain shows no number
    (base,) = [line for line in table.splitlines() if line.strip().startswith("base (8453)")]
    assert "unavailable" in base


def test_cli_table_marks_a_chain_with_unpriced_debt(
    capsys: pytest.CaptureFixture[str], devnet: Any, configs: dict[str, Path]
) -> None:
    carol = devnet.demo_accounts["carol"]
    config = str(configs["unpriced_usdc"])
    assert main(["margin", carol, "--target-chain", "arbitrum", "--config", config, "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert main(["margin", carol, "--target-chain", "arbitrum", "--config", config]) == 3
    table = capsys.readouterr().out
    for c in report["chains"]:
        (line,) = [x for x in table.splitlines() if x.strip().startswith(f"{c['name']} (")]
        if c["debt_usd"] is None:
            assert "unknown" in line, line
        else:
            assert c["debt_usd"] in line, line


def test_csv_scan_record_is_empty_with_the_reason(
    devnet: Any, configs: dict[str, Path], tmp_path: Path
) -> None:
    accounts = tmp_path / "accounts.txt"
    accounts.write_text(f"{devnet.demo_accounts['bob']}\n{devnet.demo_accounts['carol']}\n")
    out = tmp_path / "margins.csv"
    argv = ["scan", "--input", str(accounts), "--output", str(out), "--target-chain", "arbitrum"]
    assert main([*argv, "--config", str(configs["unpriced_usdc"])]) == 3  # partial records
    with out.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        assert row["status"] == "partial"
        for key in FIGURES_NULL:
            assert row[key] == "", (key, row[key])
        assert row["collateral_usd"] not in ("", "0.000000")
        assert row["margin_requirement_usd"] != ""
        assert row["unknown_reason"].startswith("debt cannot be valued (METHOD.md §4)")
        assert "USDC has no valid price" in row["unknown_reason"]
        assert "debt_unknown" in row["warnings"].split(";")


def test_served_shares_sum_to_the_served_requirement(devnet: Any, tmp_path: Path) -> None:
    # every demo account, every target: the 6-decimal strings add up digit for digit
    paths = [
        f"/v1/accounts/{account}/margin?target_chain={c.name}"
        for account in devnet.demo_accounts.values()
        for c in devnet.config.chains
    ]
    margins = api_get(Path(devnet.config_path), tmp_path / "s.db", paths)
    frank = devnet.demo_accounts["frank"]  # Aave debt in a reserve not listed (§12)
    for margin in margins:
        assert margin["status"] == ("partial" if margin["account"] == frank else "ok")
        assert_shares_add_up(margin)
        assert [p for p in margin["positions"] if p["status"] == "ok"]
