"""Anchoring tree heads on a chain (issue 14, part 3): contracts/src/tlog/TreeHeadAnchor.sol
on an anvil node takes a newer tree head of a real store only with its RFC 9162
consistency proof from the anchored one, so a forked history cannot be anchored, even
by the key's holder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from api_helpers import append_batches
from tlog_verifier import mth

from api.store import Store
from devnet.evm import artifact, calldata, create_address, decode_result


def _tx(node: Any, sender: str, to: str | None, data: str) -> dict[str, Any]:
    tx = {"from": sender, "data": data, "gas": hex(3_000_000)}
    if to is not None:
        tx["to"] = to
    h = node.rpc("eth_sendTransaction", tx)
    for _ in range(100):
        receipt = node.rpc("eth_getTransactionReceipt", h)
        if receipt is not None:
            return dict(receipt)
        time.sleep(0.05)
    raise AssertionError("no receipt")


ANCHOR = "anchor(uint64,bytes32,uint64,bytes32[])"


def test_anchor_takes_only_consistent_heads(anvils: Any, tmp_path: Path) -> None:
    node = anvils.start(31337)
    owner, other = node.rpc("eth_accounts")[:2]
    nonce = int(node.rpc("eth_getTransactionCount", owner, "latest"), 16)
    assert _tx(node, owner, None, artifact("TreeHeadAnchor").bytecode)["status"] == "0x1"
    anchor = create_address(owner, nonce)

    url = f"sqlite:///{tmp_path / 'a.db'}"
    append_batches(url, ["0xan0", "0xan1"], "first", 3)  # 6 leaves
    store = Store.open(url)
    try:
        m, first = store.log.head()
        append_batches(url, ["0xan0", "0xan1", "0xan2"], "more", 3)  # 15 leaves
        n, second = store.log.head()
        proof = store.log.consistency(m, n)
        leaves = [bytes.fromhex(s) for _, s in store.log.leaves(0, n)]
    finally:
        store.close()
    assert (first, second) == (mth(leaves[:m]), mth(leaves))

    def send(sender: str, size: int, root: bytes, ts: int, path: list[bytes]) -> bool:
        data = calldata(ANCHOR, size, root, ts, path)
        return _tx(node, sender, anchor, data)["status"] == "0x1"

    def state() -> tuple[int, bytes]:
        size = decode_result(
            ["uint64"],
            node.rpc("eth_call", {"to": anchor, "data": calldata("treeSize()")}, "latest"),
        )[0]
        root = decode_result(
            ["bytes32"], node.rpc("eth_call", {"to": anchor, "data": calldata("root()")}, "latest")
        )[0]
        return int(size), bytes(root)

    assert not send(other, m, first, 1, [])  # only the publisher anchors
    assert send(owner, m, first, 1, [])
    assert state() == (m, first)
    forged = mth([*leaves[: m - 1], b"rewritten", *leaves[m:]])  # same size, history changed
    assert not send(owner, n, forged, 2, proof)
    assert not send(owner, n, second, 2, proof[:-1])  # a cut proof
    assert state() == (m, first)
    assert send(owner, n, second, 2, proof)  # the real extension
    assert state() == (n, second)
    assert not send(owner, m, first, 3, [])  # never back to an older head
    logs = node.rpc("eth_getLogs", {"address": anchor, "fromBlock": "0x0"})
    assert [int(entry["topics"][1], 16) for entry in logs] == [m, n]
