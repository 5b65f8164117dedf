"""Aave v3 and Morpho Blue on the devnet: deployed as the protocols deploy themselves, the
demo accounts' positions taken by real transactions, and the codecs of adapters/protocols
reading exactly what the protocols' own view functions return at a pinned block, before
and after interest accrues.

The protocols' side is read independently: plain JSON-RPC and eth_abi at the pinned block
hash (Aave's AaveProtocolDataProvider and Pool views; Morpho's MorphoBalancesLib through a
lens placed with anvil_setCode; Morpho itself by simulating borrows). This module runs its
own devnet, because it moves chain time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from devnet_rpc import RpcFailure, data, rpc
from eth_abi import decode
from eth_utils import to_checksum_address

from adapters import calls as c
from adapters.evm import BlockPin, EvmAdapter
from adapters.protocols import aave, morpho
from devnet import BackgroundDevnet, Devnet
from devnet.manifest import ChainEntry
from devnet.protocols.entries import MorphoMarketEntry
from devnet.scenario import load_scenario, to_raw

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = load_scenario(ROOT / "configs" / "devnet-scenario.toml")
LENS = "0x0000000000000000000000000000000000001e45"
PROTOCOL_DEPLOYER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # anvil account 2
PARAMS = "(address,address,address,address,uint256)"
RESERVE_CONFIG = ["uint256"] * 5 + ["bool"] * 5
USER_RESERVE = ["uint256"] * 7 + ["uint40", "bool"]
MONTH = 30 * 86400


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with BackgroundDevnet(state_dir=tmp_path_factory.mktemp("protocols"), keeper=False) as n:
        lens = json.loads((ROOT / "contracts/artifacts/MorphoLens.json").read_text())
        url = n.rpc_url("base")
        rpc(url, "anvil_setCode", LENS, lens["deployedBytecode"])
        rpc(url, "evm_mine")
        yield n


def call_at(url: str, block: str, to: str, sig: str, out: list[str], *args: Any) -> Any:
    """A view call at a block hash, encoded and decoded with eth_abi (not our codecs);
    the argument types are the signature's. One output: the value, else the tuple."""
    types = _split(sig[sig.index("(") + 1 : -1])
    raw = rpc(
        url, "eth_call", {"to": to, "data": data(sig, types, list(args))}, {"blockHash": block}
    )
    got = _checksummed(decode(out, bytes.fromhex(raw[2:])))
    return got[0] if len(out) == 1 else got


def _checksummed(value: Any) -> Any:
    """eth_abi decodes addresses in lower case; the manifest has them checksummed."""
    if isinstance(value, tuple | list):
        return tuple(_checksummed(v) for v in value)
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        return to_checksum_address(value)
    return value


def _split(types: str) -> list[str]:
    out, depth, start = [], 0, 0
    for i, ch in enumerate(types):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(types[start:i])
            start = i + 1
    return [*out, types[start:]] if types else []


def head(url: str) -> str:
    return str(rpc(url, "eth_getBlockByNumber", "latest", False)["hash"])


async def read(
    net: Devnet, chain: str, calls: list[c.Call], pin: BlockPin | None = None
) -> tuple[BlockPin, list[c.CallResult]]:
    """Through the service's own reader: one pinned block, Multicall3 by block hash."""
    async with aiohttp.ClientSession() as session:
        adapter = EvmAdapter(net.config.chain(chain), session)
        pin = pin or await adapter.pin()
        return pin, await adapter.read(calls, pin)


def feed(net: Devnet, chain: str, symbol: str) -> str:
    rep = next(r for r in net.config.representations if r.chain == chain and r.symbol == symbol)
    return next(f.address for f in net.config.asset(rep.asset).feeds if f.chain == chain)


def entry(net: Devnet, name: str) -> ChainEntry:
    return net.manifest.chain(name)


# ---------------------------------------------------------------- deployment


