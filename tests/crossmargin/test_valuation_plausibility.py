"""METHOD.md §4 plausibility in the pure valuation (crossmargin/pipeline/value.py): whatever
the balances, supplies and caps, implausible collateral counts 0 and is flagged, debt
counts in full, and everything else is valued as before. No chain: states are built
as the reader would return them (tests/adapters/test_plausibility.py reads real ones).
"""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.balances import BalanceRead
from adapters.calls import RoundData
from adapters.evm import BlockPin
from crossmargin.core.config import Config, RepresentationConfig, load_config, parse_config
from crossmargin.core.errors import ConfigError
from crossmargin.pipeline.margin import value_account
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.value import assess, implausible_balance
from oracle.validity import FeedReading

ROOT = Path(__file__).resolve().parents[2]
BASE = load_config(ROOT / "configs" / "devnet.toml", env={})
CHAIN = BASE.chain("ethereum")
NOW = 1_800_000_000
USDC_PRICE = Fraction(99_990_000, 10**8)  # 0.9999
ETH_PRICE = Fraction(3000)


def _rep(symbol: str) -> RepresentationConfig:
    return next(r for r in BASE.representations if r.chain == "ethereum" and r.symbol == symbol)


USDC, DEBT, ETH = (_rep(s) for s in ("USDC", "variableDebtUSDC", "ETH"))


def _feed(asset: str, answer: int) -> FeedReading:
    address = next(f.address for f in BASE.asset(asset).feeds if f.chain == "ethereum")
    return FeedReading(asset, 1, address, 8, NOW, RoundData(7, answer, NOW, NOW, 7), None)


def _state(balances: list[BalanceRead]) -> ChainState:
    pin = BlockPin(1, 100, "0x" + "ab" * 32, NOW)
    feeds = [_feed("USDC", 99_990_000), _feed("ETH", 3000 * 10**8)]
    return ChainState(CHAIN, pin, None, balances, feeds)


def _capped(config: Config, **caps: float | None) -> Config:
    assets = [
        a.model_copy(update={"max_position_usd": caps[a.symbol]}) if a.symbol in caps else a
        for a in config.assets
    ]
    return config.model_copy(update={"assets": assets})


supplies = st.one_of(
    st.none(),  # a snapshot from before supplies were read: unchecked
    st.integers(0, 10**30).map(lambda n: ("supply", n)),
    st.just(("error", "call reverted")),
)


def _read(rep: RepresentationConfig, raw: int, supply: tuple[str, object] | None) -> BalanceRead:
    total = supply[1] if supply is not None and supply[0] == "supply" else None
    error = supply[1] if supply is not None and supply[0] == "error" else None
    assert isinstance(total, int | None)
    assert isinstance(error, str | None)
    return BalanceRead(rep, raw, None, 6, None, None, total, error)


