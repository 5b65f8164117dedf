"""METHOD.md §15 (as of a past time) and §1 (per-chain addresses), end to end on the devnet.

The account is one only these tests fund (anvil_setBalance), so the demo accounts the
other tests check are left as they are; blocks are mined a second or two apart, so the
feeds stay fresh for every other test.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from api.app import create_app
from api.audit import verify
from api.store import Store
from crossmargin.core.config import checksummed
from crossmargin.core.errors import AsOfInFuture, BeforeGenesis, StateUnavailable
from crossmargin.engine import Engine
from crossmargin.pipeline.report import MarginReport
from tests.api.api_helpers import ServerThread, problem, with_chain

ACCOUNT = checksummed("0x00000000000000000000000000000000000a50f1")
OTHER = checksummed("0x00000000000000000000000000000000000a50f2")  # on base (§1)
SINK = checksummed("0x00000000000000000000000000000000000a50f3")
ETH = 10**18


def _margin(config: Any, **kw: Any) -> MarginReport:
    async def run() -> MarginReport:
        async with Engine.connect(config) as engine:
            return await engine.margin(ACCOUNT, "arbitrum", **kw)

    return asyncio.run(run())


def _fund(devnet: Any, json_rpc: Callable[..., Any], wei: int, next_ts: int | None) -> None:
    for c in devnet.config.chains:
        url = devnet.rpc_url(c.name)
        json_rpc(url, "anvil_setBalance", ACCOUNT, hex(wei))
        if next_ts is not None:
            json_rpc(url, "evm_setNextBlockTimestamp", hex(next_ts))
        json_rpc(url, "evm_mine")


def _send_away(devnet: Any, json_rpc: Callable[..., Any], wei: int, ts: int) -> None:
    """A real transfer out of the account in a block stamped `ts` on every chain (anvil's
    setBalance rewrites the head block's state too, so it cannot move state in time)."""
    for c in devnet.config.chains:
        url = devnet.rpc_url(c.name)
        json_rpc(url, "anvil_impersonateAccount", ACCOUNT)
        json_rpc(url, "evm_setNextBlockTimestamp", hex(ts))
        tx = {"from": ACCOUNT, "to": SINK, "value": hex(wei), "gas": hex(21_000)}
        json_rpc(url, "eth_sendTransaction", tx)
        json_rpc(url, "anvil_stopImpersonatingAccount", ACCOUNT)


def _wait_until(t: int) -> None:
    deadline = time.time() + 30
    while time.time() < t:
        assert time.time() < deadline, "chain time is far ahead of the wall clock"
        time.sleep(0.1)


def test_margin_at_a_past_time_is_the_margin_computed_then(
    devnet: Any, json_rpc: Callable[..., Any], tmp_path: Path
) -> None:
    config = devnet.config
    _fund(devnet, json_rpc, 3 * ETH, None)
    then = _margin(config)  # computed when these blocks were the heads
    assert then.totals.collateral_usd != "0.000000"
    t1 = max(b.timestamp for b in then.as_of)
    # move state: the balance changes in a block on every chain stamped after τ
    _send_away(devnet, json_rpc, 2 * ETH, t1 + 2)
    tau = t1 + 1
    _wait_until(tau)
    now = _margin(config)
    assert now.totals.collateral_usd != then.totals.collateral_usd
    past = _margin(config, at=tau)
    assert past.as_of == then.as_of, (tau, past.as_of, then.as_of)
    assert past.model_dump() == then.model_dump()
    blocks = [(b.name, b.block_number) for b in then.as_of]
    assert _margin(config, blocks=blocks).model_dump() == then.model_dump()

    # the API: the same figures, the request recorded in the snapshot
    db = f"sqlite:///{tmp_path / 'asof.db'}"
    with ServerThread(create_app(config, database=db)) as server:

        async def api() -> None:
            async with aiohttp.ClientSession() as s:
                url = f"{server.url}/v1/accounts/{ACCOUNT}/margin"
                async with s.get(url, params={"target_chain": "arbitrum", "at": tau}) as r:
                    assert r.status == 200, await r.text()
                    body = await r.json()
                    sid = r.headers["Snapshot-Id"]
                assert body == json.loads(then.model_dump_json())
                async with s.get(f"{server.url}/v1/snapshots/{sid}") as r:
                    doc = (await r.json())["document"]
                assert doc["request"]["at"] == str(tau)
                future = {"at": str(int(time.time()) + 3600)}
                async with s.get(url, params=future) as r:
                    assert (await problem(r, 409))["code"] == "as_of_in_future"
                async with s.get(url, params={"at": "1000"}) as r:
                    body = await problem(r, 409)
                    assert body["code"] == "before_genesis"
                    assert "http" not in body["detail"]
                batch = {"accounts": [ACCOUNT], "target_chain": "arbitrum", "at": tau}
                async with s.post(f"{server.url}/v1/margin:batch", json=batch) as r:
                    assert r.status == 200, await r.text()
                    item = (await r.json())["results"][0]
                assert item["margin"] == json.loads(then.model_dump_json())
                mapped = {"at": tau, "addresses": f"base:{OTHER.lower()}"}
                async with s.get(url, params=mapped) as r:
                    assert r.status == 200, await r.text()
                    rows = {c["name"]: c for c in (await r.json())["chains"]}
                    sid = r.headers["Snapshot-Id"]
                assert rows["base"]["address"] == OTHER
                async with s.get(f"{server.url}/v1/snapshots/{sid}") as r:
                    doc = (await r.json())["document"]
                assert doc["request"]["addresses"] == {"base": OTHER}

        asyncio.run(api())
    # every stored snapshot, as-of and per-chain ones included, replays byte for byte
    store = Store.open(db)
    try:
        audit = verify(store)
    finally:
        store.close()
    assert audit is not None
    assert audit.ok, audit.findings
    assert audit.replayed == audit.snapshots >= 2  # at=, and at= with addresses


def test_before_genesis_and_future_are_refused(devnet: Any) -> None:
    config = devnet.config
    with pytest.raises(BeforeGenesis, match="no block at or before time 1000"):
        _margin(config, at=1000)
    with pytest.raises(AsOfInFuture, match="in the future"):
        _margin(config, at=int(time.time()) + 3600)


def test_a_node_without_old_state_is_a_clear_refusal(
    devnet: Any, anvils: Any, json_rpc: Callable[..., Any]
) -> None:
    """An anvil that keeps no history (--prune-history) has the old header, not its
    state: the request is refused, never read at another block's state."""
    genesis = int(time.time()) - 1000
    node = anvils.start(1, "--prune-history", "--timestamp", str(genesis))
    for i in range(1, 6):
        json_rpc(node.url, "evm_mine", hex(genesis + 100 * i))
    config = with_chain(devnet.config, "ethereum", rpc_urls=[node.url], identity=None)
    with pytest.raises(StateUnavailable, match=r"chain ethereum .* archive node") as exc:
        _margin(config, at=genesis + 250)
    assert exc.value.chain == "ethereum"


def test_per_chain_addresses_read_the_right_balances(
    devnet: Any, json_rpc: Callable[..., Any]
) -> None:
    config = devnet.config
    json_rpc(devnet.rpc_url("base"), "anvil_setBalance", OTHER, hex(5 * ETH))
    json_rpc(devnet.rpc_url("base"), "anvil_setBalance", ACCOUNT, hex(0))
    json_rpc(devnet.rpc_url("base"), "anvil_setCode", OTHER, "0x00")  # a wallet contract
    json_rpc(devnet.rpc_url("base"), "evm_mine")
    plain = _margin(config)
    mapped = _margin(config, addresses={"base": OTHER})
    rows = {c.name: c for c in mapped.chains}
    assert rows["base"].address == OTHER
    assert rows["ethereum"].address == ACCOUNT
    assert (rows["base"].contract, rows["ethereum"].contract) == (True, False)
    assert (rows["base"].note or "").startswith("address_kind_differs")
    assert rows["ethereum"].note is not None
    assert all(c.address is None for c in plain.chains)
    base_eth = [
        p for p in mapped.positions if p.chain_id == rows["base"].chain_id and p.symbol == "ETH"
    ]
    assert [p.raw_amount for p in base_eth] == [str(5 * ETH)]
    assert not [p for p in plain.positions if p.chain_id == rows["base"].chain_id]
    # the same mapping from config ([[accounts]])
    entry = {"address": ACCOUNT, "addresses": {"base": OTHER}}
    configured = config.model_validate({**config.model_dump(by_alias=True), "accounts": [entry]})
    assert _margin(configured).model_dump() == mapped.model_dump()