def test_protocols_start_fast_and_are_where_the_manifest_says(net: Devnet) -> None:
    assert net.manifest.ready_after_s < 30  # a cold start, every protocol deployed
    kinds = {
        c.name: (c.aave_v3 and c.aave_v3.pool_kind, bool(c.morpho_blue))
        for c in net.manifest.chains
    }
    assert kinds == {
        "ethereum": ("Pool", False),
        "arbitrum": ("L2Pool", False),
        "optimism": (None, False),
        "base": (None, True),
    }
    eth = entry(net, "ethereum")
    assert eth.aave_v3 is not None
    dai = eth.aave_v3.reserve("DAI")
    assert not dai.in_config
    assert eth.extra_tokens == {"DAI": dai.underlying}
    assert dai.underlying not in {r.address for r in net.config.representations}


@pytest.mark.parametrize("name", ["ethereum", "arbitrum"])
def test_aave_is_wired_and_configured_as_the_scenario_says(net: Devnet, name: str) -> None:
    e = entry(net, name)
    a = e.aave_v3
    assert a is not None
    url, block = e.rpc_url, head(e.rpc_url)
    spec = next(m for m in SCENARIO.protocols.aave_v3 if m.chain == name)
    provider = a.addresses_provider
    assert call_at(url, block, provider, "getMarketId()", ["string"]) == (
        f"Crossmargin Devnet {spec.network}"
    )
    assert call_at(url, block, a.pool, "ADDRESSES_PROVIDER()", ["address"]) == provider
    assert call_at(url, block, a.pool, "getReservesList()", ["address[]"]) == tuple(
        r.underlying for r in a.reserves
    )
    for r, s in zip(a.reserves, spec.reserves, strict=True):
        # AaveOracle prices each reserve from its Chainlink feed, read as Aave reads it.
        price = call_at(url, block, a.oracle, "getAssetPrice(address)", ["uint256"], r.underlying)
        assert price == call_at(url, block, r.price_source, "latestAnswer()", ["int256"]) > 0
        cfg = call_at(
            url,
            block,
            a.data_provider,
            "getReserveConfigurationData(address)",
            RESERVE_CONFIG,
            r.underlying,
        )
        bps = [int(Fraction(x) * 100) for x in (s.ltv, s.liquidation_threshold, s.reserve_factor)]
        bonus = 10_000 + int(Fraction(s.liquidation_bonus) * 100)
        assert cfg[:5] == (r.decimals, bps[0], bps[1], bonus, bps[2])
        # collateral usable, borrowing on, stable borrowing off, active, not frozen
        assert cfg[5:] == (True, True, False, True, False)
    if name == "arbitrum":  # L2Pool: Aave's sequencer check over the chain's uptime feed
        sentinel = a.price_oracle_sentinel
        assert sentinel is not None
        assert call_at(url, block, provider, "getPriceOracleSentinel()", ["address"]) == sentinel
        assert call_at(url, block, sentinel, "getSequencerOracle()", ["address"]) == (
            e.sequencer_uptime_feed
        )
        assert call_at(url, block, sentinel, "isBorrowAllowed()", ["bool"]) is True
    else:
        assert a.price_oracle_sentinel is None


def test_morpho_markets_and_oracles(net: Devnet) -> None:
    e = entry(net, "base")
    m = e.morpho_blue
    assert m is not None
    url, block = e.rpc_url, head(e.rpc_url)
    assert call_at(url, block, m.morpho, "owner()", ["address"]) == PROTOCOL_DEPLOYER
    decimals = {r.symbol: r.decimals for r in net.config.representations if r.chain == "base"}
    for market in m.markets:
        coll, loan = market.name.split("/")
        p_coll = call_at(url, block, feed(net, "base", coll), "latestAnswer()", ["int256"])
        p_loan = call_at(url, block, feed(net, "base", loan), "latestAnswer()", ["int256"])
        price = call_at(url, block, market.oracle, "price()", ["uint256"])
        # One collateral token in loan tokens, 1e36-scaled, as Morpho's IOracle defines it.
        assert price == p_coll * 10 ** (36 + decimals[loan] - decimals[coll]) // p_loan
        assert call_at(url, block, m.morpho, "isLltvEnabled(uint256)", ["bool"], int(market.lltv))
        state = call_at(url, block, m.morpho, "market(bytes32)", ["uint128"] * 6, _id(market))
        assert state[4] > 0
        assert state[5] == int(market.fee)


