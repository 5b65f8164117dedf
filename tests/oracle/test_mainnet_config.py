"""configs/mainnet.toml: validates with the RPC variables unset, has the real networks'
chain ids, a sequencer uptime feed on every L2, a feed per asset per chain, and names
a source for its addresses. docs/mainnet-protocols.md: its addresses are EIP-55 and its
Morpho market ids are the hashes of their parameters."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from eth_abi.abi import encode
from eth_utils.address import is_checksum_address
from eth_utils.crypto import keccak

from crossmargin.cli import main
from crossmargin.config import ChainlinkFeedConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
PATH = ROOT / "configs" / "mainnet.toml"
PROTOCOLS = ROOT / "docs" / "mainnet-protocols.md"
ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{40}\b")


def test_validates_with_default_endpoints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(PATH)]) == 0
    assert "ok (4 chains, 3 assets" in capsys.readouterr().out


def test_networks_feeds_and_sequencers() -> None:
    cfg = load_config(PATH, env={})
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


def test_every_address_has_a_source_nearby() -> None:
    """Each line with an address either says where it comes from or sits under a
    comment block that does (within the few lines above it)."""
    lines = PATH.read_text().splitlines()
    for i, line in enumerate(lines):
        if not re.search(r"0x[0-9a-fA-F]{40}\b", line) or line.lstrip().startswith("#"):
            continue
        context = "\n".join(lines[max(0, i - 8) : i + 1])
        assert "#" in context, f"line {i + 1} has no comment near it"
        assert re.search(r"[Ss]ource|Aave v3|Circle|WETH|Chainlink|predeploy|bridge|cbBTC|wbtc",
                         context), f"line {i + 1}: no source named"  # fmt: skip


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
