"""§12 figures of one protocol market: the `protocols[]` row (the protocol's own health
factor, debt and available borrows beside the debt the service lists) and, for Morpho
Blue, the account's positions there.

Aave v3 reports its own totals (getUserAccountData, USD with 8 decimals). Morpho Blue
does not: its figures are computed here as Morpho does, from the raw reads (shares,
market totals accrued to the pinned block's timestamp, the market oracle's price, the
LLTV). The positions themselves are priced by §3 elsewhere (pipeline/value.py); the
market's oracle only sets Morpho's own health factor and available borrows.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from adapters.protocols import morpho
from adapters.protocols.aave import COLLATERAL_BITS, is_collateral
from adapters.protocols.morpho import MorphoHealth
from crossmargin.core.protocols import MorphoMarketConfig
from crossmargin.pipeline.protocol_read import MorphoRead, ProtocolRead, market_params
from crossmargin.pipeline.report import ProtocolAccount, fixed6

AAVE_BASE = 10**8  # Aave v3's base currency: USD with 8 decimals
UNLISTED_TOLERANCE = Fraction(1, 100)  # §12: 0.01 USD
WAD = 10**18


def active(p: ProtocolAccount) -> bool:
    """The account has collateral or debt in the market (an account there)."""
    return int(p.total_collateral_base or 0) > 0 or int(p.total_debt_base or 0) > 0


def collateral_off(read: ProtocolRead, a_tokens: list[str]) -> dict[str, str]:
    """Aave: which of the pool's configured aTokens (`a_tokens`; keys lower case) the
    account does not use as collateral there at the pin, with why. Conservative
    (docs/methodology.md): such a supply counts 0 in the unified account, as in Aave's
    own figures; so does one whose reserve could not be identified."""
    bitmap = read.user_configuration
    if read.kind != "aave_v3" or bitmap is None:
        return {}
    off = "not used as collateral in its Aave pool"
    if bitmap & COLLATERAL_BITS == 0:  # no reserve used as collateral (no ids read)
        return {t.lower(): off for t in a_tokens}
    ids = {ref.token.lower(): ref.reserve_id for ref in read.reserves}
    out = {}
    for token in a_tokens:
        reserve_id = ids.get(token.lower())
        if reserve_id is None:
            out[token.lower()] = "its Aave reserve could not be read: not counted"
        elif not is_collateral(bitmap, reserve_id):
            out[token.lower()] = off
    return out


def _base(chain_id: int, chain: str, read: ProtocolRead) -> dict[str, Any]:
    return {
        "protocol": read.kind,
        "chain_id": chain_id,
        "chain": chain,
        "pool": read.pool,
        "market": read.market if read.kind == "morpho_blue" else read.name,
    }


def error_account(
    chain_id: int, chain: str, read: ProtocolRead, listed: Fraction | None, reason: str | None
) -> ProtocolAccount:
    """A market whose own figures could not be read or computed."""
    return ProtocolAccount(**_base(chain_id, chain, read), status="error", reason=reason,
                           health_factor=None, health_factor_wad=None,
                           total_collateral_base=None, total_debt_base=None,
                           available_borrows_base=None, total_collateral_usd=None,
                           total_debt_usd=None, available_borrows_usd=None,
                           listed_debt_usd=fixed6(listed), unlisted_debt=None,
                           liquidatable=None)  # fmt: skip


def protocol_account(
    chain_id: int, chain: str, read: ProtocolRead, listed: Fraction
) -> ProtocolAccount:
    """§12 for one Aave market: the protocol's own figures beside the debt the service
    listed there (`listed`, USD from configured representations at §3 prices)."""
    d = read.account_data
    if d is None:
        return error_account(chain_id, chain, read, listed, read.error)
    reported = Fraction(d.total_debt_base, AAVE_BASE)
    health = d.health
    return ProtocolAccount(
        **_base(chain_id, chain, read),
        status="ok",
        health_factor=fixed6(health),
        health_factor_wad=None if d.health_factor is None else str(d.health_factor),
        total_collateral_base=str(d.total_collateral_base),
        total_debt_base=str(d.total_debt_base),
        available_borrows_base=str(d.available_borrows_base),
        total_collateral_usd=fixed6(Fraction(d.total_collateral_base, AAVE_BASE)),
        total_debt_usd=fixed6(reported),
        available_borrows_usd=fixed6(Fraction(d.available_borrows_base, AAVE_BASE)),
        listed_debt_usd=fixed6(listed),
        unlisted_debt=reported - listed > UNLISTED_TOLERANCE,
        liquidatable=health is not None and health < 1,
    )


@dataclass(frozen=True, slots=True)
class MorphoFigures:
    """An account in one Morpho market at the pinned block, in token base units:
    collateral (collateral token), debt (loan token; borrow shares rounded up against
    totals accrued to the block) and Morpho's own health (market oracle, LLTV)."""

    collateral: int
    debt: int
    health: MorphoHealth


def morpho_figures(read: MorphoRead, m: MorphoMarketConfig, timestamp: int) -> MorphoFigures:
    """Exactly as Morpho would see the position in a transaction at `timestamp`
    (MorphoBalancesLib); a state Morpho would revert on is a DecodeError."""
    params = market_params(m)
    state = read.market
    if state is None or read.price is None:
        raise ValueError(f"market {m.name} was not read")
    if read.position.borrow_shares:  # without debt, accrual moves nothing reported here
        state = morpho.accrue(state, params, timestamp, read.borrow_rate).market
    health = morpho.health(read.position, state, params, read.price)
    return MorphoFigures(read.position.collateral, health.borrowed, health)


def morpho_account(
    chain_id: int,
    chain: str,
    read: ProtocolRead,
    f: MorphoFigures,
    collateral_usd: Fraction | None,
    debt_usd: Fraction | None,
    loan_unit_usd: Fraction | None,
) -> ProtocolAccount:
    """§12 row of one Morpho market. USD figures are at §3 prices (`loan_unit_usd`: one
    loan-token base unit); Morpho's debt is the listed debt (it comes from Morpho itself,
    so nothing is unlisted). Available borrows: LLTV headroom less the debt, in loan
    tokens, at most the market's liquidity."""
    health = f.health.health
    avail = f.health.available_borrow
    return ProtocolAccount(
        **_base(chain_id, chain, read),
        status="ok",
        health_factor=fixed6(health),
        health_factor_wad=None if health is None else str(health * WAD // 1),
        total_collateral_base=str(f.collateral),
        total_debt_base=str(f.debt),
        available_borrows_base=str(avail),
        total_collateral_usd=fixed6(collateral_usd),
        total_debt_usd=fixed6(debt_usd),
        available_borrows_usd=None if loan_unit_usd is None else fixed6(avail * loan_unit_usd),
        listed_debt_usd=fixed6(debt_usd),
        unlisted_debt=False,
        liquidatable=health is not None and health < 1,
    )
