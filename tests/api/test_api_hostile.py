"""Hostile HTTP input: nesting bombs against a real `crossmargin serve` process, HTTP
that aiohttp rejects before routing (sent on raw sockets), and a sweep of many answers
for leaks. Every error is problem+json, no answer names the server's software, and the
server keeps answering."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_helpers import api_config, api_process, dead_url, make_key, problem, wait_up
from hypothesis import given
from hypothesis import strategies as st

from api.app import create_app
from api.openapi import MAX_JSON_DEPTH, json_depth
from api.service import Service
from crossmargin.core.config import Config

Client = TestClient[Any, Any]
JSON_BODY = {"Content-Type": "application/json"}


@asynccontextmanager
async def client(config: Config, tmp_path: Path) -> AsyncIterator[Client]:
    app = create_app(config, database=f"sqlite:///{tmp_path / 'snapshots.db'}")
    async with TestClient(TestServer(app)) as c:
        yield c


# ---------------------------------------------------------------- nesting depth


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


# strings full of what a naive scan would miscount: brackets, quotes, backslashes
TRICKY = st.text(alphabet='[]{}"\\/,:ab\u00e9\u2028', max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
    max_leaves=40,
)


@given(JSON_VALUES, st.booleans())
def test_json_depth_is_the_nesting_depth(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert json_depth(text) == depth_of(value)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("", 0),
        ('"[[[["', 0),
        ('["\\"[[", "\\\\", {"a": []}]', 3),
        ("[" * 100_000, 100_000),
        ('"unterminated [[[', 3),  # invalid JSON may count high, never low
        ("]]][[[", 0),  # a parser stops at the first `]`, at depth 0
    ],
)
def test_json_depth_examples(text: str, depth: int) -> None:
    assert json_depth(text) == depth


def test_nesting_bombs_do_not_kill_the_server_process(devnet: Any, tmp_path: Path) -> None:
    bombs = {
        "100,000 [": b"[" * 100_000,
        "5,000 deep, closed": b'{"accounts": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
        "5,000 deep objects": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    }
    alice = devnet.demo_accounts["alice"]
    database = f"sqlite:///{tmp_path / 'snapshots.db'}"

    async def drive(base: str) -> None:
        async with aiohttp.ClientSession() as session:
            await wait_up(session, base)
            for name, body in bombs.items():
                async with session.post(
                    f"{base}/v1/margin:batch", data=body, headers=JSON_BODY
                ) as resp:
                    got = await problem(resp, 400)
                    assert f"deeper than {MAX_JSON_DEPTH}" in got["detail"], name
                    assert got["code"] == "bad_input"
                async with session.get(f"{base}/v1/chains") as resp:  # still answering
                    assert resp.status == 200, name
            async with session.post(
                f"{base}/v1/margin:batch", json={"accounts": [alice], "target_chain": "base"}
            ) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["results"][0]["margin"]["account"] == alice

    with api_process(devnet.config_path, database, tmp_path / "api.log") as api:
        try:
            asyncio.run(drive(api.url))
            assert api.proc.poll() is None  # alive, not crashed
        except BaseException:
            print((tmp_path / "api.log").read_text()[-4000:])
            raise
    assert "Traceback" not in (tmp_path / "api.log").read_text()


# ---------------------------------------------------------------- HTTP aiohttp refuses


async def raw_exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes on a fresh connection; the status, headers and body of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
        return status, headers, body
    finally:
        writer.close()


GET = b"GET /v1/chains HTTP/1.1\r\nHost: api\r\n"
REFUSED: list[tuple[str, bytes, int]] = [
    ("bad request line", b"GARBAGE\r\n\r\n", 400),
    ("TLS on the HTTP port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40, 400),
    ("bad HTTP version", b"GET /v1/chains HTTP/9.9\r\nHost: api\r\n\r\n", 400),
    ("bad header line", GET + b"Bad Header\r\n\r\n", 400),
    ("control byte in a header", GET + b"X-A: a\x01b\r\n\r\n", 400),
    ("oversized header", GET + b"X-A: " + b"a" * 20_000 + b"\r\n\r\n", 400),
    ("oversized request line", b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bad Content-Length", GET + b"Content-Length: abc\r\n\r\n", 400),
    ("two Content-Lengths", GET + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (
        "Content-Length and chunked",
        GET + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("bad chunk size", GET + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ("unknown Expect", GET + b"Expect: tea\r\nConnection: close\r\n\r\n", 417),
    (
        "body over the limit",
        b"POST /v1/margin:batch HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: 300000\r\n\r\n" + b" " * 300_000,
        413,
    ),
]


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(("name", "data", "status"), REFUSED, ids=[c[0] for c in REFUSED])
async def test_http_aiohttp_refuses_is_a_problem_too(
    devnet: Any, tmp_path: Path, name: str, data: bytes, status: int
) -> None:
    async with client(api_config(devnet), tmp_path) as c:
        got, headers, body = await raw_exchange(c.server.port, data)
        assert got == status, (name, body)
        assert headers["content-type"] == "application/problem+json", name
        assert headers.get("server", "crossmargin") == "crossmargin", name
        doc = json.loads(body)
        assert doc["status"] == status
        assert {"type", "title", "code", "detail"} <= doc.keys()
        assert b"aiohttp" not in body
        assert b"b'" not in body
        assert b"bytearray" not in body
        ok = await c.get("/v1/chains")  # the server is fine
        assert ok.status == 200
        assert ok.headers["Server"] == "crossmargin"


@pytest.mark.asyncio(loop_scope="session")
async def test_no_version_banner_anywhere(devnet: Any, tmp_path: Path) -> None:
    async with client(api_config(devnet), tmp_path) as c:
        for path in ("/", "/static/app.js", "/openapi.json", "/metrics", "/v1/health", "/x"):
            resp = await c.get(path)
            await resp.read()
            assert resp.headers["Server"] == "crossmargin", path
        head = await c.head("/static/nope.js")
        assert head.status == 404
        assert head.headers["Server"] == "crossmargin"


# ---------------------------------------------------------------- leaks

# an IP address (with or without a port), host:port, or a socket address tuple
NETWORK = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b|localhost:\d|\[[0-9a-f:]+\]|\('[^']*', \d+")
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
LIBRARY = re.compile(
    r"Traceback|File \"|aiohttp|Python/|object at 0x|\w+Error\(|\w+Exception\(|ConnectionKey"
)


@pytest.mark.asyncio(loop_scope="session")
async def test_no_response_leaks_an_endpoint_key_or_internals(
    devnet: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "SECRETrpcKEY0123"
    url, netloc = dead_url(secret)
    chains = [
        c.model_copy(update={"rpc_urls": [url], "retries": 0, "timeout_s": 1.0})
        if c.name == "base"
        else c
        for c in devnet.config.chains
    ]
    key, entry = make_key("sweeper", rate_per_s=1000.0, burst=1000)
    config = api_config(devnet, anonymous=True, keys=[entry]).model_copy(update={"chains": chains})
    needles = {secret, netloc, key, *(u for c in chains for u in c.rpc_urls)}
    bob = devnet.demo_accounts["bob"]
    acct = f"/v1/accounts/{bob}"
    auth = {"X-API-Key": key}
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"{acct}/margin", {"headers": auth}),
        ("GET", f"{acct}/capacity?target_chain=base", {"headers": auth}),
        ("GET", f"{acct}/stress", {"headers": auth}),
        ("GET", f"{acct}/snapshots", {"headers": auth}),
        ("POST", "/v1/margin:batch", {"json": {"accounts": [bob]}, "headers": auth}),
        ("GET", "/v1/health", {}),
        ("GET", "/v1/chains", {}),
        ("GET", "/v1/assets", {}),
        ("GET", "/metrics", {}),
        ("GET", "/openapi.json", {}),
        ("GET", "/v1/web/context", {}),
        ("GET", f"{acct}/margin", {"headers": {"X-API-Key": key + "x"}}),
        ("GET", f"{acct}/margin?target_chain=solana", {}),
        ("GET", "/v1/accounts/0x12/margin", {}),
        ("GET", "/v1/snapshots/" + "e" * 64, {}),
        ("POST", "/v1/margin:batch", {"data": "[" * 1000, "headers": JSON_BODY}),
        ("POST", "/v1/margin:batch", {"data": "{", "headers": JSON_BODY}),
        ("POST", "/v1/margin:batch", {"json": {"accounts": [bob], "x": 1}}),
        ("PUT", "/v1/chains", {}),
        ("GET", "/static/nope.js", {}),
        ("GET", "/nowhere", {}),
    ]
    async with client(config, tmp_path) as c:
        seen: list[tuple[str, int, str]] = []

        async def sweep(method: str, path: str, kwargs: dict[str, Any]) -> None:
            resp = await c.request(method, path, **kwargs)
            text = await resp.text()
            everything = text + "\n" + "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
            for needle in needles:
                assert needle not in everything, (path, needle)
            assert not NETWORK.search(everything), (path, everything)
            assert resp.headers.get("Server") == "crossmargin"
            if resp.status >= 400:
                await problem(resp, resp.status)
                assert not LIBRARY.search(text), (path, text)
                sent = {a.lower() for a in ADDRESS.findall(path + json.dumps(kwargs))}
                assert {a.lower() for a in ADDRESS.findall(text)} <= sent, (path, text)
            seen.append((path, resp.status, text))

        for method, path, kwargs in requests:
            await sweep(method, path, kwargs)
        margin = json.loads(seen[0][2])
        assert margin["status"] == "partial"  # the dead endpoint was really tried

        # an unexpected failure whose message carries the URL and a library repr
        async def boom(self: Service, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(f"ClientConnectorError(ConnectionKey(host={url!r})) at {netloc}")

        monkeypatch.setattr(Service, "serve", boom)
        await sweep("GET", f"{acct}/stress", {"headers": auth})
        path, status, text = seen[-1]
        assert status == 500
        body = json.loads(text)
        assert body["code"] == "internal_error"
        assert "logged" in body["detail"]
        statuses = {s for _, s, _ in seen}
        assert {200, 400, 403, 404, 405, 500} <= statuses
