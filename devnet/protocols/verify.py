"""Read the protocols back after set-up: the address book the plan computed must be what
the chain holds (Aave's wiring and reserves, Morpho's markets, the extra tokens)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from devnet.errors import DevnetError
from devnet.evm import decode_result
from devnet.protocols.morpho import market_params
from devnet.protocols.plan import ChainPlan, encode_call
from devnet.rpc import Call, Rpc

ADDRESS = ["address"]
STRING = ["string"]


@dataclass(frozen=True)
class Check:
    what: str
    to: str
    data: str
    out: list[str]
    want: Any


def _check(
    what: str, to: str, sig: str, out: list[str], want: Any, types: Sequence[str] = (), *args: Any
) -> Check:
    return Check(what, to, encode_call(sig, types, args), out, want)


def _norm(value: Any) -> Any:
    """Addresses compare case-insensitively; tuples element by element."""
    if isinstance(value, tuple | list):
        return tuple(_norm(v) for v in value)
    if isinstance(value, str) and value.startswith("0x"):
        return value.lower()
    return value


def checks_of(plan: ChainPlan) -> list[Check]:
    out: list[Check] = []
    if (a := plan.aave) is not None:
        p = a.addresses_provider
        out += [
            _check("provider.getPool()", p, "getPool()", ADDRESS, a.pool),
            _check(
                "getPoolConfigurator()", p, "getPoolConfigurator()", ADDRESS, a.pool_configurator
            ),
            _check("getPriceOracle()", p, "getPriceOracle()", ADDRESS, a.oracle),
            _check("getPoolDataProvider()", p, "getPoolDataProvider()", ADDRESS, a.data_provider),
            _check("getACLManager()", p, "getACLManager()", ADDRESS, a.acl_manager),
            _check(
                "getPriceOracleSentinel()",
                p,
                "getPriceOracleSentinel()",
                ADDRESS,
                a.price_oracle_sentinel or "0x0000000000000000000000000000000000000000",
            ),
            _check(
                "pool.getReservesList()",
                a.pool,
                "getReservesList()",
                ["address[]"],
                [r.underlying for r in a.reserves],
            ),
        ]
        for r in a.reserves:
            out += [
                _check(
                    f"{r.a_token_symbol} symbol()", r.a_token, "symbol()", STRING, r.a_token_symbol
                ),
                _check(
                    f"{r.variable_debt_symbol} symbol()",
                    r.variable_debt_token,
                    "symbol()",
                    STRING,
                    r.variable_debt_symbol,
                ),
            ]
    if (m := plan.morpho) is not None:
        for market in m.markets:
            out.append(
                _check(
                    f"Morpho idToMarketParams({market.name})",
                    m.morpho,
                    "idToMarketParams(bytes32)",
                    ["address", "address", "address", "address", "uint256"],
                    market_params(market),
                    ["bytes32"],
                    bytes.fromhex(market.id[2:]),
                )
            )
    for symbol, address in plan.extra_tokens.items():
        out.append(_check(f"{symbol} symbol()", address, "symbol()", STRING, symbol))
    return out


async def verify_protocols(rpc: Rpc, plan: ChainPlan) -> None:
    """A mismatch is a devnet bug, reported before anything uses the chain."""
    checks = checks_of(plan)
    calls: list[Call] = [("eth_call", [{"to": c.to, "data": c.data}, "latest"]) for c in checks]
    for c, raw in zip(checks, await rpc.batch(calls), strict=True):
        got = decode_result(c.out, raw)
        value = got[0] if len(got) == 1 else got
        if _norm(value) != _norm(c.want):
            raise DevnetError(f"{plan.chain}: {c.what} is {value!r}, expected {c.want!r}")
