"""Morpho Blue codecs and math: position, market, idToMarketParams, the IRM's rate, the
oracle's price; SharesMathLib, MathLib and MorphoBalancesLib's accrual as exact integers."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from eth_utils.crypto import keccak

from adapters.calls import Call, CallResult, address_word
from adapters.protocols.abi import WORD, as_address, bits, selector, uint_word, words
from crossmargin.core.errors import DecodeError

WAD = 10**18
ORACLE_PRICE_SCALE = 10**36
VIRTUAL_SHARES = 10**6
VIRTUAL_ASSETS = 1

SEL_POSITION = selector("position(bytes32,address)")
SEL_MARKET = selector("market(bytes32)")
SEL_ID_TO_MARKET_PARAMS = selector("idToMarketParams(bytes32)")
SEL_FEE_RECIPIENT = selector("feeRecipient()")
SEL_BORROW_RATE_VIEW = selector(
    "borrowRateView((address,address,address,address,uint256),"
    "(uint128,uint128,uint128,uint128,uint128,uint128))"
)
SEL_PRICE = selector("price()")


@dataclass(frozen=True, slots=True)
class MarketParams:
    loan_token: str
    collateral_token: str
    oracle: str
    irm: str
    lltv: int  # WAD

    def encode(self) -> bytes:
        """abi.encode(marketParams): five static words."""
        addresses = (self.loan_token, self.collateral_token, self.oracle, self.irm)
        return b"".join(address_word(a) for a in addresses) + uint_word(self.lltv)

    @property
    def id(self) -> bytes:
        """Morpho's market Id: keccak256(abi.encode(marketParams))."""
        return bytes(keccak(self.encode()))


@dataclass(frozen=True, slots=True)
class MorphoMarket:
    """market(id): totals as of `last_update` (or accrued to a later time by accrue())."""

    total_supply_assets: int
    total_supply_shares: int
    total_borrow_assets: int
    total_borrow_shares: int
    last_update: int
    fee: int  # WAD share of interest to the fee recipient

    def encode(self) -> bytes:
        return b"".join(
            uint_word(x)
            for x in (
                self.total_supply_assets,
                self.total_supply_shares,
                self.total_borrow_assets,
                self.total_borrow_shares,
                self.last_update,
                self.fee,
            )
        )


@dataclass(frozen=True, slots=True)
class MorphoPosition:
    supply_shares: int
    borrow_shares: int
    collateral: int  # collateral-token base units (not shares)


def _id_word(market_id: bytes) -> bytes:
    if len(market_id) != WORD:
        raise ValueError(f"a Morpho market id is 32 bytes, not {len(market_id)}")
    return market_id


def position(morpho: str, market_id: bytes, user: str) -> Call:
    return Call(morpho, SEL_POSITION + _id_word(market_id) + address_word(user))


def decode_position(result: CallResult) -> MorphoPosition:
    w = words(result, 3, "position()")
    return MorphoPosition(
        w[0],
        bits(w[1], 128, "position(): borrowShares"),
        bits(w[2], 128, "position(): collateral"),
    )


def market(morpho: str, market_id: bytes) -> Call:
    return Call(morpho, SEL_MARKET + _id_word(market_id))


def decode_market(result: CallResult) -> MorphoMarket:
    w = words(result, 6, "market()")
    for x in w:
        bits(x, 128, "market()")
    return MorphoMarket(*w)


def market_params(morpho: str, market_id: bytes) -> Call:
    return Call(morpho, SEL_ID_TO_MARKET_PARAMS + _id_word(market_id))


def decode_market_params(result: CallResult) -> MarketParams:
    what = "idToMarketParams()"
    w = words(result, 5, what)
    loan, collateral, oracle, irm = (as_address(x, what) for x in w[:4])
    return MarketParams(loan, collateral, oracle, irm, w[4])


def fee_recipient(morpho: str) -> Call:
    return Call(morpho, SEL_FEE_RECIPIENT)


def decode_fee_recipient(result: CallResult) -> str:
    return as_address(words(result, 1, "feeRecipient()")[0], "feeRecipient()")


def borrow_rate_view(params: MarketParams, state: MorphoMarket) -> Call:
    """IIrm.borrowRateView(params, market) on the market's IRM: per-second rate, WAD."""
    return Call(params.irm, SEL_BORROW_RATE_VIEW + params.encode() + state.encode())


def decode_rate(result: CallResult) -> int:
    return words(result, 1, "borrowRateView()")[0]


def oracle_price(oracle: str) -> Call:
    """IOracle.price(): one collateral token in loan tokens, scaled by 1e36."""
    return Call(oracle, SEL_PRICE)


def decode_price(result: CallResult) -> int:
    return words(result, 1, "price()")[0]


# ---------------------------------------------------------------- Morpho math


def mul_div_down(x: int, y: int, d: int) -> int:
    return x * y // d


def mul_div_up(x: int, y: int, d: int) -> int:
    return (x * y + d - 1) // d


def w_mul_down(x: int, y: int) -> int:
    return x * y // WAD


