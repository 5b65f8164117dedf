"""METHOD.md §8 and §9 through the service, on the devnet's demo accounts."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from fractions import Fraction
from typing import Any

import pytest

from crossmargin.core.errors import InputError
from crossmargin.engine import Engine
from crossmargin.pipeline.capacity import capacity_report
from crossmargin.pipeline.margin import margin_report
from crossmargin.pipeline.stress import stress_report
from crossmargin.pipeline.value import Assessment, Valued


def assessment(devnet: Any, name: str) -> Assessment:
    async def run() -> Assessment:
        async with Engine.connect(devnet.config) as engine:
            return await engine.assess(devnet.demo_accounts[name])

    return asyncio.run(run())


@pytest.mark.parametrize("name", ["alice", "bob", "carol"])
def test_capacity_leaves_free_margin_near_zero(devnet: Any, name: str) -> None:
    a = assessment(devnet, name)
    report = capacity_report(a, "arbitrum", "USDC")
    assert report.target_chain.chain_id == 42161
    (cap,) = report.capacities
    assert cap.capacity_usd is not None
    assert cap.amount is not None
    assert cap.price_usd is not None
    usd = Fraction(cap.capacity_usd)
    assert usd > 0
    assert float(cap.amount) == pytest.approx(
        float(usd / Fraction(cap.price_usd)), rel=1e-6
    )  # price shown to 6 dp
    # Borrow exactly that much on the target chain: free margin lands in [0, 0.01].
    debt_rep = next(
        r
        for r in devnet.config.representations
        if r.chain == "arbitrum" and r.asset == "USDC" and r.kind == "debt"
    )
    price = a.prices["USDC"].debt
    assert price is not None
    extra = Valued(42161, debt_rep, 0, price, -usd)
    after = margin_report(replace(a, valued=[*a.valued, extra]), "arbitrum")
    assert after.totals.free_margin_usd is not None
    free = Fraction(after.totals.free_margin_usd)
    assert -Fraction(1, 10**6) <= free <= Fraction(1, 100)


def test_capacity_for_every_asset_and_unknown_asset(devnet: Any) -> None:
    a = assessment(devnet, "alice")
    report = capacity_report(a, "base")
    assert [c.asset for c in report.capacities] == [x.symbol for x in devnet.config.assets]
    with pytest.raises(InputError, match="unknown asset 'DOGE'"):
        capacity_report(a, "base", "DOGE")


def test_capacity_depends_on_target_chain(devnet: Any) -> None:
    # alice's volatile collateral is spread over chains: each target puts a different
    # part of it a bridge away, so the latency haircut and the capacity differ.
    a = assessment(devnet, "alice")
    caps = {t: Fraction(capacity_report(a, t, "USDC").capacities[0].capacity_usd or "0")
            for t in ("ethereum", "arbitrum", "base")}  # fmt: skip
    assert all(v > 0 for v in caps.values())
    assert len(set(caps.values())) > 1


def test_stress_matches_hand_arithmetic(devnet: Any) -> None:
    a = assessment(devnet, "bob")
    report = stress_report(a)
    by_name = {s.name: s for s in report.scenarios}
    assert set(by_name) == {s.name for s in devnet.config.scenarios}
    crash = by_name["eth_crash_40"]
    coll = sum((v.value * (Fraction(6, 10) if v.rep.asset == "ETH" else 1)
                for v in a.valued if v.value > 0), Fraction(0))  # fmt: skip
    debt = sum((-v.value * (Fraction(6, 10) if v.rep.asset == "ETH" else 1)
                for v in a.valued if v.value < 0), Fraction(0))  # fmt: skip
    assert float(crash.collateral_usd) == pytest.approx(float(coll), abs=1e-5)
    assert float(crash.debt_usd) == pytest.approx(float(debt), abs=1e-5)
    assert crash.solvent == (coll >= debt)
    halt = by_name["arbitrum_halt"]
    off_arb = sum((v.value for v in a.valued if v.value > 0 and v.chain_id != 42161), Fraction(0))
    assert float(halt.collateral_usd) == pytest.approx(float(off_arb), abs=1e-5)
    worst = min(report.scenarios, key=lambda s: Fraction(s.equity_usd))
    assert report.worst == worst.name
