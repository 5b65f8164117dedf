"""Drive one devnet chain from a test: time, snapshots, transactions, deployments.

Plain JSON-RPC over urllib; transactions come from anvil's account 9 (unlocked), which
the devnet never uses, so they never race the devnet's own nonces.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from eth_abi.abi import decode

from devnet.evm import artifact, calldata, deploy_data

SENDER = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"  # anvil account 9


class Chain:
    def __init__(self, url: str) -> None:
        self.url = url

    def rpc(self, method: str, *params: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        req = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            reply = json.loads(resp.read())
        if "error" in reply:
            raise AssertionError(f"{method}: {reply['error']}")
        return reply["result"]

    def now(self) -> int:
        return int(self.rpc("eth_getBlockByNumber", "latest", False)["timestamp"], 16)

    def advance(self, seconds: int) -> None:
        self.rpc("evm_increaseTime", seconds)
        self.rpc("evm_mine")

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snap: str) -> None:
        assert self.rpc("evm_revert", snap) is True

    def _send(self, tx: dict[str, Any]) -> dict[str, Any]:
        h = self.rpc("eth_sendTransaction", {"from": SENDER, "gas": hex(3_000_000), **tx})
        for _ in range(50):
            receipt: dict[str, Any] | None = self.rpc("eth_getTransactionReceipt", h)
            if receipt is not None:
                assert receipt["status"] == "0x1", receipt
                return receipt
            self.rpc("evm_mine")  # not mined on arrival (e.g. queued behind a reverted nonce)
        raise AssertionError(
            f"transaction {h} not mined: {self.rpc('eth_getTransactionByHash', h)}"
        )

    def transact(self, to: str, signature: str, *args: Any) -> None:
        self._send({"to": to, "data": calldata(signature, *args)})

    def deploy(self, name: str, types: list[str], args: list[Any]) -> str:
        receipt = self._send({"data": deploy_data(artifact(name), types, args)})
        return str(receipt["contractAddress"])

    def call(self, to: str, signature: str, out: list[str], *args: Any) -> tuple[Any, ...]:
        raw = self.rpc("eth_call", {"to": to, "data": calldata(signature, *args)}, "latest")
        return tuple(decode(out, bytes.fromhex(raw[2:])))

    def latest_answer(self, feed: str) -> int:
        (answer,) = self.call(feed, "latestAnswer()", ["int256"])
        return int(answer)
