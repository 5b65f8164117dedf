"""METHOD.md §13 through the API and the store: snapshots served in verified mode carry
their headers and proofs, and `crossmargin audit verify --offline` re-proves every
balance from the stored documents alone (no node), and fails once a proof byte changes."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import create_engine, text

from api.app import create_app
from api.store import Store, normalise_url
from crossmargin.cli import main as cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapters"))
from proof_helpers import verified


def _serve(devnet: Any, url: str) -> list[dict[str, Any]]:
    config = verified(devnet.config)
    alice, bob, carol = (devnet.demo_accounts[n] for n in ("alice", "bob", "carol"))

    async def run() -> list[dict[str, Any]]:
        out = []
        async with TestClient(TestServer(create_app(config, database=url))) as c:
            resp = await c.get(f"/v1/accounts/{alice}/margin?target_chain=arbitrum")
            assert resp.status == 200, await resp.text()
            out.append(await resp.json())
            resp = await c.post(
                "/v1/margin:batch", json={"accounts": [bob, carol], "target_chain": "base"}
            )
            assert resp.status == 200, await resp.text()
            out += [item["margin"] for item in (await resp.json())["results"]]
        return out

    return asyncio.run(run())


def _proof_blob(url: str) -> str:
    """The hash of one stored holder-proof blob (named by a document's chain entry)."""
    store = Store.open(url)
    try:
        account = store.accounts()[0]
        rows, _ = store.chain_rows(account)
    finally:
        store.close()
    doc = json.loads(rows[-1][1])
    sha: str = next(c["proof"] for c in doc["inputs"]["chains"] if "proof" in c)
    return sha


def test_served_snapshots_re_prove_offline(
    devnet: Any, database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = _serve(devnet, database)
    for report in reports:  # every chain says how many of its positions were proven
        for row in report["chains"]:
            assert row["positions"] >= row["proven"] > 0, row
    capsys.readouterr()
    assert cli(["audit", "verify", "--all", "--offline", "--database", database]) == 0
    out = capsys.readouterr().out
    proven, _, rest = out.partition(" verified-chain")[0].rpartition("audit: ")[2].partition(" of ")
    assert int(proven) > 0
    assert int(rest) >= int(proven)
    # one byte of one stored proof changed: the audit fails
    sha = _proof_blob(database)
    engine = create_engine(normalise_url(database))
    try:
        with engine.begin() as conn:
            body = conn.execute(
                text("select document from cm_blob where hash = :s"), {"s": sha}
            ).scalar()
            assert isinstance(body, str)
            i = body.index('"nodes":["') + len('"nodes":["') + 10
            flipped = body[:i] + ("0" if body[i] != "0" else "1") + body[i + 1 :]
            conn.execute(
                text("update cm_blob set document = :t where hash = :s"), {"t": flipped, "s": sha}
            )
    finally:
        engine.dispose()
    assert cli(["audit", "verify", "--all", "--offline", "--database", database]) == 1
    assert "TAMPERED" in capsys.readouterr().out
