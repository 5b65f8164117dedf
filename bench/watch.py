"""Benchmark: the watcher on a devnet mining a block every second (METHOD.md §14).

Run from the repository root:  .venv/bin/python bench/watch.py [--seconds 60]
[--accounts 10000] [--holders 2000] [--movers 40].

Four anvil chains mine one block per second (interval mining). WATCHED accounts are
watched by one watch (health below THRESHOLD); HOLDERS of them hold 1 ETH on ethereum
(so a new ETH round touches them all), the rest hold nothing and are untouched. MOVERS
(holders that also owe 1,500 USDC, health about 1.8) send half of their ETH away, or
get it back, a few each second: each such transfer crosses the threshold and raises
one alert. Every ROUND_S seconds the ETH
feed on ethereum gets a new round (+-0.2%). A webhook receiver in its own thread
acknowledges every alert and notes when it arrived.

Reported: block-to-alert latency (the timestamp of the first pinned ethereum block
showing the crossing, from the alert's `as_of`, to the webhook's arrival) p50/p99;
accounts recomputed per new pin set (every step's, until the next pin set) and per
ethereum block (all of them over the blocks), of how many watched; RPC requests per
block. Beside it: the latency from the moment an
independent poller saw that block, and from the timestamp of the block the transfer
was mined in (when the watcher pinned a later block first, this one is longer).

Block timestamps are whole seconds, and anvil's interval mining stamps a block
mined at wall time t+f with t. So interval mining is started just after a whole
second (the next second boundary + 10 ms): blocks are mined about 10 ms after
their stamp, as on a real chain, where a block is stamped with its slot's start and
arrives shortly after ("block stamp -> seen" shows how long after, here).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: this file's folder would shadow the package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import aiohttp
from aiohttp import web

THRESHOLD = 1.2
DEBT_USDC = 1_500
ROUND_S = 5.0
AFTER_SECOND_S = 0.01  # interval mining starts this long after a whole second


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class Receiver:
    """The webhook, in its own thread and event loop: arrival times are not delayed by
    the watcher's work."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            body = await request.read()
            self.arrivals.append((time.time(), json.loads(body)))
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


