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

At scale: the input is streamed (never held whole) and accounts go to the engine in
batches (`--batch-size`, 256): each batch is one pinned read per chain in shared
multicalls, `--concurrency` batches in flight per engine, records written in input order
as each batch completes. Memory is bounded by the batches in flight plus one key per
distinct account (to skip repeats).

On every core: with `--workers K` (K > 1) the batches run in K worker processes
(crossmargin/workers.py), each with its own engine, and come back as finished output
lines; this process only plans, orders and writes them, so everything above (order,
resuming, the lock, repeats, error records, the progress bar) is unchanged and the
output is byte for byte that of one process. Default (`default_workers`): 2 where this
process may use more than one core and the input has at least `WORKERS_FROM` entries
(below that, starting workers costs more than it saves), else 1, today's in-process
engine. Two, not one per core: each worker holds its own engine (~150 MB at peak), and
the 100,000-account scan stays under 500 MB summed over all processes.

Resumable: records are written in input order, so the output's last record says how far
a previous run got; rerunning the same command skips the input up to that line and
finishes the job. The existing output is streamed (one line in memory at a time: its
record count, statuses and last record are all that is kept), every record is checked to
be a scan record for the same target, and its count must match the input up to the last
record's line. Each record is written with one append and a flush; a partial last line
left by a kill is dropped and recomputed. The output is locked (flock) for the whole run,
so a second scan into the same file stops at once instead of interleaving records.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import fcntl
import io
import itertools
import json
import os
from collections import Counter, deque
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from crossmargin.core.config import Config, checksummed
from crossmargin.core.errors import CrossmarginError
from crossmargin.engine import Engine, Result, target_name
from crossmargin.pipeline.figures import Request
from crossmargin.pipeline.report import MarginReport
from crossmargin.workers import WorkerPool, usable_cores

if TYPE_CHECKING:
    from oracle.store import HistoryStore

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
BATCH_SIZE = 256  # accounts per engine batch
WORKERS_FROM = 1_000  # input entries from which the default is worker processes (4 batches)
MAX_DEFAULT_WORKERS = 2  # the default's cap: memory (see the module docstring)
_TAIL_CHUNK = 1 << 16  # bytes read at a time when looking for the last newline


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


def _first_field(raw: str) -> tuple[str, str] | None:
    """(the line's text, its first field) or None for a blank or comment line."""
    text = raw.strip()
    if not text or text.startswith("#"):
        return None
    fields = text.replace(",", " ").split()
    return text, fields[0].strip("\"'") if fields else ""


def iter_entries(lines: Iterable[str]) -> Iterator[Entry]:
    """The input's entries, one line at a time (streamed: nothing is kept)."""
    none_yet = True  # a header is skipped only before the first entry
    for n, raw in enumerate(lines, start=1):
        got = _first_field(raw)
        if got is None:
            continue
        text, first = got
        if none_yet and first and first.lower() in _HEADER_WORDS:
            continue
        none_yet = False
        if not first:  # `,` or `"",x`: nothing in the first column
            yield Entry(n, text, None, "no address in the line's first field")
            continue
        try:
            yield Entry(n, first, checksummed(first), None)
        except ValueError as exc:
            yield Entry(n, first, None, str(exc))


def parse_input(lines: Iterable[str]) -> list[Entry]:
    return list(iter_entries(lines))


def count_entries(lines: Iterable[str]) -> int:
    """How many entries `iter_entries` gives, without checksumming (for the progress bar)."""
    n = 0
    for raw in lines:
        got = _first_field(raw)
        if got is None or (not n and got[1] and got[1].lower() in _HEADER_WORDS):
            continue
        n += 1
    return n


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
        "report": report,  # the model: serialised by `ScanOutput.write` (pydantic's own JSON)
    }


def jsonl_line(rec: dict[str, Any]) -> str:
    """A record as one JSON line: the report spliced in as pydantic serialises it (in
    Rust, the API's bytes), not dumped to Python objects and encoded again."""
    report: MarginReport | None = rec["report"]
    head = json.dumps(
        {k: v for k, v in rec.items() if k != "report"}, separators=(",", ":"), ensure_ascii=False
    )
    body = "null" if report is None else report.model_dump_json()
    return f'{head[:-1]},"report":{body}}}\n'


def csv_line(row: dict[str, str]) -> str:
    buf = io.StringIO()
    csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n").writerow(row)
    return buf.getvalue()


def serialise(rec: dict[str, Any], fmt: Format) -> str:
    """A record as its output line (JSON or CSV), newline included."""
    return jsonl_line(rec) if fmt == "jsonl" else csv_line(csv_row(rec))


