"""The running devnet holds what configs/devnet.toml and the scenario say (read back
independently over plain JSON-RPC)."""

from __future__ import annotations

import itertools
import json
import os
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from devnet_rpc import ROUND, RpcFailure, batch, call_spec, dec, eth_call, rpc
from eth_account import Account
from eth_utils import keccak

from crossmargin.core.config import load_config
from devnet import Devnet, read_manifest

ROOT = Path(__file__).resolve().parents[2]
MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11"
REAL_CHAIN_IDS = {"ethereum": 1, "arbitrum": 42161, "optimism": 10, "base": 8453}
SCENARIO = tomllib.loads((ROOT / "configs" / "devnet-scenario.toml").read_text())


def head_timestamp(url: str) -> int:
    return int(rpc(url, "eth_getBlockByNumber", "latest", False)["timestamp"], 16)


def test_chain_ids_are_the_real_ones(devnet: Devnet) -> None:
    assert {c.name: c.chain_id for c in devnet.config.chains} == REAL_CHAIN_IDS
    for name, chain_id in REAL_CHAIN_IDS.items():
        url = devnet.rpc_url(name)
        assert url.startswith("http://127.0.0.1:")
        assert int(rpc(url, "eth_chainId"), 16) == chain_id
        assert devnet.config.chain(name).rpc_urls == [url]


def test_multicall3_is_at_the_canonical_address_and_works(devnet: Devnet) -> None:
    artifact = json.loads((ROOT / "contracts" / "artifacts" / "Multicall3.json").read_text())
    for name, chain_id in REAL_CHAIN_IDS.items():
        url = devnet.rpc_url(name)
        assert rpc(url, "eth_getCode", MULTICALL3, "latest") == artifact["deployedBytecode"]
        (got,) = eth_call(url, MULTICALL3, "getChainId()", ["uint256"])
        assert got == chain_id


def test_configured_tokens_have_code_decimals_and_symbols(devnet: Devnet) -> None:
    for rep in devnet.config.representations:
        if rep.is_native:
            continue
        url = devnet.rpc_url(rep.chain)
        assert len(rpc(url, "eth_getCode", rep.address, "latest")) > 2, rep
        assert eth_call(url, rep.address, "decimals()", ["uint8"]) == (rep.decimals,)
        assert eth_call(url, rep.address, "symbol()", ["string"]) == (rep.symbol,)


def test_configured_feeds_are_fresh_and_sequencers_up(devnet: Devnet) -> None:
    for asset in devnet.config.assets:
        for feed in asset.feeds:
            url = devnet.rpc_url(feed.chain)
            assert eth_call(url, feed.address, "decimals()", ["uint8"]) == (feed.decimals,)
            round_id, answer, started, updated, answered = eth_call(
                url, feed.address, "latestRoundData()", ROUND
            )
            assert answer > 0
            assert answered == round_id
            assert started == updated
            assert 0 <= head_timestamp(url) - updated <= feed.heartbeat_s
    for chain in devnet.config.chains:
        url = devnet.rpc_url(chain.name)
        if chain.name == "ethereum":
            assert chain.sequencer_uptime_feed is None
            continue
        assert chain.sequencer_uptime_feed is not None, chain.name
        assert eth_call(url, chain.sequencer_uptime_feed, "decimals()", ["uint8"]) == (0,)
        _, answer, started, _, _ = eth_call(
            url, chain.sequencer_uptime_feed, "latestRoundData()", ROUND
        )
        assert answer == 0  # up
        assert head_timestamp(url) - started > chain.sequencer_grace_period_s


def test_debt_tokens_cannot_be_transferred_or_approved(devnet: Devnet) -> None:
    bob = devnet.demo_accounts["bob"]
    debt = next(
        r
        for r in devnet.config.representations
        if r.kind == "debt" and r.chain == "ethereum" and r.symbol == "variableDebtUSDC"
    )
    url = devnet.rpc_url("ethereum")
    assert eth_call(
        url, debt.address, "balanceOf(address)", ["uint256"], bob, arg_types=["address"]
    ) == (40_000 * 10**6,)
    for sig, types, args in [
        ("transfer(address,uint256)", ["address", "uint256"], [devnet.demo_accounts["alice"], 1]),
        ("approve(address,uint256)", ["address", "uint256"], [devnet.demo_accounts["alice"], 1]),
    ]:
        with pytest.raises(RpcFailure):
            eth_call(url, debt.address, sig, ["bool"], *args, arg_types=types, sender=bob)


