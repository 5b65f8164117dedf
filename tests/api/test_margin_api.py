"""The HTTP API on the devnet: the margin shape, and RFC 9457 problems for bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app

SHAPE_TOP = {
    "account",
    "target_chain",
    "status",
    "as_of",
    "totals",
    "haircuts",
    "chains",
    "positions",
    "warnings",
}


@pytest_asyncio.fixture(loop_scope="session")
async def client(devnet: Any, tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(devnet.config, database=f"sqlite:///{tmp_path / 'snapshots.db'}")
    async with TestClient(TestServer(app)) as c:
        yield c


@pytest.mark.asyncio(loop_scope="session")
async def test_margin_shape(client: TestClient[Any, Any], devnet: Any) -> None:
    alice = devnet.demo_accounts["alice"]
    resp = await client.get(
        f"/v1/accounts/{alice.lower()}/margin", params={"target_chain": "arbitrum"}
    )
    assert resp.status == 200
    body = await resp.json()
    assert SHAPE_TOP <= body.keys()
    assert body["account"] == alice  # emitted checksummed
    assert body["target_chain"] == {"chain_id": 42161, "name": "arbitrum"}
    assert set(body["totals"]) >= {
        "collateral_usd",
        "debt_usd",
        "equity_usd",
        "margin_requirement_usd",
        "free_margin_usd",
        "health",
    }
    assert set(body["haircuts"]) == {
        "market",
        "bridge_latency",
        "correlation",
        "bridge_risk",
        "concentration",
        "floor",
    }
    for block in body["as_of"]:
        assert set(block) >= {"chain_id", "block_number", "block_hash", "timestamp"}
    for pos in body["positions"]:
        assert set(pos) >= {
            "chain_id",
            "asset",
            "token",
            "symbol",
            "kind",
            "raw_amount",
            "decimals",
            "price_usd",
            "value_usd",
        }
        assert isinstance(pos["raw_amount"], str)
        int(pos["raw_amount"])
    assert all(
        isinstance(v, str) for v in body["totals"].values() if not isinstance(v, bool | None)
    )
    nonzero = [c for c in body["chains"] if c["collateral_usd"] not in (None, "0.000000")]
    assert len(nonzero) >= 3


@pytest.mark.asyncio(loop_scope="session")
async def test_target_chain_by_id_and_default(client: TestClient[Any, Any], devnet: Any) -> None:
    alice = devnet.demo_accounts["alice"]
    by_id = await (await client.get(f"/v1/accounts/{alice}/margin?target_chain=8453")).json()
    assert by_id["target_chain"]["name"] == "base"
    default = await (await client.get(f"/v1/accounts/{alice}/margin")).json()
    assert default["target_chain"]["name"] == devnet.config.settlement_chain


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(
    ("path", "status", "needle"),
    [
        ("/v1/accounts/0x1234/margin", 400, "not a 20-byte hex address"),
        ("/v1/accounts/0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756cc2/margin", 400, "checksum"),
        (
            "/v1/accounts/0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2/margin?target_chain=solana",
            400,
            "unknown chain",
        ),
        ("/v1/nothing-here", 404, "Not Found"),
    ],
)
async def test_problems(client: TestClient[Any, Any], path: str, status: int, needle: str) -> None:
    resp = await client.get(path)
    assert resp.status == status
    assert resp.content_type == "application/problem+json"
    body = await resp.json()
    assert body["status"] == status
    assert needle in body["detail"] or needle in body["title"]
    assert "Traceback" not in str(body)


@pytest.mark.asyncio(loop_scope="session")
async def test_capacity_and_stress_endpoints(client: TestClient[Any, Any], devnet: Any) -> None:
    bob = devnet.demo_accounts["bob"]
    resp = await client.get(f"/v1/accounts/{bob}/capacity?target_chain=base&asset=USDC")
    assert resp.status == 200
    cap = await resp.json()
    assert cap["target_chain"]["name"] == "base"
    assert [c["asset"] for c in cap["capacities"]] == ["USDC"]
    assert float(cap["capacities"][0]["capacity_usd"]) > 0
    resp = await client.get(f"/v1/accounts/{bob}/capacity?asset=DOGE")
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"

    resp = await client.get(f"/v1/accounts/{bob}/stress")
    assert resp.status == 200
    stress = await resp.json()
    assert {s["name"] for s in stress["scenarios"]} == {s.name for s in devnet.config.scenarios}
    assert stress["worst"] in {s["name"] for s in stress["scenarios"]}
