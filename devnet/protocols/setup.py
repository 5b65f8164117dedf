"""Plan (pure) and run (three mined phases) the lending protocols on one chain.

Demo accounts act through real transactions: anvil impersonates them (their keys stay
out of the node), funds their gas for the duration and then restores the native
balance the scenario gives them. What they supply is minted to them first; what they
borrow is passed on to the protocol deployer (spent, as borrowed money is), so their
wallets end holding exactly the scenario's `holdings`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from crossmargin.core.config import ChainConfig, Config
from crossmargin.core.protocols import ProtocolConfig
from devnet.errors import DevnetError
from devnet.evm import DEPLOYER
from devnet.manifest import AccountEntry
from devnet.protocols.aave import plan_aave
from devnet.protocols.entries import AaveEntry, MorphoEntry, PositionEntry
from devnet.protocols.morpho import PARAMS, market_params, plan_morpho
from devnet.protocols.plan import (
    PROTOCOL_DEPLOYER,
    ChainPlan,
    Stream,
    Token,
    Tx,
    approve,
    chain_tokens,
    mint,
    plan_extra_tokens,
)
from devnet.protocols.spec import AaveMarket, MorphoDeployment
from devnet.protocols.verify import verify_protocols
from devnet.rpc import Call, Rpc
from devnet.scenario import Scenario, to_raw

GAS_MONEY = 10 * 10**18
FEES = {"maxFeePerGas": hex(100 * 10**9), "maxPriorityFeePerGas": hex(10**9)}


def plan_protocols(
    config: Config, scenario: Scenario, chain: ChainConfig, accounts: Sequence[AccountEntry]
) -> ChainPlan:
    spec = scenario.protocols
    first = spec.deployer_nonce.get(chain.name, 0)
    me = Stream(PROTOCOL_DEPLOYER, first)
    extras = plan_extra_tokens(me, spec.extra(chain.name))
    tokens = chain_tokens(config, scenario, chain.name)
    market = spec.aave(chain.name)
    aave = plan_aave(me, market, spec, chain, tokens) if market else None
    deployment = spec.morpho(chain.name)
    morpho = plan_morpho(me, deployment, chain, tokens) if deployment else None

    funds, actors = _funding(chain, market, deployment, tokens, accounts)
    owner = Stream(DEPLOYER, 0)
    for (to, symbol), amount in funds.items():
        token = tokens[symbol]
        stream = owner if token.in_config else me
        mint(stream, token.address, to, amount, f"mint {amount} {symbol} to {to}")
    deploy = me.txs + owner.txs

    # Liquidity, then the demo accounts' supplies; then their borrows.
    me.txs = []
    _liquidity(me, market, aave, deployment, morpho, tokens)
    supply, borrow = list(me.txs), []
    for acc in accounts:
        early, late = Stream(acc.address, 0), Stream(acc.address, 0)
        for p in acc.positions:
            if p.chain != chain.name:
                continue
            stream = late if p.action == "borrow" else early
            _position(stream, p, aave, morpho, tokens)
        supply += early.txs
        borrow += late.txs
    return ChainPlan(
        chain=chain.name,
        first_nonce=first,
        deploy=deploy,
        supply=supply,
        borrow=borrow,
        aave=aave,
        morpho=morpho,
        extra_tokens=extras,
        actors=actors,
    )


def check_protocol_representations(config: Config, plan: ChainPlan) -> None:
    """The configured pools must be the plan's, and every representation tagged
    `protocol = "aave_v3"` on the plan's chain a token the planned Aave market creates
    (collateral: an aToken, debt: a variable-debt token) with its decimals: the config
    names the protocol's real contracts, which the devnet does not deploy as stand-ins."""
    wrong = []
    for market in config.protocols:
        if market.chain != plan.chain:
            continue
        if market.kind == "morpho_blue":
            wrong += _morpho_mismatches(market, plan)
            continue
        pool = plan.aave.pool if plan.aave is not None else None
        if pool is None or pool.lower() != market.address.lower():
            wrong.append(f"{plan.chain} {market.kind}: pool {market.address}, Aave's {pool}")
    for rep in config.representations:
        if rep.chain != plan.chain or rep.protocol is None:
            continue
        want = {}
        if plan.aave is not None:
            for r in plan.aave.reserves:
                token = r.a_token if rep.kind == "collateral" else r.variable_debt_token
                want[token.lower()] = r.decimals
        decimals = want.get(rep.address.lower())
        if decimals is None:
            kind = "aToken" if rep.kind == "collateral" else "variable-debt token"
            wrong.append(f"{plan.chain} {rep.symbol}: {rep.address} is no Aave v3 {kind} here")
        elif decimals != rep.decimals:
            wrong.append(f"{plan.chain} {rep.symbol}: decimals {rep.decimals}, Aave's {decimals}")
    if wrong:
        raise DevnetError(
            "protocol representations do not match the protocols' address book "
            "(the manifest's chains[].aave_v3, .morpho_blue):\n  " + "\n  ".join(wrong)
        )


