"""Verified reads (METHOD.md §13) on the devnet: every balance proven against the pinned
header, whatever the token's storage layout; a node that lies is caught, never believed.

| token | layout | how it is found |
|---|---|---|
| the devnet's DevTokens (OpenZeppelin 4/5 ERC20) | mapping at slot 0 | discovered |
| NamespacedToken (OZ5 upgradeable storage) | ERC-7201 `openzeppelin.storage.ERC20` | discovered |
| VyperLayoutToken | keccak(slot . key), slot 1 | config `balance_slot = "vyper:1"` |
| LyingToken (name, symbol, then the map) | mapping at slot 2 | discovered |
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from adapter_helpers import read_states, send
from fault_proxy import FaultProxy
from proof_helpers import creation_code, verified

from adapters import prover
from adapters.evm import EvmAdapter
from adapters.proof import erc7201, layout_of
from crossmargin.cli.render import render_margin
from crossmargin.core.config import Config, RepresentationConfig
from crossmargin.pipeline.figures import Request, compute
from crossmargin.pipeline.proofs import reprove
from crossmargin.pipeline.read import ChainState, read_chain_many
from crossmargin.pipeline.snapshot import GENESIS, document
from crossmargin.pipeline.stored import compact, expand
from crossmargin.pipeline.value import assess
from devnet import Devnet
from devnet.evm import artifact, calldata, deploy_data
from devnet.rpc import Rpc

CHAIN = "ethereum"
SENDER = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"  # anvil account 9 (unlocked)
AMOUNTS = {"NSP": 7 * 10**18 + 1, "VYP": 3 * 10**18 + 5, "ODD": 11 * 10**18 + 7}


@dataclass
class ProofNet:
    net: Devnet
    config: Config
    token: dict[str, str]
    alice: str


async def _deploy(net: Devnet, holder: str) -> dict[str, str]:
    code = creation_code()
    lying = deploy_data(
        artifact("LyingToken"),
        ["string", "string", "uint8", "address"],
        ["Odd Slot", "ODD", 18, "0x" + "00" * 20],
    )
    async with aiohttp.ClientSession() as session:
        rpc = Rpc(session, net.rpc_url(CHAIN), net.config.chain(CHAIN).chain_id)
        deployed = await send(
            rpc,
            SENDER,
            [(None, code["NamespacedToken"]), (None, code["VyperLayoutToken"]), (None, lying)],
        )
        token = dict(zip(("NSP", "VYP", "ODD"), deployed, strict=True))
        mint = "mint(address,uint256)"
        await send(
            rpc,
            SENDER,
            [
                (token["NSP"], calldata(mint, holder, AMOUNTS["NSP"])),
                (token["VYP"], calldata(mint, holder, AMOUNTS["VYP"])),
                (token["ODD"], calldata("setBalance(address,uint256)", holder, AMOUNTS["ODD"])),
                (token["ODD"], calldata("setTotalSupply(uint256,bool)", 10**30, False)),
            ],
        )
    return token


def _config(config: Config, token: dict[str, str]) -> Config:
    def rep(symbol: str, **kw: Any) -> RepresentationConfig:
        return RepresentationConfig(
            chain=CHAIN, asset="ETH", symbol=symbol, address=token[symbol], decimals=18, **kw
        )

    extra = [rep("NSP"), rep("VYP", balance_slot="vyper:1"), rep("ODD")]
    return verified(
        config.model_copy(update={"representations": [*config.representations, *extra]})
    )


@pytest.fixture(scope="module")
def proofnet(devnet: Devnet) -> ProofNet:
    alice = devnet.demo_accounts["alice"]
    token = asyncio.run(_deploy(devnet, alice))
    return ProofNet(devnet, _config(devnet.config, token), token, alice)


async def _read_all(
    p: ProofNet, accounts: list[str], sent: list[Any] | None = None
) -> tuple[dict[str, list[ChainState]], dict[str, Any]]:
    """Every chain for `accounts`; also each token's layout as the adapters found it (and
    into `sent`, every batch the provers sent)."""
    out: dict[str, list[ChainState]] = {a: [] for a in accounts}
    layouts: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        for chain in p.config.chains:
            adapter = EvmAdapter(chain, session)
            adapter.prover.sent = sent
            for a, s in zip(
                accounts, await read_chain_many(p.config, adapter, accounts), strict=True
            ):
                out[a].append(s)
            layouts.update(adapter.prover._layouts)
    return out, layouts


def _verdicts(state: ChainState) -> list[tuple[str, Any, Any]]:
    assert state.holder_proof is not None
    return [
        (b.rep.symbol, b, v)
        for b, v in zip(state.balances, state.holder_proof.verdicts, strict=True)
    ]


def test_every_demo_balance_is_proven(proofnet: ProofNet, monkeypatch: pytest.MonkeyPatch) -> None:
    # limits small enough that a token's keys span requests, and requests batches
    monkeypatch.setattr(prover, "KEYS", 2)
    monkeypatch.setattr(prover, "BATCH_KEYS", 3)
    monkeypatch.setattr(prover, "BATCH", 2)
    accounts = list(proofnet.net.demo_accounts.values())
    assert len(accounts) > 2
    sent: list[Any] = []
    states, layouts = asyncio.run(_read_all(proofnet, accounts, sent))
    keys = [[len(p[1]) for m, p in batch if m == "eth_getProof"] for batch in sent]
    assert all(len(batch) <= 2 for batch in sent)
    assert all(sum(k) <= 3 or len(k) == 1 for k in keys)
    assert max(n for k in keys for n in k) == 2  # a token's holders over two requests
    wallet = 0
    for account in accounts:
        for state in states[account]:
            assert state.available, state.error
            for symbol, b, v in _verdicts(state):
                if b.rep.protocol is None:  # wallet balances: every one proven
                    assert v.ok, (state.chain.name, symbol, v)
                    assert v.proven == b.raw_amount
                    wallet += 1
                else:  # aTokens compute balanceOf (scaled x index): proven or refused
                    assert v.ok == (v.proven == b.raw_amount), (symbol, v)
    assert wallet > 3 * len(accounts)
    alice = {b.rep.symbol: (b, v) for s in states[proofnet.alice] for _, b, v in _verdicts(s)}
    for symbol, amount in AMOUNTS.items():
        b, v = alice[symbol]
        assert (b.raw_amount, v.proven, v.ok) == (amount, amount, True)
    t = proofnet.token
    assert layouts[t["NSP"]] == f"solidity:{erc7201('openzeppelin.storage.ERC20')}"
    assert layouts[t["VYP"]] == "vyper:1"
    assert layouts[t["ODD"]] == "solidity:2"  # the unknown layout, discovered
    assert "solidity:0" in layouts.values()  # the devnet's OpenZeppelin tokens
    # the report says per chain how many positions were proven
    report = compute(
        proofnet.config, states[proofnet.alice], Request("margin", proofnet.alice, "ethereum")
    )
    rows = report.model_dump(mode="json")["chains"]
    assert all(r["positions"] >= r["proven"] > 0 for r in rows), rows
    for state, row in zip(states[proofnet.alice], rows, strict=True):
        verdicts = [v for _, _, v in _verdicts(state)]
        assert (row["proven"], row["positions"]) == (sum(v.ok for v in verdicts), len(verdicts))
        assert f"{row['proven']}/{row['positions']} proven" in render_margin(report, width=200)


Change = Callable[[dict[str, Any], dict[str, Any]], None]


async def _through_liar(p: ProofNet, account: str | None = None, **fault: Any) -> ChainState:
    """An account's (alice's) ethereum state read through a proxy lying as `fault` says."""
    async with FaultProxy(p.net.rpc_url(CHAIN)) as proxy:
        proxy.inject("rewrite", times=None, **fault)
        chain = p.config.chain(CHAIN).model_copy(update={"rpc_urls": [proxy.url]})
        (state,) = await read_states(p.config, chain, [account or p.alice])
    assert state.available, state.error
    return state


def _flip(node: str) -> str:
    """One byte of a proof node changed (its middle one)."""
    body = node[2:]
    i = len(body) // 2 & ~1
    byte = int(body[i : i + 2], 16) ^ 0x01
    return "0x" + body[:i] + f"{byte:02x}" + body[i + 2 :]


def _unverified(p: ProofNet, state: ChainState) -> dict[str, Any]:
    """What §13 makes of the state: the unverified positions and the collateral counted."""
    a = assess(p.config, [state], p.alice)
    return {pos.symbol: pos for pos in a.unvalued if pos.status == "unverified"}


def test_a_balance_altered_in_the_call_is_unverified(proofnet: ProofNet) -> None:
    honest = asyncio.run(_through_liar(proofnet))
    real = next(b.raw_amount for b in honest.balances if b.rep.standard == "native")
    assert real

    def override(item: dict[str, Any]) -> None:
        if item.get("method") == "eth_call":  # the node answers as if alice had more
            item["params"] = [*item["params"][:2], {proofnet.alice: {"balance": hex(real * 2)}}]

    state = asyncio.run(_through_liar(proofnet, request=override))
    (native, b, v), *_ = [x for x in _verdicts(state) if x[1].rep.standard == "native"]
    assert b.raw_amount == real * 2  # the lie was read...
    assert (v.ok, v.proven) == (False, real)  # ...and refuted by the proof
    assert native in _unverified(proofnet, state)  # counted 0
    others = [x for x in _verdicts(state) if x[1].rep.standard != "native"]
    assert all(v.ok for _, b, v in others if b.rep.protocol is None)
    a = assess(proofnet.config, [state], proofnet.alice)
    assert all(val.rep.standard != "native" for val in a.valued)


def test_debt_the_node_hides_counts_at_the_proven_value(proofnet: ProofNet) -> None:
    accounts = list(proofnet.net.demo_accounts.values())
    states, layouts = asyncio.run(_read_all(proofnet, accounts))
    account, debt = next(
        (a, b)
        for a in accounts
        for s in states[a]
        if s.chain.name == CHAIN
        for b in s.balances
        if b.rep.kind == "debt" and b.rep.protocol is None and b.raw_amount
    )
    real = debt.raw_amount
    assert real
    slot = layout_of(layouts[debt.rep.address]).slot(account)

    def halve(item: dict[str, Any]) -> None:
        if item.get("method") == "eth_call":  # the node says the debt is half what it is
            diff = {f"0x{slot:064x}": f"0x{real // 2:064x}"}
            item["params"] = [*item["params"][:2], {debt.rep.address: {"stateDiff": diff}}]

    state = asyncio.run(_through_liar(proofnet, account, request=halve))
    b, v = next((b, v) for _, b, v in _verdicts(state) if b.rep == debt.rep)
    assert (b.raw_amount, v.proven, v.ok) == (real // 2, real, False)
    a = assess(proofnet.config, [state], account)
    (valued,) = [x for x in a.valued if x.rep == debt.rep]
    assert valued.raw_amount == real  # the larger of the two: never understated
    assert any(w.code == "unverified" for w in a.warnings)


def test_an_altered_proof_is_unverified(proofnet: ProofNet) -> None:
    alice = proofnet.alice.lower()
    nsp = proofnet.token["NSP"].lower()

    def lie(item: dict[str, Any], answer: dict[str, Any]) -> None:
        if item.get("method") != "eth_getProof" or "result" not in answer:
            return
        address, keys = item["params"][0].lower(), item["params"][1]
        result = answer["result"]
        if address == alice and not keys:  # alice's own account proof
            result["accountProof"][-1] = _flip(result["accountProof"][-1])
            result["balance"] = hex(10**30)  # what a node claims is never used
        elif address == nsp and keys:  # the storage proof of alice's NSP balance
            leaf = result["storageProof"][0]
            leaf["proof"][-1] = _flip(leaf["proof"][-1])

    state = asyncio.run(_through_liar(proofnet, reply=lie))
    bad = {s: v for s, b, v in _verdicts(state) if not v.ok and b.rep.protocol is None}
    native = next(b.rep.symbol for b in state.balances if b.rep.standard == "native")
    assert set(bad) == {native, "NSP"}, bad
    assert all(v.proven is None for v in bad.values())
    assert set(_unverified(proofnet, state)) >= {native, "NSP"}


def test_a_header_that_does_not_hash_to_the_pin_proves_nothing(proofnet: ProofNet) -> None:
    def lie(item: dict[str, Any], answer: dict[str, Any]) -> None:
        if item.get("method") == "eth_getBlockByHash" and isinstance(answer.get("result"), dict):
            answer["result"]["extraData"] = "0x01"

    state = asyncio.run(_through_liar(proofnet, reply=lie))
    verdicts = _verdicts(state)
    assert verdicts
    assert not any(v.ok for _, _, v in verdicts)
    assert {v.reason for _, _, v in verdicts} == {"header does not hash to the pinned block"}
    a = assess(proofnet.config, [state], proofnet.alice)
    assert a.collateral == 0  # nothing unproven counts as collateral
    rows = compute(proofnet.config, [state], Request("margin", proofnet.alice, CHAIN)).model_dump(
        mode="json"
    )
    (row,) = rows["chains"]
    assert (row["proven"], row["positions"]) == (0, len(verdicts))


def test_stored_snapshots_re_prove_offline(proofnet: ProofNet) -> None:
    states, _ = asyncio.run(_read_all(proofnet, [proofnet.alice]))
    mine = states[proofnet.alice]
    req = Request("margin", proofnet.alice, CHAIN)
    report = compute(proofnet.config, mine, req)
    built = document(proofnet.config, req, mine, report, GENESIS)
    full = expand(json.loads(built.text), built.blobs)
    good = reprove(proofnet.config, full)
    assert good.problems == []
    assert good.positions == sum(len(s.balances) for s in mine)
    assert good.proven > 3
    # a forger changes one byte of one stored proof node and re-hashes everything
    eth = next(i for i, s in enumerate(mine) if s.chain.name == CHAIN)
    nodes = full["inputs"]["chains"][eth]["holder_proof"]["nodes"]
    nodes[0] = _flip("0x" + nodes[0])[2:]
    forged = compact(full)
    bad = reprove(proofnet.config, expand(json.loads(forged.text), forged.blobs))
    assert bad.problems, "a changed proof byte must not re-prove"
    assert all(CHAIN in p for p in bad.problems)
