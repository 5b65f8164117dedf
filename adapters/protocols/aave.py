"""Aave v3 codecs: getUserAccountData, getUserConfiguration, getReserveData, getReservesList."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from adapters.calls import Call, CallResult, address_word
from adapters.protocols.abi import WORD, as_address, bits, selector, words
from crossmargin.core.errors import DecodeError

WAD = 10**18
MAX_UINT256 = (1 << 256) - 1

SEL_USER_ACCOUNT_DATA = selector("getUserAccountData(address)")
SEL_USER_CONFIGURATION = selector("getUserConfiguration(address)")
SEL_RESERVE_DATA = selector("getReserveData(address)")
SEL_RESERVES_LIST = selector("getReservesList()")
SEL_UNDERLYING = selector("UNDERLYING_ASSET_ADDRESS()")


@dataclass(frozen=True, slots=True)
class AaveAccountData:
    """getUserAccountData: amounts in the AaveOracle's base currency (USD, 8 decimals)."""

    total_collateral_base: int
    total_debt_base: int
    available_borrows_base: int
    current_liquidation_threshold: int  # basis points, collateral-weighted
    ltv: int  # basis points, collateral-weighted
    health_factor: int | None  # WAD; None when there is no debt (Aave returns 2^256-1)

    @property
    def health(self) -> Fraction | None:
        """Aave's health factor as an exact ratio (liquidatable below 1)."""
        return None if self.health_factor is None else Fraction(self.health_factor, WAD)


def user_account_data(pool: str, user: str) -> Call:
    return Call(pool, SEL_USER_ACCOUNT_DATA + address_word(user))


def decode_user_account_data(result: CallResult) -> AaveAccountData:
    w = words(result, 6, "getUserAccountData()")
    bits(w[3], 16, "getUserAccountData(): liquidation threshold")
    bits(w[4], 16, "getUserAccountData(): ltv")
    if (w[5] == MAX_UINT256) != (w[1] == 0):
        raise DecodeError("getUserAccountData(): health factor does not match the debt")
    return AaveAccountData(w[0], w[1], w[2], w[3], w[4], None if w[1] == 0 else w[5])


def user_configuration(pool: str, user: str) -> Call:
    return Call(pool, SEL_USER_CONFIGURATION + address_word(user))


def decode_user_configuration(result: CallResult) -> int:
    """The UserConfigurationMap bitmap (one uint256)."""
    return words(result, 1, "getUserConfiguration()")[0]


COLLATERAL_BITS = int("10" * 128, 2)  # every reserve's "used as collateral" bit


def is_borrowing(configuration: int, reserve_id: int) -> bool:
    return bool(configuration >> (2 * reserve_id) & 1)


def is_collateral(configuration: int, reserve_id: int) -> bool:
    return bool(configuration >> (2 * reserve_id + 1) & 1)


def borrowing_ids(configuration: int) -> list[int]:
    """Reserve ids the account borrows in (variable or stable): what debt completeness
    (§12) compares with the configured debt representations."""
    return [i for i in range(128) if is_borrowing(configuration, i)]


def collateral_ids(configuration: int) -> list[int]:
    return [i for i in range(128) if is_collateral(configuration, i)]


@dataclass(frozen=True, slots=True)
class AaveReserveData:
    """getReserveData (DataTypes.ReserveData; v3.1+ ReserveDataLegacy, same layout)."""

    configuration: int
    liquidity_index: int  # ray
    current_liquidity_rate: int  # ray
    variable_borrow_index: int  # ray
    current_variable_borrow_rate: int  # ray
    current_stable_borrow_rate: int  # ray
    last_update_timestamp: int
    id: int
    a_token: str
    stable_debt_token: str
    variable_debt_token: str
    interest_rate_strategy: str
    accrued_to_treasury: int
    unbacked: int
    isolation_mode_total_debt: int

    @property
    def ltv_bps(self) -> int:
        return self.configuration & 0xFFFF

    @property
    def liquidation_threshold_bps(self) -> int:
        return self.configuration >> 16 & 0xFFFF

    @property
    def liquidation_bonus_bps(self) -> int:
        return self.configuration >> 32 & 0xFFFF

    @property
    def decimals(self) -> int:
        return self.configuration >> 48 & 0xFF

    @property
    def active(self) -> bool:
        return bool(self.configuration >> 56 & 1)

    @property
    def frozen(self) -> bool:
        return bool(self.configuration >> 57 & 1)

    @property
    def borrowing_enabled(self) -> bool:
        return bool(self.configuration >> 58 & 1)

    @property
    def paused(self) -> bool:
        return bool(self.configuration >> 60 & 1)


def reserve_data(pool: str, asset: str) -> Call:
    return Call(pool, SEL_RESERVE_DATA + address_word(asset))


def decode_reserve_data(result: CallResult) -> AaveReserveData:
    what = "getReserveData()"
    w = words(result, 15, what)
    for i in (1, 2, 3, 4, 5, 12, 13, 14):
        bits(w[i], 128, what)
    return AaveReserveData(
        configuration=w[0],
        liquidity_index=w[1],
        current_liquidity_rate=w[2],
        variable_borrow_index=w[3],
        current_variable_borrow_rate=w[4],
        current_stable_borrow_rate=w[5],
        last_update_timestamp=bits(w[6], 40, f"{what}: lastUpdateTimestamp"),
        id=bits(w[7], 16, f"{what}: id"),
        a_token=as_address(w[8], f"{what}: aTokenAddress"),
        stable_debt_token=as_address(w[9], f"{what}: stableDebtTokenAddress"),
        variable_debt_token=as_address(w[10], f"{what}: variableDebtTokenAddress"),
        interest_rate_strategy=as_address(w[11], f"{what}: interestRateStrategyAddress"),
        accrued_to_treasury=w[12],
        unbacked=w[13],
        isolation_mode_total_debt=w[14],
    )


def underlying_asset(a_token: str) -> Call:
    """AToken.UNDERLYING_ASSET_ADDRESS(): the reserve an aToken belongs to."""
    return Call(a_token, SEL_UNDERLYING)


def decode_underlying_asset(result: CallResult) -> str:
    what = "UNDERLYING_ASSET_ADDRESS()"
    return as_address(words(result, 1, what)[0], what)


def reserves_list(pool: str) -> Call:
    return Call(pool, SEL_RESERVES_LIST)


def decode_reserves_list(result: CallResult) -> list[str]:
    """address[]: the canonical encoding only (offset 32, length, packed words)."""
    what = "getReservesList()"
    if not result.success:
        raise DecodeError(f"{what}: call reverted")
    data = result.data
    if len(data) < 2 * WORD or int.from_bytes(data[:WORD], "big") != WORD:
        raise DecodeError(f"{what}: not an ABI address[]")
    n = int.from_bytes(data[WORD : 2 * WORD], "big")
    if len(data) != (2 + n) * WORD:
        raise DecodeError(f"{what}: {n} addresses do not fit {len(data)} bytes")
    return [
        as_address(int.from_bytes(data[i : i + WORD], "big"), what)
        for i in range(2 * WORD, len(data), WORD)
    ]