def _id(market: MorphoMarketEntry) -> bytes:
    return bytes.fromhex(market.id[2:])


# ---------------------------------------------------------------- Aave positions


@dataclass(frozen=True)
class AaveRead:
    pin: BlockPin
    account: aave.AaveAccountData
    configuration: int
    reserves: dict[str, aave.AaveReserveData]
    supplied: dict[str, int]  # aToken balanceOf
    borrowed: dict[str, int]  # variable debt token balanceOf


async def read_aave(net: Devnet, chain: str, user: str, pin: BlockPin | None = None) -> AaveRead:
    """Everything about one Aave account in one multicall at one pinned block."""
    a = entry(net, chain).aave_v3
    assert a is not None
    calls = [aave.user_account_data(a.pool, user), aave.user_configuration(a.pool, user)]
    for r in a.reserves:
        calls += [
            aave.reserve_data(a.pool, r.underlying),
            c.balance_of(r.a_token, user),
            c.balance_of(r.variable_debt_token, user),
        ]
    pin, res = await read(net, chain, calls, pin)
    reserves, supplied, borrowed = {}, {}, {}
    for i, r in enumerate(a.reserves):
        reserves[r.symbol] = aave.decode_reserve_data(res[2 + 3 * i])
        supplied[r.symbol] = c.decode_uint(res[3 + 3 * i], "aToken balanceOf")
        borrowed[r.symbol] = c.decode_uint(res[4 + 3 * i], "debt balanceOf")
    return AaveRead(
        pin,
        aave.decode_user_account_data(res[0]),
        aave.decode_user_configuration(res[1]),
        reserves,
        supplied,
        borrowed,
    )


def assert_aave_matches_the_protocol(net: Devnet, chain: str, user: str, got: AaveRead) -> None:
    """The codec's figures equal the Pool's and the data provider's own at the same block."""
    e = entry(net, chain)
    a = e.aave_v3
    assert a is not None
    url, block = e.rpc_url, got.pin.hash
    own = call_at(url, block, a.pool, "getUserAccountData(address)", ["uint256"] * 6, user)
    hf = own[5] if own[1] else None
    assert (*own[:5], hf) == (
        got.account.total_collateral_base,
        got.account.total_debt_base,
        got.account.available_borrows_base,
        got.account.current_liquidation_threshold,
        got.account.ltv,
        got.account.health_factor,
    )
    for r in a.reserves:
        data = got.reserves[r.symbol]
        assert (data.id, data.a_token, data.variable_debt_token) == (
            r.id,
            r.a_token,
            r.variable_debt_token,
        )
        user_reserve = call_at(
            url,
            block,
            a.data_provider,
            "getUserReserveData(address,address)",
            USER_RESERVE,
            r.underlying,
            user,
        )
        a_balance, stable_debt, variable_debt = user_reserve[:3]
        assert (got.supplied[r.symbol], got.borrowed[r.symbol], 0) == (
            a_balance,
            variable_debt,
            stable_debt,
        )
        assert aave.is_collateral(got.configuration, r.id) == user_reserve[8]
        assert aave.is_borrowing(got.configuration, r.id) == (variable_debt > 0)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "chain"), [("erin", "ethereum"), ("erin", "arbitrum"), ("frank", "ethereum")]
)
async def test_aave_positions_are_read_as_the_protocol_reports_them(
    net: Devnet, name: str, chain: str
) -> None:
    account = net.account(name)
    got = await read_aave(net, chain, account.address)
    assert_aave_matches_the_protocol(net, chain, account.address, got)
    # The real transactions gave what the scenario says (plus the interest since).
    for p in account.positions:
        if p.chain != chain:
            continue
        have = got.supplied[p.symbol] if p.action == "supply" else got.borrowed[p.symbol]
        assert int(p.raw) - 1 <= have <= int(p.raw) * (1 + Fraction(1, 10**6)), p
        a_entry = entry(net, chain).aave_v3
        assert a_entry is not None
        reserve_id = a_entry.reserve(p.symbol).id
        if p.action == "supply":
            assert aave.is_collateral(got.configuration, reserve_id) == p.collateral


