"""METHOD.md §12 end to end on the devnet's real Morpho Blue (base): frank's two markets.

Every figure of a Morpho row and of its positions is checked against Morpho itself at
the block hash the report pinned, read with plain JSON-RPC and eth_abi: `position` and
the market oracle's `price()` from the contracts, the accrued debt and market totals
from Morpho's own periphery library MorphoBalancesLib (contracts' MorphoLens, placed with
anvil_setCode), and Morpho's health rule (collateral * price / 1e36 * LLTV against the
debt) applied to those. Nothing is shared with the service's multicall, codec or accrual.
"""

from __future__ import annotations

import asyncio
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector
from test_protocols_e2e import eth_call, reports, rpc_call

from crossmargin.core.config import Config
from crossmargin.pipeline.report import MarginReport, ProtocolAccount, fixed6
from devnet import BackgroundDevnet

ROOT = Path(__file__).resolve().parents[2]
LENS = "0x0000000000000000000000000000000000001e45"
PARAMS = "(address,address,address,address,uint256)"
WAD = 10**18


def place_lens(url: str) -> None:
    """MorphoBalancesLib as external views, at a fixed address, mined into a block."""
    lens = json.loads((ROOT / "contracts/artifacts/MorphoLens.json").read_text())
    rpc_call(url, "anvil_setCode", LENS, lens["deployedBytecode"])
    rpc_call(url, "evm_mine")


def view(url: str, block: str, to: str, sig: str, types: list[str], args: list[Any]) -> Any:
    """One view call at a block hash, eth_abi both ways; uint256 outputs."""
    data = function_signature_to_4byte_selector(sig) + encode(types, args)
    raw = eth_call(url, to, data, block)
    return decode(["uint256"] * (len(raw) // 32), raw)


def morpho_rows(report: MarginReport) -> dict[str, ProtocolAccount]:
    return {p.market or "": p for p in report.protocols if p.protocol == "morpho_blue"}


def check_against_morpho(config: Config, report: MarginReport, user: str) -> int:
    """Each Morpho row and its positions equal Morpho's own figures at the pin; returns
    how many markets were checked."""
    chain = config.chain("base")
    url = chain.rpc_urls[0]
    pin = {b.chain_id: b.block_hash for b in report.as_of}[chain.chain_id]
    entry = config.protocol("morpho_blue", "base")
    assert entry is not None
    assert entry.morpho is not None
    rows = morpho_rows(report)
    assert set(rows) == {m.name for m in entry.markets}
    for m in entry.markets:
        p, params = rows[m.name], m.params
        assert (p.status, p.pool, p.chain_id) == ("ok", entry.morpho, chain.chain_id)
        _, _, collateral = view(
            url, pin, entry.morpho, "position(bytes32,address)", ["bytes32", "address"],
            [m.market_id, user],
        )  # fmt: skip
        (debt,) = view(
            url, pin, LENS, f"expectedBorrowAssets(address,{PARAMS},address)",
            ["address", PARAMS, "address"], [entry.morpho, params, user],
        )  # fmt: skip
        supply, _, borrowed, _ = view(
            url, pin, LENS, f"expectedMarketBalances(address,{PARAMS})", ["address", PARAMS],
            [entry.morpho, params],
        )  # fmt: skip
        (price,) = view(url, pin, m.oracle, "price()", [], [])
        max_borrow = collateral * price // 10**36 * m.lltv // WAD
        assert debt > 0
        assert (p.total_collateral_base, p.total_debt_base) == (str(collateral), str(debt))
        headroom = max(0, min(max_borrow - debt - 1, supply - borrowed))
        assert p.available_borrows_base == str(headroom)
        health = Fraction(max_borrow, debt)
        assert p.health_factor == fixed6(health)
        assert p.health_factor_wad == str(max_borrow * WAD // debt)
        assert p.liquidatable is (max_borrow < debt)
        assert p.unlisted_debt is False
        # the positions: collateral and debt as the tokens' assets, priced by §3
        mine = {q.symbol: q for q in report.positions if q.symbol.endswith(f"(Morpho {m.name})")}
        loan = m.name.split("/")[1]
        coll = m.name.split("/")[0]
        assert mine[f"{coll} (Morpho {m.name})"].raw_amount == str(collateral)
        assert mine[f"{loan} (Morpho {m.name})"].raw_amount == str(debt)
        assert mine[f"{loan} (Morpho {m.name})"].kind == "debt"
        assert p.total_debt_usd == mine[f"{loan} (Morpho {m.name})"].value_usd.lstrip("-")
    return len(entry.markets)


def test_frank_morpho_markets_equal_morpho_at_the_pin(devnet: Any) -> None:
    config, user = devnet.config, devnet.demo_accounts["frank"]
    place_lens(config.chain("base").rpc_urls[0])
    margin, _ = reports(config, user, "base")
    assert check_against_morpho(config, margin, user) == 2
    # Morpho's debt is in the figures: base's chain row counts it
    (base,) = [c for c in margin.chains if c.name == "base"]
    assert base.debt_usd is not None
    assert Fraction(base.debt_usd) >= 21_000


def test_morpho_interest_accrues_exactly_into_the_report(tmp_path: Path) -> None:
    """A month later (no transaction touches the markets) the report's Morpho debt is
    Morpho's own accrued debt at the new pin: larger, and exact to the unit."""
    with BackgroundDevnet(state_dir=tmp_path, keeper=False) as net:
        config, user = net.config, net.demo_accounts["frank"]
        url = config.chain("base").rpc_urls[0]
        place_lens(url)
        before, _ = reports(config, user, "base")
        check_against_morpho(config, before, user)
        for name in ("base", "ethereum", "arbitrum", "optimism"):
            rpc_call(config.chain(name).rpc_urls[0], "evm_increaseTime", 30 * 86_400)
            rpc_call(config.chain(name).rpc_urls[0], "evm_mine")
        asyncio.run(net.refresh_feeds())  # the feeds' heartbeats: prices stay valid
        after, _ = reports(config, user, "base")
        check_against_morpho(config, after, user)
        old, new = morpho_rows(before), morpho_rows(after)
        for name, row in new.items():
            assert int(row.total_debt_base or 0) > int(old[name].total_debt_base or 0)


@pytest.mark.parametrize("user", ["alice", "erin"])
def test_no_morpho_position_no_row(devnet: Any, user: str) -> None:
    """Accounts without a Morpho position get no Morpho row and no cap from it."""
    margin, _ = reports(devnet.config, devnet.demo_accounts[user], "base")
    assert morpho_rows(margin) == {}
