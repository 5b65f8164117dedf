"""configs/mainnet.toml: validates with the RPC variables unset and reads exactly the ones
the README names; has the real networks' chain ids, a sequencer uptime feed on every L2,
a feed per asset per chain; lists every Aave v3 variable-debt token of its tokens (so no
Aave debt in them is hidden); and every address in it is EIP-55 and names its source.
docs/mainnet-protocols.md: its addresses are EIP-55 and its Morpho market ids are the
hashes of their parameters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest
from eth_abi.abi import encode
from eth_utils.address import is_checksum_address
from eth_utils.crypto import keccak

from crossmargin.cli import main
from crossmargin.core.config import ChainlinkFeedConfig, Config, load_config

ROOT = Path(__file__).resolve().parents[2]
PATH = ROOT / "configs" / "mainnet.toml"
README = ROOT / "README.md"
PROTOCOLS = ROOT / "docs" / "mainnet-protocols.md"

ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{40}\b")
AAVE_FIELD = re.compile(r"\[aave\] (AaveV3\w+\.\w+)")


class Reserve(NamedTuple):
    """One Aave v3 reserve: its underlying token and that reserve's variable-debt token."""

    field: str  # the address book's <TOKEN>_V_TOKEN field, as the config's comment names it
    underlying: str
    v_token: str
    decimals: int


