"""An in-memory EVM chain behind the `ChainReader` seam (adapters/evm.py): no anvil.

`FakeChain` answers the calls the pipeline sends (balanceOf, Multicall3.getEthBalance,
decimals, totalSupply, latestRoundData) from plain dicts, at a pinned block: every change
mines a block and the old blocks keep their state, so a read at an old pin sees the old
state, as a node's would. Anything it does not know reverts, as a contract without the
function would. `down` makes pin and read fail as an unreachable chain.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from eth_utils.abi import function_signature_to_4byte_selector as sel

from adapters.calls import MULTICALL3, Call, CallResult
from adapters.evm import BlockPin
from crossmargin.core.config import ChainConfig, Config
from crossmargin.core.errors import ChainError, PinUnavailable, TransportError

BALANCE_OF = sel("balanceOf(address)")
USER_ACCOUNT_DATA = sel("getUserAccountData(address)")
USER_CONFIGURATION = sel("getUserConfiguration(address)")
ETH_BALANCE = sel("getEthBalance(address)")
DECIMALS = sel("decimals()")
TOTAL_SUPPLY = sel("totalSupply()")
LATEST = sel("latestRoundData()")
MORPHO_POSITION = sel("position(bytes32,address)")
MORPHO_MARKET = sel("market(bytes32)")
ORACLE_PRICE = sel("price()")
REVERT = CallResult(False, b"")
NATIVE = "native"
START = 1_700_000_000  # chain time of block 100


def _words(*values: int) -> bytes:
    return b"".join((v % (1 << 256)).to_bytes(32, "big") for v in values)


def _owner(data: bytes) -> str:
    return "0x" + data[4 + 12 : 4 + 32].hex()


@dataclass
class _State:
    balances: dict[tuple[str, str], int] = field(default_factory=dict)  # (token, owner lc)
    decimals: dict[str, int] = field(default_factory=dict)  # token -> decimals
    rounds: dict[str, tuple[int, int, int, int, int]] = field(default_factory=dict)

    def copy(self) -> _State:
        return _State(dict(self.balances), dict(self.decimals), dict(self.rounds))


class FakeChain:
    """One chain's state by block; a `ChainReader`."""

    def __init__(self, chain: ChainConfig, number: int = 100, timestamp: int = START) -> None:
        self.pools: set[str] = set()  # Aave v3 pools (lower case): accounts hold nothing there
        self.morphos: set[str] = set()  # Morpho Blue singletons: empty markets, no positions
        self.oracles: set[str] = set()  # Morpho market oracles: price 1e36
        # set by tests, not versioned by block: (pool, owner) -> getUserAccountData words;
        # (market id, owner) -> position words; market id -> market words; oracle -> price
        self.aave_accounts: dict[tuple[str, str], tuple[int, ...]] = {}
        self.morpho_positions: dict[tuple[bytes, str], tuple[int, int, int]] = {}
        self.morpho_markets: dict[bytes, tuple[int, ...]] = {}
        self.oracle_prices: dict[str, int] = {}
        self.chain = chain
        self.number, self.timestamp = number, timestamp
        self.down: ChainError | None = None
        self.pins = self.reads = self.calls = 0  # what it was asked, for tests
        self._state = _State()
        self._blocks: dict[str, tuple[int, _State]] = {}
        self._seal()

    @property
    def hash(self) -> str:
        seed = f"{self.chain.chain_id}:{self.number}".encode()
        return "0x" + hashlib.sha256(seed).hexdigest()

    def _seal(self) -> None:
        self._blocks[self.hash] = (self.timestamp, self._state.copy())

    def mine(self, seconds: int = 12) -> None:
        self.number += 1
        self.timestamp += seconds
        self._seal()

    # ------------------------------------------------------------------ state

    def set_balance(self, token: str, owner: str, raw: int) -> None:
        """`token`: an address, or "native" for the chain's coin. Mines a block."""
        self._state.balances[(token.lower(), owner.lower())] = raw
        self.mine()

    def native(self, owner: str) -> int:
        return self._state.balances.get((NATIVE, owner.lower()), 0)

    def set_round(self, feed: str, answer: int, updated_at: int, started_at: int = 0) -> None:
        self._state.rounds[feed.lower()] = (1, answer, started_at or updated_at, updated_at, 1)
        self.mine(0)

    def set_decimals(self, token: str, decimals: int) -> None:
        self._state.decimals[token.lower()] = decimals

    # ------------------------------------------------------------------ ChainReader

    async def pin(self) -> BlockPin:
        self.pins += 1
        if self.down is not None:
            raise self.down
        return BlockPin(self.chain.chain_id, self.number, self.hash, self.timestamp)

    async def read(self, calls: list[Call], pin: BlockPin) -> list[CallResult]:
        self.reads += 1
        self.calls += len(calls)
        if self.down is not None:
            raise self.down
        if pin.chain_id != self.chain.chain_id:
            raise ValueError(f"pin of chain {pin.chain_id} used on chain {self.chain.chain_id}")
        block = self._blocks.get(pin.hash)
        if block is None:
            raise PinUnavailable(self.chain.chain_id, -32000, "unknown block")
        _, state = block
        return [self._answer(state, call) for call in calls]

    def _answer(self, state: _State, call: Call) -> CallResult:
        target, data = call.target.lower(), call.data
        selector = data[:4]
        if selector == ETH_BALANCE and target == MULTICALL3.lower():
            return CallResult(True, _words(state.balances.get((NATIVE, _owner(data)), 0)))
        if selector == BALANCE_OF and target in state.decimals:
            return CallResult(True, _words(state.balances.get((target, _owner(data)), 0)))
        if selector == DECIMALS and target in state.decimals:
            return CallResult(True, _words(state.decimals[target]))
        if selector == DECIMALS and target in state.rounds:
            return CallResult(True, _words(8))
        if selector == TOTAL_SUPPLY and target in state.decimals:
            held = sum(v for (t, _), v in state.balances.items() if t == target)
            return CallResult(True, _words(held + 10**30))
        if selector == LATEST and target in state.rounds:
            return CallResult(True, _words(*state.rounds[target]))
        if selector == USER_ACCOUNT_DATA and target in self.pools:
            got = self.aave_accounts.get((target, _owner(data)), (0, 0, 0, 0, 0, 2**256 - 1))
            return CallResult(True, _words(*got))
        if selector == USER_CONFIGURATION and target in self.pools:
            return CallResult(True, _words(0))  # no reserve used
        if selector == MORPHO_POSITION and target in self.morphos:
            owner = "0x" + data[4 + 32 + 12 : 4 + 64].hex()
            return CallResult(
                True, _words(*self.morpho_positions.get((data[4:36], owner), (0,) * 3))
            )
        if selector == MORPHO_MARKET and target in self.morphos:
            return CallResult(True, _words(*self.morpho_markets.get(data[4:36], (0,) * 6)))
        if selector == ORACLE_PRICE and target in self.oracles:
            return CallResult(True, _words(self.oracle_prices.get(target, 10**36)))
        return REVERT


