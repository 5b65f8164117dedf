"""Human-readable margin report for the terminal (rich tables, plain text).

Figures are the report's exact decimal strings, so every number in the table can be
found verbatim in `--json`; token amounts are shown in token units (exact) instead of
base units. Every cell is literal text: nothing from the report is read as rich markup.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from io import StringIO

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from crossmargin.pipeline.report import CapacityReport, MarginReport

NA = "n/a"
UNKNOWN = "unknown"  # a figure METHOD.md §4 leaves null: debt that cannot be valued
_WRAP = {"note", "detail", "valid sources"}


def units(raw: str | None, decimals: int) -> str:
    """Base units to token units, exact, without trailing zeros: ("1500000", 6) -> "1.5"."""
    if raw is None:
        return "-"
    sign, digits = ("-", raw[1:]) if raw.startswith("-") else ("", raw)
    digits = digits.rjust(decimals + 1, "0")
    whole, frac = digits[: len(digits) - decimals], digits[len(digits) - decimals :]
    frac = frac.rstrip("0")
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"


def _table(title: str, columns: Iterable[str], right: Iterable[str] = ()) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    align = set(right)
    for col in columns:
        table.add_column(col, justify="right" if col in align else "left", no_wrap=col not in _WRAP)
    return table


def _row(table: Table, *cells: str | None) -> None:
    table.add_row(*(Text(c if c is not None else NA) for c in cells))


def render_margin(
    report: MarginReport, width: int | None = None, capacity: CapacityReport | str | None = None
) -> str:
    """The margin report as tables; with `capacity` (its §8 report, or why there is
    none), the borrowing capacity on the target chain after the summary."""
    width = width or max(80, shutil.get_terminal_size((120, 24)).columns)
    out = StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None)
    say = console.print
    t = report.totals
    names = {c.chain_id: c.name for c in report.chains}
    method = "expected shortfall" if report.method == "es" else "value at risk"
    say(
        Text(
            f"account {report.account}  target {report.target_chain.name} "
            f"({report.target_chain.chain_id})  status {report.status}  method {method}"
        )
    )
    down = [c for c in report.chains if c.status != "ok"]
    if down:
        listed = ", ".join(f"{c.name} ({c.chain_id})" for c in down)
        say(Text(f"PARTIAL: unavailable chains count 0 as collateral: {listed}"))

    debt_unknown = next((w.detail for w in report.warnings if w.code == "debt_unknown"), None)
    if debt_unknown:
        say(Text(f"DEBT UNKNOWN: {debt_unknown}"))
    no_debt = t.debt_usd == "0.000000"
    why = "debt cannot be valued (see DEBT UNKNOWN above)"
    health_note = (
        "(collateral - requirement) / debt"
        if t.health is not None
        else why
        if debt_unknown
        else "no debt"
        if no_debt
        else ""
    )
    liquidatable = None if t.liquidatable is None else str(t.liquidatable).lower()
    summary = _table("Unified margin account", ("figure", "USD", "note"), right=("USD",))
    for label, value, note in [
        ("collateral", t.collateral_usd, "of what could be valued" if debt_unknown else ""),
        ("debt", t.debt_usd, why if debt_unknown else ""),
        ("equity", t.equity_usd, why if debt_unknown else "collateral - debt"),
        ("margin requirement", t.margin_requirement_usd, "sum of the components below"),
        ("free margin", t.free_margin_usd, why if debt_unknown else "equity - requirement"),
        ("health", t.health, health_note),
        ("liquidatable", liquidatable, why if debt_unknown else "free margin < 0"),
    ]:
        _row(summary, label, UNKNOWN if value is None and debt_unknown else value, note)
    say(summary)
    _say_capacity(say, report, capacity)

    components = _table("Margin requirement components", ("component", "USD"), right=("USD",))
    for name, value in report.haircuts.model_dump().items():
        _row(components, name, value)
    say(components)

    chains = _table(
        "Chains (pinned blocks)",
        ("chain", "status", "block", "collateral USD", "debt USD", "margin USD"),
        right=("block", "collateral USD", "debt USD", "margin USD"),
    )
    blocks = {b.chain_id: b for b in report.as_of}
    for c in report.chains:
        block = blocks.get(c.chain_id)
        _row(
            chains,
            f"{c.name} ({c.chain_id})",
            # the reason is in the warnings; verified mode (§13) says how much is proven
            c.status if c.positions is None else f"{c.status}, {c.proven}/{c.positions} proven",
            str(block.block_number) if block else "-",
            c.collateral_usd or "-",
            c.debt_usd or (UNKNOWN if c.status == "ok" else "-"),  # ok: its debt is unreadable
            c.margin_usd or "-",
        )
    say(chains)
    if report.max_time_skew_s is not None:
        say(Text(f"largest gap between pinned block times: {report.max_time_skew_s} s"))

    cols = ("chain", "token", "kind", "amount", "price USD", "value USD", "haircut", "margin USD")
    positions = _table("Positions", cols, right=cols[3:])
    for p in report.positions:
        token = f"{p.symbol}{' (bridged)' if p.bridged else ''}"
        _row(
            positions,
            names.get(p.chain_id, str(p.chain_id)),
            token,
            p.kind,
            units(p.raw_amount, p.decimals),
            p.price_usd or "-",
            p.value_usd if p.status == "ok" else p.status,  # counted 0 or unknown: say why
            p.haircut or "-",
            p.margin_usd or "-",
        )
    if not report.positions:
        _row(positions, "-", "no positions", "", "", "", "", "", "")
    say(positions)
    _say_protocols(say, report)

    prices = _table(
        "Prices (collateral at the lowest valid source, debt at the highest)",
        ("asset", "collateral USD", "debt USD", "deviation", "valid sources"),
        right=("collateral USD", "debt USD", "deviation"),
    )
    for pr in report.prices:
        bad = sorted({s.reason or "invalid" for s in pr.sources if not s.valid})
        valid = f"{sum(s.valid for s in pr.sources)}/{len(pr.sources)}"
        _row(
            prices,
            pr.asset,
            pr.collateral_usd,
            pr.debt_usd,
            pr.deviation,
            f"{valid} ({', '.join(bad)})" if bad else valid,
        )
    say(prices)

    if report.warnings:
        warnings = _table("Warnings", ("code", "detail"))
        for w in report.warnings:
            _row(warnings, w.code, w.detail)
        say(warnings)
    else:
        say(Text("no warnings"))
    return out.getvalue().rstrip()


def _say_protocols(say: Callable[..., None], report: MarginReport) -> None:
    """METHOD.md §12: each lending-protocol account as the protocol counts it (a table
    only when the account has one)."""
    if not report.protocols:
        return
    cols = ("protocol", "chain", "health factor", "debt USD", "listed USD", "available USD")
    table = _table("Lending protocols (their own figures)", cols, right=cols[2:])
    for p in report.protocols:
        name = f"{p.protocol} {p.market}" if p.market else p.protocol
        if p.status != "ok":
            _row(table, name, p.chain, p.reason, "-", p.listed_debt_usd, "-")
            continue
        debt = f"{p.total_debt_usd}{' (unlisted)' if p.unlisted_debt else ''}"
        _row(
            table,
            name,
            p.chain,
            p.health_factor or "no debt",
            debt,
            p.listed_debt_usd,
            p.available_borrows_usd,
        )
    say(table)


def _say_capacity(
    say: Callable[..., None], report: MarginReport, cap: CapacityReport | str | None
) -> None:
    """METHOD.md §8: how much more of each asset can be borrowed on the target chain."""
    if cap is None:
        return
    title = f"Borrowing capacity on {report.target_chain.name}"
    if isinstance(cap, str):
        say(Text(f"{title}: not computed: {cap}"))
        return
    cols = ("asset", "capacity USD", "amount", "price USD", "note")
    table = _table(title, cols, right=cols[1:4])
    for c in cap.capacities:
        _row(table, c.asset, c.capacity_usd, c.amount, c.price_usd, c.reason or "")
    say(table)
