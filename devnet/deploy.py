"""Put one chain into the configured state: Multicall3, tokens, feeds, history, balances.

Contracts are deployed by real transactions from anvil's account 0 in a fixed order
(the order of configs/devnet.toml: the chain's token representations, then its price
feeds in asset order, then its sequencer uptime feed), starting at the chain's
`deployer_nonce` from the scenario. CREATE addresses depend only on (deployer, nonce),
so they are known before anything is sent and are checked against the config twice:
computed before sending, and read from the receipts after.

The whole chain is one stream of eth_sendTransaction calls with explicit nonces and
gas (no estimation), sent in size-capped JSON-RPC batches; anvil mines them in nonce
order, so a call may target a contract deployed earlier in the same batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crossmargin.core.config import ChainConfig, Config
from devnet.errors import DevnetError
from devnet.evm import (
    DEPLOYER,
    MULTICALL3,
    artifact,
    calldata,
    create_address,
    decode_result,
    deploy_data,
)
from devnet.manifest import AccountEntry
from devnet.prices import FeedHistory
from devnet.rpc import Call, Rpc, wait_receipts
from devnet.scenario import Scenario

DEPLOY_GAS = 3_000_000
CALL_GAS = 300_000
# Fixed generous fee caps: full set-up blocks raise the base fee, and a transaction
# whose cap falls below it would stall every later nonce.
FEES = {"maxFeePerGas": hex(100 * 10**9), "maxPriorityFeePerGas": hex(10**9)}
UPDATE_ROUND = "updateRoundData(uint80,int256,uint256,uint256)"


@dataclass(frozen=True)
class Deployment:
    chain: str
    label: str  # token symbol, "feed:<asset>" or "sequencer"
    artifact: str
    ctor_types: tuple[str, ...]
    ctor_args: tuple[Any, ...]
    address: str  # from the config
    nonce: int
    decimals: int
    symbol: str | None  # ERC20 symbol to read back; None for feeds


TOKEN_CTOR = ("string", "string", "uint8")  # name, symbol, decimals
FEED_CTOR = ("uint8", "int256")  # decimals, initial answer


def plan_chain(config: Config, scenario: Scenario, chain: ChainConfig) -> list[Deployment]:
    """The chain's deployments in their fixed order, with the nonce each one uses."""
    nonces = itertools.count(scenario.deployer_nonce.get(chain.name, 0))
    plan: list[Deployment] = []

    def add(
        label: str,
        art: str,
        ctor: tuple[str, ...],
        args: tuple[Any, ...],
        address: str,
        decimals: int,
        symbol: str | None = None,
    ) -> None:
        plan.append(
            Deployment(chain.name, label, art, ctor, args, address, next(nonces), decimals, symbol)
        )

    for rep in config.representations:
        # protocol positions (aTokens, debt tokens) are the protocols' own contracts:
        # devnet/protocols/ creates them and checks their configured addresses
        if rep.chain == chain.name and not rep.is_native and rep.protocol is None:
            art = "DevDebtToken" if rep.kind == "debt" else "DevToken"
            name = scenario.token_names.get(rep.symbol, rep.symbol)
            ctor_args = (name, rep.symbol, rep.decimals)
            add(rep.symbol, art, TOKEN_CTOR, ctor_args, rep.address, rep.decimals, rep.symbol)
    for asset in config.assets:
        for feed in asset.feeds:
            if feed.chain == chain.name:  # round 1 is overwritten by the history's round 1
                add(
                    f"feed:{asset.symbol}",
                    "MockV3Aggregator",
                    FEED_CTOR,
                    (feed.decimals, 1),
                    feed.address,
                    feed.decimals,
                )
    if chain.sequencer_uptime_feed is not None:
        add("sequencer", "MockV3Aggregator", FEED_CTOR, (0, 0), chain.sequencer_uptime_feed, 0)
    return plan


def check_plan(plan: Sequence[Deployment]) -> None:
    """Fail loudly if a configured address is not where the deployer's nonce puts it."""
    wrong = [
        f"{d.chain} {d.label}: config says {d.address}, nonce {d.nonce} deploys to {got}"
        for d in plan
        if (got := create_address(DEPLOYER, d.nonce)) != d.address
    ]
    if wrong:
        raise DevnetError(
            "configured addresses do not match the deploy order (edit configs/devnet.toml "
            "or the scenario's deployer_nonce):\n  " + "\n  ".join(wrong)
        )


class _Txs:
    """The deployer's transactions of one chain, numbered from its planned nonce."""

    def __init__(self, base_nonce: int) -> None:
        self.base = base_nonce
        self.items: list[tuple[str, dict[str, str]]] = []

    def send(self, label: str, to: str | None, data: str, gas: int) -> None:
        tx = {
            "from": DEPLOYER,
            "data": data,
            "gas": hex(gas),
            "nonce": hex(self.base + len(self.items)),
            **FEES,
        }
        if to is not None:
            tx["to"] = to
        self.items.append((label, tx))