@pytest.mark.asyncio
async def test_erin_is_close_to_aaves_liquidation_on_arbitrum(net: Devnet) -> None:
    got = await read_aave(net, "arbitrum", net.account("erin").address)
    health = got.account.health
    assert health is not None
    assert 1 < health < Fraction(105, 100)
    assert got.account.available_borrows_base > 0  # still below its LTV


@pytest.mark.asyncio
async def test_franks_aave_debt_includes_a_reserve_the_config_does_not_list(net: Devnet) -> None:
    a = entry(net, "ethereum").aave_v3
    assert a is not None
    got = await read_aave(net, "ethereum", net.account("frank").address)
    listed_debt_tokens = {r.address for r in net.config.representations if r.kind == "debt"}
    borrowed = {r.symbol for r in a.reserves if r.id in aave.borrowing_ids(got.configuration)}
    assert borrowed == {"USDC", "DAI"}
    unlisted = {
        r.symbol
        for r in a.reserves
        if r.symbol in borrowed and r.variable_debt_token not in listed_debt_tokens
    }
    assert "DAI" in unlisted
    assert not a.reserve("DAI").in_config
    # Aave's own total is the sum of every borrowed reserve at its oracle's price (rounded
    # down per reserve, as GenericLogic does): the DAI part is what config cannot see.
    url = entry(net, "ethereum").rpc_url
    total = 0
    for symbol in borrowed:
        r = a.reserve(symbol)
        price = call_at(
            url, got.pin.hash, a.oracle, "getAssetPrice(address)", ["uint256"], r.underlying
        )
        total += got.borrowed[symbol] * price // 10**r.decimals
    assert total == got.account.total_debt_base
    dai_part = (
        got.borrowed["DAI"]
        * call_at(
            url,
            got.pin.hash,
            a.oracle,
            "getAssetPrice(address)",
            ["uint256"],
            a.reserve("DAI").underlying,
        )
        // 10**18
    )
    assert dai_part >= to_raw("4000", 8)  # 4000 USD at 8 decimals, and growing


# ---------------------------------------------------------------- Morpho positions


@dataclass(frozen=True)
class MorphoRead:
    pin: BlockPin
    params: morpho.MarketParams
    stored: morpho.MorphoMarket  # market() as stored (as of its lastUpdate)
    rate: int | None
    accrued: morpho.Accrued
    position: morpho.MorphoPosition
    price: int

    @property
    def borrowed(self) -> int:
        return morpho.borrow_assets(self.position, self.accrued.market)

    @property
    def supplied(self) -> int:
        return morpho.supply_assets(self.position, self.accrued.market)

    @property
    def health(self) -> morpho.MorphoHealth:
        return morpho.health(self.position, self.accrued.market, self.params, self.price)


async def read_morpho(
    net: Devnet, market: MorphoMarketEntry, user: str, pin: BlockPin | None = None
) -> MorphoRead:
    """Round 1: params, market, position, oracle price; round 2 (same pin): the IRM's rate."""
    m = entry(net, "base").morpho_blue
    assert m is not None
    mid = _id(market)
    calls = [
        morpho.market_params(m.morpho, mid),
        morpho.market(m.morpho, mid),
        morpho.position(m.morpho, mid, user),
        morpho.oracle_price(market.oracle),
    ]
    pin, res = await read(net, "base", calls, pin)
    params = morpho.decode_market_params(res[0])
    assert params.id == mid
    stored = morpho.decode_market(res[1])
    rate = None
    if morpho.needs_rate(stored, params, pin.timestamp):
        _, (r,) = await read(net, "base", [morpho.borrow_rate_view(params, stored)], pin)
        rate = morpho.decode_rate(r)
    accrued = morpho.accrue(stored, params, pin.timestamp, rate)
    return MorphoRead(
        pin,
        params,
        stored,
        rate,
        accrued,
        morpho.decode_position(res[2]),
        morpho.decode_price(res[3]),
    )


