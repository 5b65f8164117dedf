"""The protocols' transactions on one chain, planned before anything is sent.

Everything the protocol deployer creates has a CREATE address fixed by (deployer,
nonce), and what the Aave contracts create (the pool and configurator proxies, the
aToken and debt-token proxies) by (creator, creator's nonce); so the whole address
book is known up front, checked against the receipts, and the same on every start.

The plan runs in three phases, each one stream of transactions mined before the next
is sent: `deploy` (the protocol deployer's contracts and configuration, and the
mints that fund the liquidity and the demo accounts), `supply` (liquidity, demo
supplies and collateral) and `borrow` (demo borrows, which need that liquidity).
Within a phase a sender's transactions run in order; senders do not depend on each
other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi.abi import encode

from crossmargin.core.config import ChainConfig, Config
from devnet.errors import DevnetError
from devnet.evm import Artifact, artifact, create_address, selector
from devnet.protocols.entries import AaveEntry, MorphoEntry, PositionEntry
from devnet.protocols.spec import ExtraToken, PositionSpec
from devnet.scenario import Scenario, to_raw

# anvil's account 2 for the default mnemonic: deploys and funds the protocols, so the
# token deployer's (account 0) nonces, and with them every configured address, stay put.
PROTOCOL_DEPLOYER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
ZERO = "0x0000000000000000000000000000000000000000"
MAX_UINT = (1 << 256) - 1
FEED_DECIMALS = 8
CALL_GAS = 1_500_000  # generous: blocks are packed by gas used, not by this limit


@dataclass(frozen=True)
class Tx:
    label: str
    sender: str
    to: str | None
    data: str
    gas: int
    creates: str | None = None  # the CREATE address, checked against the receipt


def encode_call(signature: str, types: Sequence[str], args: Sequence[Any]) -> str:
    """Calldata for a canonical `signature`, its arguments encoded as `types` (tuples ok)."""
    return "0x" + (selector(signature) + encode(list(types), list(args))).hex()


def deploy_gas(art: Artifact) -> int:
    """Enough for the creation: 200 gas per byte of runtime code, calldata, constructor."""
    init = len(art.bytecode) // 2
    runtime = len(art.deployed_bytecode) // 2
    return 600_000 + 16 * init + 200 * runtime


@dataclass
class Stream:
    """One sender's transactions in order; `nonce` is its next nonce (known for the
    protocol deployer, whose nonce the devnet sets, so CREATE addresses are too)."""

    sender: str
    nonce: int
    txs: list[Tx] = field(default_factory=list)

    def deploy(self, label: str, art: Artifact, types: Sequence[str], args: Sequence[Any]) -> str:
        address = create_address(self.sender, self.nonce)
        data = art.bytecode + encode(list(types), list(args)).hex()
        self.txs.append(Tx(f"deploy {label}", self.sender, None, data, deploy_gas(art), address))
        self.nonce += 1
        return address

    def call(
        self,
        label: str,
        to: str,
        signature: str,
        types: Sequence[str] = (),
        args: Sequence[Any] = (),
        gas: int = CALL_GAS,
    ) -> None:
        self.txs.append(Tx(label, self.sender, to, encode_call(signature, types, args), gas))
        self.nonce += 1


@dataclass(frozen=True)
class Token:
    symbol: str
    address: str
    decimals: int
    feed: str  # the token's USD price feed on this chain (Chainlink-style, 8 decimals)
    in_config: bool


@dataclass
class ChainPlan:
    chain: str
    first_nonce: int
    deploy: list[Tx]
    supply: list[Tx]
    borrow: list[Tx]
    aave: AaveEntry | None
    morpho: MorphoEntry | None
    extra_tokens: dict[str, str]  # symbol -> address (tokens only the protocols list)
    actors: dict[str, int]  # demo account -> its native balance to restore afterwards

    @property
    def empty(self) -> bool:
        return self.aave is None and self.morpho is None and not self.extra_tokens


def extra_token_addresses(scenario: Scenario, chain: str) -> dict[str, tuple[str, str]]:
    """Symbol -> (token, feed): the protocol deployer's first deployments on `chain`."""
    nonce = scenario.protocols.deployer_nonce.get(chain, 0)
    out = {}
    for i, t in enumerate(scenario.protocols.extra(chain)):
        out[t.symbol] = (
            create_address(PROTOCOL_DEPLOYER, nonce + 2 * i),
            create_address(PROTOCOL_DEPLOYER, nonce + 2 * i + 1),
        )
    return out


def chain_tokens(config: Config, scenario: Scenario, chain: str) -> dict[str, Token]:
    """Every ERC-20 the protocols may use on `chain`: configured ones, then extras."""
    feeds = {(f.chain, a.symbol): f.address for a in config.assets for f in a.feeds}
    tokens = {}
    for r in config.representations:
        if r.chain == chain and not r.is_native and r.kind == "collateral" and not r.protocol:
            feed = feeds.get((chain, r.asset))
            if feed is not None:
                tokens[r.symbol] = Token(r.symbol, r.address, r.decimals, feed, in_config=True)
    extras = extra_token_addresses(scenario, chain)
    for t in scenario.protocols.extra(chain):
        if t.symbol in tokens:
            raise DevnetError(f"protocols.extra_tokens: {t.symbol} on {chain} is in the config")
        address, feed = extras[t.symbol]
        tokens[t.symbol] = Token(t.symbol, address, t.decimals, feed, in_config=False)
    return tokens


def position_entries(
    config: Config, scenario: Scenario, positions: Sequence[PositionSpec]
) -> list[PositionEntry]:
    """The scenario's positions with token addresses and raw amounts (validated)."""
    out = []
    for p in positions:
        tokens = chain_tokens(config, scenario, p.chain)
        token = tokens.get(p.symbol)
        if token is None:
            raise DevnetError(f"positions: no token {p.symbol} on {p.chain} for the protocols")
        out.append(
            PositionEntry(
                chain=p.chain,
                protocol=p.protocol,
                action=p.action,
                symbol=p.symbol,
                token=token.address,
                decimals=token.decimals,
                amount=p.amount,
                raw=str(to_raw(p.amount, token.decimals)),
                market=p.market,
                collateral=p.collateral,
            )
        )
    return out


def plan_extra_tokens(stream: Stream, tokens: Sequence[ExtraToken]) -> dict[str, str]:
    """Each extra token (an OpenZeppelin ERC-20 the deployer owns) and its constant feed."""
    out = {}
    for t in tokens:
        out[t.symbol] = stream.deploy(
            t.symbol,
            artifact("DevToken"),
            ["string", "string", "uint8"],
            [t.name, t.symbol, t.decimals],
        )
        answer = to_raw(t.price, FEED_DECIMALS)
        stream.deploy(
            f"feed:{t.symbol}",
            artifact("MockV3Aggregator"),
            ["uint8", "int256"],
            [FEED_DECIMALS, answer],
        )
    return out


def chain_of(config: Config, name: str) -> ChainConfig:
    return config.chain(name)


def mint(stream: Stream, token: str, to: str, amount: int, label: str) -> None:
    stream.call(
        label, token, "mint(address,uint256)", ["address", "uint256"], [to, amount], 100_000
    )


def approve(stream: Stream, token: str, spender: str, label: str) -> None:
    stream.call(
        label,
        token,
        "approve(address,uint256)",
        ["address", "uint256"],
        [spender, MAX_UINT],
        80_000,
    )
