"""The protocols' deployment plan (pure, no chain): fixed addresses, library linking, and a
scenario that does not fit refused before any process starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from crossmargin.core.config import Config, load_config
from devnet.errors import DevnetError
from devnet.evm import artifact, create_address
from devnet.manifest import build_accounts
from devnet.protocols.plan import PROTOCOL_DEPLOYER, ChainPlan
from devnet.protocols.setup import check_protocol_representations, plan_protocols
from devnet.protocols.spec import PositionSpec, percent
from devnet.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(ROOT / "configs" / "devnet.toml", env={})


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load_scenario(ROOT / "configs" / "devnet-scenario.toml")


def plans(config: Config, scenario: Scenario) -> dict[str, ChainPlan]:
    accounts = build_accounts(config, scenario)
    return {c.name: plan_protocols(config, scenario, c, accounts) for c in config.chains}


def test_the_address_book_follows_from_the_deployer_nonce_alone(
    config: Config, scenario: Scenario
) -> None:
    first = plans(config, scenario)
    assert first == plans(config, scenario)
    for name, plan in first.items():
        nonce = scenario.protocols.deployer_nonce.get(name, 0)
        mine = [t for t in plan.deploy if t.sender == PROTOCOL_DEPLOYER]
        for i, t in enumerate(mine):  # its transactions take consecutive nonces
            if t.creates is not None:
                assert t.creates == create_address(PROTOCOL_DEPLOYER, nonce + i), t.label
    eth = first["ethereum"].aave
    assert eth is not None
    # The provider's first two CREATEs are the pool and configurator proxies.
    assert eth.pool == create_address(eth.addresses_provider, 1)
    assert eth.pool_configurator == create_address(eth.addresses_provider, 2)
    shifted = scenario.model_copy(
        update={
            "protocols": scenario.protocols.model_copy(update={"deployer_nonce": {"ethereum": 7}})
        }
    )
    moved = plans(config, shifted)["ethereum"].aave
    assert moved is not None
    assert moved.pool != eth.pool
    # Every protocol address differs between chains, as on real networks.
    pools = [p.aave.pool for p in first.values() if p.aave is not None]
    assert len(set(pools)) == len(pools) == 2


def test_pool_links_its_seven_libraries() -> None:
    pool = artifact("Pool")
    libs = {name: "0x" + f"{i + 1:02x}" * 20 for i, (name, _) in enumerate(pool.links)}
    assert sorted(libs) == sorted(
        [
            "SupplyLogic",
            "BorrowLogic",
            "LiquidationLogic",
            "EModeLogic",
            "BridgeLogic",
            "FlashLoanLogic",
            "PoolLogic",
        ]
    )
    linked = pool.linked(libs)
    assert "__" not in linked.bytecode
    for name, offsets in pool.links:
        for at in offsets:
            assert linked.bytecode[2 + 2 * at : 2 + 2 * at + 40] == libs[name][2:]
    with pytest.raises(DevnetError, match="no address for libraries"):
        pool.linked({})


def test_percentages_are_exact() -> None:
    assert percent("80.5", 10_000) == 8050
    assert percent("86", 10**18) == 86 * 10**16
    with pytest.raises(ValueError, match="finer"):
        percent("80.555", 10_000)


@pytest.mark.parametrize(
    ("position", "match"),
    [
        (
            PositionSpec(
                chain="optimism", protocol="aave_v3", action="supply", symbol="WETH", amount="1"
            ),
            "no Aave v3 on optimism",
        ),
        (
            PositionSpec(
                chain="ethereum", protocol="aave_v3", action="supply", symbol="USDC.e", amount="1"
            ),
            "no token USDC.e on ethereum",
        ),
        (
            PositionSpec(
                chain="base",
                protocol="morpho_blue",
                action="collateral",
                symbol="USDC",
                amount="1",
                market="WETH/USDC",
            ),
            "collateral in WETH/USDC takes another token",
        ),
        (
            PositionSpec(
                chain="base",
                protocol="morpho_blue",
                action="borrow",
                symbol="USDC",
                amount="1",
                market="ETH/DAI",
            ),
            "no Morpho market ETH/DAI",
        ),
    ],
)
def test_positions_that_do_not_fit_are_refused(
    config: Config, scenario: Scenario, position: PositionSpec, match: str
) -> None:
    erin = next(a for a in scenario.accounts if a.name == "erin")
    bad = erin.model_copy(update={"positions": [position]})
    accounts = [bad if a.name == "erin" else a for a in scenario.accounts]
    with pytest.raises(DevnetError, match=match):
        plans(config, scenario.model_copy(update={"accounts": accounts}))


def test_a_reserve_without_a_token_is_refused(config: Config, scenario: Scenario) -> None:
    market = scenario.protocols.aave_v3[0]
    reserve = market.reserves[0].model_copy(update={"symbol": "GHO"})
    broken = market.model_copy(update={"reserves": [reserve]})
    spec = scenario.protocols.model_copy(update={"aave_v3": [broken]})
    with pytest.raises(DevnetError, match="no token GHO"):
        plans(config, scenario.model_copy(update={"protocols": spec}))


def test_protocol_representations_are_checked_against_the_address_book(
    config: Config, scenario: Scenario
) -> None:
    """The configured Aave pool and aToken / debt-token representations are the market's
    own contracts: a wrong address or decimals is refused before any process starts."""
    book = plans(config, scenario)
    for plan in book.values():
        check_protocol_representations(config, plan)  # the shipped config fits
    arb, eth = book["arbitrum"].aave, book["ethereum"].aave
    assert arb is not None
    assert eth is not None
    reps = list(config.representations)
    i = next(k for k, r in enumerate(reps) if r.symbol == "aArbWETH")
    moved = reps[i].model_copy(update={"address": arb.reserve("WBTC").a_token})
    bad = config.model_copy(update={"representations": [*reps[:i], moved, *reps[i + 1 :]]})
    with pytest.raises(DevnetError, match="aArbWETH: decimals 18, Aave's 8"):
        check_protocol_representations(bad, book["arbitrum"])
    elsewhere = reps[i].model_copy(update={"address": create_address(PROTOCOL_DEPLOYER, 9999)})
    bad = config.model_copy(update={"representations": [*reps[:i], elsewhere, *reps[i + 1 :]]})
    with pytest.raises(DevnetError, match=r"aArbWETH: .* is no Aave v3 aToken here"):
        check_protocol_representations(bad, book["arbitrum"])
    market = config.protocols[1].model_copy(update={"pool": eth.pool})
    bad = config.model_copy(update={"protocols": [config.protocols[0], market]})
    with pytest.raises(DevnetError, match="arbitrum aave_v3: pool"):
        check_protocol_representations(bad, book["arbitrum"])


def test_configured_morpho_markets_must_be_the_devnets(config: Config, scenario: Scenario) -> None:
    """configs/devnet.toml's Morpho entry names the devnet's singleton and markets: another
    contract, or a market with other parameters (another id), is refused."""
    base = plans(config, scenario)["base"]
    assert base.morpho is not None
    check_protocol_representations(config, base)
    i = next(k for k, p in enumerate(config.protocols) if p.kind == "morpho_blue")
    entry = config.protocols[i]
    assert {m.market_id_hex for m in entry.markets} == {m.id for m in base.morpho.markets}

    def with_entry(**update: object) -> Config:
        changed = entry.model_copy(update=update)
        return config.model_copy(
            update={"protocols": [*config.protocols[:i], changed, *config.protocols[i + 1 :]]}
        )

    elsewhere = create_address(PROTOCOL_DEPLOYER, 9999)
    with pytest.raises(DevnetError, match="base morpho_blue: morpho"):
        check_protocol_representations(with_entry(morpho=elsewhere), base)
    other = entry.markets[0].model_copy(update={"lltv": 5 * 10**17})
    with pytest.raises(DevnetError, match="no devnet market with these parameters"):
        check_protocol_representations(with_entry(markets=[other]), base)