def _morpho_mismatches(market: ProtocolConfig, plan: ChainPlan) -> list[str]:
    """A configured Morpho entry must be the planned singleton, and each of its markets
    a planned market with the same parameters (so the same id)."""
    where = f"{plan.chain} morpho_blue"
    if plan.morpho is None or plan.morpho.morpho.lower() != market.address.lower():
        got = plan.morpho.morpho if plan.morpho is not None else None
        return [f"{where}: morpho {market.address}, the devnet's {got}"]
    planned = {m.id.lower(): m.name for m in plan.morpho.markets}
    return [
        f"{where} {m.name}: no devnet market with these parameters ({m.market_id_hex})"
        for m in market.markets
        if m.market_id_hex not in planned
    ]


def _funding(
    chain: ChainConfig,
    market: AaveMarket | None,
    deployment: MorphoDeployment | None,
    tokens: dict[str, Token],
    accounts: Sequence[AccountEntry],
) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """What to mint to whom (liquidity to the deployer, supplies to the demo accounts),
    and each acting demo account's native balance (to pay its gas)."""
    funds: dict[tuple[str, str], int] = defaultdict(int)
    if market is not None:
        for r in market.reserves:
            funds[(PROTOCOL_DEPLOYER, r.symbol)] += to_raw(r.liquidity, tokens[r.symbol].decimals)
    if deployment is not None:
        for m in deployment.markets:
            funds[(PROTOCOL_DEPLOYER, m.loan)] += to_raw(m.liquidity, tokens[m.loan].decimals)
    actors: dict[str, int] = {}
    for acc in accounts:
        mine = [p for p in acc.positions if p.chain == chain.name]
        if mine:
            actors[acc.address] = sum(
                int(h.raw) for h in acc.holdings if h.chain == chain.name and h.address == "native"
            )
        for p in mine:
            if p.action != "borrow":
                funds[(acc.address, p.symbol)] += int(p.raw)
    return funds, actors


def _liquidity(
    me: Stream,
    market: AaveMarket | None,
    aave: AaveEntry | None,
    deployment: MorphoDeployment | None,
    morpho: MorphoEntry | None,
    tokens: dict[str, Token],
) -> None:
    """The deployer's own supplies: what the demo accounts borrow from."""
    if aave is not None and market is not None:
        for r in market.reserves:
            amount = to_raw(r.liquidity, tokens[r.symbol].decimals)
            _aave_action(me, aave, tokens[r.symbol], "supply", amount, PROTOCOL_DEPLOYER)
    if morpho is not None and deployment is not None:
        for m in deployment.markets:
            amount = to_raw(m.liquidity, tokens[m.loan].decimals)
            _morpho_action(me, morpho, m.name, tokens[m.loan], "supply", amount, PROTOCOL_DEPLOYER)