@dataclass(frozen=True, slots=True)
class Written:
    """One record ready to append: its output line, and what the run reports about it.
    Small and picklable: what a worker process sends back instead of the report."""

    line: int
    input: str
    status: str
    error: str | None
    text: str


def finish_batch(
    engine: Engine, results: list[Result], job: tuple[Format, str, list[Entry]]
) -> list[Written]:
    """A batch's records in the batch's order, serialised (in a worker process, or in
    this one): `results` are the engine's for the batch's valid entries, in order. A
    failure is that account's record, not the batch's."""
    fmt, target, batch = job
    valid = [e for e in batch if e.account is not None]
    by_line = {e.line: r for e, r in zip(valid, results, strict=True)}
    out = []
    for e in batch:
        r = by_line.get(e.line)
        if r is None:
            rec = record(e, target, None, e.error)
        elif r.error is not None:
            rec = record(e, target, None, "; ".join(str(r.error).splitlines()))
        else:
            assert isinstance(r.report, MarginReport)
            rec = record(e, target, r.report, None)
        out.append(Written(e.line, e.text, rec["status"], rec["error"], serialise(rec, fmt)))
    return out


def csv_row(rec: dict[str, Any]) -> dict[str, str]:
    model: MarginReport | None = rec["report"]
    sections = {"totals", "warnings", "chains"}
    report = None if model is None else model.model_dump(mode="json", include=sections)
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
    """The output file, locked for the run: what it already holds (streamed, after
    repairing a torn last line), and appends of one whole record at a time."""

    def __init__(self, path: Path, fmt: Format, target: str) -> None:
        self.path, self.fmt, self.target = path, fmt, target
        self.records = 0  # records already in the file
        self.statuses: Counter[str] = Counter()  # their statuses
        self.last: dict[str, Any] | None = None  # the last of them
        self.repaired = False
        self._file: IO[bytes] | None = None

    def __enter__(self) -> ScanOutput:
        try:
            f = self.path.open("a+b")
        except OSError as exc:
            raise CrossmarginError(f"{self.path}: cannot write: {exc.strerror}") from exc
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise CrossmarginError(
                f"{self.path}: another scan is writing to it; wait for it to finish or "
                "use another output file"
            ) from None
        self._file = f
        try:
            empty = self._repair(f) == 0
            self._read_existing()
            if self.fmt == "csv" and empty:
                self.append(csv_line(dict(zip(CSV_COLUMNS, CSV_COLUMNS, strict=True))))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()  # releases the lock
            self._file = None

    @property
    def last_line(self) -> int:
        """The input line of the last record (0: none yet)."""
        return 0 if self.last is None else int(self.last["line"])

    def write(self, rec: dict[str, Any]) -> None:
        self.append(serialise(rec, self.fmt))

    def append(self, line: str) -> None:
        """One whole record's line, written and flushed."""
        assert self._file is not None, "append() outside `with ScanOutput(...)`"
        self._file.write(line.encode("utf-8"))
        self._file.flush()

    def _repair(self, f: IO[bytes]) -> int:
        """Drop a partial last line (a run killed mid-write), reading only the file's tail;
        return the size kept."""
        size = pos = f.seek(0, os.SEEK_END)
        keep = 0
        while pos > 0:
            start = max(0, pos - _TAIL_CHUNK)
            f.seek(start)
            newline = f.read(pos - start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            pos = start
        if keep != size:
            f.truncate(keep)
            self.repaired = True
        return keep

    def _read_existing(self) -> None:
        """Stream the records already written: check each, keep counts and the last."""
        try:
            with self.path.open(encoding="utf-8", newline="") as text:
                rows = self._csv_rows(text) if self.fmt == "csv" else self._jsonl_rows(text)
                for n, rec in rows:
                    self._check(n, rec)
                    self.records += 1
                    self.statuses[str(rec.get("status"))] += 1
                    self.last = rec
        except UnicodeDecodeError as exc:
            raise CrossmarginError(f"{self.path}: not a scan output (not UTF-8)") from exc
        except OSError as exc:
            raise CrossmarginError(f"{self.path}: cannot read: {exc.strerror}") from exc

    def _check(self, n: int, rec: dict[str, Any]) -> None:
        line = rec.get("line")
        if isinstance(line, str) and line.isdigit():  # CSV
            rec["line"] = line = int(line)
        if not isinstance(line, int) or isinstance(line, bool) or "input" not in rec:
            raise CrossmarginError(f"{self.path}:{n}: not a scan record; refusing to append")
        if line <= self.last_line:
            raise CrossmarginError(f"{self.path}:{n}: records out of input order")
        if rec.get("target_chain") != self.target:
            raise CrossmarginError(
                f"{self.path}:{n}: holds results for target chain "
                f"{rec.get('target_chain')!r}, not {self.target!r}; use another output file"
            )

    def _jsonl_rows(self, text: IO[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        for n, line in enumerate(text, start=1):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                rec = None
            if not isinstance(rec, dict):
                raise CrossmarginError(f"{self.path}:{n}: not a scan record; refusing to append")
            yield n, rec

    def _csv_rows(self, text: IO[str]) -> Iterator[tuple[int, dict[str, Any]]]:
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        if tuple(header) != CSV_COLUMNS:
            raise CrossmarginError(f"{self.path}: not a scan CSV (its header differs)")
        for row in reader:
            if len(row) != len(CSV_COLUMNS):
                n = reader.line_num
                raise CrossmarginError(f"{self.path}:{n}: not a scan record; refusing to append")
            yield reader.line_num, {k: v or None for k, v in zip(CSV_COLUMNS, row, strict=True)}


@dataclass
class Summary:
    total: int = 0  # input entries
    skipped: int = 0  # already in the output
    duplicates: int = 0  # repeated in the input
    counts: Counter[str] = field(default_factory=Counter)  # by status, this run
    earlier: Counter[str] = field(default_factory=Counter)  # by status, already in the output

    @property
    def written(self) -> int:
        return sum(self.counts.values())

    @property
    def incomplete(self) -> int:
        """Records in the whole output (this run and earlier ones) that are not `ok`:
        partial reports and errors. A resumed run never recomputes them, so they stay."""
        both = self.counts + self.earlier
        return sum(n for status, n in both.items() if status != "ok")

    def __str__(self) -> str:
        done = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items())) or "nothing new"
        dup = f", {self.duplicates} repeated in the input" if self.duplicates else ""
        return f"scan: {self.total} entries: {done}; {self.skipped} already in the output{dup}"


def plan(entries: Iterable[Entry], out: ScanOutput, summary: Summary) -> Iterator[Entry]:
    """What is left to do: the entries after the output's last record, each account once.
    The output must be this input's: its last record is the entry on that line, and it
    holds one record per distinct entry up to there. That is checked here, before
    anything is written, by reading the input up to that line; the rest is streamed."""
    last = out.last_line
    it = iter(entries)
    seen: set[str] = set()
    upto, at, pending = 0, None, None
    for e in it:
        if e.line > last:
            pending = e
            break
        if e.line == last:
            at = e
        if e.key in seen:
            summary.duplicates += 1
        else:
            seen.add(e.key)
            upto += 1
    if out.last is not None:
        key = out.last.get("account") or out.last.get("input")
        if at is None or at.key != key:
            raise CrossmarginError(
                f"{out.path}: its last record is for input line {last} ({key}), which "
                f"--input does not have there; use the same input or another output file"
            )
    if upto != out.records:
        raise CrossmarginError(
            f"{out.path}: holds {out.records} records where --input lines 1-{last} give "
            f"{upto} accounts; use the same input or another output file"
        )
    summary.skipped = upto
    summary.earlier = Counter(out.statuses)
    return _todo(pending, it, seen, summary)


def _todo(
    first: Entry | None, rest: Iterator[Entry], seen: set[str], summary: Summary
) -> Iterator[Entry]:
    for e in itertools.chain([first] if first is not None else [], rest):
        if e.key in seen:
            summary.duplicates += 1
            continue
        seen.add(e.key)
        yield e


def batched(entries: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    batch: list[Entry] = []
    for e in entries:
        batch.append(e)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _ordered(
    jobs: Iterator[Coroutine[Any, Any, list[Written]]], window: int
) -> AsyncIterator[list[Written]]:
    """Run up to `window` jobs at a time; yield their results in input order."""
    pending: deque[asyncio.Task[list[Written]]] = deque()
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


async def scan_batch(
    runner: Engine | WorkerPool, fmt: Format, target: str, batch: list[Entry]
) -> list[Written]:
    """One batch through the engine (one read per chain for all its accounts), here or
    in a worker process; its records in the batch's order, serialised."""
    requests = [Request("margin", e.account, target) for e in batch if e.account is not None]
    job = (fmt, target, batch)
    if isinstance(runner, Engine):
        return finish_batch(runner, await runner.run(requests), job)
    return await runner.run(requests, finish_batch, job)


async def run_scan(
    runner: Engine | WorkerPool,
    todo: Iterable[Entry],
    out: ScanOutput,
    summary: Summary,
    *,
    batch_size: int = BATCH_SIZE,
    concurrency: int = 2,
    console: Console | None = None,
) -> Summary:
    """Compute and append the records of `todo` (from `plan`), in input order, with the
    engine here or a pool of workers (`concurrency` batches in flight per engine). The
    engine carries the deployment's price history, as the API's does, so both give the
    same figures."""
    console = console or Console(stderr=True)
    fmt, target = out.fmt, out.target
    jobs = (scan_batch(runner, fmt, target, b) for b in batched(todo, max(1, batch_size)))
    window = max(1, concurrency) * (runner.size if isinstance(runner, WorkerPool) else 1)
    columns = (TextColumn("scan"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("scan", total=summary.total, completed=summary.skipped)
        async for written in _ordered(jobs, window):
            for w in written:
                out.append(w.text)
                summary.counts[w.status] += 1
                if w.error:
                    _say(bar.console, f"line {w.line}: {w.input}: {w.error}")
            bar.update(task, completed=summary.skipped + summary.duplicates + summary.written)
    return summary


def _say(console: Console, text: str) -> None:
    """A plain line on stderr: user text is not rich markup, and is not wrapped."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def add_arguments(p: argparse.ArgumentParser, db_help: str) -> None:
    p.add_argument("--input", required=True, type=Path, help="addresses, one per line")
    p.add_argument("--output", required=True, type=Path, help="results (appended; resumable)")
    p.add_argument("--target-chain", help="chain name or id (default: settlement chain)")
    p.add_argument("--format", choices=("jsonl", "csv"), help="default: from --output's suffix")
    p.add_argument(
        "--batch-size",
        type=int,
        default=BATCH_SIZE,
        help=f"accounts per engine batch: one read per chain ({BATCH_SIZE})",
    )
    p.add_argument("--concurrency", type=int, default=2, help="batches in flight per engine (2)")
    p.add_argument(
        "--workers",
        type=int,
        help="engine processes (1: this one); default 2 for an input of at least "
        f"{WORKERS_FROM:,} entries on more than one core, else 1",
    )
    p.add_argument("--config", help="config file (default: .devnet/crossmargin.toml)")
    p.add_argument("--db", help=db_help)


def _lines(path: Path) -> Iterator[str]:
    try:
        with path.open(encoding="utf-8") as f:
            yield from f
    except (OSError, UnicodeDecodeError) as exc:
        raise CrossmarginError(f"{path}: cannot read: {exc}") from exc


def default_workers(entries: int) -> int:
    """`--workers` when not given: see the module docstring."""
    cores = usable_cores()
    return min(cores, MAX_DEFAULT_WORKERS) if cores > 1 and entries >= WORKERS_FROM else 1


def _store_url(history: HistoryStore | None) -> str | None:
    """The history store's URL, for workers to open their own connection to it."""
    return None if history is None else history.engine.url.render_as_string(hide_password=False)


def run_cli(args: argparse.Namespace, config: Config, history: HistoryStore | None) -> Summary:
    """The command: the summary says how it went (the caller picks the exit status). On
    Ctrl-C, says how to resume and re-raises KeyboardInterrupt."""
    fmt: Format = args.format or ("csv" if args.output.suffix.lower() == ".csv" else "jsonl")
    if args.input.resolve() == args.output.resolve():
        raise CrossmarginError("--input and --output are the same file")
    total = count_entries(_lines(args.input))  # a first pass: also finds undecodable input
    target = target_name(config, args.target_chain)
    console = Console(stderr=True)
    summary = Summary(total=total)

    workers = default_workers(total) if args.workers is None else args.workers
    if workers < 1:
        raise CrossmarginError("--workers must be at least 1")

    async def go(out: ScanOutput, pool: WorkerPool | None) -> None:
        todo = plan(iter_entries(_lines(args.input)), out, summary)
        opts = {"batch_size": args.batch_size, "concurrency": args.concurrency}
        if pool is not None:
            await run_scan(pool, todo, out, summary, console=console, **opts)
            return
        async with Engine.connect(config, history) as engine:
            await run_scan(engine, todo, out, summary, console=console, **opts)

    try:
        # the workers start first: before any thread or event loop here (a cheap, safe
        # fork), and without a copy of the locked output's descriptor
        with (
            (
                WorkerPool(config, _store_url(history), workers)
                if workers > 1
                else contextlib.nullcontext()
            ) as pool,
            ScanOutput(args.output, fmt, target) as out,
        ):
            if out.repaired:
                _say(
                    console,
                    f"{args.output}: dropped a partial last line left by an interrupted run",
                )
            asyncio.run(go(out, pool))
    except KeyboardInterrupt:
        _say(
            console,
            f"scan interrupted: {summary.written} records written to {args.output} in this "
            "run; rerun the same command to resume",
        )
        raise
    _say(console, str(summary))
    return summary
