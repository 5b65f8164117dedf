"""METHOD.md §12 end to end on the devnet's real Aave v3 markets (ethereum, arbitrum).

Each report's protocol figures are checked against the pool itself: a plain JSON-RPC
eth_call of `getUserAccountData` at the block hash the report says it pinned, decoded
with eth_abi (nothing shared with the service's multicall read and codec). frank's Aave
debt is partly DAI, a reserve the config does not list: `unlisted_debt`, debt cannot be
valued, capacity 0. erin is close to Aave's liquidation on arbitrum while healthy in the
unified view: `local_liquidation_risk`, and capacity on arbitrum within Aave's own
available borrows. Interest accrual runs on a devnet the test starts itself.
"""

from __future__ import annotations

import asyncio
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import decode
from eth_utils.abi import function_signature_to_4byte_selector

from crossmargin.core.canonical import canonical
from crossmargin.core.config import Config
from crossmargin.engine import Engine
from crossmargin.pipeline import snapshot as s
from crossmargin.pipeline.capacity import capacity_report
from crossmargin.pipeline.figures import Request, compute
from crossmargin.pipeline.margin import margin_report
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.report import CapacityReport, MarginReport, ProtocolAccount, fixed6
from crossmargin.pipeline.state_codec import decode_states
from crossmargin.pipeline.stored import compact, expand, replay
from crossmargin.pipeline.value import assess
from devnet import BackgroundDevnet
from tests.jsonrpc import rpc_call

ACCOUNT_DATA = function_signature_to_4byte_selector("getUserAccountData(address)")
BALANCE_OF = function_signature_to_4byte_selector("balanceOf(address)")
WAD = 10**18


def eth_call(url: str, to: str, data: bytes, block_hash: str) -> bytes:
    """One eth_call at a block named by its hash (EIP-1898)."""
    call = {"to": to, "data": "0x" + data.hex()}
    return bytes.fromhex(rpc_call(url, "eth_call", call, {"blockHash": block_hash})[2:])


def pool_account_data(url: str, pool: str, user: str, block_hash: str) -> tuple[int, ...]:
    """getUserAccountData(user) as the pool returns it at that block."""
    arg = bytes(12) + bytes.fromhex(user[2:])
    out = decode(["uint256"] * 6, eth_call(url, pool, ACCOUNT_DATA + arg, block_hash))
    return tuple(int(x) for x in out)


def balance_at(url: str, token: str, user: str, block_hash: str) -> int:
    arg = bytes(12) + bytes.fromhex(user[2:])
    return int(decode(["uint256"], eth_call(url, token, BALANCE_OF + arg, block_hash))[0])


def reports(config: Config, account: str, target: str) -> tuple[MarginReport, CapacityReport]:
    """Margin and capacity from one read (one pin per chain)."""

    async def run() -> list[ChainState]:
        async with Engine.connect(config) as engine:
            return (await engine.read([account]))[0]

    states = asyncio.run(run())
    a = assess(config, states, account)
    return margin_report(a, target), capacity_report(a, target)


def check_against_pool(config: Config, report: MarginReport, user: str) -> None:
    """Every listed Aave account equals the pool's own figures at the pinned block
    (Morpho's rows: test_morpho_e2e.py)."""
    pins = {b.chain_id: b.block_hash for b in report.as_of}
    assert report.protocols
    for p in report.protocols:
        if p.protocol != "aave_v3":
            continue
        chain = config.chain(p.chain_id)
        market = config.protocol(p.protocol, chain.name)
        assert market is not None
        assert market.pool == p.pool
        coll, debt, avail, lt, ltv, hf = pool_account_data(
            chain.rpc_urls[0], p.pool, user, pins[p.chain_id]
        )
        assert p.status == "ok"
        assert (p.total_collateral_base, p.total_debt_base, p.available_borrows_base) == (
            str(coll),
            str(debt),
            str(avail),
        )
        assert p.total_debt_usd == fixed6(Fraction(debt, 10**8))
        assert p.available_borrows_usd == fixed6(Fraction(avail, 10**8))
        assert p.health_factor_wad == (str(hf) if debt else None)
        assert p.health_factor == (fixed6(Fraction(hf, WAD)) if debt else None)
        assert p.liquidatable == (debt > 0 and hf < WAD)
        assert lt
        assert ltv