def _position(
    stream: Stream,
    p: PositionEntry,
    aave: AaveEntry | None,
    morpho: MorphoEntry | None,
    tokens: dict[str, Token],
) -> None:
    token, amount, who = tokens[p.symbol], int(p.raw), stream.sender
    if p.protocol == "aave_v3":
        if aave is None:
            raise DevnetError(f"positions: no Aave v3 on {p.chain}")
        _aave_action(stream, aave, token, p.action, amount, who)
        if p.action == "supply" and not p.collateral:
            stream.call(
                f"{who} disables {p.symbol} as collateral",
                aave.pool,
                "setUserUseReserveAsCollateral(address,bool)",
                ["address", "bool"],
                [token.address, False],
            )
    else:
        if morpho is None or p.market is None:
            raise DevnetError(f"positions: no Morpho Blue market {p.market} on {p.chain}")
        _morpho_action(stream, morpho, p.market, token, p.action, amount, who)
    if p.action == "borrow":  # borrowed money is spent: it leaves the wallet
        stream.call(
            f"{who} spends {p.symbol}",
            token.address,
            "transfer(address,uint256)",
            ["address", "uint256"],
            [PROTOCOL_DEPLOYER, amount],
            100_000,
        )


def _aave_action(
    stream: Stream, aave: AaveEntry, token: Token, action: str, amount: int, who: str
) -> None:
    if token.symbol not in {r.symbol for r in aave.reserves}:
        raise DevnetError(f"positions: {token.symbol} is not an Aave reserve on {aave.chain}")
    if action == "supply":
        approve(stream, token.address, aave.pool, f"{who} approves the pool for {token.symbol}")
        stream.call(
            f"{who} supplies {amount} {token.symbol} to Aave",
            aave.pool,
            "supply(address,uint256,address,uint16)",
            ["address", "uint256", "address", "uint16"],
            [token.address, amount, who, 0],
            500_000,
        )
    elif action == "borrow":
        stream.call(
            f"{who} borrows {amount} {token.symbol} from Aave",
            aave.pool,
            "borrow(address,uint256,uint256,uint16,address)",
            ["address", "uint256", "uint256", "uint16", "address"],
            [token.address, amount, 2, 0, who],  # 2: variable rate
            800_000,
        )
    else:
        raise DevnetError(f"positions: Aave v3 has no action {action!r}")


def _morpho_action(
    stream: Stream,
    morpho: MorphoEntry,
    market_name: str,
    token: Token,
    action: str,
    amount: int,
    who: str,
) -> None:
    try:
        market = morpho.market(market_name)
    except KeyError:
        raise DevnetError(f"positions: no Morpho market {market_name} on {morpho.chain}") from None
    params = market_params(market)
    want = market.collateral_token if action == "collateral" else market.loan_token
    if token.address != want:
        raise DevnetError(f"positions: {action} in {market_name} takes another token")
    label = f"{who} {action} {amount} {token.symbol} in Morpho {market_name}"
    if action != "borrow":
        approve(stream, token.address, morpho.morpho, f"{who} approves Morpho for {token.symbol}")
    if action == "supply":
        sig, types = f"supply({PARAMS},uint256,uint256,address,bytes)", [PARAMS, "uint256"]
        stream.call(
            label,
            morpho.morpho,
            sig,
            [*types, "uint256", "address", "bytes"],
            [params, amount, 0, who, b""],
            300_000,
        )
    elif action == "collateral":
        sig = f"supplyCollateral({PARAMS},uint256,address,bytes)"
        stream.call(
            label,
            morpho.morpho,
            sig,
            [PARAMS, "uint256", "address", "bytes"],
            [params, amount, who, b""],
            300_000,
        )
    else:
        sig = f"borrow({PARAMS},uint256,uint256,address,address)"
        stream.call(
            label,
            morpho.morpho,
            sig,
            [PARAMS, "uint256", "uint256", "address", "address"],
            [params, amount, 0, who, who],
            400_000,
        )


