"""METHOD.md §12, Aave collateral flags, on the devnet: erin supplied USDC to Aave on
ethereum and switched it off as collateral (a real setUserUseReserveAsCollateral).

The conservative reading (docs/methodology.md): a supply the account does not use as
collateral in its pool counts 0 in the unified account too, listed with its amount and
status `not_collateral`, and named in the pool's `protocols[]` row. The flag is checked
against the pool at the pinned block with plain JSON-RPC and eth_abi: the reserve's id
from getReserveData, its bit in getUserConfiguration.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from eth_abi.abi import decode, encode
from eth_utils.abi import function_signature_to_4byte_selector as sel
from test_protocols_e2e import balance_at, eth_call, reports


def pool_view(url: str, pool: str, sig: str, arg: str, block: str) -> tuple[Any, ...]:
    raw = eth_call(url, pool, sel(sig) + encode(["address"], [arg]), block)
    return tuple(decode(["uint256"] * (len(raw) // 32), raw))


def test_a_supply_switched_off_as_collateral_counts_zero(devnet: Any) -> None:
    config, user = devnet.config, devnet.demo_accounts["erin"]
    margin, _ = reports(config, user, "ethereum")
    reserve = devnet.manifest.chain("ethereum").aave_v3.reserve("USDC")
    url = config.chain("ethereum").rpc_urls[0]
    pin = {b.name: b.block_hash for b in margin.as_of}["ethereum"]
    pool = devnet.manifest.chain("ethereum").aave_v3.pool
    reserve_id = pool_view(url, pool, "getReserveData(address)", reserve.underlying, pin)[7]
    (bitmap,) = pool_view(url, pool, "getUserConfiguration(address)", user, pin)
    assert not bitmap >> (2 * reserve_id + 1) & 1  # the pool: not used as collateral
    supplied = balance_at(url, reserve.a_token, user, pin)
    assert supplied >= 5000 * 10**6 - 1
    (pos,) = [p for p in margin.positions if p.token == reserve.a_token]
    assert (pos.status, pos.raw_amount, pos.value_usd) == (
        "not_collateral",
        str(supplied),
        "0.000000",
    )
    assert pos.price_usd is not None  # priced, shown, but not counted
    (row,) = [p for p in margin.protocols if p.chain == "ethereum"]
    assert row.collateral_off == [pos.symbol]
    assert "not_collateral" in [w.code for w in margin.warnings]
    # the other supplies of the same pool (WBTC, collateral on) still count
    wbtc = devnet.manifest.chain("ethereum").aave_v3.reserve("WBTC")
    assert (
        pool_view(url, pool, "getUserConfiguration(address)", user, pin)[0] >> (2 * wbtc.id + 1) & 1
    )
    (coll,) = [p for p in margin.positions if p.token == wbtc.a_token]
    assert coll.status == "ok"
    assert Fraction(coll.value_usd or "0") > 0


def test_no_aave_position_no_flag(devnet: Any) -> None:
    """An account with no Aave position gets no row and no flag warning."""
    margin, _ = reports(devnet.config, devnet.demo_accounts["alice"], "ethereum")
    assert "not_collateral" not in [w.code for w in margin.warnings]
    assert all(p.status != "not_collateral" for p in margin.positions)