async def setup_chain(
    rpc: Rpc,
    config: Config,
    scenario: Scenario,
    chain: ChainConfig,
    histories: Sequence[FeedHistory],
    accounts: Sequence[AccountEntry],
    end_timestamp: int,
) -> None:
    plan = plan_chain(config, scenario, chain)
    check_plan(plan)
    base = scenario.deployer_nonce.get(chain.name, 0)
    prep: list[Call] = [
        ("anvil_setCode", [MULTICALL3, artifact("Multicall3").deployed_bytecode]),
        ("anvil_setNonce", [DEPLOYER, hex(base)]),
    ]
    txs = _Txs(base)
    for d in plan:
        data = deploy_data(artifact(d.artifact), list(d.ctor_types), list(d.ctor_args))
        txs.send(f"deploy {d.label}", None, data, DEPLOY_GAS)
    _feed_rounds(txs, histories)
    if chain.sequencer_uptime_feed is not None:
        up_since = end_timestamp - scenario.sequencer_up_for_s
        txs.send(
            "sequencer round 1",
            chain.sequencer_uptime_feed,
            calldata(UPDATE_ROUND, 1, 0, up_since, up_since),
            CALL_GAS,
        )
    prep += _holdings(txs, chain, accounts)
    receipts = await _mine_all(rpc, chain, prep, txs)
    for d, rc in zip(plan, receipts, strict=False):
        got = rc.get("contractAddress") or ""
        if got.lower() != d.address.lower():
            raise DevnetError(f"{chain.name} {d.label}: expected {d.address}, deployed to {got}")
    await verify_chain(rpc, chain, plan, histories)


def _feed_rounds(txs: _Txs, histories: Sequence[FeedHistory]) -> None:
    for h in histories:
        for r in h.rounds:
            args = (r.round_id, r.answer, r.updated_at, r.updated_at)
            txs.send(
                f"feed:{h.asset} round {r.round_id}",
                h.address,
                calldata(UPDATE_ROUND, *args),
                CALL_GAS,
            )


def _holdings(txs: _Txs, chain: ChainConfig, accounts: Sequence[AccountEntry]) -> list[Call]:
    """Mint each demo account's tokens on this chain; its native coin is set directly
    (the returned cheat-code calls)."""
    prep: list[Call] = []
    for acc in accounts:
        for hold in acc.holdings:
            if hold.chain != chain.name:
                continue
            if hold.address == "native":
                prep.append(("anvil_setBalance", [acc.address, hex(int(hold.raw))]))
            else:
                mint = calldata("mint(address,uint256)", acc.address, int(hold.raw))
                txs.send(f"mint {hold.symbol} to {acc.name}", hold.address, mint, CALL_GAS)
    return prep


async def _mine_all(
    rpc: Rpc, chain: ChainConfig, prep: list[Call], txs: _Txs
) -> list[dict[str, Any]]:
    """Send every transaction with automine off (one block), then check every receipt."""
    await rpc.batch([*prep, ("evm_setAutomine", [False])])
    hashes = await rpc.batch([("eth_sendTransaction", [tx]) for _, tx in txs.items])
    receipts = await wait_receipts(rpc, hashes)
    await rpc.call("evm_setAutomine", [True])
    for (label, _), h, rc in zip(txs.items, hashes, receipts, strict=True):
        if rc.get("status") != "0x1":
            raise DevnetError(f"{chain.name}: {label} failed (tx {h})")
    return receipts


async def verify_chain(
    rpc: Rpc, chain: ChainConfig, plan: Sequence[Deployment], histories: Sequence[FeedHistory]
) -> None:
    """Read back what was deployed: code, decimals, symbols, latest rounds."""
    calls: list[Call] = [("eth_getCode", [MULTICALL3, "latest"])]
    checks: list[tuple[str, list[str], Any]] = []
    for d in plan:
        calls.append(("eth_call", [{"to": d.address, "data": calldata("decimals()")}, "latest"]))
        checks.append((f"{d.label} decimals()", ["uint8"], d.decimals))
        if d.symbol is not None:
            calls.append(("eth_call", [{"to": d.address, "data": calldata("symbol()")}, "latest"]))
            checks.append((f"{d.label} symbol()", ["string"], d.symbol))
    for h in histories:
        calls.append(
            ("eth_call", [{"to": h.address, "data": calldata("latestRoundData()")}, "latest"])
        )
        last = h.rounds[-1]
        want = (last.round_id, last.answer, last.updated_at, last.updated_at, last.round_id)
        checks.append(
            (
                f"feed:{h.asset} latestRoundData()",
                ["uint80", "int256", "uint256", "uint256", "uint80"],
                want,
            )
        )
    results = await rpc.batch(calls)
    if results[0] != artifact("Multicall3").deployed_bytecode:
        raise DevnetError(f"{chain.name}: Multicall3 code at {MULTICALL3} is not the artifact's")
    for (what, types, want), raw in zip(checks, results[1:], strict=True):
        got = decode_result(types, raw)
        got_value = got[0] if len(got) == 1 else got
        if got_value != want:
            raise DevnetError(f"{chain.name}: {what} is {got_value!r}, expected {want!r}")