def assert_morpho_matches_the_protocol(
    net: Devnet, market: MorphoMarketEntry, user: str, got: MorphoRead
) -> None:
    """Morpho's own MorphoBalancesLib at the same block gives the same figures."""
    m = entry(net, "base").morpho_blue
    assert m is not None
    url, block = entry(net, "base").rpc_url, got.pin.hash
    params = (
        got.params.loan_token,
        got.params.collateral_token,
        got.params.oracle,
        got.params.irm,
        got.params.lltv,
    )
    sig = f"expectedMarketBalances(address,{PARAMS})"
    totals = call_at(url, block, LENS, sig, ["uint256"] * 4, m.morpho, params)
    a = got.accrued.market
    assert totals == (
        a.total_supply_assets,
        a.total_supply_shares,
        a.total_borrow_assets,
        a.total_borrow_shares,
    )
    borrow = call_at(
        url,
        block,
        LENS,
        f"expectedBorrowAssets(address,{PARAMS},address)",
        ["uint256"],
        m.morpho,
        params,
        user,
    )
    supply = call_at(
        url,
        block,
        LENS,
        f"expectedSupplyAssets(address,{PARAMS},address)",
        ["uint256"],
        m.morpho,
        params,
        user,
    )
    assert (got.borrowed, got.supplied) == (borrow, supply)


@pytest.mark.asyncio
@pytest.mark.parametrize("market_name", ["WETH/USDC", "WBTC/USDC"])
async def test_morpho_positions_are_read_as_the_protocol_reports_them(
    net: Devnet, market_name: str
) -> None:
    m = entry(net, "base").morpho_blue
    assert m is not None
    market = m.market(market_name)
    frank = net.account("frank")
    got = await read_morpho(net, market, frank.address)
    assert_morpho_matches_the_protocol(net, market, frank.address, got)
    for p in frank.positions:
        if p.market != market_name:
            continue
        if p.action == "collateral":
            assert got.position.collateral == int(p.raw)
        else:
            have = got.borrowed if p.action == "borrow" else got.supplied
            assert int(p.raw) - 1 <= have <= int(p.raw) * (1 + Fraction(1, 10**6)), p


@pytest.mark.asyncio
async def test_morphos_own_borrow_check_agrees_with_the_codecs_headroom(net: Devnet) -> None:
    """Simulated at the pinned block from frank: the codec's available borrow goes
    through Morpho, two units more than the headroom do not."""
    m = entry(net, "base").morpho_blue
    assert m is not None
    market = m.market("WETH/USDC")
    frank = net.account("frank").address
    got = await read_morpho(net, market, frank)
    h = got.health
    assert h.health is not None
    assert h.health > 1
    assert 0 < h.available_borrow < h.liquidity
    params = (
        got.params.loan_token,
        got.params.collateral_token,
        got.params.oracle,
        got.params.irm,
        got.params.lltv,
    )
    sig = f"borrow({PARAMS},uint256,uint256,address,address)"
    types = [PARAMS, "uint256", "uint256", "address", "address"]

    def borrow(amount: int) -> Any:
        tx = {
            "from": frank,
            "to": m.morpho,
            "data": data(sig, types, [params, amount, 0, frank, frank]),
        }
        return rpc(entry(net, "base").rpc_url, "eth_call", tx, {"blockHash": got.pin.hash})

    borrow(h.available_borrow)
    with pytest.raises(RpcFailure, match="insufficient collateral"):
        borrow(h.max_borrow - h.borrowed + 2)


# ---------------------------------------------------------------- interest accrual


