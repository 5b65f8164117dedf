"""`crossmargin scan`: the margin report of many accounts, one output record per account.

Input: one address per line. Blank lines and `#` comments are skipped, and so is anything
after the first comma or blank, so the first column of a CSV works (a header line whose
first field is `address` or `account` is skipped). A line that is not an address is
reported on stderr and written to the output with status `error`; it does not stop the run.

Output, one record per account in input order:
- `jsonl`: {"line", "input", "account", "target_chain", "status", "error", "report"}, where
  `report` is the API's margin JSON (null for an error);
- `csv`: the same keys with the report's headline figures instead of the whole report; a
  figure that could not be computed is empty, never 0, and `unknown_reason` says why
  (METHOD.md §4: debt that cannot be valued).

Resumable: records already in the output are skipped (by account, or by input text for a
bad line), so rerunning the same command after an interruption finishes the job. Each
record is written with one append and a flush; a partial last line left by a kill is
dropped and recomputed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
from collections import Counter, deque
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from crossmargin.config import Config, checksummed
from crossmargin.errors import CrossmarginError
from crossmargin.report import MarginReport

Format = Literal["jsonl", "csv"]
FIGURES = (
    "collateral_usd",
    "debt_usd",
    "equity_usd",
    "margin_requirement_usd",
    "free_margin_usd",
    "health",
    "liquidatable",
)
CSV_COLUMNS = (
    "line",
    "input",
    "account",
    "target_chain",
    "status",
    "error",
    *FIGURES,
    "unknown_reason",
    "unavailable_chains",
    "warnings",
)
_HEADER_WORDS = {"address", "account"}


@dataclass(frozen=True, slots=True)
class Entry:
    """One input line: its 1-based number, the text given, and the account or why not."""

    line: int
    text: str
    account: str | None
    error: str | None

    @property
    def key(self) -> str:
        return self.account or self.text


def parse_input(lines: Iterable[str]) -> list[Entry]:
    entries: list[Entry] = []
    for n, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        first = text.replace(",", " ").split()[0].strip("\"'")
        if not entries and first.lower() in _HEADER_WORDS:
            continue
        try:
            entries.append(Entry(n, first, checksummed(first), None))
        except ValueError as exc:
            entries.append(Entry(n, first, None, str(exc)))
    return entries


def record(
    entry: Entry, target: str, report: MarginReport | None, error: str | None
) -> dict[str, Any]:
    status = "error" if report is None else report.status
    return {
        "line": entry.line,
        "input": entry.text,
        "account": entry.account,
        "target_chain": target,
        "status": status,
        "error": error,
        "report": None if report is None else report.model_dump(mode="json"),
    }


def csv_row(rec: dict[str, Any]) -> dict[str, str]:
    report = rec["report"]
    row = {k: "" if rec[k] is None else str(rec[k]) for k in CSV_COLUMNS[:6]}
    totals = report["totals"] if report else {}
    for k in FIGURES:
        v = totals.get(k)
        row[k] = "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
    unknown = (
        [w["detail"] for w in report["warnings"] if w["code"] == "debt_unknown"] if report else []
    )
    row["unknown_reason"] = "; ".join(unknown)
    down = [c["name"] for c in report["chains"] if c["status"] != "ok"] if report else []
    row["unavailable_chains"] = ";".join(down)
    row["warnings"] = ";".join(sorted({w["code"] for w in report["warnings"]})) if report else ""
    return row


class ScanOutput:
    """The output file: what it already holds (after repairing a torn last line), and
    appends of one whole record at a time."""

    def __init__(self, path: Path, fmt: Format, target: str) -> None:
        self.path, self.fmt, self.target = path, fmt, target
        self.done: set[str] = set()
        self.repaired = False
        self._file: IO[str] | None = None

    def __enter__(self) -> ScanOutput:
        existing = self._repair()
        rows = self._read(existing)
        for n, rec in enumerate(rows, start=2 if self.fmt == "csv" else 1):
            if rec.get("target_chain") != self.target:
                raise CrossmarginError(
                    f"{self.path}:{n}: holds results for target chain "
                    f"{rec.get('target_chain')!r}, not {self.target!r}; use another output file"
                )
            self.done.add(rec.get("account") or rec.get("input") or "")
        try:
            self._file = self.path.open("a", encoding="utf-8", newline="")
        except OSError as exc:
            raise CrossmarginError(f"{self.path}: cannot write: {exc.strerror}") from exc
        if self.fmt == "csv" and not existing:
            self._append(self._csv_line(dict(zip(CSV_COLUMNS, CSV_COLUMNS, strict=True))))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, rec: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            line = json.dumps(rec, separators=(",", ":"), ensure_ascii=False) + "\n"
        else:
            line = self._csv_line(csv_row(rec))
        self._append(line)
        self.done.add(rec["account"] or rec["input"])

    def _append(self, line: str) -> None:
        assert self._file is not None, "write() outside `with ScanOutput(...)`"
        self._file.write(line)
        self._file.flush()

    @staticmethod
    def _csv_line(row: dict[str, str]) -> str:
        buf = io.StringIO()
        csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n").writerow(row)
        return buf.getvalue()

    def _repair(self) -> str:
        """Drop a partial last line (a run killed mid-write); return the complete text."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise CrossmarginError(f"{self.path}: cannot read: {exc.strerror}") from exc
        keep = data[: data.rfind(b"\n") + 1]
        if len(keep) != len(data):
            with self.path.open("r+b") as f:
                f.truncate(len(keep))
            self.repaired = True
        try:
            return keep.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CrossmarginError(f"{self.path}: not a scan output (not UTF-8)") from exc

    def _read(self, text: str) -> list[dict[str, Any]]:
        if not text:
            return []
        if self.fmt == "csv":
            reader = csv.DictReader(io.StringIO(text, newline=""))
            if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
                raise CrossmarginError(f"{self.path}: not a scan CSV (its header differs)")
            return [{k: v or None for k, v in row.items()} for row in reader]
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                rec = None
            if not isinstance(rec, dict) or "input" not in rec:
                raise CrossmarginError(f"{self.path}:{n}: not a scan record; refusing to append")
            rows.append(rec)
        return rows


