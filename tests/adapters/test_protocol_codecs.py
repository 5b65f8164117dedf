"""The protocol codecs agree with eth_abi (the reference) and refuse malformed data; Morpho's
math agrees with exact rational arithmetic and keeps the protocol's rounding direction.

The same codecs are checked against the deployed contracts in
tests/devnet/test_devnet_protocols.py; here every layout and formula is checked on its own.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from eth_abi import encode
from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from adapters import calls as c
from adapters.protocols import aave, morpho
from crossmargin.core.errors import DecodeError

addresses = st.binary(min_size=20, max_size=20).map(lambda b: c.checksum("0x" + b.hex()))
u = [st.integers(0, 2**n - 1) for n in range(257)]  # u[n]: any uintN
WAD = 10**18
PARAMS = "(address,address,address,address,uint256)"
MARKET = "(uint128,uint128,uint128,uint128,uint128,uint128)"


def ok(data: bytes) -> c.CallResult:
    return c.CallResult(True, data)


def sel(signature: str) -> bytes:
    return keccak(text=signature)[:4]


# ---------------------------------------------------------------- Aave v3


@given(addresses, addresses)
def test_aave_calls_match_eth_abi(pool: str, who: str) -> None:
    arg = encode(["address"], [who])
    assert aave.user_account_data(pool, who) == (pool, sel("getUserAccountData(address)") + arg)
    assert aave.user_configuration(pool, who) == (pool, sel("getUserConfiguration(address)") + arg)
    assert aave.reserve_data(pool, who) == (pool, sel("getReserveData(address)") + arg)
    assert aave.reserves_list(pool) == (pool, sel("getReservesList()"))


@given(u[256], u[256], u[256], u[16], u[16], st.integers(0, 2**256 - 2))
def test_account_data_round_trips(
    coll: int, debt: int, avail: int, lt: int, ltv: int, hf: int
) -> None:
    health = hf if debt else 2**256 - 1
    data = encode(["uint256"] * 6, [coll, debt, avail, lt, ltv, health])
    got = aave.decode_user_account_data(ok(data))
    assert (got.total_collateral_base, got.total_debt_base, got.available_borrows_base) == (
        coll,
        debt,
        avail,
    )
    assert (got.current_liquidation_threshold, got.ltv) == (lt, ltv)
    assert got.health_factor == (hf if debt else None)
    assert got.health == (Fraction(hf, WAD) if debt else None)


def test_account_data_refuses_what_aave_cannot_return() -> None:
    good = [1, 1, 0, 8000, 7500, WAD]
    aave.decode_user_account_data(ok(encode(["uint256"] * 6, good)))
    for bad, match in [
        ([1, 0, 0, 8000, 7500, WAD], "health factor"),  # no debt but a finite factor
        ([1, 1, 0, 8000, 7500, 2**256 - 1], "health factor"),  # debt but infinite
        ([1, 1, 0, 2**16, 7500, WAD], "wider than 16 bits"),
    ]:
        with pytest.raises(DecodeError, match=match):
            aave.decode_user_account_data(ok(encode(["uint256"] * 6, bad)))
    with pytest.raises(DecodeError, match="reverted"):
        aave.decode_user_account_data(c.CallResult(False, b""))
    with pytest.raises(DecodeError, match="expected 192 bytes"):
        aave.decode_user_account_data(ok(encode(["uint256"] * 5, good[:5])))


@given(st.sets(st.integers(0, 127)), st.sets(st.integers(0, 127)))
def test_configuration_bits(borrowing: set[int], collateral: set[int]) -> None:
    bitmap = sum(1 << (2 * i) for i in borrowing) + sum(1 << (2 * i + 1) for i in collateral)
    got = aave.decode_user_configuration(ok(encode(["uint256"], [bitmap])))
    assert got == bitmap
    assert aave.borrowing_ids(got) == sorted(borrowing)
    assert aave.collateral_ids(got) == sorted(collateral)
    assert all(aave.is_borrowing(got, i) == (i in borrowing) for i in range(128))
    assert all(aave.is_collateral(got, i) == (i in collateral) for i in range(128))


RESERVE = ["uint256", *["uint128"] * 5, "uint40", "uint16", *["address"] * 4, *["uint128"] * 3]


@given(st.tuples(u[256], *[u[128]] * 5, u[40], u[16], *[addresses] * 4, *[u[128]] * 3))
def test_reserve_data_round_trips(fields: tuple[object, ...]) -> None:
    r = aave.decode_reserve_data(ok(encode(RESERVE, list(fields))))
    assert (
        r.configuration,
        r.liquidity_index,
        r.current_liquidity_rate,
        r.variable_borrow_index,
        r.current_variable_borrow_rate,
        r.current_stable_borrow_rate,
        r.last_update_timestamp,
        r.id,
        r.a_token,
        r.stable_debt_token,
        r.variable_debt_token,
        r.interest_rate_strategy,
        r.accrued_to_treasury,
        r.unbacked,
        r.isolation_mode_total_debt,
    ) == fields
    conf = fields[0]
    assert isinstance(conf, int)
    # ReserveConfiguration's masks, bit by bit from Aave's documentation.
    assert r.ltv_bps == conf % 2**16
    assert r.liquidation_threshold_bps == (conf // 2**16) % 2**16
    assert r.liquidation_bonus_bps == (conf // 2**32) % 2**16
    assert r.decimals == (conf // 2**48) % 2**8
    assert (r.active, r.frozen, r.borrowing_enabled, r.paused) == tuple(
        bool((conf // 2**b) % 2) for b in (56, 57, 58, 60)
    )


@pytest.mark.parametrize(("index", "width"), [(1, 128), (6, 40), (7, 16), (8, 160), (14, 128)])
def test_reserve_data_refuses_wide_fields(index: int, width: int) -> None:
    words = [0] * 15
    words[index] = 2**width
    with pytest.raises(DecodeError, match=f"wider than {width} bits"):
        aave.decode_reserve_data(ok(encode(["uint256"] * 15, words)))


@given(st.lists(addresses, max_size=40))
def test_reserves_list_round_trips(assets: list[str]) -> None:
    assert aave.decode_reserves_list(ok(encode(["address[]"], [assets]))) == assets


def test_reserves_list_refuses_malformed() -> None:
    good = encode(["address[]"], [["0x" + "11" * 20, "0x" + "22" * 20]])
    for bad in (good[:-1], good + bytes(32), encode(["uint256", "uint256"], [64, 0]), b""):
        with pytest.raises(DecodeError):
            aave.decode_reserves_list(ok(bad))
    with pytest.raises(DecodeError, match="wider than 160"):
        aave.decode_reserves_list(ok(encode(["uint256[]"], [[2**160]])))


# ---------------------------------------------------------------- Morpho Blue: codecs

params_st = st.builds(morpho.MarketParams, addresses, addresses, addresses, addresses, u[256])
market_st = st.builds(morpho.MorphoMarket, *[u[128]] * 6)


@given(params_st, addresses, addresses)
def test_morpho_calls_match_eth_abi(p: morpho.MarketParams, where: str, who: str) -> None:
    fields = (p.loan_token, p.collateral_token, p.oracle, p.irm, p.lltv)
    assert p.encode() == encode([PARAMS], [fields])
    assert p.id == keccak(encode([PARAMS], [fields]))
    mid = p.id
    assert morpho.position(where, mid, who) == (
        where,
        sel("position(bytes32,address)") + encode(["bytes32", "address"], [mid, who]),
    )
    assert morpho.market(where, mid).data == sel("market(bytes32)") + mid
    assert morpho.market_params(where, mid).data == sel("idToMarketParams(bytes32)") + mid
    assert morpho.fee_recipient(where).data == sel("feeRecipient()")
    assert morpho.oracle_price(where) == (where, sel("price()"))
    with pytest.raises(ValueError, match="32 bytes"):
        morpho.position(where, mid[:31], who)


@given(params_st, market_st)
def test_borrow_rate_view_matches_eth_abi(p: morpho.MarketParams, m: morpho.MorphoMarket) -> None:
    call = morpho.borrow_rate_view(p, m)
    signature = f"borrowRateView({PARAMS},{MARKET})"
    fields = (p.loan_token, p.collateral_token, p.oracle, p.irm, p.lltv)
    market_fields = (
        m.total_supply_assets,
        m.total_supply_shares,
        m.total_borrow_assets,
        m.total_borrow_shares,
        m.last_update,
        m.fee,
    )
    assert call == (p.irm, sel(signature) + encode([PARAMS, MARKET], [fields, market_fields]))


@given(u[256], u[128], u[128], market_st, params_st)
def test_morpho_decoders_round_trip(
    supply: int, borrow: int, coll: int, m: morpho.MorphoMarket, p: morpho.MarketParams
) -> None:
    pos = morpho.decode_position(
        ok(encode(["uint256", "uint128", "uint128"], [supply, borrow, coll]))
    )
    assert pos == morpho.MorphoPosition(supply, borrow, coll)
    assert morpho.decode_market(ok(m.encode())) == m
    assert morpho.decode_market_params(ok(p.encode())) == p


def test_morpho_decoders_refuse_malformed() -> None:
    with pytest.raises(DecodeError, match="wider than 128"):
        morpho.decode_position(ok(encode(["uint256"] * 3, [0, 2**128, 0])))
    with pytest.raises(DecodeError, match="wider than 128"):
        morpho.decode_market(ok(encode(["uint256"] * 6, [0, 0, 0, 0, 2**128, 0])))
    with pytest.raises(DecodeError, match="wider than 160"):
        morpho.decode_market_params(ok(encode(["uint256"] * 5, [2**160, 0, 0, 0, 0])))
    with pytest.raises(DecodeError, match="expected 96 bytes"):
        morpho.decode_position(ok(b""))  # an EOA or a non-Morpho address answers nothing
    with pytest.raises(DecodeError, match="reverted"):
        morpho.decode_rate(c.CallResult(False, b""))


# ---------------------------------------------------------------- Morpho Blue: math

amounts = st.integers(0, 2**128 - 1)


@given(amounts, amounts, amounts)
def test_share_conversions_are_the_exact_fractions_rounded_as_morpho_does(
    x: int, total_assets: int, total_shares: int
) -> None:
    to_assets = Fraction(x * (total_assets + 1), total_shares + 10**6)
    to_shares = Fraction(x * (total_shares + 10**6), total_assets + 1)
    assert morpho.to_assets_down(x, total_assets, total_shares) == math.floor(to_assets)
    assert morpho.to_assets_up(x, total_assets, total_shares) == math.ceil(to_assets)
    assert morpho.to_shares_down(x, total_assets, total_shares) == math.floor(to_shares)
    assert morpho.to_shares_up(x, total_assets, total_shares) == math.ceil(to_shares)


@given(amounts, amounts, amounts)
def test_round_trips_never_favour_the_user(
    assets: int, total_assets: int, total_shares: int
) -> None:
    """Depositing then withdrawing never returns more; borrowing then repaying never less."""
    shares = morpho.to_shares_down(assets, total_assets, total_shares)
    assert morpho.to_assets_down(shares, total_assets, total_shares) <= assets
    debt_shares = morpho.to_shares_up(assets, total_assets, total_shares)
    assert morpho.to_assets_up(debt_shares, total_assets, total_shares) >= assets


@given(st.integers(0, 10**13), st.integers(0, 10 * 365 * 86400))
def test_taylor_compounding_brackets_the_exponential(rate: int, elapsed: int) -> None:
    """x n <= wTaylorCompounded <= x n + (x n)^2/2 + (x n)^3/6 (<= e^(x n) - 1): the
    series with each higher term rounded down, the second's rounding carried into the
    third (at most x n / 3 units more)."""
    got = morpho.w_taylor_compounded(rate, elapsed)
    first = Fraction(rate * elapsed, WAD)
    series = first + first**2 / 2 + first**3 / 6
    slack = (2 + first / 3) / WAD
    assert rate * elapsed <= got
    assert series - slack < Fraction(got, WAD) <= series


def _params(irm: str = "0x" + "11" * 20) -> morpho.MarketParams:
    return morpho.MarketParams(
        "0x" + "22" * 20, "0x" + "33" * 20, "0x" + "44" * 20, irm, 86 * 10**16
    )


markets = st.builds(
    lambda sa, ss, ba, bs, t, fee: morpho.MorphoMarket(sa + ba, ss, ba, bs, t, fee),
    st.integers(0, 10**30),
    st.integers(0, 10**36),
    st.integers(0, 10**30),
    st.integers(0, 10**36),
    st.integers(1, 2**40),
    st.integers(0, 25 * 10**16),  # Morpho's MAX_FEE is 25%
)


@given(markets, st.integers(0, 10**11), st.integers(0, 10 * 365 * 86400))
def test_accrual_moves_both_sides_by_the_interest(
    state: morpho.MorphoMarket, rate: int, elapsed: int
) -> None:
    p = _params()
    now = state.last_update + elapsed
    rate_or_none = rate if morpho.needs_rate(state, p, now) else None
    got = morpho.accrue(state, p, now, rate_or_none)
    m = got.market
    interest = (
        state.total_borrow_assets * morpho.w_taylor_compounded(rate, elapsed) // WAD
        if rate_or_none is not None
        else 0
    )
    assert got.interest == interest
    assert (m.total_supply_assets, m.total_borrow_assets) == (
        state.total_supply_assets + interest,
        state.total_borrow_assets + interest,
    )
    assert m.total_borrow_shares == state.total_borrow_shares
    assert m.last_update == (now if rate_or_none is not None else state.last_update)
    fee_amount = interest * state.fee // WAD
    assert got.fee_shares == (
        fee_amount * (state.total_supply_shares + 10**6) // (m.total_supply_assets - fee_amount + 1)
    )
    assert m.total_supply_shares == state.total_supply_shares + got.fee_shares
    # Suppliers' shares never lose value, and the fee shares are worth at most the fee.
    old_price = Fraction(state.total_supply_assets + 1, state.total_supply_shares + 10**6)
    new_price = Fraction(m.total_supply_assets + 1, m.total_supply_shares + 10**6)
    assert new_price >= old_price
    assert (
        morpho.to_assets_down(got.fee_shares, m.total_supply_assets, m.total_supply_shares)
        <= fee_amount
    )


def test_accrual_without_borrows_time_or_irm_is_the_stored_market() -> None:
    state = morpho.MorphoMarket(10**12, 10**18, 0, 0, 1000, 0)
    assert morpho.accrue(state, _params(), 5000, None).market == state  # nothing borrowed
    borrowed = morpho.MorphoMarket(10**12, 10**18, 10**11, 10**17, 1000, 0)
    assert morpho.accrue(borrowed, _params(), 1000, None).market == borrowed  # no time
    no_irm = _params("0x" + "00" * 20)
    assert morpho.accrue(borrowed, no_irm, 5000, None).market == borrowed  # no IRM
    with pytest.raises(ValueError, match="needs the IRM"):
        morpho.accrue(borrowed, _params(), 5000, None)
    with pytest.raises(DecodeError, match="after the block"):
        morpho.accrue(borrowed, _params(), 999, 10**9)
    huge = morpho.MorphoMarket(2**128 - 1, 1, 2**127, 1, 0, 0)
    with pytest.raises(DecodeError, match="overflow uint128"):
        morpho.accrue(huge, _params(), 10**8, 10**12)


@given(
    st.builds(morpho.MorphoPosition, st.just(0), st.integers(0, 10**30), st.integers(0, 10**30)),
    markets,
    st.integers(0, 10**40),
)
def test_health_is_morphos_liquidation_test(
    pos: morpho.MorphoPosition, state: morpho.MorphoMarket, price: int
) -> None:
    p = _params()
    h = morpho.health(pos, state, p, price)
    assert h.max_borrow == pos.collateral * price // 10**36 * p.lltv // WAD
    assert h.borrowed == morpho.borrow_assets(pos, state)
    assert h.liquidity == state.total_supply_assets - state.total_borrow_assets
    if h.borrowed == 0:
        assert h.health is None
    else:
        assert h.health == Fraction(h.max_borrow, h.borrowed)
    assert 0 <= h.available_borrow <= max(0, h.max_borrow - h.borrowed)
    assert h.available_borrow <= h.liquidity