async def setup_protocols(rpc: Rpc, plan: ChainPlan) -> None:
    """Run the plan's three phases, then read the address book back from the chain."""
    if plan.empty and not plan.actors:
        return
    prep: list[Call] = [("anvil_setNonce", [PROTOCOL_DEPLOYER, hex(plan.first_nonce)])]
    for actor in plan.actors:
        prep += [
            ("anvil_impersonateAccount", [actor]),
            ("anvil_setBalance", [actor, hex(GAS_MONEY)]),
        ]
    await rpc.batch(prep)
    for phase, txs in (("deploy", plan.deploy), ("supply", plan.supply), ("borrow", plan.borrow)):
        await _send(rpc, plan.chain, phase, txs)
    done: list[Call] = []
    for actor, native in plan.actors.items():
        done += [
            ("anvil_setBalance", [actor, hex(native)]),
            ("anvil_stopImpersonatingAccount", [actor]),
        ]
    if done:
        # then one block, so the head's header commits to the balances just set: a
        # cheat code changes state without a block, and verified reads (METHOD.md §13)
        # rightly refuse state the pinned header's stateRoot does not hold
        await rpc.batch([*done, ("evm_mine", [])])
    await verify_protocols(rpc, plan)


async def _send(rpc: Rpc, chain: str, phase: str, txs: Sequence[Tx]) -> None:
    """Mine `txs` in order, one block per chunk whose gas limits fit in a block together.

    anvil (1.7) drops a sender's queued transactions when one of them has to wait for a
    later block, so each chunk is sent with automine off and mined with one evm_mine."""
    if not txs:
        return
    senders = list(dict.fromkeys(t.sender for t in txs))
    counts = await rpc.batch([("eth_getTransactionCount", [s, "pending"]) for s in senders])
    head = await rpc.call("eth_getBlockByNumber", ["latest", False])
    block_gas = int(head["gasLimit"], 16)
    nonces = {s: int(c, 16) for s, c in zip(senders, counts, strict=True)}
    chunks: list[list[tuple[Tx, dict[str, Any]]]] = [[]]
    used = 0
    for t in txs:
        if t.gas > block_gas:
            raise DevnetError(f"{chain}: {t.label}: gas {t.gas} above the block's {block_gas}")
        if used + t.gas > block_gas:
            chunks.append([])
            used = 0
        tx: dict[str, Any] = {
            "from": t.sender,
            "data": t.data,
            "gas": hex(t.gas),
            "nonce": hex(nonces[t.sender]),
            **FEES,
        }
        if t.to is not None:
            tx["to"] = t.to
        nonces[t.sender] += 1
        chunks[-1].append((t, tx))
        used += t.gas
    await rpc.call("evm_setAutomine", [False])
    try:
        for chunk in chunks:
            hashes = await rpc.batch([("eth_sendTransaction", [tx]) for _, tx in chunk])
            await rpc.call("evm_mine", [])
            receipts = await rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
            for (t, _), h, rc in zip(chunk, hashes, receipts, strict=True):
                _check(chain, phase, t, h, rc)
    finally:
        await rpc.call("evm_setAutomine", [True])


def _check(chain: str, phase: str, t: Tx, tx_hash: str, receipt: Any) -> None:
    if not isinstance(receipt, dict):
        raise DevnetError(f"{chain}: {phase}: {t.label} was not mined (tx {tx_hash})")
    if receipt.get("status") != "0x1":
        raise DevnetError(f"{chain}: {phase}: {t.label} failed (tx {tx_hash})")
    got = (receipt.get("contractAddress") or "").lower()
    if t.creates is not None and got != t.creates.lower():
        raise DevnetError(f"{chain}: {t.label}: expected {t.creates}, deployed to {got}")
