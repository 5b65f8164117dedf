"""The page's helper endpoint and files: demo accounts only from a manifest of the devnet
this server reads; the page and its assets served with their headers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.web import MANIFEST, demo_accounts


def test_demo_accounts_need_a_ready_manifest_of_these_chains(devnet: Any) -> None:
    text = devnet.manifest_path.read_text(encoding="utf-8")
    listed = demo_accounts(devnet.config, text)
    assert {a["name"]: a["address"] for a in listed} == devnet.demo_accounts
    stopped = json.loads(text) | {"status": "stopped"}
    assert demo_accounts(devnet.config, json.dumps(stopped)) == []
    elsewhere = [c.model_copy(update={"rpc_urls": ["http://10.0.0.1:8545"]})
                 for c in devnet.config.chains]  # fmt: skip
    assert demo_accounts(devnet.config.model_copy(update={"chains": elsewhere}), text) == []
    assert demo_accounts(devnet.config, "not json") == []


def test_context_page_and_assets(devnet: Any, tmp_path: Path) -> None:
    async def run() -> None:
        app = create_app(devnet.config, database=f"sqlite:///{tmp_path / 'snapshots.db'}")
        app[MANIFEST] = tmp_path / "missing.json"
        async with TestClient(TestServer(app)) as client:
            ctx = await (await client.get("/v1/web/context")).json()
            assert ctx["settlement_chain"] == devnet.config.settlement_chain
            assert [c["name"] for c in ctx["chains"]] == [c.name for c in devnet.config.chains]
            assert ctx["demo_accounts"] == []
            page = await client.get("/")
            assert page.status == 200
            assert page.content_type == "text/html"
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]
            body = await page.text()
            assert 'src="/static/app.js"' in body
            assert "http" not in body.replace("http-equiv", "")  # nothing from elsewhere
            for asset in ("app.js", "charts.js", "tables.js", "format.js", "app.css"):
                resp = await client.get(f"/static/{asset}")
                assert resp.status == 200, asset

    asyncio.run(run())
