"""Keys, limits, problems and the deadline: no key / wrong key / over limit give
401 / 403 / 429 as problem+json; one key's flood does not starve another; no RPC URL,
key or stack trace reaches a response."""

from __future__ import annotations

import asyncio
import secrets
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_helpers import api_config, make_key, problem
from eth_utils.address import to_checksum_address

from api.app import create_app
from api.security import key_digest
from crossmargin.core.config import ApiConfig, ApiKeyConfig, Config

pytestmark = pytest.mark.asyncio(loop_scope="session")
Client = TestClient[Any, Any]


@asynccontextmanager
async def client(config: Config, tmp_path: Path) -> AsyncIterator[Client]:
    app = create_app(config, database=f"sqlite:///{tmp_path / 'snapshots.db'}")
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_no_key_wrong_key_and_over_limit(devnet: Any, tmp_path: Path) -> None:
    key, entry = make_key("slow", rate_per_s=0.5, burst=2)
    config = api_config(devnet, anonymous=False, keys=[entry])
    alice = devnet.demo_accounts["alice"]
    path = f"/v1/accounts/{alice}/margin"
    async with client(config, tmp_path) as c:
        resp = await c.get(path)
        body = await problem(resp, 401)
        assert "API key" in body["detail"]
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        body = await problem(await c.get(path, headers={"X-API-Key": key + "x"}), 403)
        assert key not in str(body)
        await problem(await c.get(path, headers={"Authorization": "Bearer nope"}), 403)

        ok = await c.get(path, headers={"X-API-Key": key})
        assert ok.status == 200
        ok = await c.get(path, headers={"Authorization": f"Bearer {key}"})
        assert ok.status == 200
        resp = await c.get(path, headers={"X-API-Key": key})
        await problem(resp, 429)
        assert int(resp.headers["Retry-After"]) >= 1

        health = await c.get("/v1/health")  # open: load balancers probe it without a key
        assert health.status == 200
        spec = await (await c.get("/openapi.json")).json()
        assert spec["paths"]["/v1/chains"]["get"]["security"] == [{"ApiKey": []}, {"Bearer": []}]


async def test_anonymous_access_and_a_wrong_key(devnet: Any, tmp_path: Path) -> None:
    config = api_config(devnet, anonymous=True, anonymous_rate_per_s=1.0, anonymous_burst=3)
    async with client(config, tmp_path) as c:
        for _ in range(3):
            assert (await c.get("/v1/chains")).status == 200
        await problem(await c.get("/v1/chains"), 429)  # anonymous has its own bucket
        await problem(await c.get("/v1/chains", headers={"X-API-Key": "guess"}), 403)
        spec = await (await c.get("/openapi.json")).json()
        assert {} in spec["paths"]["/v1/chains"]["get"]["security"]


async def test_one_keys_flood_does_not_starve_another(devnet: Any, tmp_path: Path) -> None:
    flood_key, flood = make_key("flood", rate_per_s=2.0, burst=2)
    calm_key, calm = make_key("calm", rate_per_s=1000.0, burst=1000)
    config = api_config(devnet, anonymous=False, keys=[flood, calm])
    accounts = list(devnet.demo_accounts.values())
    async with client(config, tmp_path) as c:

        async def get(key: str, i: int) -> int:
            resp = await c.get(f"/v1/accounts/{accounts[i % 4]}/margin", headers={"X-API-Key": key})
            await resp.read()
            return resp.status

        flooding = [get(flood_key, i) for i in range(120)]
        calm_ones = [get(calm_key, i) for i in range(20)]
        results = await asyncio.gather(*flooding, *calm_ones)
        flooded, served = results[:120], results[120:]
        assert served == [200] * 20
        assert flooded.count(429) >= 110
        assert set(flooded) <= {200, 429}
        # a batch costs one token per account: 3 accounts need 3 tokens, the flood has none
        resp = await c.post(
            "/v1/margin:batch", json={"accounts": accounts[:3]}, headers={"X-API-Key": flood_key}
        )
        await problem(resp, 429)


async def test_request_deadline_gives_504(devnet: Any, tmp_path: Path) -> None:
    release = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # accept, read, never answer
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    chains = [
        c.model_copy(update={"rpc_urls": [f"http://127.0.0.1:{port}"], "timeout_s": 20.0})
        if c.name == "optimism"
        else c
        for c in devnet.config.chains
    ]
    config = api_config(devnet, request_timeout_s=0.5).model_copy(update={"chains": chains})
    try:
        async with client(config, tmp_path) as c:
            started = asyncio.get_running_loop().time()
            resp = await c.get(f"/v1/accounts/{devnet.demo_accounts['alice']}/margin")
            body = await problem(resp, 504)
            assert "deadline" in body["detail"]
            assert asyncio.get_running_loop().time() - started < 5
    finally:
        release.set()
        server.close()
        await server.wait_closed()