def protocol(report: MarginReport, chain: str) -> ProtocolAccount:
    (p,) = [p for p in report.protocols if p.chain == chain and p.protocol == "aave_v3"]
    return p


def test_frank_unlisted_debt(devnet: Any) -> None:
    config, user = devnet.config, devnet.demo_accounts["frank"]
    margin, capacity = reports(config, user, "ethereum")
    check_against_pool(config, margin, user)
    eth = protocol(margin, "ethereum")
    assert eth.unlisted_debt is True
    # the listed part is the configured USDC / WETH debt tokens; DAI is the rest
    assert Fraction(eth.total_debt_usd or "0") - Fraction(eth.listed_debt_usd or "0") > 1000
    codes = [w.code for w in margin.warnings]
    assert "unlisted_debt" in codes
    assert "debt_unknown" in codes
    (unknown,) = [w for w in margin.warnings if w.code == "debt_unknown"]
    assert "aave_v3 on ethereum (1): unlisted debt" in unknown.detail
    totals = margin.totals
    assert margin.status == "partial"
    assert (totals.debt_usd, totals.equity_usd, totals.free_margin_usd, totals.health) == (
        None,
        None,
        None,
        None,
    )
    assert Fraction(totals.collateral_usd) > 0
    # the chain whose market hides debt shows no debt figure; the others still do
    per_chain = {c.name: c.debt_usd for c in margin.chains}
    assert per_chain["ethereum"] is None
    assert all(v is not None for n, v in per_chain.items() if n != "ethereum"), per_chain
    assert capacity.capacities
    assert all(c.capacity_usd == "0.000000" for c in capacity.capacities)
    assert "capacity_zero" in [w.code for w in capacity.warnings]


def test_erin_local_liquidation_risk(devnet: Any) -> None:
    config, user = devnet.config, devnet.demo_accounts["erin"]
    margin, capacity = reports(config, user, "arbitrum")
    check_against_pool(config, margin, user)
    arb = protocol(margin, "arbitrum")
    health = Fraction(int(arb.health_factor_wad or 0), WAD)
    assert 1 < health < Fraction(config.risk.local_health_warn)
    assert arb.unlisted_debt is False
    assert arb.liquidatable is False
    (risk,) = [w for w in margin.warnings if w.code == "local_liquidation_risk"]
    assert "arbitrum" in risk.detail
    assert arb.health_factor is not None
    assert arb.health_factor in risk.detail
    assert "unlisted_debt" not in [w.code for w in margin.warnings]
    # healthy in the unified view: debt known, positive free margin, not liquidatable
    assert margin.status == "ok"
    assert margin.totals.liquidatable is False
    assert Fraction(margin.totals.free_margin_usd or "-1") > 0
    # capacity on arbitrum never above Aave's own available borrows there (§12) ...
    cap = Fraction(arb.available_borrows_usd or "0")
    assert capacity.capacities
    for row in capacity.capacities:
        assert row.capacity_usd is not None
        assert Fraction(row.capacity_usd) <= cap
    # ... and here that cap binds: the unified free margin is far larger
    assert Fraction(capacity.free_margin_usd or "0") > cap
    assert all(row.capacity_usd == arb.available_borrows_usd for row in capacity.capacities)
    # the listed debt on arbitrum is erin's variableDebtArbUSDC, read at the same pin
    pin = {b.chain_id: b.block_hash for b in margin.as_of}[arb.chain_id]
    (rep,) = [r for r in config.representations if r.symbol == "variableDebtArbUSDC"]
    raw = balance_at(config.chain("arbitrum").rpc_urls[0], rep.address, user, pin)
    (pos,) = [p for p in margin.positions if p.token == rep.address]
    assert pos.raw_amount == str(raw)
    assert raw > 11_950 * 10**6 - 1


def test_other_markets_capacity_uncapped(devnet: Any) -> None:
    """An account without an Aave position on the target chain is not capped there."""
    config, user = devnet.config, devnet.demo_accounts["alice"]
    margin, capacity = reports(config, user, "arbitrum")
    assert margin.protocols == []
    assert all(row.reason is None for row in capacity.capacities)


