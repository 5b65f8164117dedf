"""`crossmargin scan` on the devnet: JSON lines and CSV, bad lines reported but not fatal,
and a run killed half-way (or torn mid-line) finishes on rerun with exactly the output
of a clean run."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from crossmargin.cli import main
from crossmargin.scan import CSV_COLUMNS, parse_input

BAD = ["0x1234", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756cc2", "[red]bob[/red]"]


def empty_accounts(n: int) -> list[str]:
    return ["0x" + hashlib.sha256(f"scan-{i}".encode()).hexdigest()[:40] for i in range(n)]


def write_input(path: Path, devnet: Any, extra: int) -> Path:
    demo = list(devnet.demo_accounts.values())
    lines = [
        "address,label",
        "# demo accounts, then bad lines, a repeat and empty accounts",
        *(f"{a},demo" for a in demo),
        *BAD,
        "",
        demo[0].lower(),  # the same account again: scanned once
        *empty_accounts(extra),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def scan(devnet: Any, *argv: str) -> int:
    return main(["scan", *argv, "--config", str(devnet.config_path)])


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_same_records(got: Path, want: Path) -> None:
    a, b = jsonl(got), jsonl(want)
    assert [r["input"] for r in a] == [r["input"] for r in b]
    for x, y in zip(a, b, strict=True):
        assert x == y, f"line {x['line']} differs"


def test_parse_input() -> None:
    entries = parse_input(["account", "# c", "", " 0xAbC ,x", "0x" + "ab" * 20 + " label"])
    assert [(e.line, e.text) for e in entries] == [(4, "0xAbC"), (5, "0x" + "ab" * 20)]
    assert entries[0].account is None
    assert "20-byte" in (entries[0].error or "")
    assert entries[1].account is not None
    assert entries[1].error is None


def test_jsonl_and_csv(tmp_path: Path, devnet: Any, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_input(tmp_path / "accounts.txt", devnet, extra=3)
    out = tmp_path / "out.jsonl"
    assert scan(devnet, "--input", str(src), "--output", str(out), "--target-chain", "base") == 0
    err = capsys.readouterr().err
    first_bad = 3 + len(devnet.demo_accounts)  # after the header, a comment, the demo accounts
    assert f"line {first_bad}: 0x1234: not a 20-byte hex address" in err
    assert f"line {first_bad + 2}: [red]bob[/red]:" in err  # literal, not rich markup
    assert "1 repeated in the input" in err

    recs = jsonl(out)
    demo = list(devnet.demo_accounts.values())
    assert len(recs) == len(demo) + len(BAD) + 3  # in input order, the repeat left out
    assert [r["account"] for r in recs[: len(demo)]] == demo
    assert [r["input"] for r in recs if r["status"] == "error"] == BAD
    assert all(r["report"] is None and r["error"] for r in recs if r["status"] == "error")
    assert {r["target_chain"] for r in recs} == {"base"}
    ok = [r for r in recs if r["status"] == "ok"]
    assert len(ok) == len(demo) + 3
    bob = next(r for r in recs if r["account"] == devnet.demo_accounts["bob"])
    assert main(["margin", bob["account"], "--target-chain", "base", "--json",
                 "--config", str(devnet.config_path)]) == 0  # fmt: skip
    assert bob["report"] == json.loads(capsys.readouterr().out)

    out_csv = tmp_path / "out.csv"
    assert (
        scan(devnet, "--input", str(src), "--output", str(out_csv), "--target-chain", "base") == 0
    )
    with out_csv.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert [r["input"] for r in rows] == [r["input"] for r in recs]
    for row, rec in zip(rows, recs, strict=True):
        assert row["status"] == rec["status"]
        if rec["report"] is None:
            assert row["error"] == rec["error"]
            assert row["collateral_usd"] == ""
            continue
        totals = rec["report"]["totals"]
        for key in ("collateral_usd", "debt_usd", "equity_usd", "free_margin_usd", "health"):
            assert row[key] == (totals[key] or "")
        assert row["liquidatable"] == str(totals["liquidatable"]).lower()


def test_resume_after_kill_equals_a_clean_run(tmp_path: Path, devnet: Any) -> None:
    src = write_input(tmp_path / "accounts.txt", devnet, extra=200)
    clean = tmp_path / "clean.jsonl"
    assert scan(devnet, "--input", str(src), "--output", str(clean)) == 0
    expected = clean.read_bytes()
    total = expected.count(b"\n")

    out = tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "crossmargin.cli", "scan", "--input", str(src), "--output",
            str(out), "--concurrency", "1", "--config", str(devnet.config_path)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    written = out.read_bytes().count(b"\n")
    assert 3 <= written < total, "the scan was not interrupted half-way"
    with out.open("ab") as f:  # and a record torn mid-write
        f.write(expected.splitlines(keepends=True)[written][:50])

    assert scan(devnet, "--input", str(src), "--output", str(out)) == 0
    assert_same_records(out, clean)
    assert out.read_bytes() == expected
    accounts = [r["account"] or r["input"] for r in jsonl(out)]
    assert len(accounts) == len(set(accounts)) == total

    assert scan(devnet, "--input", str(src), "--output", str(out)) == 0  # nothing left to do
    assert out.read_bytes() == expected


def test_csv_resume_after_a_torn_line(tmp_path: Path, devnet: Any) -> None:
    src = write_input(tmp_path / "accounts.txt", devnet, extra=2)
    clean = tmp_path / "clean.csv"
    assert scan(devnet, "--input", str(src), "--output", str(clean)) == 0
    expected = clean.read_bytes()
    out = tmp_path / "out.csv"
    cut = expected.index(b"\n", expected.index(b"\n") + 1) + 1  # header + one record
    out.write_bytes(expected[: cut + 40])
    assert scan(devnet, "--input", str(src), "--output", str(out)) == 0
    assert out.read_bytes() == expected


def test_refuses_to_mix_targets_or_formats(
    tmp_path: Path, devnet: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_input(tmp_path / "accounts.txt", devnet, extra=0)
    out = tmp_path / "out.jsonl"
    assert scan(devnet, "--input", str(src), "--output", str(out), "--target-chain", "base") == 0
    before = out.read_bytes()
    assert (
        scan(devnet, "--input", str(src), "--output", str(out), "--target-chain", "optimism") == 1
    )
    assert "holds results for target chain 'base'" in capsys.readouterr().err
    assert scan(devnet, "--input", str(src), "--output", str(out), "--format", "csv") == 1
    assert "not a scan CSV" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert scan(devnet, "--input", str(src), "--output", str(out), "--target-chain", "moon") == 1
    assert "unknown target chain" in capsys.readouterr().err