def mined(url: str, tx_hash: str) -> Any:
    """The receipt, once the (automining) node has mined the transaction."""
    for _ in range(100):
        receipt = rpc(url, "eth_getTransactionReceipt", tx_hash)
        if receipt is not None:
            return receipt
        time.sleep(0.05)
    raise AssertionError(f"not mined: {tx_hash} {rpc(url, 'txpool_inspect')}")


def _mine_after(url: str, seconds: int) -> None:
    rpc(url, "evm_increaseTime", seconds)
    rpc(url, "evm_mine")


@pytest.mark.asyncio
async def test_interest_accrues_and_is_read_exactly_at_the_pinned_block(net: Devnet) -> None:
    erin, frank = net.account("erin").address, net.account("frank").address
    m = entry(net, "base").morpho_blue
    assert m is not None
    market = m.market("WETH/USDC")
    before_aave = await read_aave(net, "arbitrum", erin)
    before_morpho = await read_morpho(net, market, frank)
    for chain in ("arbitrum", "base"):
        _mine_after(entry(net, chain).rpc_url, MONTH)

    after_aave = await read_aave(net, "arbitrum", erin)
    assert after_aave.pin.timestamp >= before_aave.pin.timestamp + MONTH
    assert after_aave.borrowed["USDC"] > before_aave.borrowed["USDC"]
    assert after_aave.supplied["WETH"] >= before_aave.supplied["WETH"]
    assert after_aave.account.health_factor is not None
    assert before_aave.account.health_factor is not None
    assert after_aave.account.health_factor < before_aave.account.health_factor
    assert_aave_matches_the_protocol(net, "arbitrum", erin, after_aave)

    after_morpho = await read_morpho(net, market, frank)
    assert after_morpho.stored == before_morpho.stored  # nobody touched the market...
    assert after_morpho.rate is not None
    assert after_morpho.accrued.interest > 0
    assert after_morpho.borrowed > before_morpho.borrowed  # ...yet the debt grew
    assert_morpho_matches_the_protocol(net, market, frank, after_morpho)

    # A pinned block reads the same later: the figures belong to the block, not the clock.
    assert await read_aave(net, "arbitrum", erin, before_aave.pin) == before_aave
    assert await read_morpho(net, market, frank, before_morpho.pin) == before_morpho

    # A real accrual transaction 12 s later leaves on chain exactly what the codec computes
    # for that time from the state it read (IrmMock's rate depends on the totals alone).
    url = entry(net, "base").rpc_url
    later = after_morpho.pin.timestamp + 12
    rpc(url, "evm_setNextBlockTimestamp", later)
    tx = {
        "from": PROTOCOL_DEPLOYER,
        "to": m.morpho,
        "data": data(
            f"accrueInterest({PARAMS})",
            [PARAMS],
            [
                (
                    after_morpho.params.loan_token,
                    after_morpho.params.collateral_token,
                    after_morpho.params.oracle,
                    after_morpho.params.irm,
                    after_morpho.params.lltv,
                )
            ],
        ),
    }
    receipt = mined(url, rpc(url, "eth_sendTransaction", tx))
    assert receipt["status"] == "0x1"
    on_chain = call_at(
        url, receipt["blockHash"], m.morpho, "market(bytes32)", ["uint128"] * 6, _id(market)
    )
    expected = morpho.accrue(
        after_morpho.stored, after_morpho.params, later, after_morpho.rate
    ).market
    assert on_chain == (
        expected.total_supply_assets,
        expected.total_supply_shares,
        expected.total_borrow_assets,
        expected.total_borrow_shares,
        expected.last_update,
        expected.fee,
    )
    # The fee (10% of the interest) went to the fee recipient as exactly those shares.
    shares = [
        call_at(
            url,
            block,
            m.morpho,
            "position(bytes32,address)",
            ["uint256", "uint128", "uint128"],
            _id(market),
            PROTOCOL_DEPLOYER,
        )[0]
        for block in (after_morpho.pin.hash, receipt["blockHash"])
    ]
    accrued = morpho.accrue(after_morpho.stored, after_morpho.params, later, after_morpho.rate)
    assert shares[1] - shares[0] == accrued.fee_shares > 0
