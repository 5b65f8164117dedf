"""Benchmark: price 50 assets with 3 feeds each on 4 chains, and count the RPC requests.

Run from the repository root:  .venv/bin/python bench/oracle.py [repeats]

Starts its own devnet, deploys 150 Chainlink-style feeds (MockV3Aggregator, 8 decimals)
and 50 tokens on the 4 chains (asset i: feeds on chains i, i+1, i+2 mod 4; its token on
chain i mod 4), then times `Engine.assess` (pin every chain, read balances and feeds in
one block-pinned multicall per chain, validate, aggregate, value) for one account that
holds every token. The same balances are then read without any feed call: the RPC
request counts of the two are the feeds' cost in round trips (target: 0 extra).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: this file's folder would shadow the package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import aiohttp

from adapters.balances import BalancePlan
from crossmargin.core.config import Config
from crossmargin.engine import Engine
from devnet import Devnet
from devnet.evm import artifact, calldata, create_address, deploy_data
from devnet.rpc import Rpc, wait_receipts
from oracle.feeds import plan_feeds

N_ASSETS, FEEDS_PER_ASSET = 50, 3
SENDER = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"  # anvil account 9: unused by the devnet
HOLDER = "0x000000000000000000000000000000000000bEEF"
FEES = {"maxFeePerGas": hex(100 * 10**9), "maxPriorityFeePerGas": hex(10**9)}


async def deploy(net: Devnet) -> tuple[dict[str, list[tuple[int, str]]], dict[int, str]]:
    """Per chain: (asset, feed address) pairs; per asset: its token. Chains in parallel."""
    names = [c.name for c in net.config.chains]
    feeds: dict[str, list[tuple[int, str]]] = {n: [] for n in names}
    tokens: dict[int, str] = {}

    async def one(session: aiohttp.ClientSession, ci: int, name: str) -> None:
        rpc = Rpc(session, net.rpc_url(name), net.config.chain(name).chain_id)
        nonce = int(await rpc.call("eth_getTransactionCount", [SENDER, "pending"]), 16)
        txs: list[dict[str, Any]] = []

        def send(data: str, to: str | None = None) -> str:
            tx = {"from": SENDER, "data": data, "gas": hex(3_000_000), **FEES}
            tx["nonce"] = hex(nonce + len(txs))
            if to is not None:
                tx["to"] = to
            txs.append(tx)
            return create_address(SENDER, nonce + len(txs) - 1)

        feed_art, token_art = artifact("MockV3Aggregator"), artifact("DevToken")
        for a in range(N_ASSETS):
            if (ci - a) % len(names) < FEEDS_PER_ASSET:
                price = (a + 1) * 10**8 + ci * 10**4  # chains differ by ~1 bp
                addr = send(deploy_data(feed_art, ["uint8", "int256"], [8, price]))
                feeds[name].append((a, addr))
            if a % len(names) == ci:
                token = send(
                    deploy_data(
                        token_art, ["string", "string", "uint8"], [f"Bench {a}", f"B{a:02d}", 18]
                    )
                )
                send(calldata("mint(address,uint256)", HOLDER, 10**18 * (a + 1)), token)
                tokens[a] = token
        hashes = await rpc.batch([("eth_sendTransaction", [tx]) for tx in txs])
        for r in await wait_receipts(rpc, hashes):
            assert r["status"] == "0x1", r

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, i, n) for i, n in enumerate(names)))
    return feeds, tokens


def bench_config(
    net: Devnet, feeds: dict[str, list[tuple[int, str]]], tokens: dict[int, str]
) -> Config:
    base = net.config
    names = [c.name for c in base.chains]
    assets = []
    for a in range(N_ASSETS):
        mine = [
            {"chain": n, "kind": "chainlink", "address": addr, "decimals": 8, "heartbeat_s": 3600}
            for n in names
            for asset, addr in feeds[n]
            if asset == a
        ]
        assets.append(
            {
                "symbol": f"A{a:02d}",
                "liquidation_horizon_days": 1.0,
                "sigma_default": 0.04,
                "sigma_floor": 0.01,
                "h_min": 0.05,
                "liquidity_depth_usd": 1e8,
                "feeds": mine,
            }
        )
    reps = [
        {
            "chain": names[a % len(names)],
            "asset": f"A{a:02d}",
            "symbol": f"B{a:02d}",
            "address": tokens[a],
            "decimals": 18,
        }
        for a in range(N_ASSETS)
    ]
    raw = base.model_dump(by_alias=True, exclude={"assets", "representations", "scenarios"})
    raw["risk"]["correlations"] = []
    raw["risk"]["default_correlation"] = 0.3
    return Config.model_validate({**raw, "assets": assets, "representations": reps})


def requests(engine: Engine) -> dict[str, int]:
    return {n: sum(s.requests for s in a.rpc.stats.values()) for n, a in engine.readers.items()}


async def measure(config: Config, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with Engine.connect(config) as engine:
        t0 = time.perf_counter()
        a = await engine.assess(HOLDER)
        out["first_ms"] = (time.perf_counter() - t0) * 1e3
        assert len(a.prices) == N_ASSETS
        assert all(p.priced for p in a.prices.values()), a.warnings
        assert sum(len(p.sources) for p in a.prices.values()) == N_ASSETS * FEEDS_PER_ASSET
        out["positions"] = len(a.valued)
        before = requests(engine)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            await engine.assess(HOLDER)
            times.append((time.perf_counter() - t0) * 1e3)
        after = requests(engine)
        out["with_feeds"] = {n: (after[n] - before[n]) / repeats for n in after}
        out["median_ms"], out["p90_ms"] = (
            statistics.median(times),
            sorted(times)[int(0.9 * len(times)) - 1],
        )
        out["calls"] = {}
        for name in engine.readers:
            reps = [r for r in config.representations if r.chain == name]
            balances = BalancePlan(reps, [HOLDER]).calls
            out["calls"][name] = (len(balances), len(plan_feeds(config, config.chain(name)).calls))

        # The same balances without a single feed call: pin + read, as reading.py does,
        # the chains concurrently.
        async def balances_only(name: str) -> None:
            adapter = engine.readers[name]
            reps = [r for r in config.representations if r.chain == name]
            await adapter.read(BalancePlan(reps, [HOLDER]).calls, await adapter.pin())

        before = requests(engine)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            await asyncio.gather(*(balances_only(n) for n in engine.readers))
            times.append((time.perf_counter() - t0) * 1e3)
        after = requests(engine)
        out["without_feeds"] = {n: (after[n] - before[n]) / repeats for n in after}
        out["balances_only_ms"] = statistics.median(times)
    return out


async def main(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as state:
        async with Devnet.start(state_dir=state, keeper=False) as net:
            t0 = time.perf_counter()
            feeds, tokens = await deploy(net)
            setup_s = time.perf_counter() - t0
            config = bench_config(net, feeds, tokens)
            r = await measure(config, repeats)
    n_feeds = sum(len(a.feeds) for a in config.assets)
    print(
        f"oracle bench: {N_ASSETS} assets x {FEEDS_PER_ASSET} feeds = {n_feeds} feeds on "
        f"{len(config.chains)} chains (+ 3 L2 sequencer feeds), {r['positions']} positions; "
        f"setup {setup_s:.1f} s"
    )
    print(
        f"price + value one account (Engine.assess): first {r['first_ms']:.1f} ms, "
        f"then median {r['median_ms']:.1f} ms, p90 {r['p90_ms']:.1f} ms over {repeats} runs"
    )
    print(
        f"read the same balances, no feeds, nothing valued: median {r['balances_only_ms']:.1f} ms"
    )
    print(
        f"{'chain':<10} {'balance calls':>13} {'feed calls':>10} {'RPC req (feeds)':>16} "
        f"{'RPC req (no feeds)':>19}"
    )
    for name, (b, f) in r["calls"].items():
        print(
            f"{name:<10} {b:>13} {f:>10} {r['with_feeds'][name]:>16.1f} "
            f"{r['without_feeds'][name]:>19.1f}"
        )
    extra = sum(r["with_feeds"].values()) - sum(r["without_feeds"].values())
    print(f"extra RPC requests for {n_feeds} feeds: {extra:+.1f} per computation")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