# Every Aave v3 reserve, in every Aave v3 market on the four chains, whose underlying is a
# token configs/mainnet.toml lists. Source: github.com/bgd-labs/aave-address-book at
# f61c97628307d387ca93a78578970fe6db885029 (2026-05-01), src/AaveV3Ethereum.sol,
# AaveV3EthereumLido.sol, AaveV3EthereumEtherFi.sol, AaveV3EthereumHorizon.sol,
# AaveV3Arbitrum.sol, AaveV3Optimism.sol, AaveV3Base.sol: library AaveV3<Market>Assets,
# fields <TOKEN>_UNDERLYING, <TOKEN>_V_TOKEN and <TOKEN>_DECIMALS. Reserves of tokens the
# config does not list (USDT, wstETH, tBTC, ...) are not here: the config's comment says
# so, and METHOD.md §12's completeness check is what will see their debt.
WETH_L1 = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
USDC_L1 = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
WETH_OP = "0x4200000000000000000000000000000000000006"  # OP-stack predeploy (OP, Base)
CBBTC = "0xcbB7C0000aB88B473b1f5aFd9ef808440eed33Bf"  # same address on Ethereum and Base
AAVE_V3: dict[str, list[Reserve]] = {
    "ethereum": [
        Reserve(
            "AaveV3EthereumAssets.WETH_V_TOKEN",
            WETH_L1,
            "0xeA51d7853EEFb32b6ee06b1C12E6dcCA88Be0fFE",
            18,
        ),
        Reserve(
            "AaveV3EthereumAssets.WBTC_V_TOKEN",
            "0x2260FAC5E5542a773Aa44fBCfeDf7C193bc2C599",
            "0x40aAbEf1aa8f0eEc637E0E7d92fbfFB2F26A8b7B",
            8,
        ),
        Reserve(
            "AaveV3EthereumAssets.cbBTC_V_TOKEN",
            CBBTC,
            "0xeB284A70557EFe3591b9e6D9D720040E02c54a4d",
            8,
        ),
        Reserve(
            "AaveV3EthereumAssets.USDC_V_TOKEN",
            USDC_L1,
            "0x72E95b8931767C79bA4EeE721354d6E99a61D004",
            6,
        ),
        Reserve(
            "AaveV3EthereumLidoAssets.WETH_V_TOKEN",
            WETH_L1,
            "0x91b7d78BF92db564221f6B5AeE744D1727d1Dd1e",
            18,
        ),
        Reserve(
            "AaveV3EthereumLidoAssets.USDC_V_TOKEN",
            USDC_L1,
            "0xeD90dE2D824Ee766c6Fd22E90b12e598f681dc9F",
            6,
        ),
        Reserve(
            "AaveV3EthereumEtherFiAssets.USDC_V_TOKEN",
            USDC_L1,
            "0x9355032d747f1e08F8720CD01950E652eE15cdB7",
            6,
        ),
        Reserve(
            "AaveV3EthereumHorizonAssets.USDC_V_TOKEN",
            USDC_L1,
            "0x4139EcBe83d78ef5EFF0A6eDA6f894Be9D590FC7",
            6,
        ),
    ],
    "arbitrum": [
        Reserve(
            "AaveV3ArbitrumAssets.WETH_V_TOKEN",
            "0x82aF49447D8a07e3bd95BD0d56f35241523fBab1",
            "0x0c84331e39d6658Cd6e6b9ba04736cC4c4734351",
            18,
        ),
        Reserve(
            "AaveV3ArbitrumAssets.WBTC_V_TOKEN",
            "0x2f2a2543B76A4166549F7aaB2e75Bef0aefC5B0f",
            "0x92b42c66840C7AD907b4BF74879FF3eF7c529473",
            8,
        ),
        Reserve(
            "AaveV3ArbitrumAssets.USDCn_V_TOKEN",
            "0xaf88d065e77c8cC2239327C5EDb3A432268e5831",
            "0xf611aEb5013fD2c0511c9CD55c7dc5C1140741A6",
            6,
        ),
        Reserve(  # USDC.e
            "AaveV3ArbitrumAssets.USDC_V_TOKEN",
            "0xFF970A61A04b1cA14834A43f5dE4533eBDDB5CC8",
            "0xFCCf3cAbbe80101232d343252614b6A3eE81C989",
            6,
        ),
    ],
    "optimism": [
        Reserve(
            "AaveV3OptimismAssets.WETH_V_TOKEN",
            WETH_OP,
            "0x0c84331e39d6658Cd6e6b9ba04736cC4c4734351",
            18,
        ),
        Reserve(
            "AaveV3OptimismAssets.WBTC_V_TOKEN",
            "0x68f180fcCe6836688e9084f035309E29Bf0A2095",
            "0x92b42c66840C7AD907b4BF74879FF3eF7c529473",
            8,
        ),
        Reserve(
            "AaveV3OptimismAssets.USDCn_V_TOKEN",
            "0x0b2C639c533813f4Aa9D7837CAf62653d097Ff85",
            "0x5D557B07776D12967914379C71a1310e917C7555",
            6,
        ),
        Reserve(  # USDC.e
            "AaveV3OptimismAssets.USDC_V_TOKEN",
            "0x7F5c764cBc14f9669B88837ca1490cCa17c31607",
            "0xFCCf3cAbbe80101232d343252614b6A3eE81C989",
            6,
        ),
    ],
    "base": [  # no WBTC reserve on Aave v3 Base
        Reserve(
            "AaveV3BaseAssets.WETH_V_TOKEN",
            WETH_OP,
            "0x24e6e0795b3c7c71D965fCc4f371803d1c1DcA1E",
            18,
        ),
        Reserve(
            "AaveV3BaseAssets.cbBTC_V_TOKEN",
            CBBTC,
            "0x05e08702028de6AaD395DC6478b554a56920b9AD",
            8,
        ),
        Reserve(
            "AaveV3BaseAssets.USDC_V_TOKEN",
            "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
            "0x59dca05b6c26dbd64b5381374aAaC5CD05644C28",
            6,
        ),
        Reserve(  # USDbC
            "AaveV3BaseAssets.USDbC_V_TOKEN",
            "0xd9aAEc86B65D86f6A7B5B1b0c42FFA531710b6CA",
            "0x7376b2F323dC56fCd4C191B34163ac8a84702DAB",
            6,
        ),
    ],
}


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(PATH, env={})


def test_validates_with_default_endpoints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(PATH)]) == 0
    assert "ok (4 chains, 3 assets" in capsys.readouterr().out


def _config_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", PATH.read_text()))


def _readme_mainnet_paragraph() -> str:
    text = README.read_text()
    start = text.index("`configs/mainnet.toml` configures")
    end = text.find("\n\n", start)
    return text[start : None if end < 0 else end]