@given(
    coll=st.integers(1, 10**30),
    coll_supply=supplies,
    debt=st.integers(1, 10**30),
    debt_supply=supplies,
    eth=st.integers(1, 10**40),
    usdc_cap=st.one_of(st.none(), st.integers(1, 10**25).map(float)),
    eth_cap=st.one_of(st.none(), st.integers(1, 10**25).map(float)),
)
def test_implausible_collateral_counts_zero_and_debt_counts_in_full(
    coll: int,
    coll_supply: tuple[str, object] | None,
    debt: int,
    debt_supply: tuple[str, object] | None,
    eth: int,
    usdc_cap: float | None,
    eth_cap: float | None,
) -> None:
    config = _capped(BASE, USDC=usdc_cap, ETH=eth_cap)
    native = BalanceRead(ETH, eth, None, 18)
    reads = [_read(USDC, coll, coll_supply), _read(DEBT, debt, debt_supply), native]
    a = assess(config, [_state(reads)], "0x" + "00" * 20)

    coll_value = Fraction(coll, 10**6) * USDC_PRICE
    eth_value = Fraction(eth, 10**18) * ETH_PRICE
    coll_ok = (
        coll_supply is None
        or (
            coll_supply[0] == "supply"
            and isinstance(coll_supply[1], int)
            and coll <= coll_supply[1]
        )
    ) and (usdc_cap is None or coll_value <= Fraction(usdc_cap))
    eth_ok = eth_cap is None or eth_value <= Fraction(eth_cap)  # native: no supply to check
    assert a.collateral == coll_ok * coll_value + eth_ok * eth_value
    assert a.debt == Fraction(debt, 10**6) * USDC_PRICE  # always in full
    debt_flagged = debt_supply is not None and (
        debt_supply[0] == "error" or (isinstance(debt_supply[1], int) and debt > debt_supply[1])
    )
    flagged = sorted(w.detail.split(" ")[0] for w in a.warnings if w.code == "implausible")
    expected = (
        ["ETH"] * (not eth_ok) + ["USDC"] * (not coll_ok) + ["variableDebtUSDC"] * debt_flagged
    )
    assert flagged == sorted(expected)
    statuses = {p.symbol: (p.status, p.value_usd) for p in a.unvalued}
    for symbol, ok in (("USDC", coll_ok), ("ETH", eth_ok)):
        assert (symbol in statuses) == (not ok)
        if not ok:
            assert statuses[symbol] == ("implausible", "0.000000")
    assert not a.debt_unknown


def test_boundaries_and_vault_shares() -> None:
    vault = USDC.model_copy(update={"standard": "erc4626"})
    at_supply = BalanceRead(USDC, 5, None, 6, None, None, 5)
    assert implausible_balance(at_supply) is None
    assert (
        implausible_balance(at_supply._replace(raw_amount=6)) == "balance 6 above totalSupply() 5"
    )
    # a vault: the shares are compared with the vault's supply, not the assets they buy
    shares = BalanceRead(vault, 10**9, None, 6, None, 5, 5)
    assert implausible_balance(shares) is None
    assert implausible_balance(shares._replace(shares=6)) == "shares 6 above totalSupply() 5"
    assert implausible_balance(at_supply._replace(total_supply=None)) is None
    unreadable = at_supply._replace(
        total_supply=None, supply_error="X totalSupply(): call reverted"
    )
    assert implausible_balance(unreadable) == (
        "totalSupply() unreadable (X totalSupply(): call reverted)"
    )

    # max_position_usd: worth exactly the cap is plausible, a unit more is not
    value = Fraction(10**6, 10**6) * USDC_PRICE  # 1 USDC
    exact = _capped(BASE, USDC=float(value))
    cap = Fraction(float(value))
    raw_at_cap = int(cap / USDC_PRICE * 10**6)  # the largest raw amount worth <= cap
    for raw, status in ((raw_at_cap, "ok"), (raw_at_cap + 1, "implausible")):
        read = BalanceRead(USDC, raw, None, 6, None, None, 10**30)
        report = value_account(exact, [_state([read])], "0x" + "00" * 20, "ethereum")
        (p,) = [p for p in report.positions if p.symbol == "USDC"]
        assert p.status == status
        assert (p.value_usd == "0.000000") == (status == "implausible")


def test_config_fields_are_checked_with_their_path() -> None:
    text = (ROOT / "configs" / "devnet.toml").read_text()
    anchor = "liquidity_depth_usd = 50e6\n"
    capped = parse_config(text.replace(anchor, anchor + "max_position_usd = 1e9\n", 1), env={})
    assert capped.assets[0].max_position_usd == 1e9
    assert BASE.assets[0].max_position_usd is None  # absent: no limit
    assert BASE.risk.future_tolerance_s == 60
    for old, new, path in (
        (anchor, anchor + "max_position_usd = 0\n", "assets.0.max_position_usd"),
        ("future_tolerance_s = 60", "future_tolerance_s = -1", "risk.future_tolerance_s"),
    ):
        assert old in text
        with pytest.raises(ConfigError, match=rf"bad\.toml: {re.escape(path)}: "):
            parse_config(text.replace(old, new, 1), env={}, source="bad.toml")
