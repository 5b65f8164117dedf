"""METHOD.md §12 capacity cap as a property, on in-memory chains (no anvil): whatever
the wallet holds and whatever the protocols report, borrowing capacity on a target
chain never exceeds the protocol's own available borrows there (Aave: every asset;
Morpho: its loan asset), and the cap is the protocol's figure whenever it binds."""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path

from eth_utils.address import to_checksum_address
from fake_chain import FakeChain, fake_chains
from hypothesis import given, settings
from hypothesis import strategies as st

from crossmargin.core.config import Config, load_config
from crossmargin.engine import Engine
from crossmargin.pipeline.figures import Request
from crossmargin.pipeline.report import CapacityReport, MarginReport

CONFIG: Config = load_config(
    Path(__file__).resolve().parents[2] / "configs" / "devnet.toml", env={}
)
PRICES = {"ETH": 3000.0, "BTC": 60000.0, "USDC": 1.0}
USER = to_checksum_address("0x" + "ab" * 20)
AAVE = CONFIG.protocol("aave_v3", "ethereum")
MORPHO = CONFIG.protocol("morpho_blue", "base")
WAD = 10**18


def reports(fake: dict[str, FakeChain], target: str) -> tuple[MarginReport, CapacityReport]:
    async def run() -> list[object]:
        engine = Engine(CONFIG, fake)
        reqs = [Request("margin", USER, target), Request("capacity", USER, target)]
        return [r.unwrap() for r in await engine.run(reqs)]  # type: ignore[attr-defined]

    margin, capacity = asyncio.run(run())
    assert isinstance(margin, MarginReport)
    assert isinstance(capacity, CapacityReport)
    return margin, capacity


def fund_wallet(fake: dict[str, FakeChain], chain: str, eth: int) -> None:
    fake[chain].set_balance("native", USER, eth * 10**18)


@settings(max_examples=25, deadline=None)
@given(
    eth=st.integers(0, 50),
    collateral_usd=st.integers(1, 10**6),
    avail_usd=st.integers(0, 10**6),
)
def test_capacity_never_above_aave_available_borrows(
    eth: int, collateral_usd: int, avail_usd: int
) -> None:
    assert AAVE is not None
    fake = fake_chains(CONFIG, PRICES)
    fund_wallet(fake, "ethereum", eth)
    pool = AAVE.address.lower()
    account = (collateral_usd * 10**8, 0, avail_usd * 10**8, 8000, 7500, 2**256 - 1)
    fake["ethereum"].aave_accounts[(pool, USER.lower())] = account
    fake["ethereum"].mine()
    margin, capacity = reports(fake, "ethereum")
    (row,) = [p for p in margin.protocols if p.protocol == "aave_v3"]
    cap = Fraction(row.available_borrows_usd or "0")
    assert cap == avail_usd
    assert capacity.capacities
    for c in capacity.capacities:
        assert c.capacity_usd is not None
        assert Fraction(c.capacity_usd) <= cap
        if c.reason is not None:  # the cap bound: capacity is Aave's own figure
            assert Fraction(c.capacity_usd) == cap
    if eth >= 1 and avail_usd < 1000:  # a wallet worth more than Aave lends: it binds
        assert all(c.reason for c in capacity.capacities)


@settings(max_examples=25, deadline=None)
@given(
    eth=st.integers(0, 50),
    weth=st.integers(1, 100),  # Morpho collateral, whole WETH
    debt_usdc=st.integers(0, 200_000),
    oracle_eth=st.integers(500, 6000),  # the market oracle's ETH price (not §3's)
    liquidity=st.integers(0, 10**6),
)
def test_capacity_never_above_morpho_available_borrows(
    eth: int, weth: int, debt_usdc: int, oracle_eth: int, liquidity: int
) -> None:
    assert MORPHO is not None
    fake = fake_chains(CONFIG, PRICES)
    fund_wallet(fake, "base", eth)
    base = fake["base"]
    (m, _) = MORPHO.markets
    debt = debt_usdc * 10**6
    total_borrow = debt + 10**6
    total_supply = total_borrow + liquidity * 10**6
    base.morpho_markets[m.market_id] = (
        total_supply, total_supply * 10**6, total_borrow, total_borrow * 10**6, base.timestamp, 0
    )  # fmt: skip
    base.morpho_positions[(m.market_id, USER.lower())] = (0, debt * 10**6, weth * 10**18)
    base.oracle_prices[m.oracle.lower()] = oracle_eth * 10**24  # 1e36 * 1e6 / 1e18 per ETH
    base.mine(0)
    margin, capacity = reports(fake, "base")
    rows = [p for p in margin.protocols if p.protocol == "morpho_blue"]
    assert [r.market for r in rows] == [m.name]
    cap = Fraction(rows[0].available_borrows_usd or "0")
    max_borrow = weth * oracle_eth * 10**6 * m.lltv // WAD
    avail = max(0, min(max_borrow - debt - 1, liquidity * 10**6))
    assert rows[0].available_borrows_base == str(avail)
    assert (rows[0].liquidatable, rows[0].total_debt_base) == (max_borrow < debt, str(debt))
    for c in capacity.capacities:
        assert c.capacity_usd is not None
        if c.asset == "USDC":  # Morpho lends its loan asset only
            assert Fraction(c.capacity_usd) <= cap
        else:
            assert c.reason is None