async def _rpc(session: aiohttp.ClientSession, url: str, method: str, *params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    async with session.post(url, json=body) as resp:
        reply = await resp.json()
    if "error" in reply:
        raise RuntimeError(f"{method}: {reply['error']}")
    return reply["result"]


async def _batch(
    session: aiohttp.ClientSession, url: str, calls: list[tuple[str, list[Any]]]
) -> None:
    for i in range(0, len(calls), 500):
        body = [
            {"jsonrpc": "2.0", "id": j, "method": m, "params": p}
            for j, (m, p) in enumerate(calls[i : i + 500])
        ]
        async with session.post(url, json=body) as resp:
            for reply in await resp.json():
                if "error" in reply:
                    raise RuntimeError(str(reply["error"]))


def _address() -> str:
    from eth_utils.address import to_checksum_address

    return to_checksum_address("0x" + secrets.token_hex(20))


class BlockSeen:
    """An independent poller: when each ethereum block was first seen (wall clock)."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}

    async def run(self, session: aiohttp.ClientSession, url: str) -> None:
        while True:
            n = int(await _rpc(session, url, "eth_blockNumber"), 16)
            self.seen.setdefault(n, time.time())
            await asyncio.sleep(0.02)


async def _drive(
    session: aiohttp.ClientSession,
    net: Any,
    movers: list[str],
    stop: asyncio.Event,
    sent: list[tuple[str, str]],
) -> None:
    """Movers cross the threshold back and forth; ETH rounds move every ROUND_S.
    `sent`: each transfer's (mover, transaction hash), in order."""
    from devnet.evm import DEPLOYER, calldata

    eth = net.rpc_url("ethereum")
    sink = _address()
    await _rpc(session, eth, "anvil_setBalance", sink, hex(10**24))
    for a in [sink, *movers, DEPLOYER]:
        await _rpc(session, eth, "anvil_impersonateAccount", a)
    down: set[str] = set()
    feed = next(
        f.address
        for a in net.config.assets
        if a.symbol == "ETH"
        for f in a.feeds
        if f.chain == "ethereum"
    )
    last_round, i = time.monotonic(), 0
    while not stop.is_set():
        for _ in range(3):
            m = movers[i % len(movers)]
            i += 1
            if m in down:
                tx = {"from": sink, "to": m, "value": hex(5 * 10**17)}
                down.discard(m)
            else:
                tx = {"from": m, "to": sink, "value": hex(5 * 10**17)}
                down.add(m)
            sent.append((m, await _rpc(session, eth, "eth_sendTransaction", tx)))
        if time.monotonic() - last_round >= ROUND_S:
            last_round = time.monotonic()
            raw = await _rpc(
                session, eth, "eth_call", {"to": feed, "data": calldata("latestAnswer()")}, "latest"
            )
            answer = int(raw, 16)
            answer = int(answer * (1.002 if i % 2 else 0.998))
            data = calldata("updateAnswer(int256)", answer)
            await _rpc(
                session, eth, "eth_sendTransaction", {"from": DEPLOYER, "to": feed, "data": data}
            )
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass


async def _mined(
    session: aiohttp.ClientSession, url: str, sent: list[tuple[str, str]]
) -> list[tuple[str, int]]:
    """Each transfer's (mover, block number), in order (one not mined is left out)."""
    out = []
    for mover, tx in sent:
        receipt = await _rpc(session, url, "eth_getTransactionReceipt", tx)
        if receipt is not None:
            out.append((mover, int(receipt["blockNumber"], 16)))
    return out


async def _stamp(session: aiohttp.ClientSession, url: str, number: int) -> int:
    return int(
        (await _rpc(session, url, "eth_getBlockByNumber", hex(number), False))["timestamp"], 16
    )


async def _owe(session: aiohttp.ClientSession, net: Any, movers: list[str]) -> None:
    """Each mover owes DEBT_USDC (the devnet's variable-debt token, minted by its owner)."""
    from devnet.evm import DEPLOYER, calldata

    eth = net.rpc_url("ethereum")
    debt = next(
        r.address
        for r in net.config.representations
        if r.chain == "ethereum" and r.symbol == "variableDebtUSDC"
    )
    for m in movers:
        data = calldata("mint(address,uint256)", m, DEBT_USDC * 10**6)
        await _rpc(
            session, eth, "eth_sendTransaction", {"from": DEPLOYER, "to": debt, "data": data}
        )


async def _first_look(watcher: Any) -> int:
    """Every account once, before the clock starts (steps until nothing is pending)."""
    done: int = 0
    while True:
        step = await watcher.step()
        done += int(step.recomputed)
        if not step.pending:
            return done


async def _run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from api.metrics import Metrics
    from api.service import Service
    from api.store import Store
    from api.watch.delivery import Deliverer
    from api.watch.rules import Thresholds
    from api.watch.store import WatchStore
    from api.watch.watcher import Step, Watcher
    from crossmargin.engine import Engine, open_adapters
    from devnet import Devnet

    async with (
        Devnet.start(state_dir=tmp / "devnet", keeper=False) as net,
        aiohttp.ClientSession() as session,
    ):
        holders = [_address() for _ in range(args.holders)]
        movers = holders[: args.movers]
        idle = [_address() for _ in range(args.accounts - args.holders)]
        eth = net.rpc_url("ethereum")
        await _batch(session, eth, [("anvil_setBalance", [a, hex(10**18)]) for a in holders])
        await _owe(session, net, movers)
        for c in net.config.chains:
            await _rpc(session, net.rpc_url(c.name), "evm_mine")
        cfg = net.config.model_copy(
            update={
                "watch": net.config.watch.model_copy(
                    update={"sweep_s": 3600.0, "poll_s": 0.05, "batch": 2000, "retry_base_s": 0.2}
                )
            }
        )
        store = Store.open(f"sqlite:///{tmp / 'watch.db'}")
        watches = WatchStore(store)
        with Receiver() as receiver:
            watches.create(
                "bench",
                {
                    "accounts": [*holders, *idle],
                    "target": "ethereum",
                    "method": cfg.risk.method,
                    "thresholds": Thresholds(health_below=THRESHOLD),
                    "webhook_url": f"http://127.0.0.1:{receiver.port}/hook",
                    "secret": "bench-secret-0123456789",
                },
            )
            async with open_adapters(cfg) as adapters:
                engine = Engine(cfg, adapters)
                service = Service(cfg, engine, adapters, store, Metrics(lambda: adapters))
                await service.start()
                deliverer = Deliverer(cfg.watch, watches)
                watcher = Watcher(service, watches, None, deliverer.wake)
                t0 = time.monotonic()
                first = await _first_look(watcher)
                warm_s = time.monotonic() - t0
                print(f"first look: {first} accounts in {warm_s:.1f} s", file=sys.stderr)
                for c in cfg.chains:
                    await _rpc(session, net.rpc_url(c.name), "anvil_setAutomine", False)
                await asyncio.sleep(1 - time.time() % 1 + AFTER_SECOND_S)
                for c in cfg.chains:
                    await _rpc(session, net.rpc_url(c.name), "evm_setIntervalMining", 1)
                steps: list[Step] = []
                watcher.on_step = steps.append
                seen = BlockSeen()
                stop = asyncio.Event()
                tasks = [
                    asyncio.create_task(deliverer.run()),
                    asyncio.create_task(watcher.run()),
                    asyncio.create_task(seen.run(session, eth)),
                ]
                rpc0 = sum(a.rpc.requests for a in adapters.values())
                block0 = int(await _rpc(session, eth, "eth_blockNumber"), 16)
                sent: list[tuple[str, str]] = []
                driver = asyncio.create_task(_drive(session, net, movers, stop, sent))
                await asyncio.sleep(args.seconds)
                stop.set()
                await driver
                await asyncio.sleep(3)  # the last alerts arrive
                block1 = int(await _rpc(session, eth, "eth_blockNumber"), 16)
                rpc1 = sum(a.rpc.requests for a in adapters.values())
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await service.close()
                mined = await _mined(session, eth, sent)
                wanted = {n for n in seen.seen if n > block0} | {n for _, n in mined}
                stamps = {n: await _stamp(session, eth, n) for n in sorted(wanted)}
        store.close()
    lat = _latencies(receiver.arrivals, block0, seen.seen, stamps, mined)
    per_set: list[int] = []  # each new pin set's step and the steps after it until the next
    for s in steps:
        if s.moved:
            per_set.append(s.recomputed)
        elif per_set:
            per_set[-1] += s.recomputed
    blocks = max(1, block1 - block0)
    return {
        **lat,
        "alerts": len(lat["lat"]),
        "transfers": len(sent),
        "recomputed": per_set,
        "pin_sets": len(per_set),
        "blocks": blocks,
        "rpc_per_block": (rpc1 - rpc0) / blocks,
        "watched": args.accounts,
        "warm_s": warm_s,
    }


def _latencies(
    arrivals: list[tuple[float, dict[str, Any]]],
    block0: int,
    seen: dict[int, float],
    stamps: dict[int, int],
    mined: list[tuple[str, int]],
) -> dict[str, list[float]]:
    """Milliseconds from the alert's pinned ethereum block's timestamp (`lat`), from
    when that block was first seen (`lat_seen`), from the timestamp of the transfer's
    own block (`lat_tx`), to the webhook's arrival; and from stamp to first sight."""
    out: dict[str, list[float]] = {"lat": [], "lat_seen": [], "lat_tx": []}
    todo: dict[str, list[int]] = {}
    for mover, number in mined:
        todo.setdefault(mover, []).append(number)
    for arrived, alert in arrivals:
        pin = next(b for b in alert["as_of"] if b["name"] == "ethereum")
        if pin["block_number"] <= block0:
            continue  # raised by the first look, before the clock started
        out["lat"].append((arrived - pin["timestamp"]) * 1000)
        if pin["block_number"] in seen:
            out["lat_seen"].append((arrived - seen[pin["block_number"]]) * 1000)
        if todo.get(alert["account"]):  # each transfer of a mover crosses once, in order
            out["lat_tx"].append((arrived - stamps[todo[alert["account"]].pop(0)]) * 1000)
    out["stamp_seen"] = [(t - stamps[n]) * 1000 for n, t in seen.items() if n > block0]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--accounts", type=int, default=10_000)
    p.add_argument("--holders", type=int, default=2_000)
    p.add_argument("--movers", type=int, default=40)
    args = p.parse_args(argv)
    from crossmargin.engine import collect_less

    collect_less()  # as the `crossmargin` console script does for `serve` and `scan`
    with tempfile.TemporaryDirectory() as tmp:
        r = asyncio.run(_run(args, Path(tmp)))
    rec = r["recomputed"]
    mean_rec = statistics.fmean(rec) if rec else 0.0
    per_block = sum(rec) / r["blocks"]
    print(
        f"watched accounts:          {r['watched']} ({args.holders} hold ETH, {args.movers} movers)"
    )
    print(f"first look (all):          {r['warm_s']:.1f} s")
    print(f"ethereum blocks:           {r['blocks']}, new pin sets seen: {r['pin_sets']}")
    print(f"transfers / alerts:        {r['transfers']} / {r['alerts']}")
    print(
        f"recomputed per pin set:    mean {mean_rec:.0f}, p50 {_pct(rec, 0.5):.0f}, "
        f"max {max(rec, default=0)}"
    )
    print(f"recomputed per block:      {per_block:.0f} (all pin sets' over the ethereum blocks)")
    print(f"RPC requests per block:    {r['rpc_per_block']:.1f} (all four chains)")
    for label, key in [
        ("block stamp -> seen:", "stamp_seen"),
        ("block seen -> alert:", "lat_seen"),
        ("transfer's block -> alert:", "lat_tx"),
    ]:
        print(f"{label:<27}p50 {_pct(r[key], 0.5):.0f} ms, p99 {_pct(r[key], 0.99):.0f} ms")
    print(
        f"watch: p50 {_pct(r['lat'], 0.5):.0f} ms, p99 {_pct(r['lat'], 0.99):.0f} ms "
        f"block-to-alert, {per_block:.0f} recomputed/block of {r['watched']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
