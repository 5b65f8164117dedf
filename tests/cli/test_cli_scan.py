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
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import CLI, run, sigint_default

from crossmargin.cli import main
from crossmargin.cli.scan import CSV_COLUMNS, parse_input
from tests.processes import running

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
    lines = ["account", "# c", "", " 0xAbC ,x", "0x" + "ab" * 20 + " label", ",", '"",x']
    entries = parse_input(lines)
    assert [(e.line, e.text) for e in entries] == [
        (4, "0xAbC"),
        (5, "0x" + "ab" * 20),
        (6, ","),
        (7, '"",x'),
    ]
    assert entries[0].account is None
    assert "20-byte" in (entries[0].error or "")
    assert entries[1].account is not None
    assert entries[1].error is None
    assert [e.error for e in entries[2:]] == ["no address in the line's first field"] * 2


def test_jsonl_and_csv(tmp_path: Path, devnet: Any, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_input(tmp_path / "accounts.txt", devnet, extra=3)
    out = tmp_path / "out.jsonl"
    assert scan(devnet, "--input", str(src), "--output", str(out), "--target-chain", "base") == 3
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
    assert len(ok) == len(demo) + 3 - 1  # frank: Aave debt the config does not list (§12)
    frank = next(r for r in recs if r["account"] == devnet.demo_accounts["frank"])
    assert frank["status"] == "partial"
    bob = next(r for r in recs if r["account"] == devnet.demo_accounts["bob"])
    assert main(["margin", bob["account"], "--target-chain", "base", "--json",
                 "--config", str(devnet.config_path)]) == 0  # fmt: skip
    assert bob["report"] == json.loads(capsys.readouterr().out)

    out_csv = tmp_path / "out.csv"
    assert (
        scan(devnet, "--input", str(src), "--output", str(out_csv), "--target-chain", "base") == 3
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
        liquidatable = totals["liquidatable"]  # null (frank, §12): an empty cell
        assert row["liquidatable"] == ("" if liquidatable is None else str(liquidatable).lower())


def test_resume_after_kill_equals_a_clean_run(tmp_path: Path, devnet: Any) -> None:
    src = write_input(tmp_path / "accounts.txt", devnet, extra=200)
    clean = tmp_path / "clean.jsonl"
    assert scan(devnet, "--input", str(src), "--output", str(clean)) == 3  # bad lines
    expected = clean.read_bytes()
    total = expected.count(b"\n")

    out = tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "crossmargin.cli", "scan", "--input", str(src), "--output",
            str(out), "--concurrency", "1", "--batch-size", "1",
            "--config", str(devnet.config_path)]  # fmt: skip
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

    assert scan(devnet, "--input", str(src), "--output", str(out)) == 3
    assert_same_records(out, clean)
    assert out.read_bytes() == expected
    accounts = [r["account"] or r["input"] for r in jsonl(out)]
    assert len(accounts) == len(set(accounts)) == total

    # nothing left to do; the output still holds the error records
    assert scan(devnet, "--input", str(src), "--output", str(out)) == 3
    assert out.read_bytes() == expected


def test_csv_resume_after_a_torn_line(tmp_path: Path, devnet: Any) -> None:
    src = write_input(tmp_path / "accounts.txt", devnet, extra=2)
    clean = tmp_path / "clean.csv"
    assert scan(devnet, "--input", str(src), "--output", str(clean)) == 3
    expected = clean.read_bytes()
    out = tmp_path / "out.csv"
    cut = expected.index(b"\n", expected.index(b"\n") + 1) + 1  # header + one record
    out.write_bytes(expected[: cut + 40])
    assert scan(devnet, "--input", str(src), "--output", str(out)) == 3
    assert out.read_bytes() == expected


def test_refuses_to_mix_targets_or_formats(
    tmp_path: Path, devnet: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_input(tmp_path / "accounts.txt", devnet, extra=0)
    out = tmp_path / "out.jsonl"
    assert scan(devnet, "--input", str(src), "--output", str(out), "--target-chain", "base") == 3
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


# ------------------------------------------------------------ exit status, Ctrl-C, lock


@pytest.fixture(scope="module")
def big(devnet: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """An input long enough to interrupt (demo accounts, bad lines, 200 empty accounts)
    and the output of one clean run of it."""
    root = tmp_path_factory.mktemp("big")
    src = write_input(root / "accounts.txt", devnet, extra=200)
    clean = root / "clean.jsonl"
    assert scan(devnet, "--input", str(src), "--output", str(clean)) == 3  # bad lines
    return src, clean.read_bytes()


def scan_argv(devnet: Any, src: Path, out: Path) -> list[str]:
    return [*CLI, "scan", "--input", str(src), "--output", str(out), "--concurrency", "1",
            "--batch-size", "1", "--config", str(devnet.config_path)]  # fmt: skip


def wait_for_lines(out: Path, proc: subprocess.Popen[str], n: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.01)
    raise AssertionError(f"the scan did not write {n} records while running")


def test_exit_status_is_0_only_when_every_record_is_ok(tmp_path: Path, devnet: Any) -> None:
    src = tmp_path / "accounts.txt"
    ok = [a for name, a in devnet.demo_accounts.items() if name != "frank"]  # frank: §12
    src.write_text("\n".join(ok) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert scan(devnet, "--input", str(src), "--output", str(out)) == 0
    assert {r["status"] for r in jsonl(out)} == {"ok"}
    assert scan(devnet, "--input", str(src), "--output", str(out)) == 0  # nothing to do

    with src.open("a", encoding="utf-8") as f:  # a line of only a comma: an error record
        f.write(",\n")
    assert scan(devnet, "--input", str(src), "--output", str(out)) == 3
    last = jsonl(out)[-1]
    assert (last["input"], last["status"], last["account"], last["report"]) == (
        ",", "error", None, None)  # fmt: skip
    assert last["error"] == "no address in the line's first field"
    # a rerun has nothing to do, and the output still holds that error
    assert scan(devnet, "--input", str(src), "--output", str(out)) == 3


def test_partial_records_exit_3(tmp_path: Path, devnet: Any, base_down: Path) -> None:
    src = tmp_path / "accounts.txt"
    src.write_text(devnet.demo_accounts["alice"] + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    argv = ["scan", "--input", str(src), "--output", str(out), "--config", str(base_down)]
    res = run(*argv)
    assert res.returncode == 3, res.stderr
    [rec] = jsonl(out)
    assert rec["status"] == "partial"
    assert "base" in {c["name"] for c in rec["report"]["chains"] if c["status"] != "ok"}


@pytest.mark.parametrize(
    ("workers", "group"),
    [("1", False), ("2", False), ("2", True)],
    ids=["one-process", "workers", "workers-terminal"],
)
def test_ctrl_c_says_how_to_resume_and_exits_130(
    tmp_path: Path, devnet: Any, big: tuple[Path, bytes], workers: str, group: bool
) -> None:
    """`group`: SIGINT to the whole process group, as a terminal's Ctrl-C (workers
    ignore it; the scan stops them)."""
    src, expected = big
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [*scan_argv(devnet, src, out), "--workers", workers],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
        start_new_session=group,
    )
    try:
        wait_for_lines(out, proc, 3)
        kids = children(proc.pid)
        assert len(kids) == (0 if workers == "1" else 2)
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert not any(running(p) for p in kids)
    assert "Traceback" not in err
    written = out.read_bytes().count(b"\n")
    hint = f"scan interrupted: {written} records written to {out} in this run; rerun the same"
    assert hint in err
    assert out.read_bytes().endswith(b"\n")  # whole records only
    assert 3 <= written < expected.count(b"\n"), "the scan was not interrupted half-way"
    assert expected.startswith(out.read_bytes())

    assert scan(devnet, "--input", str(src), "--output", str(out)) == 3
    assert out.read_bytes() == expected


def test_a_second_scan_into_the_same_output_is_refused(
    tmp_path: Path, devnet: Any, big: tuple[Path, bytes]
) -> None:
    src, clean = big
    longer = tmp_path / "longer.txt"  # `big`'s input, then far more than runs meanwhile
    more = "\n".join(empty_accounts(2000)[200:])
    longer.write_text(src.read_text(encoding="utf-8") + more + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    first = subprocess.Popen(
        scan_argv(devnet, longer, out),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
    )
    try:
        wait_for_lines(out, first, 2)
        second = subprocess.run(
            scan_argv(devnet, longer, out), capture_output=True, text=True, timeout=120, check=False
        )
        still_running = first.poll() is None
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert still_running, "the first scan ended before the second started"
    assert second.returncode == 1
    assert second.stderr.strip().splitlines() == [
        f"crossmargin: error: {out}: another scan is writing to it; wait for it to finish "
        "or use another output file"
    ]
    assert first.returncode == 130, err
    # the first wrote undisturbed: whole records, exactly a clean run's as far as it got
    data = out.read_bytes()
    assert data.endswith(b"\n")
    assert clean.startswith(data) if len(data) <= len(clean) else data.startswith(clean)


def test_an_output_of_another_input_is_refused(
    tmp_path: Path, devnet: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = list(devnet.demo_accounts.values())
    src = tmp_path / "accounts.txt"
    src.write_text("\n".join(demo[:2]) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert scan(devnet, "--input", str(src), "--output", str(out)) == 0
    before = out.read_bytes()
    capsys.readouterr()

    src.write_text("\n".join([demo[1], demo[0], demo[2]]) + "\n", encoding="utf-8")
    assert scan(devnet, "--input", str(src), "--output", str(out)) == 1
    err = capsys.readouterr().err
    assert f"{out}: its last record is for input line 2 ({demo[1]})" in err

    src.write_text("\n".join(["", demo[1], demo[2]]) + "\n", encoding="utf-8")  # line 1 gone
    assert scan(devnet, "--input", str(src), "--output", str(out)) == 1
    err = capsys.readouterr().err
    assert f"{out}: holds 2 records where --input lines 1-2 give 1 accounts" in err
    assert out.read_bytes() == before


def measured(argv: list[str], err: Path) -> tuple[int, int]:
    """Run a child to its end; its exit status and peak resident memory (KiB, its own)."""
    with err.open("w") as f:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=f)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss


def test_resume_streams_a_huge_output(tmp_path: Path, devnet: Any) -> None:
    """Resuming after 25,000 records (over 150 MiB) costs no more memory than after 2:
    the existing output is streamed, not read whole."""
    # every record ok (exit 0): frank's Aave debt the config does not list is partial
    demo = [a for name, a in devnet.demo_accounts.items() if name != "frank"]
    small_in, small_out = tmp_path / "small.txt", tmp_path / "small.jsonl"
    small_in.write_text("\n".join(demo[:2]) + "\n", encoding="utf-8")
    assert scan(devnet, "--input", str(small_in), "--output", str(small_out)) == 0
    done = jsonl(small_out)  # the demo accounts' first two records
    small_in.write_text("\n".join(demo) + "\n", encoding="utf-8")

    n = 25_000
    fill = empty_accounts(n)
    huge_in, huge_out = tmp_path / "huge.txt", tmp_path / "huge.jsonl"
    huge_in.write_text("\n".join([*fill, *demo]) + "\n", encoding="utf-8")
    template = max(done, key=lambda r: len(json.dumps(r)))  # the larger report
    with huge_out.open("w", encoding="utf-8") as f:
        for i, account in enumerate(fill, start=1):
            rec = {**template, "line": i, "input": account, "account": account}
            f.write(json.dumps(rec, separators=(",", ":")) + "\n")
        for i, rec in enumerate(done, start=n + 1):
            f.write(json.dumps({**rec, "line": i}, separators=(",", ":")) + "\n")
    size = huge_out.stat().st_size
    assert size > 150 * 2**20

    def argv(src: Path, out: Path) -> list[str]:
        return [*CLI, "scan", "--input", str(src), "--output", str(out),
                "--config", str(devnet.config_path)]  # fmt: skip

    code, small_kib = measured(argv(small_in, small_out), tmp_path / "small.err")
    assert code == 0, (tmp_path / "small.err").read_text()
    code, huge_kib = measured(argv(huge_in, huge_out), tmp_path / "huge.err")
    assert code == 0, (tmp_path / "huge.err").read_text()
    assert "25002 already in the output" in (tmp_path / "huge.err").read_text()
    grown = (huge_kib - small_kib) * 1024
    assert grown < 64 * 2**20, f"resume over {size} bytes grew peak memory by {grown} bytes"

    # and it resumed where it should: the two records a clean run gives, renumbered
    small_tail = jsonl(small_out)[2:]
    with huge_out.open(encoding="utf-8") as f:
        tail = list(deque(f, maxlen=len(small_tail)))
    assert [json.loads(t) for t in tail] == [{**r, "line": r["line"] + n} for r in small_tail]


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def test_workers_write_the_same_bytes(tmp_path: Path, devnet: Any, big: tuple[Path, bytes]) -> None:
    """--workers 2 (here: forkserver, pytest has threads) gives one process's output byte
    for byte, and so does a resumed run; as a command of its own (fork), CSV too."""
    src, expected = big
    out = tmp_path / "out.jsonl"
    two = ("--workers", "2", "--batch-size", "16")
    assert scan(devnet, "--input", str(src), "--output", str(out), *two) == 3
    assert out.read_bytes() == expected
    lines = expected.splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:50]) + lines[50][:40])  # half done, torn mid-record
    assert scan(devnet, "--input", str(src), "--output", str(out), *two) == 3
    assert out.read_bytes() == expected

    one_csv, two_csv = tmp_path / "one.csv", tmp_path / "two.csv"
    assert scan(devnet, "--input", str(src), "--output", str(one_csv), "--workers", "1") == 3
    res = run("scan", "--input", str(src), "--output", str(two_csv), *two,
              "--config", str(devnet.config_path))  # fmt: skip
    assert res.returncode == 3, res.stderr
    assert two_csv.read_bytes() == one_csv.read_bytes()


def test_killed_scan_leaves_no_workers_and_resumes(
    tmp_path: Path, devnet: Any, big: tuple[Path, bytes]
) -> None:
    src, expected = big
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [*scan_argv(devnet, src, out), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_lines(out, proc, 3)
        workers = children(proc.pid)
        assert len(workers) == 2
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    deadline = time.monotonic() + 10
    while any(running(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(running(p) for p in workers), "a worker outlived the scan"
    assert scan(devnet, "--input", str(src), "--output", str(out), "--workers", "2") == 3
    assert out.read_bytes() == expected
