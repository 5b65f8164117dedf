"""Watch subscriptions over HTTP (METHOD.md §14): create, list, get, update, delete;
a key sees and changes only its own; the secret is never served; anonymous callers
and bad input get problem+json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_helpers import api_config, make_key, problem

from api.app import create_app

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "s3cret-s3cret-s3cret"


def _body(accounts: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "accounts": accounts,
        "thresholds": {"health_below": 1.2, "liquidatable": True},
        "webhook_url": "http://127.0.0.1:9/hook",
        "secret": SECRET,
        **extra,
    }


async def test_a_key_sees_and_changes_only_its_own(devnet: Any, tmp_path: Path) -> None:
    key_a, entry_a = make_key("a", rate_per_s=1000, burst=1000)
    key_b, entry_b = make_key("b", rate_per_s=1000, burst=1000)
    config = api_config(devnet, anonymous=True, keys=[entry_a, entry_b])
    config = config.model_copy(update={"watch": config.watch.model_copy(update={"enabled": False})})
    alice, bob = devnet.demo_accounts["alice"], devnet.demo_accounts["bob"]
    app = create_app(config, database=f"sqlite:///{tmp_path / 'w.db'}")
    a, b = {"X-API-Key": key_a}, {"X-API-Key": key_b}
    async with TestClient(TestServer(app)) as c:
        resp = await c.post("/v1/watches", json=_body([alice.lower()]), headers=a)
        assert resp.status == 200, await resp.text()
        made = await resp.json()
        assert made["accounts"] == [alice]
        assert made["target_chain"] == "ethereum"
        assert "secret" not in made
        assert SECRET not in await resp.text()
        wid = made["id"]

        listed = await (await c.get("/v1/watches", headers=a)).json()
        assert [w["id"] for w in listed["watches"]] == [wid]
        assert (await (await c.get("/v1/watches", headers=b)).json())["watches"] == []
        # another key's watch is not found, not forbidden: it does not exist for b
        await problem(await c.get(f"/v1/watches/{wid}", headers=b), 404)
        patch = {"accounts": [bob], "secret": "x" * 20}
        await problem(await c.patch(f"/v1/watches/{wid}", json=patch, headers=b), 404)
        await problem(await c.delete(f"/v1/watches/{wid}", headers=b), 404)
        await problem(await c.get("/v1/watches"), 401)  # anonymous: no watches
        assert (await (await c.get("/v1/alerts", headers=b)).json())["alerts"] == []

        resp = await c.patch(f"/v1/watches/{wid}", json={"accounts": [alice, bob]}, headers=a)
        assert resp.status == 200, await resp.text()
        changed = await resp.json()
        assert changed["accounts"] == sorted([alice, bob])
        assert changed["thresholds"]["health_below"] == 1.2
        got = await (await c.get(f"/v1/watches/{wid}", headers=a)).json()
        assert got == changed

        bad = _body([alice, alice])
        await problem(await c.post("/v1/watches", json=bad, headers=a), 400)
        await problem(
            await c.post("/v1/watches", json=_body([alice], secret="short"), headers=a), 400
        )
        no_threshold = _body([alice], thresholds={})
        await problem(await c.post("/v1/watches", json=no_threshold, headers=a), 400)
        creds = _body([alice], webhook_url="http://user:pw@example.org/")
        await problem(await c.post("/v1/watches", json=creds, headers=a), 400)
        await problem(await c.get("/v1/watches/nothex", headers=a), 400)

        resp = await c.delete(f"/v1/watches/{wid}", headers=a)
        assert resp.status == 200
        await problem(await c.get(f"/v1/watches/{wid}", headers=a), 404)

        spec = await (await c.get("/openapi.json")).json()
        assert {"/v1/watches", "/v1/watches/{watch_id}", "/v1/alerts"} <= spec["paths"].keys()
        assert "secret" not in spec["components"]["schemas"]["Watch"]["properties"]
