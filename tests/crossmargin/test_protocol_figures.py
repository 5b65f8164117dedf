"""METHOD.md §12 figures of one protocol market, at their boundaries: unlisted debt is
more than 0.01 USD above the listed debt (exactly 0.01 is complete), liquidatable is a
health factor below 1 (exactly 1 is not), and an unreadable market has no figures."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from adapters.protocols.aave import WAD, AaveAccountData
from crossmargin.pipeline.protocol_read import ProtocolRead
from crossmargin.pipeline.protocols import protocol_account

POOL = "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2"


def read(debt_base: int, health: int | None = 2 * WAD, avail: int = 0) -> ProtocolRead:
    data = AaveAccountData(10**12, debt_base, avail, 8000, 7500, health if debt_base else None)
    return ProtocolRead("aave_v3", POOL, data)


def test_exactly_one_cent_above_is_complete_one_unit_more_is_not() -> None:
    listed = Fraction(5000)
    cent = 10**6  # 0.01 USD in Aave's 8-decimal base currency
    at = protocol_account(1, "ethereum", read(5000 * 10**8 + cent), listed)
    above = protocol_account(1, "ethereum", read(5000 * 10**8 + cent + 1), listed)
    assert at.unlisted_debt is False
    assert above.unlisted_debt is True
    assert above.total_debt_usd == "5000.010000"
    assert above.total_debt_base == str(5000 * 10**8 + cent + 1)


@given(
    debt=st.integers(min_value=1, max_value=10**30),
    listed_units=st.integers(min_value=0, max_value=10**30),
)
def test_unlisted_iff_reported_exceeds_listed_by_more_than_a_cent(
    debt: int, listed_units: int
) -> None:
    listed = Fraction(listed_units, 10**6)  # listed debt at micro-USD resolution
    p = protocol_account(42161, "arbitrum", read(debt), listed)
    assert p.unlisted_debt is (debt * 100 > listed * 100 * 10**8 + 10**8)
    assert p.listed_debt_usd is not None


def test_liquidatable_below_one_only() -> None:
    at_one = protocol_account(1, "ethereum", read(10**8, WAD), Fraction(1))
    below = protocol_account(1, "ethereum", read(10**8, WAD - 1), Fraction(1))
    assert at_one.liquidatable is False
    assert at_one.health_factor == "1.000000"
    assert below.liquidatable is True
    assert below.health_factor == "1.000000"  # served rounded; the flag is exact
    assert below.health_factor_wad == str(WAD - 1)


def test_no_debt_has_no_health_factor() -> None:
    p = protocol_account(1, "ethereum", read(0, None, avail=123), Fraction(0))
    assert (p.health_factor, p.health_factor_wad, p.liquidatable) == (None, None, False)
    assert p.available_borrows_usd == "0.000001"


def test_unreadable_market_has_no_figures() -> None:
    bad = ProtocolRead("aave_v3", POOL, None, "protocol_unreadable: account data unreadable")
    p = protocol_account(1, "ethereum", bad, Fraction(7))
    assert p.status == "error"
    assert p.reason == bad.error
    assert (p.total_debt_base, p.unlisted_debt, p.liquidatable) == (None, None, None)
