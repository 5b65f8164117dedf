"""Lending-protocol reads: Aave v3 (`aave`) and Morpho Blue (`morpho`) calls as `Call`
values, their decoders, and Morpho's share and interest math as exact integers
(METHOD.md §12).

Written by hand like calls.py, not with eth_abi: every return here is a fixed number of
32-byte words (getReservesList is the one dynamic array), so a decoder is a length check
and a slice, and each field is range-checked for its Solidity type (uint128, uint16,
address) so that damaged data is a `DecodeError`, never a plausible number. A batch of
accounts makes thousands of these reads; the tests check every codec against eth_abi.

Aave v3 (`Pool`, `L2Pool` alike; v3.0 to v3.3 keep these layouts):
- `getUserAccountData(user)`: the protocol's own totals in its oracle's base currency
  (USD, 8 decimals), its health factor (WAD) and available borrows.
- `getUserConfiguration(user)`: per reserve id, bit 2*id = borrowing, 2*id+1 = collateral.
- `getReserveData(asset)`: the reserve's id, aToken and debt-token addresses, indexes
  and packed configuration (LTV, liquidation threshold, ...).
Balances themselves are aToken / variableDebtToken `balanceOf` (ERC-20 reads,
calls.balance_of): those views already accrue interest to the block's timestamp.

Morpho Blue: `position(id, user)` is in shares, `market(id)` holds totals as of its
`lastUpdate`. A read at block B takes the totals to B's timestamp exactly as Morpho
does (MorphoBalancesLib.expectedMarketBalances): the IRM's `borrowRateView(params,
market)`, read at the same pinned block in a second round (it needs the market read
first), then `accrue()` here. We accrue rather than take `market()` as it stands
because the stale totals understate debt (and the supply side's interest) by exactly
the interest since the market was last touched; reading through a state-changing
`accrueInterest` inside the multicall would need that call and the reads in one chunk,
which the chunked reader does not promise. Shares convert with SharesMathLib's
virtual shares (1e6) and assets (1): borrow shares round up, supply shares down.
Like MorphoBalancesLib, a fee recipient's own supply does not count the fee shares the
accrual would mint to it (less collateral, never more). An `eth_call` at block B runs
with B's timestamp (anvil and geth alike), which the Aave views rely on too.

Compound v3 (Comet) is not here: its contracts are not on the npm registry, so the
devnet cannot deploy it. Its codec would be a third module beside these: `comet`,
with `collateralBalanceOf(account, asset)`, `borrowBalanceOf(account)` (accrued
views, one round), `isLiquidatable(account)` and the asset infos for the local floor.
"""