@dataclass
class Summary:
    total: int = 0  # input entries
    skipped: int = 0  # already in the output
    duplicates: int = 0  # repeated in the input
    counts: Counter[str] = field(default_factory=Counter)  # by status, this run

    def __str__(self) -> str:
        done = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items())) or "nothing new"
        dup = f", {self.duplicates} repeated in the input" if self.duplicates else ""
        return f"scan: {self.total} entries: {done}; {self.skipped} already in the output{dup}"


async def _ordered(
    jobs: Iterator[Coroutine[Any, Any, dict[str, Any]]], window: int
) -> AsyncIterator[dict[str, Any]]:
    """Run up to `window` jobs at a time; yield their results in input order."""
    pending: deque[asyncio.Task[dict[str, Any]]] = deque()
    try:
        for job in jobs:
            pending.append(asyncio.create_task(job))
            if len(pending) >= window:
                yield await pending.popleft()
        while pending:
            yield await pending.popleft()
    finally:
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def run_scan(
    config: Config,
    entries: list[Entry],
    output: Path,
    fmt: Format,
    target: str | None,
    *,
    concurrency: int = 4,
    console: Console | None = None,
) -> Summary:
    from crossmargin.engine import Engine

    console = console or Console(stderr=True)
    summary = Summary(total=len(entries))
    async with Engine(config) as engine:
        name = engine.target(target)
        with ScanOutput(output, fmt, name) as out:
            if out.repaired:
                _say(console, f"{output}: dropped a partial last line left by an interrupted run")
            todo, seen = [], set()
            for e in entries:
                if e.key in out.done:
                    summary.skipped += 1
                elif e.key in seen:
                    summary.duplicates += 1
                else:
                    seen.add(e.key)
                    todo.append(e)

            async def one(e: Entry) -> dict[str, Any]:
                if e.account is None:
                    return record(e, name, None, e.error)
                try:
                    return record(e, name, await engine.margin(e.account, name), None)
                except CrossmarginError as exc:  # refused or bad input: this account only
                    return record(e, name, None, "; ".join(str(exc).splitlines()))

            columns = (TextColumn("scan"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console) as bar:
                done = summary.skipped + summary.duplicates
                task = bar.add_task("scan", total=len(entries), completed=done)
                async for rec in _ordered((one(e) for e in todo), max(1, concurrency)):
                    out.write(rec)
                    summary.counts[rec["status"]] += 1
                    if rec["error"]:
                        _say(bar.console, f"line {rec['line']}: {rec['input']}: {rec['error']}")
                    bar.advance(task)
    return summary


def _say(console: Console, text: str) -> None:
    """A plain line on stderr: user text is not rich markup, and is not wrapped."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, type=Path, help="addresses, one per line")
    p.add_argument("--output", required=True, type=Path, help="results (appended; resumable)")
    p.add_argument("--target-chain", help="chain name or id (default: settlement chain)")
    p.add_argument("--format", choices=("jsonl", "csv"), help="default: from --output's suffix")
    p.add_argument("--concurrency", type=int, default=4, help="accounts read at once (4)")
    p.add_argument("--config", help="config file (default: .devnet/crossmargin.toml)")


def run_cli(args: argparse.Namespace, config: Config) -> int:
    fmt: Format = args.format or ("csv" if args.output.suffix.lower() == ".csv" else "jsonl")
    if args.input.resolve() == args.output.resolve():
        raise CrossmarginError("--input and --output are the same file")
    try:
        text = args.input.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CrossmarginError(f"{args.input}: cannot read: {exc}") from exc
    console = Console(stderr=True)
    summary = asyncio.run(
        run_scan(
            config,
            parse_input(text.splitlines()),
            args.output,
            fmt,
            args.target_chain,
            concurrency=args.concurrency,
            console=console,
        )
    )
    _say(console, str(summary))
    return 0
