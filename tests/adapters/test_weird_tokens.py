"""Tokens that misbehave as real ones do, deployed on a devnet of this module's own
(contracts/src/weird/): each is read correctly or flagged, never read as a wrong number.

| token | expected |
|---|---|
| Bytes32Token (MKR-style bytes32 name/symbol) | balance read; name/symbol decoded |
| DevToken with 2 and 50 decimals | exact raw amounts |
| DevToken with 80 decimals | error: decimals() above 77 |
| DevToken holding 2^256-1 | exact |
| NoDecimalsToken | balance read with config decimals, flagged (warning) |
| BrokenToken: revert / 16 bytes / no data / 64 bytes | error each |
| an EOA configured as a token | error: no contract code |
| ERC1967Proxy over ProxiedToken | read through the proxy |
| DevVault (OpenZeppelin ERC-4626, decimals offset 3) | convertToAssets(shares), exact |
| NativeAliasToken marked native_alias | not read: the native coin counts it |
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from adapter_helpers import read_states, send

from adapters import calls as c
from adapters.balances import BalanceRead, read_token_meta
from adapters.evm import EvmAdapter
from crossmargin.core.config import Config, RepresentationConfig
from crossmargin.engine import Engine
from devnet import BackgroundDevnet, Devnet
from devnet.evm import DEPLOYER, artifact, calldata, decode_result, deploy_data
from devnet.rpc import Rpc

CHAIN = "ethereum"
HOLDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil account 1 (unlocked)
NOBODY = "0x000000000000000000000000000000000000dEaD"
EOA_TOKEN = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"  # anvil account 5: no code
MAX = (1 << 256) - 1
VAULT_DEPOSIT = 1_000 * 10**6
VAULT_DONATION = 333_333_333


@dataclass
class Weird:
    net: Devnet
    config: Config
    address: dict[str, str]  # symbol -> deployed address


def _b32(text: str) -> bytes:
    return text.encode().ljust(32, b"\0")


async def _deploy(net: Devnet) -> dict[str, str]:
    async with aiohttp.ClientSession() as session:
        rpc = Rpc(session, net.rpc_url(CHAIN), net.config.chain(CHAIN).chain_id)

        def dev(name: str, symbol: str, dec: int) -> tuple[None, str]:
            args = [name, symbol, dec]
            return None, deploy_data(artifact("DevToken"), ["string", "string", "uint8"], args)

        def plain(art: str, types: list[str] | None = None, args: list[Any] | None = None) -> Any:
            return None, deploy_data(artifact(art), types or [], args or [])

        order = ["MKR", "TWO", "FIFTY", "EIGHTY", "HUGE", "NODEC", "BRK1", "BRK2", "BRK3"]
        order += ["BRK4", "IMPL", "VUSDC", "ALIAS"]
        deployed = await send(
            rpc,
            DEPLOYER,
            [
                plain("Bytes32Token", ["bytes32", "bytes32"], [_b32("Maker"), _b32("MKR")]),
                dev("Two", "TWO", 2),
                dev("Fifty", "FIFTY", 50),
                dev("Eighty", "EIGHTY", 80),
                dev("Huge", "HUGE", 18),
                plain("NoDecimalsToken"),
                *(plain("BrokenToken", ["uint8"], [mode]) for mode in (1, 2, 3, 4)),
                plain("ProxiedToken"),
                dev("Vault USDC", "VUSDC", 6),
                plain("NativeAliasToken"),
            ],
        )
        a = dict(zip(order, deployed, strict=True))
        init = bytes.fromhex(
            calldata("initialize(string,string,uint8)", "Proxied USD", "PUSD", 6)[2:]
        )
        proxy_types = ["address", "bytes"]
        (a["PUSD"],) = await send(
            rpc, DEPLOYER, [plain("ERC1967Proxy", proxy_types, [a["IMPL"], init])]
        )
        vault_args = [a["VUSDC"], "Dev Vault USDC", "dvUSDC"]
        (a["dvUSDC"],) = await send(
            rpc, DEPLOYER, [plain("DevVault", ["address", "string", "string"], vault_args)]
        )
        mint = "mint(address,uint256)"
        await send(
            rpc,
            DEPLOYER,
            [
                (a["MKR"], calldata(mint, HOLDER, 5 * 10**18)),
                (a["TWO"], calldata(mint, HOLDER, 12_345)),
                (a["FIFTY"], calldata(mint, HOLDER, 7 * 10**50 + 1)),
                (a["EIGHTY"], calldata(mint, HOLDER, 1)),
                (a["HUGE"], calldata(mint, HOLDER, MAX)),
                (a["NODEC"], calldata(mint, HOLDER, 42 * 10**18)),
                (a["PUSD"], calldata(mint, HOLDER, 10**12)),
                (a["VUSDC"], calldata(mint, HOLDER, VAULT_DEPOSIT)),
            ],
        )
        await send(
            rpc,
            HOLDER,
            [
                (a["VUSDC"], calldata("approve(address,uint256)", a["dvUSDC"], MAX)),
                (a["dvUSDC"], calldata("deposit(uint256,address)", VAULT_DEPOSIT, HOLDER)),
            ],
        )  # then a donation to the vault: shares are worth a non-round amount
        await send(rpc, DEPLOYER, [(a["VUSDC"], calldata(mint, a["dvUSDC"], VAULT_DONATION))])
    a["EOA"] = EOA_TOKEN
    return a


def _config(config: Config, a: dict[str, str]) -> Config:
    def rep(symbol: str, asset: str, decimals: int, **kw: Any) -> RepresentationConfig:
        address = a[symbol]
        return RepresentationConfig(
            chain=CHAIN, asset=asset, symbol=symbol, address=address, decimals=decimals, **kw
        )

    extra = [
        rep("MKR", "ETH", 18),
        rep("TWO", "USDC", 2),
        rep("FIFTY", "USDC", 50),
        rep("EIGHTY", "USDC", 18),
        rep("HUGE", "USDC", 18),
        rep("NODEC", "USDC", 18),
        *(rep(f"BRK{m}", "USDC", 18) for m in (1, 2, 3, 4)),
        rep("EOA", "USDC", 6),
        rep("PUSD", "USDC", 6),
        rep("dvUSDC", "USDC", 6, standard="erc4626"),
        rep("ALIAS", "ETH", 18, native_alias=True),
    ]
    return config.model_copy(update={"representations": [*config.representations, *extra]})


@pytest.fixture(scope="module")
def weird(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Weird]:
    state: Path = tmp_path_factory.mktemp("weird-devnet")
    with BackgroundDevnet(state_dir=state, keeper=False) as net:
        address = asyncio.run(_deploy(net))
        yield Weird(net, _config(net.config, address), address)


async def _eth_call(w: Weird, to: str, sig: str, types: list[str], *args: Any) -> Any:
    async with aiohttp.ClientSession() as session:
        rpc = Rpc(session, w.net.rpc_url(CHAIN), 1)
        raw = await rpc.call("eth_call", [{"to": to, "data": calldata(sig, *args)}, "latest"])
    return decode_result(types, raw)[0]


def _by_symbol(balances: list[BalanceRead]) -> dict[str, BalanceRead]:
    return {b.rep.symbol: b for b in balances}


@pytest.mark.asyncio
async def test_each_weird_token_is_read_or_flagged(weird: Weird) -> None:
    chain = weird.config.chain(CHAIN)
    holder, nobody = await read_states(weird.config, chain, [HOLDER, NOBODY])
    assert holder.available, holder.error
    got = _by_symbol(holder.balances)

    def ok(symbol: str, amount: int, decimals: int) -> None:
        b = got[symbol]
        assert (b.raw_amount, b.error, b.warning, b.onchain_decimals) == (
            amount,
            None,
            None,
            decimals,
        ), b

    def bad(symbol: str, needle: str) -> None:
        b = got[symbol]
        assert b.raw_amount is None, b
        assert b.error is not None
        assert needle in b.error, b.error

    ok("MKR", 5 * 10**18, 18)
    ok("TWO", 12_345, 2)
    ok("FIFTY", 7 * 10**50 + 1, 50)
    ok("HUGE", MAX, 18)
    ok("PUSD", 10**12, 6)
    bad("EIGHTY", "above 77")
    bad("BRK1", "reverted")
    bad("BRK2", "got 16")
    bad("BRK3", "got 0")
    bad("BRK4", "got 64")
    bad("EOA", "no contract code")
    nodec = got["NODEC"]
    assert (nodec.raw_amount, nodec.error, nodec.onchain_decimals) == (42 * 10**18, None, 18)
    assert nodec.warning is not None
    assert "no decimals()" in nodec.warning

    # ERC-4626: the vault's own convertToAssets of the shares held, and OpenZeppelin's
    # formula with its virtual shares and assets (offset 3), rounding down.
    vault = weird.address["dvUSDC"]
    shares = await _eth_call(weird, vault, "balanceOf(address)", ["uint256"], HOLDER)
    total_assets = await _eth_call(weird, vault, "totalAssets()", ["uint256"])
    supply = await _eth_call(weird, vault, "totalSupply()", ["uint256"])
    assets = await _eth_call(weird, vault, "convertToAssets(uint256)", ["uint256"], shares)
    assert assets == shares * (total_assets + 1) // (supply + 10**3)
    assert VAULT_DEPOSIT < assets < VAULT_DEPOSIT + VAULT_DONATION
    v = got["dvUSDC"]
    assert (v.raw_amount, v.shares, v.error, v.onchain_decimals) == (assets, shares, None, 6)

    # totalSupply() rides along once per token (METHOD.md §4); a vault's counts shares.
    assert (got["MKR"].total_supply, got["MKR"].supply_error) == (5 * 10**18, None)
    assert got["HUGE"].total_supply == MAX  # the whole supply in one hand: still plausible
    assert (v.total_supply, v.supply_error) == (supply, None)
    assert got["ETH"].total_supply is None  # a native coin has none

    # The native alias is not read; the native coin is, once.
    assert "ALIAS" not in got
    native = await _eth_call(weird, c.MULTICALL3, "getEthBalance(address)", ["uint256"], HOLDER)
    assert got["ETH"].raw_amount == native > 0
    alias = await _eth_call(
        weird, weird.address["ALIAS"], "balanceOf(address)", ["uint256"], HOLDER
    )
    assert alias == native  # it is the same money

    # An empty account: zeros where the token answers, the same errors where it does not.
    empty = _by_symbol(nobody.balances)
    for symbol in ("MKR", "TWO", "FIFTY", "HUGE", "PUSD", "NODEC", "dvUSDC"):
        assert empty[symbol].raw_amount == 0, empty[symbol]
    for symbol in ("EIGHTY", "BRK1", "BRK2", "BRK3", "BRK4", "EOA"):
        assert empty[symbol].raw_amount is None
        assert empty[symbol].error == got[symbol].error


@pytest.mark.asyncio
async def test_bytes32_and_string_metadata(weird: Weird) -> None:
    a = weird.address
    async with aiohttp.ClientSession() as session:
        adapter = EvmAdapter(weird.config.chain(CHAIN), session)
        pin = await adapter.pin()
        meta = await read_token_meta(adapter, [a["MKR"], a["PUSD"], a["NODEC"], a["EOA"]], pin)
    mkr, pusd, nodec, eoa = meta
    assert (mkr.name, mkr.symbol, mkr.decimals, mkr.errors) == ("Maker", "MKR", 18, ())
    assert (pusd.name, pusd.symbol, pusd.decimals, pusd.errors) == ("Proxied USD", "PUSD", 6, ())
    assert (nodec.name, nodec.symbol, nodec.decimals) == ("No Decimals", "NODEC", None)
    assert (eoa.name, eoa.symbol, eoa.decimals) == (None, None, None)
    assert len(eoa.errors) == 3


@pytest.mark.asyncio
async def test_margin_report_flags_weird_positions_and_counts_nothing_twice(
    weird: Weird,
) -> None:
    async with Engine.connect(weird.config) as engine:
        report = await engine.margin(HOLDER, CHAIN)
        many = dict(zip([HOLDER, NOBODY], await engine.read([HOLDER, NOBODY]), strict=True))
    positions = {p.symbol: p for p in report.positions if p.chain_id == 1}
    for symbol in ("EIGHTY", "BRK1", "BRK2", "BRK3", "BRK4", "EOA"):
        assert positions[symbol].status == "error"
        assert positions[symbol].value_usd is None
    flagged = {w.detail.split(" ")[0] for w in report.warnings if w.code == "read_error"}
    assert {"EIGHTY", "BRK1", "BRK2", "BRK3", "BRK4", "EOA"} <= flagged
    assert positions["HUGE"].raw_amount == str(MAX)
    assert positions["HUGE"].status == positions["dvUSDC"].status == "ok"
    assert "implausible" not in {w.code for w in report.warnings}  # honest supplies
    assert positions["dvUSDC"].raw_amount is not None
    assert int(positions["dvUSDC"].raw_amount) > VAULT_DEPOSIT
    assert "ALIAS" not in positions
    eth_on_1 = [p for p in report.positions if p.chain_id == 1 and p.asset == "ETH"]
    assert sorted(p.symbol for p in eth_on_1) == ["ETH", "MKR"]  # MKR stands in for ETH here
    # the batch path reads the same figures as the one-account path
    holder_states = many[HOLDER]
    single = await read_states(weird.config, weird.config.chain(CHAIN), [HOLDER])
    assert holder_states[0].balances == single[0].balances
