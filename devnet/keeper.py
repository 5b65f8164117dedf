"""The keeper: keeps every price feed fresh while the devnet runs.

Each tick re-posts each feed's latest answer with MockV3Aggregator.updateAnswer, which
stamps a new round with the mining block's timestamp, i.e. the current chain time.
The price is read back first, so a price a test has set is kept, not reverted.
Sequencer uptime feeds are never touched (a new round would restart the grace period).
Feeds a staleness test needs stale can be paused one by one, or a whole chain at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

from crossmargin.core.errors import CrossmarginError
from devnet.deploy import FEES
from devnet.errors import DevnetError
from devnet.evm import DEPLOYER, calldata, decode_result
from devnet.rpc import Call, Rpc, wait_receipts

log = logging.getLogger(__name__)

KEEPER_GAS = 200_000


class Keeper:
    def __init__(self, feeds: Mapping[str, Sequence[str]], interval_s: float) -> None:
        """`feeds`: chain name -> price feed addresses (checksummed)."""
        self.feeds = {chain: list(addrs) for chain, addrs in feeds.items()}
        self.interval_s = interval_s
        self._paused: set[tuple[str, str | None]] = set()
        self.ticks = 0

    def pause(self, chain: str, address: str | None = None) -> None:
        """Stop refreshing one feed, or every feed of `chain` when address is None."""
        self._paused.add((chain, address.lower() if address else None))

    def resume(self, chain: str, address: str | None = None) -> None:
        self._paused.discard((chain, address.lower() if address else None))

    def active(self, chain: str) -> list[str]:
        if (chain, None) in self._paused:
            return []
        return [a for a in self.feeds.get(chain, []) if (chain, a.lower()) not in self._paused]

    async def tick(self, rpcs: Mapping[str, Rpc]) -> None:
        """One refresh of every active feed on every chain (chains in parallel)."""
        async with asyncio.TaskGroup() as tg:
            for chain, rpc in rpcs.items():
                if feeds := self.active(chain):
                    tg.create_task(_refresh(rpc, feeds))
        self.ticks += 1

    async def run(self, rpcs: Mapping[str, Rpc]) -> None:
        """Tick every interval_s until cancelled; chain errors are logged, not fatal."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick(rpcs)
            except* CrossmarginError as group:
                for exc in group.exceptions:
                    log.warning("keeper: %s", exc)


async def _refresh(rpc: Rpc, feeds: Sequence[str]) -> None:
    reads: list[Call] = [
        ("eth_call", [{"to": f, "data": calldata("latestAnswer()")}, "latest"]) for f in feeds
    ]
    reads.append(("eth_getTransactionCount", [DEPLOYER, "pending"]))
    *answers, count = await rpc.batch(reads)
    nonce = int(count, 16)
    sends: list[Call] = []
    for i, (feed, raw) in enumerate(zip(feeds, answers, strict=True)):
        (answer,) = decode_result(["int256"], raw)
        tx = {
            "from": DEPLOYER,
            "to": feed,
            "data": calldata("updateAnswer(int256)", answer),
            "gas": hex(KEEPER_GAS),
            "nonce": hex(nonce + i),
            **FEES,
        }
        sends.append(("eth_sendTransaction", [tx]))
    hashes = await rpc.batch(sends)
    for feed, receipt in zip(feeds, await wait_receipts(rpc, hashes), strict=True):
        if receipt.get("status") != "0x1":
            raise DevnetError(f"chain {rpc.chain_id}: keeper update of {feed} failed")
