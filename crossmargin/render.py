"""Human-readable margin report for the terminal (rich tables)."""

from __future__ import annotations

from io import StringIO

from rich.console import Console
from rich.table import Table

from crossmargin.report import MarginReport


def render_margin(report: MarginReport, width: int = 120) -> str:
    out = StringIO()
    console = Console(file=out, width=width, force_terminal=False, color_system=None)
    t = report.totals
    console.print(
        f"account {report.account}  target {report.target_chain.name} "
        f"({report.target_chain.chain_id})  status {report.status}  method {report.method}"
    )
    summary = Table(title="Unified margin account", show_header=False)
    summary.add_column("figure")
    summary.add_column("USD", justify="right")
    for label, value in [
        ("collateral", t.collateral_usd),
        ("debt", t.debt_usd),
        ("equity", t.equity_usd),
        ("margin requirement", t.margin_requirement_usd),
        ("free margin", t.free_margin_usd),
        ("health", t.health),
        ("liquidatable", None if t.liquidatable is None else str(t.liquidatable).lower()),
    ]:
        summary.add_row(label, value if value is not None else "n/a")
    console.print(summary)

    haircuts = Table(title="Margin components")
    haircuts.add_column("component")
    haircuts.add_column("USD", justify="right")
    for name, value in report.haircuts.model_dump().items():
        haircuts.add_row(name, value if value is not None else "n/a")
    console.print(haircuts)

    chains = Table(title="Chains")
    for col in ("chain", "status", "block", "collateral USD", "debt USD", "margin USD"):
        chains.add_column(col, justify="right" if "USD" in col or col == "block" else "left")
    blocks = {b.chain_id: b for b in report.as_of}
    for c in report.chains:
        block = blocks.get(c.chain_id)
        chains.add_row(
            f"{c.name} ({c.chain_id})",
            c.status if c.reason is None else f"{c.status}: {c.reason}",
            str(block.block_number) if block else "-",
            c.collateral_usd or "-",
            c.debt_usd or "-",
            c.margin_usd or "-",
        )
    console.print(chains)

    positions = Table(title="Positions")
    for col in ("chain", "token", "kind", "amount (raw)", "price USD", "value USD", "haircut"):
        positions.add_column(col, justify="left" if col in ("chain", "token", "kind") else "right")
    for p in report.positions:
        token = f"{p.symbol}{' (bridged)' if p.bridged else ''}"
        kind = p.kind if p.status == "ok" else f"{p.kind} [{p.status}]"
        positions.add_row(
            str(p.chain_id),
            token,
            kind,
            p.raw_amount or "-",
            p.price_usd or "-",
            p.value_usd or "-",
            p.haircut or "-",
        )
    console.print(positions)
    for w in report.warnings:
        console.print(f"warning [{w.code}] {w.detail}")
    return out.getvalue().rstrip()
