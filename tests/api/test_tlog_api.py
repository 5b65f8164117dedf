"""The log's endpoints on the devnet (METHOD.md §10): every served report names its leaf,
tree heads verify with the served public key, inclusion and consistency proofs check
with the independent verifier (tlog_verifier.py), a kept head audits the store, and
bad sizes are problems."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from api_helpers import api_config, problem
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from tlog_verifier import consistency_ok, inclusion_ok

from api.app import create_app
from crossmargin.cli import main as cli


def _sth_ok(sth: dict[str, Any], public_hex: str) -> bool:
    """Ed25519 over the documented bytes, checked here from the JSON alone."""
    message = (
        b"crossmargin tree head v1\n"
        + sth["tree_size"].to_bytes(8, "big")
        + sth["timestamp"].to_bytes(8, "big")
        + bytes.fromhex(sth["root_hash"])
    )
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(
            bytes.fromhex(sth["signature"]), message
        )
    except Exception:
        return False
    return True


def test_log_endpoints(devnet: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    alice, bob, carol = (devnet.demo_accounts[n] for n in ("alice", "bob", "carol"))

    async def run() -> dict[str, Any]:
        async with TestClient(TestServer(create_app(devnet.config, database=url))) as c:
            key = await (await c.get("/v1/log/key")).json()
            assert key["algorithm"] == "Ed25519"
            resp = await c.get(f"/v1/accounts/{alice}/margin")
            assert resp.status == 200
            sid, leaf = resp.headers["Snapshot-Id"], int(resp.headers["Snapshot-Leaf-Index"])
            first = await (await c.get("/v1/log/tree-head")).json()
            assert _sth_ok(first, key["public_key"])
            assert not _sth_ok(first | {"tree_size": first["tree_size"] + 1}, key["public_key"])
            proof = await (await c.get(f"/v1/log/inclusion/{sid}")).json()
            assert proof["leaf_index"] == leaf
            assert proof["root_hash"] == first["root_hash"]
            args = (leaf, first["tree_size"], bytes.fromhex(sid))
            path = [bytes.fromhex(h) for h in proof["audit_path"]]
            assert inclusion_ok(*args, path, bytes.fromhex(first["root_hash"]))
            # more snapshots: a batch names each one's leaf, the head grows consistently
            resp = await c.post("/v1/margin:batch", json={"accounts": [alice, bob, carol]})
            items = (await resp.json())["results"]
            assert all(isinstance(i["leaf_index"], int) for i in items)
            await c.get(f"/v1/accounts/{bob}/stress")
            second = await (await c.get("/v1/log/tree-head")).json()
            assert _sth_ok(second, key["public_key"])
            m, n = first["tree_size"], second["tree_size"]
            assert n > m
            cons = await (await c.get(f"/v1/log/consistency?first={m}&second={n}")).json()
            roots = [bytes.fromhex(x) for x in (first["root_hash"], second["root_hash"])]
            assert consistency_ok(m, n, *roots, [bytes.fromhex(h) for h in cons["proof"]])
            old = await (await c.get(f"/v1/log/inclusion/{items[-1]['snapshot_id']}")).json()
            assert old["tree_size"] == n
            # the stored snapshot and the account's page name the same leaf
            snap = await (await c.get(f"/v1/snapshots/{sid}")).json()
            assert snap["leaf_index"] == leaf
            page = await (await c.get(f"/v1/accounts/{alice}/snapshots")).json()
            assert {i["id"]: i["leaf_index"] for i in page["items"]}[sid] == leaf
            # bad sizes and unknown leaves are problems
            body = await problem(await c.get(f"/v1/log/inclusion/{sid}?tree_size={n + 5}"), 404)
            assert body["code"] == "bad_tree_size"
            late = items[-1]  # not a leaf yet of the tree as large as its index
            path_ = f"/v1/log/inclusion/{late['snapshot_id']}?tree_size={late['leaf_index']}"
            body = await problem(await c.get(path_), 404)
            body = await problem(await c.get(f"/v1/log/consistency?first={n}&second={m}"), 404)
            assert body["code"] == "bad_tree_size"
            body = await problem(await c.get("/v1/log/consistency?first=0"), 400)
            body = await problem(await c.get("/v1/log/inclusion/" + "ab" * 32), 404)
            return first

    first = asyncio.run(run())
    head = tmp_path / "head.json"
    head.write_text(json.dumps(first))
    args = ["--tree-head", str(head), "--db", url, "--config", str(devnet.config_path)]
    assert cli(["audit", "verify", *args]) == 0  # with the configured key's public half


def test_no_signing_key(devnet: Any, tmp_path: Path) -> None:
    config = api_config(devnet, tlog_key=None)

    async def run() -> None:
        app = create_app(config, database=f"sqlite:///{tmp_path / 'n.db'}")
        async with TestClient(TestServer(app)) as c:
            for path in ("/v1/log/tree-head", "/v1/log/key"):
                body = await problem(await c.get(path), 404)
                assert body["code"] == "no_signing_key"
            resp = await c.get(f"/v1/accounts/{devnet.demo_accounts['alice']}/stress")
            assert resp.headers["Snapshot-Leaf-Index"] == "0"  # the log grows all the same

    asyncio.run(run())
