"""Morpho Blue on one devnet chain: the singleton, an IRM, and its markets.

The deployer owns Morpho, enables the IRM (the package's IrmMock) and each LLTV, and is
the fee recipient; each market gets a FeedRatioOracle over the devnet's Chainlink
feeds (collateral/USD over loan/USD, scaled 1e36 as Morpho's IOracle requires) and is
created permissionlessly, then given its fee.
"""

from __future__ import annotations

from collections.abc import Mapping

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from crossmargin.core.config import ChainConfig
from devnet.errors import DevnetError
from devnet.evm import artifact
from devnet.protocols.entries import MorphoEntry, MorphoMarketEntry
from devnet.protocols.plan import PROTOCOL_DEPLOYER, Stream, Token
from devnet.protocols.spec import MorphoDeployment, percent

WAD = 10**18
PARAMS = "(address,address,address,address,uint256)"  # loan, collateral, oracle, irm, lltv


def market_id(params: tuple[str, str, str, str, int]) -> str:
    """Morpho's Id: keccak256(abi.encode(marketParams))."""
    return "0x" + keccak(encode([PARAMS], [params])).hex()


def market_params(m: MorphoMarketEntry) -> tuple[str, str, str, str, int]:
    return (m.loan_token, m.collateral_token, m.oracle, m.irm, int(m.lltv))


def plan_morpho(
    stream: Stream, deployment: MorphoDeployment, chain: ChainConfig, tokens: Mapping[str, Token]
) -> MorphoEntry:
    me = PROTOCOL_DEPLOYER
    for m in deployment.markets:
        for symbol in (m.collateral, m.loan):
            if symbol not in tokens:
                raise DevnetError(f"protocols.morpho_blue {chain.name}: no token {symbol}")
    if len({m.name for m in deployment.markets}) != len(deployment.markets):
        raise DevnetError(f"protocols.morpho_blue {chain.name}: a market is listed twice")
    morpho = stream.deploy("Morpho", artifact("Morpho"), ["address"], [me])
    irm = stream.deploy("IrmMock", artifact("IrmMock"), [], [])
    stream.call("enableIrm", morpho, "enableIrm(address)", ["address"], [irm])
    for lltv in dict.fromkeys(percent(m.lltv, WAD) for m in deployment.markets):
        stream.call(f"enableLltv {lltv}", morpho, "enableLltv(uint256)", ["uint256"], [lltv])
    stream.call("setFeeRecipient", morpho, "setFeeRecipient(address)", ["address"], [me])
    markets = []
    for m in deployment.markets:
        coll, loan = tokens[m.collateral], tokens[m.loan]
        oracle = stream.deploy(
            f"oracle {m.name}",
            artifact("FeedRatioOracle"),
            ["address", "address", "uint8", "uint8"],
            [coll.feed, loan.feed, coll.decimals, loan.decimals],
        )
        params = (loan.address, coll.address, oracle, irm, percent(m.lltv, WAD))
        stream.call(f"createMarket {m.name}", morpho, f"createMarket({PARAMS})", [PARAMS], [params])
        fee = percent(m.fee, WAD)
        if fee:
            stream.call(
                f"setFee {m.name}",
                morpho,
                f"setFee({PARAMS},uint256)",
                [PARAMS, "uint256"],
                [params, fee],
            )
        markets.append(
            MorphoMarketEntry(
                name=m.name,
                id=market_id(params),
                loan_token=loan.address,
                collateral_token=coll.address,
                oracle=oracle,
                irm=irm,
                lltv=str(params[4]),
                fee=str(fee),
            )
        )
    return MorphoEntry(chain=chain.name, morpho=morpho, irm=irm, fee_recipient=me, markets=markets)