def test_readme_names_exactly_the_variables_the_config_reads() -> None:
    named = set(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", _readme_mainnet_paragraph()))
    assert named == _config_variables()
    assert named == {"ETHEREUM_RPC_URL", "ARBITRUM_RPC_URL", "OPTIMISM_RPC_URL", "BASE_RPC_URL"}


def test_each_variable_sets_its_chains_endpoint() -> None:
    env = {name: f"https://{name.lower()}.example/key" for name in _config_variables()}
    cfg = load_config(PATH, env=env)
    urls = {c.name: c.rpc_urls for c in cfg.chains}
    assert urls == {
        "ethereum": [env["ETHEREUM_RPC_URL"]],
        "arbitrum": [env["ARBITRUM_RPC_URL"]],
        "optimism": [env["OPTIMISM_RPC_URL"]],
        "base": [env["BASE_RPC_URL"]],
    }


def test_networks_feeds_and_sequencers(cfg: Config) -> None:
    assert {c.name: c.chain_id for c in cfg.chains} == {
        "ethereum": 1,
        "arbitrum": 42161,
        "optimism": 10,
        "base": 8453,
    }
    assert all(url.startswith("https://") for c in cfg.chains for url in c.rpc_urls)
    sequencers = {c.name: c.sequencer_uptime_feed for c in cfg.chains}
    assert sequencers == {
        "ethereum": None,
        "arbitrum": "0xFdB631F5EE196F0ed6FAa767959853A9F217697D",
        "optimism": "0x371EAD81c9102C9BF4874A9075FFFf170F2Ee389",
        "base": "0xBCF85224fc0756B9Fa45aA7892530B47e10b6433",
    }
    for asset in cfg.assets:
        assert sorted(f.chain for f in asset.feeds) == sorted(sequencers)
        for f in asset.feeds:
            assert isinstance(f, ChainlinkFeedConfig)
            assert f.decimals == 8
            assert f.heartbeat_s in (1500, 3900, 86700)  # documented heartbeat + 300 s
    eth_l1 = next(f for f in cfg.asset("ETH").feeds if f.chain == "ethereum")
    assert eth_l1.address == "0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419"
    addresses = [f.address for a in cfg.assets for f in a.feeds]
    assert len(set(addresses)) == len(addresses)
    for chain in cfg.chains:
        reps = [r for r in cfg.representations if r.chain == chain.name]
        assert {r.asset for r in reps} == {"ETH", "BTC", "USDC"}
        assert any(r.kind == "debt" for r in reps)


@pytest.mark.parametrize("chain", sorted(AAVE_V3))
def test_every_aave_v3_debt_token_of_a_listed_token_is_listed(cfg: Config, chain: str) -> None:
    """Every token the config lists on the chain has its Aave v3 reserves in the table,
    every such reserve's variable-debt token is a debt representation of the same asset
    and decimals, and the config lists no debt token the table does not source."""
    reps = [r for r in cfg.representations if r.chain == chain]
    tokens = {r.address: r for r in reps if r.kind == "collateral" and not r.is_native}
    debts = {r.address: r for r in reps if r.kind == "debt"}
    table = AAVE_V3[chain]
    assert {r.underlying for r in table} == set(tokens), "a listed token has no Aave row"
    for reserve in table:
        debt = debts.get(reserve.v_token)
        assert debt is not None, f"{chain}: {reserve.field} is not listed"
        assert debt.asset == tokens[reserve.underlying].asset, reserve.field
        assert debt.decimals == reserve.decimals == tokens[reserve.underlying].decimals
        assert not debt.bridged, "a debt is owed in full: never shrunk by a bridged depeg"
    assert set(debts) == {r.v_token for r in table}


def _source_comment(lines: list[str], i: int) -> str:
    """The comment that sources line i: on the line itself, else the nearest comment above
    it within its entry (the `[[...]]` header's inline comment counts; a blank line ends
    the entry). A comment line is sourced by itself or the 3 comment lines above it."""
    line = lines[i]
    if line.lstrip().startswith("#"):
        block = [line]
        j = i - 1
        while j >= max(0, i - 3) and lines[j].lstrip().startswith("#"):
            block.append(lines[j])
            j -= 1
        return "\n".join(block)
    if "#" in line:
        return line[line.index("#") :]
    j = i - 1
    while j >= 0 and lines[j].strip():
        if "#" in lines[j]:
            return lines[j][lines[j].index("#") :]
        j -= 1
    return ""


def test_every_address_is_eip55_and_names_its_source() -> None:
    text = PATH.read_text()
    lines = text.splitlines()
    head = text[text.index("# Sources:") : text.index("# Heartbeats:")]
    tags = set(re.findall(r"^#\s+(\[[a-z-]+\])", head, re.MULTILINE))
    assert tags == {"[aave]", "[cl-seq]", "[cl-feeds]", "[pyth]", "[morpho-addr]", "[morpho-fix]"}
    fields = {(chain, r.v_token): r.field for chain, rs in AAVE_V3.items() for r in rs}
    chain = ""
    checked = 0
    for i, line in enumerate(lines):
        if m := re.match(r'chain = "(\w+)"', line):
            chain = m.group(1)
        for address in ADDRESS.findall(line):
            checked += 1
            assert is_checksum_address(address), f"line {i + 1}: {address} is not EIP-55"
            comment = _source_comment(lines, i)
            assert any(tag in comment for tag in tags), f"line {i + 1}: no source tag"
            if "[aave]" in comment and not line.lstrip().startswith("#"):
                field = AAVE_FIELD.search(comment)
                assert field, f"line {i + 1}: names no address-book field"
                if (chain, address) in fields:
                    assert field.group(1) == fields[chain, address], f"line {i + 1}"
    assert checked >= 50


def test_protocols_load_checksummed_unique_and_resolve(cfg: Config) -> None:
    """§12 entries: every Aave v3 pool of the four chains and Morpho Blue on ethereum and
    base; addresses EIP-55 and unique per chain; every tagged debt token resolves to its
    pool, and every pool has its listed debt tokens (else all its debt reads unlisted);
    Morpho market ids are the config's own hashes and the ones documented."""
    aave = [p for p in cfg.protocols if p.kind == "aave_v3"]
    assert sorted((p.chain, p.name or "") for p in aave) == [
        ("arbitrum", ""),
        ("base", ""),
        ("ethereum", "Core"),
        ("ethereum", "EtherFi"),
        ("ethereum", "Horizon"),
        ("ethereum", "Prime"),
        ("optimism", ""),
    ]
    for chain in {p.chain for p in cfg.protocols}:
        here = [p.address for p in cfg.protocols if p.chain == chain]
        assert len(here) == len(set(here)), chain
        assert all(is_checksum_address(a) for a in here)
    for rep in cfg.representations:
        if rep.kind == "debt":
            assert rep.protocol == "aave_v3", rep.symbol
            assert cfg.protocol_of(rep) is not None, rep.symbol
    for p in aave:
        listed = [r for r in cfg.representations if cfg.protocol_of(r) == p]
        assert listed, f"{p.chain} {p.label}: no debt token listed"
    morpho = {p.chain: p for p in cfg.protocols if p.kind == "morpho_blue"}
    assert set(morpho) == {"ethereum", "base"}
    documented = PROTOCOLS.read_text()
    for p in morpho.values():
        assert p.markets
        for m in p.markets:
            assert m.id == m.market_id_hex
            assert m.market_id_hex in documented
            for address in (m.loan_token, m.collateral_token, m.oracle, m.irm):
                assert is_checksum_address(address)
            assert len(cfg.morpho_representations(p.chain)) == 2 * len(p.markets)


def _markdown_rows(text: str) -> list[dict[str, str]]:
    """The rows of the markdown table `text` starts with, by header name."""
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for s in lines[2:]:
        if not s.startswith("|"):
            break
        cells = [c.strip().strip("`") for c in s.strip("|").split("|")]
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def test_protocol_addresses_are_eip55_and_market_ids_hash_their_parameters() -> None:
    text = PROTOCOLS.read_text()
    addresses = ADDRESS.findall(text)
    assert len(addresses) > 40
    assert [a for a in addresses if not is_checksum_address(a)] == []
    markets = _markdown_rows(text[text.index("| chain | market | id |") :])
    assert {r["chain"] for r in markets} == {"ethereum", "base"}
    assert len(markets) >= 6
    for row in markets:
        params = encode(
            ["address", "address", "address", "address", "uint256"],
            [
                row["loan token"],
                row["collateral token"],
                row["oracle"],
                row["irm"],
                int(row["lltv"]),
            ],
        )
        assert "0x" + keccak(params).hex() == row["id"], row["market"]