@pytest.mark.parametrize(("name", "target"), [("erin", "arbitrum"), ("frank", "base")])
def test_protocol_reads_replay(devnet: Any, name: str, target: str) -> None:
    """Snapshots record each account's protocol reads (Aave's account data; Morpho's
    position, market, rate and oracle price); replay gives the same report."""
    config, user = devnet.config, devnet.demo_accounts[name]

    async def run() -> list[ChainState]:
        async with Engine.connect(config) as engine:
            return (await engine.read([user]))[0]

    states = asyncio.run(run())
    assert any(st.protocols for st in states)
    if name == "frank":
        assert any(p.morpho is not None for st in states for p in st.protocols)
    req = Request("margin", user, target)
    report = compute(config, states, req)
    built = s.document(config, req, states, report, s.GENESIS)
    doc = json.loads(built.text)
    full = expand(doc, built.blobs)
    assert decode_states(config, full["inputs"]["chains"]) == states
    _, outputs = replay(config, doc, built.blobs)
    assert outputs == canonical(report.model_dump(mode="json"))
    assert compact(full) == built


def test_interest_accrual_read_at_pin(tmp_path: Path) -> None:
    """Debt grows with time and is read exactly at the new pin."""
    with BackgroundDevnet(state_dir=tmp_path, keeper=False) as net:
        config, user = net.config, net.demo_accounts["erin"]
        url = config.chain("arbitrum").rpc_urls[0]
        before, _ = reports(config, user, "arbitrum")
        rpc_call(url, "evm_increaseTime", 30 * 86_400)
        rpc_call(url, "evm_mine")
        asyncio.run(net.refresh_feeds())  # the feeds' heartbeats: prices stay valid
        after, _ = reports(config, user, "arbitrum")
        check_against_pool(config, after, user)
        old, new = protocol(before, "arbitrum"), protocol(after, "arbitrum")
        assert int(new.total_debt_base or 0) > int(old.total_debt_base or 0)
        (rep,) = [r for r in config.representations if r.symbol == "variableDebtArbUSDC"]
        pins = {b.chain_id: b for b in after.as_of}
        raw = balance_at(url, rep.address, user, pins[42161].block_hash)
        (pos,) = [p for p in after.positions if p.token == rep.address]
        (old_pos,) = [p for p in before.positions if p.token == rep.address]
        assert pos.raw_amount == str(raw)
        assert raw > int(old_pos.raw_amount or 0)
        assert new.unlisted_debt is False  # the accrued debt is all listed


@pytest.mark.parametrize("user", ["frank", "erin"])
def test_protocol_accounts_served(devnet: Any, user: str) -> None:
    """The report's protocols[] as JSON: raw figures are integer strings."""
    config = devnet.config
    margin, _ = reports(config, devnet.demo_accounts[user], "ethereum")
    served = margin.model_dump(mode="json")["protocols"]
    want = {"frank": {"ethereum", "base"}, "erin": {"ethereum", "arbitrum"}}[user]
    assert {p["chain"] for p in served} == want
    for p in served:
        for key in ("total_collateral_base", "total_debt_base", "available_borrows_base"):
            assert p[key].isdigit()


def test_unreadable_account_data_is_a_debt_gap(devnet: Any) -> None:
    """A pool whose getUserAccountData cannot be decoded (here: a market configured at
    an address with no contract, which answers empty data) leaves the debt unchecked."""
    config, user = devnet.config, devnet.demo_accounts["erin"]
    url = config.chain("ethereum").rpc_urls[0]
    no_code = "0x" + "12" * 20
    assert rpc_call(url, "eth_getCode", no_code, "latest") == "0x"
    market = config.protocols[0].model_copy(update={"pool": no_code})
    broken = config.model_copy(update={"protocols": [market, *config.protocols[1:]]})
    margin, capacity = reports(broken, user, "ethereum")
    (p,) = [p for p in margin.protocols if p.chain == "ethereum"]
    assert p.status == "error"
    assert p.reason == "protocol_unreadable: account data unreadable"
    assert "protocol_unreadable" in [w.code for w in margin.warnings]
    assert margin.totals.debt_usd is None
    assert all(c.capacity_usd == "0.000000" for c in capacity.capacities)
