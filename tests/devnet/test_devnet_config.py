"""configs/devnet.toml, the scenario and the committed artifacts, without any chain."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import rlp
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from crossmargin.core.config import ChainIdentity, Config, load_config
from devnet.deploy import check_plan, plan_chain
from devnet.errors import DevnetError
from devnet.evm import DEPLOYER, DEV_MNEMONIC
from devnet.manifest import build_accounts
from devnet.net import _Inputs, env_var
from devnet.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]
L2S = ("arbitrum", "optimism", "base")


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(ROOT / "configs" / "devnet.toml", env={})


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(ROOT / "configs" / "devnet-scenario.toml")


def test_devnet_config_validates_with_and_without_env(config: Config) -> None:
    assert config.settlement_chain == "ethereum"
    assert config.bridges.hub == "ethereum"
    assert config.chain("ethereum").rpc_urls == ["http://127.0.0.1:8545"]
    env = {f"CROSSMARGIN_RPC_{c.upper()}": f"http://rpc.example/{c}" for c in ("ethereum", *L2S)}
    other = load_config(ROOT / "configs" / "devnet.toml", env=env)
    assert other.chain("base").rpc_urls == ["http://rpc.example/base"]
    assert config.api.anonymous is True


def test_devnet_config_has_the_agreed_parameters(config: Config) -> None:
    r = config.risk
    assert (r.alpha, r.method, r.kappa, r.ewma_lambda, r.min_observations) == (
        0.99,
        "var",
        0.5,
        0.94,
        30,
    )
    assert (r.default_correlation, r.max_deviation, r.max_time_skew_s) == (0.5, 0.02, 300)
    assert {(c.a, c.b): c.rho for c in r.correlations} == {
        ("ETH", "BTC"): 0.8,
        ("ETH", "USDC"): 0.0,
        ("BTC", "USDC"): 0.0,
    }
    eth, btc, usdc = (config.asset(s) for s in ("ETH", "BTC", "USDC"))
    assert (eth.sigma_default, eth.sigma_floor, eth.liquidation_horizon_days, eth.h_min) == (
        0.035,
        0.02,
        1,
        0.05,
    )
    assert (eth.concentration_k, eth.liquidity_depth_usd) == (0.1, 50e6)
    assert (btc.sigma_default, btc.sigma_floor, btc.liquidation_horizon_days, btc.h_min) == (
        0.03,
        0.015,
        1,
        0.05,
    )
    assert (usdc.sigma_default, usdc.sigma_floor, usdc.liquidation_horizon_days, usdc.h_min) == (
        0.001,
        0.0005,
        0.5,
        0.02,
    )
    heartbeats = {"ETH": 3600, "BTC": 3600, "USDC": 86400}
    for asset in config.assets:
        assert sorted(f.chain for f in asset.feeds) == sorted(c.name for c in config.chains)
        assert all(f.decimals == 8 and f.kind == "chainlink" for f in asset.feeds)
        assert {f.heartbeat_s for f in asset.feeds} == {heartbeats[asset.symbol]}
    for name in L2S:
        chain = config.chain(name)
        assert chain.sequencer_uptime_feed is not None
        assert chain.sequencer_grace_period_s == 3600
        assert (chain.to_hub_days, chain.from_hub_days) == (1.0, 0.05)
    assert config.bridges.latency, "at least one explicit pair"


def test_every_chain_has_the_agreed_representations(config: Config) -> None:
    for chain in config.chains:
        reps = {
            r.symbol: r
            for r in config.representations
            if r.chain == chain.name and r.protocol is None  # §12 ones: test_protocols_e2e
        }
        want = {
            "ETH": 18,
            "WETH": 18,
            "WBTC": 8,
            "USDC": 6,
            "variableDebtUSDC": 6,
            "variableDebtWETH": 18,
        }
        if chain.name in L2S:
            want["USDC.e"] = 6
        assert {s: r.decimals for s, r in reps.items()} == want, chain.name
        assert reps["ETH"].is_native
        assert reps["variableDebtUSDC"].kind == reps["variableDebtWETH"].kind == "debt"
        if chain.name in L2S:
            assert reps["USDC.e"].bridged
            assert reps["USDC.e"].bridge_addon == 0.01


def test_configured_addresses_follow_the_deploy_order(config: Config, scenario: Scenario) -> None:
    for chain in config.chains:
        plan = plan_chain(config, scenario, chain)
        check_plan(plan)
        for d in plan:  # independently: keccak(rlp([sender, nonce]))[12:]
            raw = keccak(rlp.encode([bytes.fromhex(DEPLOYER[2:]), d.nonce]))[12:]
            assert to_checksum_address(raw) == d.address
    addresses = [r.address for r in config.representations if not r.is_native]
    assert len(set(addresses)) == len(addresses), "a token has a different address per chain"


def test_a_wrong_address_is_reported_with_expected_and_got(
    config: Config, scenario: Scenario
) -> None:
    shifted = scenario.model_copy(update={"deployer_nonce": {"ethereum": 7}})
    with pytest.raises(
        DevnetError, match=r"ethereum WETH: config says 0x\w+, nonce 7 deploys to 0x"
    ):
        check_plan(plan_chain(config, shifted, config.chain("ethereum")))


def test_scenario_fits_the_config(config: Config, scenario: Scenario) -> None:
    scenario.check_against(config)
    assert scenario.rounds >= 120
    assert {a.name for a in scenario.accounts} >= {"alice", "bob", "carol", "dave"}
    Account.enable_unaudited_hdwallet_features()
    anvil = {
        Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").address
        for i in range(10)
    }
    assert DEPLOYER in anvil
    accounts = build_accounts(config, scenario)
    assert not anvil & {a.address for a in accounts}
    assert len({a.address for a in accounts}) == len(accounts)


def test_artifacts_are_built_from_the_committed_sources() -> None:
    for name in ("DevToken", "DevDebtToken", "MockV3Aggregator", "Multicall3"):
        art = json.loads((ROOT / "contracts" / "artifacts" / f"{name}.json").read_text())
        assert art["contractName"] == name
        assert art["compiler"]["version"].startswith("0.8.30")
        assert art["settings"]["optimizer"] == {"enabled": True, "runs": 200}
        assert art["bytecode"].startswith("0x60")
        assert art["deployedBytecode"].startswith("0x60")
        assert art["abi"]
        if art["sourceName"].startswith("contracts/"):
            text = (ROOT / art["sourceName"]).read_bytes()
            assert art["sourceSha256"] == hashlib.sha256(text).hexdigest(), (
                f"{art['sourceName']} changed: run node contracts/build.mjs"
            )


def test_the_generated_config_names_each_chains_genesis(tmp_path: Path) -> None:
    """METHOD.md §2: the devnet writes `identity` (block 0, this run's genesis hash) after
    each chain's rpc_urls line; a template that sets one itself is refused."""
    src = ROOT / "configs" / "devnet.toml"
    inputs = _Inputs.load(src, ROOT / "configs" / "devnet-scenario.toml", None)
    names = [c.name for c in inputs.template.chains]
    urls = {n: f"http://127.0.0.1:{9000 + i}" for i, n in enumerate(names)}
    genesis = {n: "0x" + f"{i + 1:02x}" * 32 for i, n in enumerate(names)}
    out = tmp_path / "crossmargin.toml"
    out.write_text(inputs.render(urls, datetime.now(UTC), genesis), encoding="utf-8")
    config = load_config(out, env={})
    for chain in config.chains:
        assert chain.rpc_urls == [urls[chain.name]]
        assert chain.identity == ChainIdentity(block=0, hash=genesis[chain.name])
    # only the URLs and identities differ from the template
    bare = [c.model_copy(update={"identity": None}) for c in config.chains]
    filled = load_config(src, env={env_var(n): u for n, u in urls.items()})
    assert config.model_copy(update={"chains": bare}) == filled

    pinned = tmp_path / "pinned.toml"
    text = src.read_text(encoding="utf-8")
    line = 'rpc_urls = ["${CROSSMARGIN_RPC_BASE:-http://127.0.0.1:8548}"]'
    assert line in text
    pinned.write_text(text.replace(line, line + f'\nidentity = {{ hash = "{genesis["base"]}" }}'))
    with pytest.raises(DevnetError, match="base: no `identity` here"):
        _Inputs.load(pinned, ROOT / "configs" / "devnet-scenario.toml", None)
