"""METHOD.md §2: a chain that cannot be read is listed as unavailable, valued 0, and
makes the result partial; with debt possible there, debt cannot be valued (§4)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from crossmargin.core.config import Config
from crossmargin.engine import Engine
from crossmargin.pipeline.report import MarginReport


def dead_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def with_dead_chain(config: Config, name: str) -> Config:
    chains = [
        c.model_copy(update={"rpc_urls": [dead_url()], "retries": 1, "timeout_s": 2.0})
        if c.name == name
        else c
        for c in config.chains
    ]
    return config.model_copy(update={"chains": chains})


def margin(config: Config, account: str) -> MarginReport:
    async def run() -> MarginReport:
        async with Engine.connect(config) as engine:
            return await engine.margin(account, "ethereum")

    return asyncio.run(run())


def test_unavailable_chain_is_flagged_not_zeroed_silently(devnet: Any) -> None:
    healthy = margin(devnet.config, devnet.demo_accounts["alice"])
    report = margin(with_dead_chain(devnet.config, "base"), devnet.demo_accounts["alice"])
    assert healthy.status == "ok"
    assert report.status == "partial"
    base = next(c for c in report.chains if c.name == "base")
    assert base.status == "unavailable"
    assert base.collateral_usd is None
    assert {p.status for p in report.positions if p.chain_id == 8453} == {"unavailable"}
    assert any(w.code == "chain_unavailable" for w in report.warnings)
    assert 8453 not in {b.chain_id for b in report.as_of}

    # The other chains' balances are untouched by base's failure (prices may move: base's
    # feeds no longer vote in the min/max).
    def raw(r: MarginReport) -> set[tuple[int, str, str | None]]:
        return {(p.chain_id, p.symbol, p.raw_amount) for p in r.positions if p.chain_id != 8453}

    assert raw(report) == raw(healthy)
    # base holds debt representations: debt cannot be valued (§4), nor what follows it.
    t = report.totals
    assert (t.debt_usd, t.equity_usd, t.free_margin_usd, t.health) == (None, None, None, None)
    assert t.liquidatable is None
    assert any(w.code == "debt_unknown" for w in report.warnings)
