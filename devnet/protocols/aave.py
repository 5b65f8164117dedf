"""Aave v3 on one devnet chain, deployed as Aave's own scripts do (aave/deploy-v3).

Addresses provider, ACL manager (the deployer is ACL admin and pool admin), the seven
logic libraries linked into Pool (L2Pool on the L2s) and ConfiguratorLogic into
PoolConfigurator, both behind the provider's proxies; AaveOracle over the devnet's
Chainlink feeds (USD, 8 decimals); the protocol data provider; on the L2s a
PriceOracleSentinel over the chain's sequencer uptime feed; AToken, StableDebtToken
and VariableDebtToken implementations; one DefaultReserveInterestRateStrategy per
rate set; then the reserves, their collateral parameters, borrowing and reserve factor.
"""

from __future__ import annotations

from collections.abc import Mapping

from crossmargin.core.config import ChainConfig
from devnet.errors import DevnetError
from devnet.evm import artifact, create_address
from devnet.protocols.entries import AaveEntry, AaveReserveEntry
from devnet.protocols.plan import PROTOCOL_DEPLOYER, ZERO, Stream, Token
from devnet.protocols.spec import AaveMarket, ProtocolsSpec, RateStrategy, percent

RAY = 10**27
BPS = 10_000
# The pool's libraries in deploy order: FlashLoanLogic links BorrowLogic, so it comes after.
LOGIC = (
    "SupplyLogic",
    "BorrowLogic",
    "LiquidationLogic",
    "EModeLogic",
    "BridgeLogic",
    "FlashLoanLogic",
    "PoolLogic",
)
INIT_RESERVE = (
    "(address,address,address,uint8,address,address,address,address,"
    "string,string,string,string,string,string,bytes)"
)
INIT_GAS_PER_RESERVE = 2_500_000


def _rates(rates: RateStrategy) -> list[int]:
    """Constructor numbers after the provider: variable-rate curve in rays, stable off."""
    curve = [rates.optimal_usage, rates.base, rates.slope1, rates.slope2]
    return [percent(x, RAY) for x in curve] + [0, 0, 0, 0, 0]