def fake_chains(config: Config, prices: dict[str, float]) -> dict[str, FakeChain]:
    """One FakeChain per configured chain: every token deployed with its configured
    decimals, every feed fresh at `prices` (USD, 8 decimals), every sequencer up for
    longer than its grace period."""
    chains = {c.name: FakeChain(c) for c in config.chains}
    for rep in config.representations:
        if not rep.is_native:
            chains[rep.chain].set_decimals(rep.address, rep.decimals)
    for asset in config.assets:
        for feed in asset.feeds:
            fc = chains[feed.chain]
            answer = round(prices[asset.symbol] * 10**feed.decimals)
            fc.set_round(feed.address, answer, fc.timestamp - 60)
    for proto in config.protocols:
        if proto.kind == "aave_v3":
            chains[proto.chain].pools.add(proto.address.lower())
        else:
            chains[proto.chain].morphos.add(proto.address.lower())
            chains[proto.chain].oracles.update(m.oracle.lower() for m in proto.markets)
    for c in config.chains:
        if c.sequencer_uptime_feed is not None:
            fc = chains[c.name]
            fc.set_round(c.sequencer_uptime_feed, 0, fc.timestamp, fc.timestamp - 86_400)
    return chains


def unreachable(chain: ChainConfig) -> ChainError:
    return TransportError(chain.chain_id, "connection refused (fake)")