HEX40 = "c02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
A = f"/v1/accounts/0x{HEX40}"
JSON_BODY = {"Content-Type": "application/json"}
NEST_33 = '{"accounts": ' + "[" * 32 + "]" * 32 + "}"  # 33 levels with the object


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "needle"),
    [
        ("GET", "/v1/accounts/0x1234/margin", {}, 400, "20-byte hex"),
        ("GET", A.replace("0xc02aaa39b2", "0xC02aaA39b2") + "/stress", {}, 400, "checksum"),
        ("GET", "/v1/chains?x=1", {}, 400, "Extra inputs"),
        ("GET", A + "/capacity?asset=DOGE", {}, 400, "unknown asset"),
        ("GET", A + "/margin?method=cvar", {}, 400, "method"),
        ("GET", A + "/margin?target_chain=1&target_chain=10", {}, 400, "more than once"),
        ("GET", "/v1/snapshots/xyz", {}, 400, "snapshot id"),
        ("GET", "/v1/snapshots/" + "a" * 64, {}, 404, "no snapshot"),
        ("GET", A + "/snapshots?limit=0", {}, 400, "limit"),
        ("POST", "/v1/margin:batch", {"data": "{", "headers": JSON_BODY}, 400, "JSON"),
        ("POST", "/v1/margin:batch", {"json": {"accounts": []}}, 400, "at least 1"),
        ("POST", "/v1/margin:batch", {"json": {"accounts": ["0x12"]}}, 400, "20-byte hex"),
        ("POST", "/v1/margin:batch", {"data": "x"}, 415, "application/json"),
        ("POST", "/v1/margin:batch", {"data": b"[" * 300_000, "headers": JSON_BODY}, 413, "Large"),
        ("DELETE", "/v1/chains", {}, 405, "Not Allowed"),
        ("GET", "/v2/nothing", {}, 404, "Not Found"),
        ("GET", "/static/nope.js", {}, 404, "no such file"),
        # an address is `0x` and 40 hex digits: not without the prefix, not with `0X`
        ("GET", f"/v1/accounts/{HEX40}/margin", {}, 400, "0x and 40 hex digits"),
        ("GET", f"/v1/accounts/0X{HEX40}/capacity", {}, 400, "0x and 40 hex digits"),
        ("GET", f"/v1/accounts/0X{HEX40.upper()}/snapshots", {}, 400, "0x and 40 hex digits"),
        ("POST", "/v1/margin:batch", {"json": {"accounts": [HEX40]}}, 400, "0x and 40 hex"),
        ("POST", "/v1/margin:batch", {"json": {"accounts": ["0X" + HEX40]}}, 400, "0x and 40"),
        # nesting is refused before any parser recurses; bytes must be UTF-8
        ("POST", "/v1/margin:batch", {"data": NEST_33, "headers": JSON_BODY}, 400, "deeper"),
        (
            "POST",
            "/v1/margin:batch",
            {"data": b'{"a": "\xff"}', "headers": JSON_BODY},
            400,
            "UTF-8",
        ),
    ],
)
async def test_bad_requests_are_problems(
    devnet: Any,
    tmp_path: Path,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    needle: str,
) -> None:
    async with client(api_config(devnet), tmp_path) as c:
        resp = await c.request(method, path, **kwargs)
        body = await problem(resp, status)
        assert needle in str(body)
        if status == 405:
            assert "GET" in resp.headers["Allow"]


async def test_keys_tool_prints_a_key_and_its_config_entry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from api.keys import main

    assert main(["partner", "--rate", "5", "--burst", "7"]) == 0
    out, err = capsys.readouterr()
    key = err.split("key (shown once): ")[1].split()[0]
    api = ApiConfig.model_validate(tomllib.loads(out)["api"])
    (entry,) = api.keys
    assert (entry.name, entry.rate_per_s, entry.burst) == ("partner", 5.0, 7)
    assert entry.sha256 == key_digest(key)
    assert key not in out  # the config gets the digest only


# ---------------------------------------------------------------- batches and limits


@pytest.mark.parametrize("keyed", [False, True], ids=["anonymous", "key"])
async def test_the_largest_batch_passes_with_default_limits(
    devnet: Any, tmp_path: Path, keyed: bool
) -> None:
    defaults = ApiConfig()
    key, entry = make_key("partner", ApiKeyConfig.model_fields["rate_per_s"].default, 20)
    assert entry.burst == ApiKeyConfig.model_fields["burst"].default
    config = api_config(
        devnet,
        anonymous=not keyed,
        anonymous_rate_per_s=defaults.anonymous_rate_per_s,
        anonymous_burst=defaults.anonymous_burst,
        max_batch=defaults.max_batch,
        keys=[entry] if keyed else [],
    )
    headers = {"X-API-Key": key} if keyed else {}
    accounts = [to_checksum_address(secrets.token_bytes(20)) for _ in range(defaults.max_batch)]
    async with client(config, tmp_path) as c:
        resp = await c.post("/v1/margin:batch", json={"accounts": accounts}, headers=headers)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["count"] == defaults.max_batch
        assert all(item["error"] is None for item in body["results"])
        # the batch's debt: a flood of anything now gets 429 with Retry-After
        for _ in range(5):
            resp = await c.get("/v1/chains", headers=headers)
            await problem(resp, 429)
            assert 1 <= int(resp.headers["Retry-After"]) <= 9
        resp = await c.post("/v1/margin:batch", json={"accounts": accounts[:2]}, headers=headers)
        await problem(resp, 429)
        if not keyed:  # anonymous limits are per client address: another one is served
            connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
            async with aiohttp.ClientSession(connector=connector) as other:
                async with other.get(f"{c.make_url('/v1/chains')}") as resp:
                    assert resp.status == 200