def plan_aave(
    stream: Stream,
    market: AaveMarket,
    spec: ProtocolsSpec,
    chain: ChainConfig,
    tokens: Mapping[str, Token],
) -> AaveEntry:
    """Append the deployment to `stream` (the protocol deployer's) and return its
    address book."""
    me = PROTOCOL_DEPLOYER
    reserves = []
    for r in market.reserves:
        if r.symbol not in tokens:
            raise DevnetError(f"protocols.aave_v3 {chain.name}: no token {r.symbol}")
        if r.rates not in spec.rates:
            raise DevnetError(f"protocols.aave_v3 {chain.name}: no rates {r.rates!r}")
        reserves.append((r, tokens[r.symbol]))

    provider = stream.deploy(
        "PoolAddressesProvider",
        artifact("PoolAddressesProvider"),
        ["string", "address"],
        [f"Crossmargin Devnet {market.network}", me],
    )
    stream.call("setACLAdmin", provider, "setACLAdmin(address)", ["address"], [me])
    acl = stream.deploy("ACLManager", artifact("ACLManager"), ["address"], [provider])
    stream.call("setACLManager", provider, "setACLManager(address)", ["address"], [acl])
    stream.call("addPoolAdmin", acl, "addPoolAdmin(address)", ["address"], [me])

    libraries: dict[str, str] = {}
    for name in LOGIC:
        libraries[name] = stream.deploy(name, artifact(name).linked(libraries), [], [])
    pool_art = artifact(market.pool).linked(libraries)
    pool_impl = stream.deploy(market.pool, pool_art, ["address"], [provider])
    stream.call("init pool impl", pool_impl, "initialize(address)", ["address"], [provider])
    stream.call("setPoolImpl", provider, "setPoolImpl(address)", ["address"], [pool_impl])
    pool = create_address(provider, 1)  # the provider's first CREATE: the pool proxy

    conf_logic = stream.deploy("ConfiguratorLogic", artifact("ConfiguratorLogic"), [], [])
    conf_art = artifact("PoolConfigurator").linked({"ConfiguratorLogic": conf_logic})
    conf_impl = stream.deploy("PoolConfigurator", conf_art, [], [])
    stream.call("init configurator impl", conf_impl, "initialize(address)", ["address"], [provider])
    stream.call(
        "setPoolConfiguratorImpl",
        provider,
        "setPoolConfiguratorImpl(address)",
        ["address"],
        [conf_impl],
    )
    configurator = create_address(provider, 2)

    assets = [t.address for _, t in reserves]
    sources = [t.feed for _, t in reserves]
    oracle = stream.deploy(
        "AaveOracle",
        artifact("AaveOracle"),
        ["address", "address[]", "address[]", "address", "address", "uint256"],
        [provider, assets, sources, ZERO, ZERO, 10**8],  # USD base, 8 decimals
    )
    stream.call("setPriceOracle", provider, "setPriceOracle(address)", ["address"], [oracle])
    data_provider = stream.deploy(
        "AaveProtocolDataProvider", artifact("AaveProtocolDataProvider"), ["address"], [provider]
    )
    stream.call(
        "setPoolDataProvider",
        provider,
        "setPoolDataProvider(address)",
        ["address"],
        [data_provider],
    )
    sentinel = None
    if market.pool == "L2Pool":
        if chain.sequencer_uptime_feed is None:
            raise DevnetError(f"protocols.aave_v3 {chain.name}: L2Pool needs a sequencer feed")
        sentinel = stream.deploy(
            "PriceOracleSentinel",
            artifact("PriceOracleSentinel"),
            ["address", "address", "uint256"],
            [provider, chain.sequencer_uptime_feed, market.sequencer_grace_period_s],
        )
        stream.call(
            "setPriceOracleSentinel",
            provider,
            "setPriceOracleSentinel(address)",
            ["address"],
            [sentinel],
        )

    impls = {
        name: stream.deploy(name, artifact(name), ["address"], [pool])
        for name in ("AToken", "StableDebtToken", "VariableDebtToken")
    }
    strategies: dict[str, str] = {}
    for r, _ in reserves:
        if r.rates not in strategies:
            strategies[r.rates] = stream.deploy(
                f"rates {r.rates}",
                artifact("DefaultReserveInterestRateStrategy"),
                ["address"] + ["uint256"] * 9,
                [provider, *_rates(spec.rates[r.rates])],
            )

    inputs, entries = [], []
    for i, (r, t) in enumerate(reserves):
        names = _token_names(market, r.symbol)
        inputs.append(
            (
                impls["AToken"],
                impls["StableDebtToken"],
                impls["VariableDebtToken"],
                t.decimals,
                strategies[r.rates],
                t.address,
                me,  # treasury
                ZERO,  # no incentives controller
                *names,
                b"",
            )
        )
        # The configurator proxy's CREATEs, three per reserve in this order (its nonce
        # starts at 1): aToken, stable debt, variable debt.
        a_token, stable, variable = (create_address(configurator, 1 + 3 * i + k) for k in range(3))
        entries.append(
            AaveReserveEntry(
                symbol=r.symbol,
                underlying=t.address,
                decimals=t.decimals,
                id=i,
                a_token=a_token,
                a_token_symbol=names[1],
                variable_debt_token=variable,
                variable_debt_symbol=names[3],
                stable_debt_token=stable,
                price_source=t.feed,
                in_config=t.in_config,
                ltv_bps=percent(r.ltv, BPS),
                liquidation_threshold_bps=percent(r.liquidation_threshold, BPS),
            )
        )
    stream.call(
        "initReserves",
        configurator,
        f"initReserves({INIT_RESERVE}[])",
        [f"{INIT_RESERVE}[]"],
        [inputs],
        gas=INIT_GAS_PER_RESERVE * len(inputs),
    )
    for r, t in reserves:
        bonus = BPS + percent(r.liquidation_bonus, BPS)
        stream.call(
            f"collateral {r.symbol}",
            configurator,
            "configureReserveAsCollateral(address,uint256,uint256,uint256)",
            ["address", "uint256", "uint256", "uint256"],
            [t.address, percent(r.ltv, BPS), percent(r.liquidation_threshold, BPS), bonus],
        )
        stream.call(
            f"borrowing {r.symbol}",
            configurator,
            "setReserveBorrowing(address,bool)",
            ["address", "bool"],
            [t.address, True],
        )
        stream.call(
            f"reserve factor {r.symbol}",
            configurator,
            "setReserveFactor(address,uint256)",
            ["address", "uint256"],
            [t.address, percent(r.reserve_factor, BPS)],
        )
    return AaveEntry(
        chain=chain.name,
        pool_kind=market.pool,
        addresses_provider=provider,
        acl_manager=acl,
        pool=pool,
        pool_impl=pool_impl,
        pool_configurator=configurator,
        oracle=oracle,
        data_provider=data_provider,
        price_oracle_sentinel=sentinel,
        treasury=me,
        reserves=entries,
    )


def _token_names(market: AaveMarket, symbol: str) -> tuple[str, str, str, str, str, str]:
    """Aave's naming: "Aave Ethereum WETH" / "aEthWETH", variable and stable debt alike."""
    n, p = market.network, market.prefix
    return (
        f"Aave {n} {symbol}",
        f"a{p}{symbol}",
        f"Aave {n} Variable Debt {symbol}",
        f"variableDebt{p}{symbol}",
        f"Aave {n} Stable Debt {symbol}",
        f"stableDebt{p}{symbol}",
    )