def w_taylor_compounded(x: int, n: int) -> int:
    """e^(x n) - 1 to three Taylor terms, as MathLib: x n + (x n)^2/2 + (x n)^3/6 (WAD)."""
    first = x * n
    second = mul_div_down(first, first, 2 * WAD)
    third = mul_div_down(second, first, 3 * WAD)
    return first + second + third


def to_shares_down(assets: int, total_assets: int, total_shares: int) -> int:
    return mul_div_down(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


def to_shares_up(assets: int, total_assets: int, total_shares: int) -> int:
    return mul_div_up(assets, total_shares + VIRTUAL_SHARES, total_assets + VIRTUAL_ASSETS)


def to_assets_down(shares: int, total_assets: int, total_shares: int) -> int:
    return mul_div_down(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


def to_assets_up(shares: int, total_assets: int, total_shares: int) -> int:
    return mul_div_up(shares, total_assets + VIRTUAL_ASSETS, total_shares + VIRTUAL_SHARES)


@dataclass(frozen=True, slots=True)
class Accrued:
    market: MorphoMarket  # totals at `timestamp`
    interest: int
    fee_shares: int  # minted to the fee recipient


def needs_rate(state: MorphoMarket, params: MarketParams, timestamp: int) -> bool:
    """Whether accrue() needs the IRM's rate (else interest is 0 and no read is made)."""
    return (
        timestamp != state.last_update
        and state.total_borrow_assets != 0
        and int(params.irm, 16) != 0
    )


def accrue(
    state: MorphoMarket, params: MarketParams, timestamp: int, borrow_rate: int | None
) -> Accrued:
    """The market's totals at `timestamp` (the pinned block's), exactly as Morpho's
    _accrueInterest would set them in a transaction at that time:

        interest  = totalBorrowAssets * wTaylorCompounded(rate, elapsed) / WAD
        feeShares = toSharesDown(interest * fee / WAD, totalSupplyAssets' - feeAmount,
                                 totalSupplyShares)

    `borrow_rate` is the IRM's borrowRateView at the same block (None only when
    needs_rate() is false). A state Morpho would revert on is a DecodeError."""
    if timestamp < state.last_update:
        raise DecodeError(f"market(): lastUpdate {state.last_update} after the block {timestamp}")
    if not needs_rate(state, params, timestamp):
        return Accrued(state, 0, 0)
    if borrow_rate is None:
        raise ValueError("accrue() needs the IRM's borrow rate for this market")
    elapsed = timestamp - state.last_update
    interest = w_mul_down(state.total_borrow_assets, w_taylor_compounded(borrow_rate, elapsed))
    supply_assets = state.total_supply_assets + interest
    borrow_assets = state.total_borrow_assets + interest
    fee_shares = 0
    if state.fee:
        fee_amount = w_mul_down(interest, state.fee)
        fee_shares = to_shares_down(
            fee_amount, supply_assets - fee_amount, state.total_supply_shares
        )
    supply_shares = state.total_supply_shares + fee_shares
    if max(supply_assets, borrow_assets, supply_shares) >> 128:
        raise DecodeError("market(): accrued totals overflow uint128 (Morpho would revert)")
    accrued = MorphoMarket(
        supply_assets,
        supply_shares,
        borrow_assets,
        state.total_borrow_shares,
        timestamp,
        state.fee,
    )
    return Accrued(accrued, interest, fee_shares)


def supply_assets(pos: MorphoPosition, state: MorphoMarket) -> int:
    """Lent assets: supply shares rounded down (MorphoBalancesLib.expectedSupplyAssets)."""
    return to_assets_down(pos.supply_shares, state.total_supply_assets, state.total_supply_shares)


def borrow_assets(pos: MorphoPosition, state: MorphoMarket) -> int:
    """Debt: borrow shares rounded up (MorphoBalancesLib.expectedBorrowAssets)."""
    return to_assets_up(pos.borrow_shares, state.total_borrow_assets, state.total_borrow_shares)


@dataclass(frozen=True, slots=True)
class MorphoHealth:
    """Morpho's own liquidation test (_isHealthy): healthy iff max_borrow >= borrowed."""

    max_borrow: int  # loan-token units: collateral * price / 1e36 * lltv / WAD, down
    borrowed: int  # loan-token units, borrow shares rounded up
    liquidity: int  # what the market can still lend: supply - borrow

    @property
    def health(self) -> Fraction | None:
        """max_borrow / borrowed, Aave-style (below 1: liquidatable); None without debt."""
        return None if self.borrowed == 0 else Fraction(self.max_borrow, self.borrowed)

    @property
    def available_borrow(self) -> int:
        """What more Morpho would lend: the headroom less one unit (a new borrow's shares
        round up, so exactly the headroom can fail), at most the market's liquidity."""
        return max(0, min(self.max_borrow - self.borrowed - 1, self.liquidity))


def health(
    pos: MorphoPosition, state: MorphoMarket, params: MarketParams, price: int
) -> MorphoHealth:
    """The position against accrued totals `state` and the oracle's `price` (1e36)."""
    max_borrow = w_mul_down(mul_div_down(pos.collateral, price, ORACLE_PRICE_SCALE), params.lltv)
    liquidity = max(0, state.total_supply_assets - state.total_borrow_assets)
    return MorphoHealth(max_borrow, borrow_assets(pos, state), liquidity)