def test_demo_accounts_hold_exactly_what_the_scenario_says(devnet: Devnet) -> None:
    seed = SCENARIO["seed"]
    config = devnet.config
    for spec in SCENARIO["accounts"]:
        key = keccak(f"crossmargin-devnet:{seed}:{spec['name']}".encode())
        address = Account.from_key(key).address
        assert devnet.demo_accounts[spec["name"]] == address
        want = {(h["chain"], h["symbol"]): h["amount"] for h in spec["holdings"]}
        for rep in config.representations:  # every token on every chain, zeros included
            if rep.protocol is not None:
                continue  # a protocol position, not the wallet (tests/e2e/test_protocols_e2e.py)
            url = devnet.rpc_url(rep.chain)
            if rep.is_native:
                got = int(rpc(url, "eth_getBalance", address, "latest"), 16)
            else:
                (got,) = eth_call(
                    url,
                    rep.address,
                    "balanceOf(address)",
                    ["uint256"],
                    address,
                    arg_types=["address"],
                )
            amount = Decimal(want.get((rep.chain, rep.symbol), "0"))
            assert got == int(amount.scaleb(rep.decimals)), (spec["name"], rep.chain, rep.symbol)


def test_demo_accounts_have_the_intended_shapes(devnet: Devnet) -> None:
    def holdings(name: str) -> list[tuple[str, str, str]]:
        return [(h.chain, h.symbol, h.kind) for h in devnet.account(name).holdings]

    assert len({c for c, _, _ in holdings("alice")}) >= 3
    assert all(kind == "collateral" for _, _, kind in holdings("alice"))
    assert {kind for _, _, kind in holdings("bob")} == {"collateral", "debt"}
    assert {kind for _, _, kind in holdings("carol")} == {"collateral", "debt"}
    assert {(c, s) for c, s, _ in holdings("dave")} == {
        ("arbitrum", "USDC.e"),
        ("optimism", "USDC.e"),
        ("base", "USDC.e"),
    }


def test_history_has_daily_rounds_ending_at_the_latest(devnet: Devnet) -> None:
    n = devnet.manifest.history.rounds
    end = devnet.manifest.history.end_timestamp
    spread = devnet.manifest.history.chain_spread
    assert n >= 120
    for asset in devnet.config.assets:
        paths: dict[str, list[int]] = {}
        for feed in asset.feeds:
            url = devnet.rpc_url(feed.chain)
            calls = [
                call_spec(feed.address, "getRoundData(uint80)", ["uint80"], [i])
                for i in range(1, n + 1)
            ]
            calls.append(call_spec(feed.address, "latestRoundData()"))
            *rounds, latest = [dec(ROUND, r) for r in batch(url, calls)]
            assert latest == rounds[-1]
            assert [r[0] for r in rounds] == list(range(1, n + 1))
            updated = [r[3] for r in rounds]
            assert updated[-1] == end <= head_timestamp(url)
            assert all(b - a == 86_400 for a, b in itertools.pairwise(updated))
            assert all(r[1] > 0 and r[2] == r[3] and r[4] == r[0] for r in rounds)
            paths[feed.chain] = [r[1] for r in rounds]
        # Same path on every chain up to one constant factor within chain_spread.
        reference = paths["ethereum"]
        for chain, path in paths.items():
            ratios = [p / q for p, q in zip(path, reference, strict=True)]
            assert max(ratios) - min(ratios) < 1e-6, (asset.symbol, chain)
            assert abs(ratios[0] - 1) <= spread + 1e-9, (asset.symbol, chain)


def test_generated_config_and_manifest(devnet: Devnet) -> None:
    assert devnet.config_path == devnet.state_dir / "crossmargin.toml"
    assert load_config(devnet.config_path, env={}) == devnet.config
    template = load_config(ROOT / "configs" / "devnet.toml", env=devnet.manifest.env)
    assert all(c.identity is None for c in template.chains)
    # Only the URLs were filled in, and each chain's identity (METHOD.md §2): the hash of
    # its genesis block, as the node itself reports it.
    identities = {c.name: c.identity for c in devnet.config.chains}
    for name, identity in identities.items():
        assert identity is not None
        assert identity.block == 0
        genesis = rpc(devnet.rpc_url(name), "eth_getBlockByNumber", "0x0", False)
        assert identity.hash == genesis["hash"]
    chains = [c.model_copy(update={"identity": None}) for c in devnet.config.chains]
    # and the transparency log's signing key (§10), generated into the state directory
    key = devnet.config.api.tlog_key
    assert key is not None
    assert Path(key).parent == devnet.state_dir.resolve()
    assert Path(key).is_file()
    api = devnet.config.api.model_copy(update={"tlog_key": None})
    assert template == devnet.config.model_copy(update={"chains": chains, "api": api})
    manifest = read_manifest(devnet.manifest_path)
    assert manifest == devnet.manifest
    assert manifest.status == "ready"
    assert manifest.seed == SCENARIO["seed"]
    for chain in manifest.chains:
        os.kill(chain.pid, 0)  # alive
        assert chain.rpc_url == f"http://127.0.0.1:{chain.port}"
        assert manifest.env[chain.env_var] == chain.rpc_url
        assert chain.multicall3 == MULTICALL3
        assert set(chain.feeds) == {"ETH", "BTC", "USDC"}
