"""The config validator: good files load, bad files fail with the path of the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crossmargin.config import parse_config
from crossmargin.errors import ConfigError

WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
FEED = "0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419"

GOOD = f"""
settlement_chain = "ethereum"

[[chains]]
name = "ethereum"
chain_id = 1
rpc_urls = ["${{TEST_ETH_RPC:-http://127.0.0.1:8545}}"]

[[assets]]
symbol = "ETH"
liquidation_horizon_days = 1
sigma_default = 0.035
liquidity_depth_usd = 1e9

[[assets.feeds]]
chain = "ethereum"
address = "{FEED}"
heartbeat_s = 3600

[[representations]]
chain = "ethereum"
asset = "ETH"
symbol = "WETH"
address = "{WETH}"
decimals = 18

[risk]
default_correlation = 0.5

[bridges]
hub = "ethereum"
"""


def test_good_config_loads_with_env_default_and_override() -> None:
    cfg = parse_config(GOOD, env={})
    assert cfg.chains[0].rpc_urls == ["http://127.0.0.1:8545"]
    cfg = parse_config(GOOD, env={"TEST_ETH_RPC": "http://node:1"})
    assert cfg.chains[0].rpc_urls == ["http://node:1"]
    assert cfg.representations[0].address == WETH
    assert cfg.risk.alpha == 0.99  # METHOD.md default


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("chain_id = 1", "chain_id = -1", "chains.0.chain_id: Input should be greater than 0"),
        ('asset = "ETH"', 'asset = "DOGE"', "representations.0.asset: unknown asset 'DOGE'"),
        ('hub = "ethereum"', 'hub = "moon"', "bridges.hub: unknown chain 'moon'"),
        ("decimals = 18", "decimals = 78", "representations.0.decimals"),
        (WETH, WETH.replace("C02aaA", "C02AAA"), "bad EIP-55 checksum"),
        (WETH, "0x1234", "not a 20-byte hex address"),
        ("sigma_default = 0.035", "sigma_default = -1.0", "assets.0.sigma_default"),
        ("heartbeat_s = 3600", "heartbeat_s = 3600\nbogus = 1", "assets.0.feeds.0.bogus: Extra"),
        ("[risk]\n", "[risk]\nkappa = 2.0\n", "risk.kappa"),
        (
            'rpc_urls = ["${TEST_ETH_RPC:-http://127.0.0.1:8545}"]',
            'rpc_urls = ["${TEST_ETH_RPC}"]',
            "chains.0.rpc_urls.0: environment variable TEST_ETH_RPC is not set",
        ),
        ('settlement_chain = "ethereum"', 'settlement_chain = "ethereum', "not valid TOML"),
        (
            "liquidity_depth_usd = 1e9\n",
            "",
            "assets.0.liquidity_depth_usd: required, ETH can be collateral (representations.0",
        ),
        ("liquidity_depth_usd = 1e9", "liquidity_depth_usd = 0", "assets.0.liquidity_depth_usd"),
    ],
)
def test_bad_config_names_the_path(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError) as info:
        parse_config(GOOD.replace(old, new), env={}, source="bad.toml")
    assert expected in str(info.value)
    assert str(info.value).startswith("bad.toml")


def test_duplicate_representation_is_rejected() -> None:
    text = (
        GOOD
        + f"""
[[representations]]
chain = "ethereum"
asset = "ETH"
symbol = "WETH2"
address = "{WETH.lower()}"
decimals = 18
"""
    )
    with pytest.raises(ConfigError, match=r"representations\.1: .* already representations\.0"):
        parse_config(text, env={})


def test_depth_may_be_left_out_only_for_an_asset_that_is_never_collateral() -> None:
    # §7: config must give D_a for every asset that can be collateral
    debt_only = GOOD.replace("liquidity_depth_usd = 1e9\n", "").replace(
        "decimals = 18\n", 'decimals = 18\nkind = "debt"\n'
    )
    cfg = parse_config(debt_only, env={})
    assert cfg.assets[0].liquidity_depth_usd is None


def test_env_vars_fill_only_rpc_urls() -> None:
    text = GOOD.replace("sigma_default = 0.035", 'sigma_default = "${SIGMA}"')
    with pytest.raises(ConfigError, match=r"assets\.0\.sigma_default"):
        parse_config(text, env={"SIGMA": "0.1"})


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossmargin.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_cli_config_check(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    ok = _cli("config", "check", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "ok (1 chains, 1 assets, 1 representations)" in ok.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text(
        GOOD.replace('asset = "ETH"', 'asset = "DOGE"').replace("chain_id = 1", "chain_id = 0")
    )
    res = _cli("config", "check", str(bad))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 or all(line.startswith(str(bad)) for line in lines)
    assert "chains.0.chain_id" in res.stderr
    assert "Traceback" not in res.stderr

    no_depth = tmp_path / "no-depth.toml"
    no_depth.write_text(GOOD.replace("liquidity_depth_usd = 1e9\n", ""))
    res = _cli("config", "check", str(no_depth))
    assert res.returncode == 1
    assert res.stderr.startswith(str(no_depth))
    assert "assets.0.liquidity_depth_usd: required, ETH can be collateral" in res.stderr
    assert "Traceback" not in res.stderr

    missing = _cli("config", "check", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr
