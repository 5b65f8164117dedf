"""A transfer's alert is not held behind a price round's recomputation (METHOD.md §14):
with slices of one account, a step stops once `poll_s` has passed since its pin; the
account nearest its threshold goes first, the next step recomputes the account a
transfer named before the round's holders still pending, and those are all
recomputed in the end, at newer pins. A block that touches nobody recomputes nobody."""

from __future__ import annotations

import secrets
from decimal import Decimal
from pathlib import Path

import pytest
from eth_utils.address import to_checksum_address
from watch_helpers import move_price, rpc, send, token

from api.metrics import Metrics
from api.service import Service
from api.store import Store
from api.watch.rules import Thresholds
from api.watch.store import WatchStore
from api.watch.watcher import Step, Watcher
from crossmargin.engine import Engine, open_adapters
from devnet import Devnet
from devnet.evm import DEPLOYER, calldata

pytestmark = pytest.mark.asyncio(loop_scope="session")

HOLDERS = 80
TINY = {"poll_s": 0.05, "slice_s": 0.0001, "sweep_s": 3600.0}


def _address() -> str:
    return to_checksum_address("0x" + secrets.token_hex(20))


async def test_a_transfer_goes_before_a_price_rounds_holders(
    own_devnet: Devnet, tmp_path: Path
) -> None:
    net = own_devnet
    eth = net.rpc_url("ethereum")
    holders = [_address() for _ in range(HOLDERS)]
    mover = holders[0]  # holds 1 ETH like the others, and owes 1,500 USDC
    for a in holders:
        rpc(eth, "anvil_setBalance", a, hex(10**18))
    debt = token(net, "ethereum", "variableDebtUSDC")
    send(eth, DEPLOYER, debt, calldata("mint(address,uint256)", mover, 1_500 * 10**6))
    cfg = net.config.model_copy(update={"watch": net.config.watch.model_copy(update=TINY)})
    store = Store.open(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        async with open_adapters(cfg) as adapters:
            engine = Engine(cfg, adapters)
            service = Service(cfg, engine, adapters, store, Metrics(lambda: adapters))
            await service.start()
            try:
                health = Decimal(str((await engine.margin(mover)).totals.health))
                watches = WatchStore(store)
                watches.create(
                    "slices",
                    {
                        "accounts": holders,
                        "target": "ethereum",
                        "method": cfg.risk.method,
                        "thresholds": Thresholds(health_below=float(health * Decimal("0.75"))),
                        "webhook_url": "http://127.0.0.1:9/hook",
                        "secret": "slices-secret-0123456789",
                    },
                )
                watcher = Watcher(service, watches)

                async def drain() -> list[Step]:
                    steps = [await watcher.step()]
                    while steps[-1].pending:
                        steps.append(await watcher.step())
                    return steps

                first = await drain()
                assert len(first) > 1  # the first look took several steps
                assert sum(s.recomputed for s in first) == HOLDERS
                assert not any(s.alerts for s in first)

                move_price(net, "ETH", 1.01)  # every holder touched
                rounded = await watcher.step()
                assert rounded.moved
                assert rounded.pending > 0
                assert next(iter(rounded.snapshots)) == mover  # the one near its threshold

                # the mover sends half its ETH away: health about halves, below 0.75x
                rpc(eth, "anvil_impersonateAccount", mover)
                rpc(
                    eth,
                    "eth_sendTransaction",
                    {"from": mover, "to": DEPLOYER, "value": hex(5 * 10**17)},
                )
                rpc(eth, "evm_mine")
                moved = await watcher.step()
                assert next(iter(moved.snapshots)) == mover  # named by the transfer: first
                assert len(moved.alerts) == 1  # stored while the round's holders wait
                assert moved.pending > 0

                rest = await drain()
                done = set(rounded.snapshots) | set(moved.snapshots)
                done |= {a for s in rest for a in s.snapshots}
                assert done == set(holders)  # every holder recomputed after the round
                assert not any(s.alerts for s in rest)

                rpc(net.rpc_url("base"), "evm_mine")  # a block that touches nobody
                quiet = await watcher.step()
                assert quiet.moved == ["base"]
                assert quiet.recomputed == 0
                assert quiet.pending == 0
            finally:
                await service.close()
    finally:
        store.close()
