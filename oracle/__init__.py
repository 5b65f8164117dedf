"""Prices (METHOD.md §3) and their history (§6).

- `feeds`: feed kinds as data (Chainlink AggregatorV3, Pyth): the calls that read a feed
  in the balances' multicall, and their decoding into judged readings.
- `validity`: the §3 checks, reason codes, min/max aggregation with the deviation flag.
- `history`: daily closes from Chainlink rounds (`crossmargin prices sync`).
- `store`: the history tables (sqlmodel) and their reads and writes.
- `estimation`: EWMA sigma and rho with the config's floors, defaults and overrides.
- `cli`: the `prices sync` command.

Everything but `history` (which talks to chains through the adapters' `ChainReader`)
and `store` (the database) is pure.
"""
