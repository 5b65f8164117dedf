"""The chain seam as clients see it: a chain that cannot be reached is described by a
public error code and sentence, with no endpoint, IP, port or Python repr anywhere (the
report, the stored snapshot, /v1/health); an endpoint with the right chain id and the
wrong chain (METHOD.md §2) is refused, and nothing it says becomes a number."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_helpers import with_chain

from api.app import create_app
from crossmargin.core.canonical import canonical
from crossmargin.pipeline.stored import expand

FAST = {"timeout_s": 1.0, "retries": 1, "retry_budget_s": 3.0, "cooldown_s": 0.5}
REPR = re.compile(r"Error\b|Errno|Exception|\('|\[Connect|ssl:|Traceback|<[a-z_.]+ object")


def assert_nothing_leaks(text: str, *urls: str) -> None:
    assert "127.0.0.1" not in text
    assert "localhost" not in text
    assert "http://" not in text
    assert "<rpc endpoint>" not in text  # the Scrubber found nothing to hide
    assert not REPR.search(text), REPR.search(text)
    for url in urls:
        port = url.rsplit(":", 1)[1].strip("/")
        assert not re.search(rf"(?<![0-9a-fA-Fx]){port}(?![0-9])", text), port


def chain(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in doc["chains"] if c["name"] == name)


@pytest.mark.asyncio
async def test_unreachable_and_silent_endpoints_leak_nothing(
    devnet: Any, tmp_path: Path, closed_port_url: str, silent_port_url: str
) -> None:
    config = with_chain(devnet.config, "ethereum", rpc_urls=[closed_port_url], **FAST)
    config = with_chain(config, "arbitrum", rpc_urls=[silent_port_url], **FAST)
    alice = devnet.demo_accounts["alice"]
    app = create_app(config, database=f"sqlite:///{tmp_path / 's.db'}")
    async with TestClient(TestServer(app)) as client:
        resp = await client.get(f"/v1/accounts/{alice}/margin")
        assert resp.status == 200
        body = await resp.text()
        snapshot = await client.get(f"/v1/snapshots/{resp.headers['Snapshot-Id']}")
        assert snapshot.status == 200
        stored = await snapshot.text()
        health_resp = await client.get("/v1/health")
        health = await health_resp.text()

    report = json.loads(body)
    assert report["status"] == "partial"
    assert chain(report, "ethereum")["reason"] == (
        "node_unreachable: no endpoint of chain ethereum answered"
    )
    assert chain(report, "arbitrum")["reason"] == (
        "node_timeout: no endpoint of chain arbitrum answered in time"
    )
    down = {p["chain_id"] for p in report["positions"] if p["status"] == "unavailable"}
    assert down == {1, 42161}
    assert all(p["raw_amount"] is None for p in report["positions"] if p["chain_id"] in down)
    warned = [w["detail"] for w in report["warnings"] if w["code"] == "chain_unavailable"]
    assert len(warned) == 2
    served = json.loads(stored)
    blobs = {h: canonical(b) for h, b in served["blobs"].items()}  # a client can check them
    full = expand(served["document"], blobs)
    inputs = {c["chain"]: c for c in full["inputs"]["chains"]}
    assert inputs["ethereum"]["error"] == chain(report, "ethereum")["reason"]
    assert inputs["arbitrum"]["error"] == chain(report, "arbitrum")["reason"]

    doc = json.loads(health)
    assert health_resp.status == 200
    assert doc["status"] == "degraded"
    codes = {c["name"]: c["error_code"] for c in doc["chains"]}
    assert codes == {
        "ethereum": "node_unreachable",
        "arbitrum": "node_timeout",
        "optimism": None,
        "base": None,
    }
    for text in (body, stored, health):
        assert_nothing_leaks(text, closed_port_url, silent_port_url)


@pytest.mark.asyncio
async def test_an_endpoint_of_another_chain_with_the_same_id_is_refused(
    devnet: Any, impostor: Any, json_rpc: Any, tmp_path: Path
) -> None:
    real = devnet.config.chain("ethereum").rpc_urls[0]
    alice = devnet.demo_accounts["alice"]
    fake_eth = int(impostor.rpc("eth_getBalance", alice, "latest"), 16)
    first = with_chain(devnet.config, "ethereum", rpc_urls=[impostor.url, real])
    app = create_app(first, database=f"sqlite:///{tmp_path / 'first.db'}")
    async with TestClient(TestServer(app)) as client:
        report = await (await client.get(f"/v1/accounts/{alice}/margin")).json()
        health = await (await client.get("/v1/health")).json()
    # read from the second endpoint, at ethereum's own blocks
    pin = next(b for b in report["as_of"] if b["chain_id"] == 1)
    eth = next(p for p in report["positions"] if p["chain_id"] == 1 and p["symbol"] == "ETH")
    truth = int(json_rpc(real, "eth_getBalance", alice, {"blockHash": pin["block_hash"]}), 16)
    assert int(eth["raw_amount"]) == truth != fake_eth
    assert chain(report, "ethereum")["status"] == "ok"
    endpoints = chain(health, "ethereum")["endpoints"]
    assert [(e["state"], e["error_code"]) for e in endpoints] == [
        ("refused", "wrong_chain_state"),
        ("ok", None),
    ]

    alone = with_chain(devnet.config, "ethereum", rpc_urls=[impostor.url])
    app = create_app(alone, database=f"sqlite:///{tmp_path / 'alone.db'}")
    async with TestClient(TestServer(app)) as client:
        resp = await client.get(f"/v1/accounts/{alice}/margin")
        body = await resp.text()
    report = json.loads(body)
    assert report["status"] == "partial"
    assert chain(report, "ethereum")["status"] == "unavailable"
    assert chain(report, "ethereum")["reason"].startswith("wrong_chain_state: ")
    assert all(p["raw_amount"] is None for p in report["positions"] if p["chain_id"] == 1)
    assert 1 not in {b["chain_id"] for b in report["as_of"]}
    assert str(fake_eth) not in body
    assert_nothing_leaks(body, impostor.url)
