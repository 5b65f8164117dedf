"""Chain-read benchmark: three ways to read the same balances at the same pinned blocks.

    .venv/bin/python bench/adapters.py [--accounts 1000] [--tokens 10] [--naive-reads 2000]

One process, one devnet of its own (4 anvil chains). Per chain it deploys `--tokens`
DevTokens and gives `--accounts` accounts a balance in each and in the native coin
(anvil_setStorageAt on OpenZeppelin ERC20's `_balances` slot, anvil_setBalance, in
JSON-RPC batches), mines one block and pins it. Then, side by side:

  (a) naive   AsyncWeb3, one eth_call per balance, asyncio.gather with a semaphore:
              the usual Python approach. Timed on a subsample (`--naive-reads` reads of
              one chain) and reported as balances/s.
  (b) floor   hand-written aiohttp + Multicall3 loop, hand-rolled decoding, no safety
              at all (no retries, no throttle, no checks): what the transport allows.
  (c) adapters the project's path, every safety feature on: per-endpoint chain-id
              check, pin, throttle, bounded concurrency, adaptive chunks, retry and
              failover machinery, block-hash reads (EIP-1898), per-position decoding
              into BalanceRead (adapters/balances.py), decimals checked per token.

  (d) callers `--callers` independent callers (50: API requests, batches) each read
              `--per-caller` accounts (20) on every chain at the pinned block, all
              at once: plain EvmAdapter (each caller its own multicalls) against
              CoalescingReader (adapters/coalesce.py: shared multicalls). Then the
              coalescing window, measured on callers of one account each arriving
              over `--spread-ms` (as API requests do): plain, and windows of 0, 1, 2
              and 5 ms. Elapsed time includes the spread.

(b) and (c) read everything (accounts x (tokens + native) x 4 chains), best of
`--repeat` runs each, interleaved. Every method's numbers are asserted equal to the
values the bench wrote (and so to each other). RPC requests are HTTP requests (for (c)
also JSON-RPC calls). Last line: `adapters: N.Nx naive, 0.NN of floor; coalesced
callers N.Nx reads/s, N.Nx fewer requests`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from eth_utils.crypto import keccak

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters import calls as c
from adapters.balances import BalancePlan
from adapters.coalesce import CoalescingReader
from adapters.evm import BlockPin, EvmAdapter
from crossmargin.core.config import ChainConfig, RepresentationConfig
from devnet import Devnet
from devnet.evm import DEPLOYER, artifact, deploy_data
from devnet.rpc import Rpc, wait_receipts

FLOOR_CHUNK = 2000
ADAPTER_CHUNK = 2000
NAIVE_CONCURRENCY = 32
ERC20_ABI = [
    {
        "name": "balanceOf",
        "type": "function",
        "stateMutability": "view",
        "inputs": [{"name": "a", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    }
]


@dataclass
class ChainSetup:
    chain: ChainConfig
    tokens: list[str]
    pin: BlockPin
    expected: dict[tuple[str, str], int]  # (token or "native", account) -> raw amount


def account_addresses(n: int) -> list[str]:
    return [
        c.checksum("0x" + keccak(b"bench-account" + i.to_bytes(4, "big"))[12:].hex())
        for i in range(n)
    ]


def amount(rng: random.Random) -> int:
    """Zeros, dust, ordinary and huge balances (up to 2^256-1: ints stay exact)."""
    r = rng.random()
    if r < 0.1:
        return 0
    if r < 0.12:
        return (1 << 256) - 1 - rng.randrange(1000)
    if r < 0.3:
        return rng.randrange(1, 1000)
    return rng.randrange(10**6, 10**27)


def balance_slot(account: str) -> str:
    """OpenZeppelin 5 ERC20: `_balances` is storage slot 0 -> keccak(account . 0)."""
    return "0x" + keccak(bytes(12) + bytes.fromhex(account[2:]) + bytes(32)).hex()


async def setup_chain(
    session: aiohttp.ClientSession, chain: ChainConfig, accounts: list[str], n_tokens: int
) -> ChainSetup:
    rpc = Rpc(session, chain.rpc_urls[0], chain.chain_id)
    nonce = int(await rpc.call("eth_getTransactionCount", [DEPLOYER, "pending"]), 16)
    art = artifact("DevToken")
    txs = [
        {
            "from": DEPLOYER,
            "data": deploy_data(art, ["string", "string", "uint8"], [f"Bench {i}", f"B{i}", 18]),
            "gas": hex(3_000_000),
            "nonce": hex(nonce + i),
            "maxFeePerGas": hex(100 * 10**9),
            "maxPriorityFeePerGas": hex(10**9),
        }
        for i in range(n_tokens)
    ]
    hashes = await rpc.batch([("eth_sendTransaction", [tx]) for tx in txs])
    receipts = await wait_receipts(rpc, hashes)
    tokens = [c.checksum(r["contractAddress"]) for r in receipts]
    rng = random.Random(chain.chain_id)
    expected: dict[tuple[str, str], int] = {}
    writes: list[tuple[str, list[Any]]] = []
    for account in accounts:
        native = rng.randrange(0, 10**24)
        expected["native", account] = native
        writes.append(("anvil_setBalance", [account, hex(native)]))
        for token in tokens:
            q = amount(rng)
            expected[token, account] = q
            writes.append(
                (
                    "anvil_setStorageAt",
                    [token, balance_slot(account), "0x" + q.to_bytes(32, "big").hex()],
                )
            )
    await rpc.batch(writes)
    await rpc.call("evm_mine", [])
    block = await rpc.call("eth_getBlockByNumber", ["latest", False])
    pin = BlockPin(
        chain.chain_id, int(block["number"], 16), block["hash"], int(block["timestamp"], 16)
    )
    return ChainSetup(chain, tokens, pin, expected)


# ---------------------------------------------------------------------------- (a) naive


async def naive(
    setup: ChainSetup, accounts: Sequence[str], n_reads: int
) -> tuple[dict[tuple[str, str], int], float, int]:
    from web3 import AsyncHTTPProvider, AsyncWeb3

    requests = 0

    async def on_request(*_: Any) -> None:
        nonlocal requests
        requests += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request)
    session = aiohttp.ClientSession(trace_configs=[trace])
    provider = AsyncHTTPProvider(setup.chain.rpc_urls[0])
    await provider.cache_async_session(session)
    w3 = AsyncWeb3(provider)
    pairs = [(t, a) for a in accounts for t in setup.tokens][:n_reads]
    contracts = {
        t: w3.eth.contract(address=w3.to_checksum_address(t), abi=ERC20_ABI) for t in setup.tokens
    }
    sem = asyncio.Semaphore(NAIVE_CONCURRENCY)

    async def one(token: str, account: str) -> int:
        async with sem:
            value: int = (
                await contracts[token]
                .functions.balanceOf(account)
                .call(block_identifier=setup.pin.number)
            )
            return value

    try:
        t0 = time.perf_counter()
        values = await asyncio.gather(*(one(t, a) for t, a in pairs))
        elapsed = time.perf_counter() - t0
    finally:
        await session.close()
    return dict(zip(pairs, values, strict=True)), elapsed, requests


# ---------------------------------------------------------------------------- (b) floor

_SEL_AGG = c.SEL_AGGREGATE3.hex()
_SEL_BAL = c.SEL_BALANCE_OF.hex()
_SEL_ETH = c.SEL_GET_ETH_BALANCE.hex()
_MC = c.MULTICALL3[2:].lower().rjust(64, "0")


def floor_calldata(items: Sequence[tuple[str, str]]) -> str:
    """aggregate3 of 36-byte calls, hex by hand: every element is 6 words."""
    n = len(items)
    heads = "".join(f"{32 * n + i * 192:064x}" for i in range(n))
    tail = []
    for token, account in items:
        acct = account[2:].lower().rjust(64, "0")
        if token == "native":
            tail.append(f"{_MC}{1:064x}{96:064x}{36:064x}{_SEL_ETH}{acct}{0:056x}")
        else:
            tail.append(
                f"{token[2:].lower():0>64}{1:064x}{96:064x}{36:064x}{_SEL_BAL}{acct}{0:056x}"
            )
    return f"0x{_SEL_AGG}{32:064x}{n:064x}{heads}{''.join(tail)}"


def floor_decode(result: str, n: int) -> list[int]:
    """Every result is (true, 32 bytes): fixed offsets, no checks at all."""
    data = bytes.fromhex(result[2:])
    base = 64 + 32 * n
    return [
        int.from_bytes(data[base + i * 128 + 96 : base + i * 128 + 128], "big") for i in range(n)
    ]


async def floor(
    setups: Sequence[ChainSetup], accounts: Sequence[str]
) -> tuple[dict[tuple[int, str, str], int], float, int]:
    requests = 0
    async with aiohttp.ClientSession() as session:

        async def chunk(setup: ChainSetup, items: list[tuple[str, str]]) -> list[int]:
            nonlocal requests
            requests += 1
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "eth_call",
                "params": [
                    {"to": c.MULTICALL3, "data": floor_calldata(items)},
                    hex(setup.pin.number),
                ],
            }
            async with session.post(setup.chain.rpc_urls[0], json=body) as resp:
                reply = await resp.json()
            if "result" not in reply:
                raise RuntimeError(str(reply)[:300])
            return floor_decode(reply["result"], len(items))

        jobs = []
        for s in setups:
            items = [(t, a) for a in accounts for t in ["native", *s.tokens]]
            for i in range(0, len(items), FLOOR_CHUNK):
                part = items[i : i + FLOOR_CHUNK]
                jobs.append((s, part))
        t0 = time.perf_counter()
        results = await asyncio.gather(*(chunk(s, part) for s, part in jobs))
        elapsed = time.perf_counter() - t0
    out: dict[tuple[int, str, str], int] = {}
    for (s, part), values in zip(jobs, results, strict=True):
        for (t, a), v in zip(part, values, strict=True):
            out[s.chain.chain_id, t, a] = v
    return out, elapsed, requests


# ---------------------------------------------------------------------------- (c) adapters


def representations(setup: ChainSetup) -> list[RepresentationConfig]:
    name = setup.chain.name
    reps = [
        RepresentationConfig(chain=name, asset="ETH", symbol="ETH", address="native", decimals=18)
    ]
    reps += [
        RepresentationConfig(chain=name, asset="ETH", symbol=f"B{i}", address=t, decimals=18)
        for i, t in enumerate(setup.tokens)
    ]
    return reps


async def project(
    setups: Sequence[ChainSetup], accounts: Sequence[str]
) -> tuple[dict[tuple[int, str, str], int], float, int, int]:
    async with aiohttp.ClientSession() as session:
        adapters = [
            EvmAdapter(s.chain.model_copy(update={"max_calls_per_batch": ADAPTER_CHUNK}), session)
            for s in setups
        ]

        async def one(setup: ChainSetup, adapter: EvmAdapter) -> tuple[BlockPin, dict[str, Any]]:
            plan = BalancePlan(representations(setup), accounts)
            pin = await adapter.pin()
            results = await adapter.read(plan.calls, pin)
            return pin, await plan.finish(adapter, results, pin)

        t0 = time.perf_counter()
        done = await asyncio.gather(*(one(s, a) for s, a in zip(setups, adapters, strict=True)))
        elapsed = time.perf_counter() - t0
    out: dict[tuple[int, str, str], int] = {}
    for s, (pin, reads) in zip(setups, done, strict=True):
        assert pin == s.pin, f"chain {s.chain.name}: adapter pinned {pin}, bench pinned {s.pin}"
        for account, row in reads.items():
            for b in row:
                assert b.raw_amount is not None, (s.chain.name, account, b)
                token = "native" if b.rep.standard == "native" else b.rep.address
                out[s.chain.chain_id, token, account] = b.raw_amount
    requests = sum(a.rpc.requests for a in adapters)
    calls = sum(a.rpc.calls for a in adapters)
    return out, elapsed, requests, calls


# ---------------------------------------------------------------------------- (d) callers


@dataclass
class CallersRun:
    secs: float
    requests: int
    reads: int


async def callers(
    setups: Sequence[ChainSetup],
    accounts: Sequence[str],
    n_callers: int,
    per_caller: int,
    window_s: float | None,
    spread_s: float = 0.0,
) -> tuple[dict[tuple[int, str, str], int], CallersRun]:
    """`n_callers` independent readers of `per_caller` accounts each on every chain;
    `window_s` None: plain EvmAdapters, else one CoalescingReader per chain. Caller i
    starts at i/n of `spread_s`."""
    groups = [accounts[i * per_caller : (i + 1) * per_caller] for i in range(n_callers)]
    assert all(len(g) == per_caller for g in groups), "not enough accounts for the callers"
    async with aiohttp.ClientSession() as session:
        readers: list[EvmAdapter] = [
            EvmAdapter(s.chain, session)
            if window_s is None
            else CoalescingReader(s.chain, session, window_s=window_s)
            for s in setups
        ]
        for r in readers:
            await r.verify_chain_id()
        before = sum(r.rpc.requests for r in readers)

        async def one(i: int, setup: ChainSetup, reader: EvmAdapter) -> dict[str, Any]:
            if spread_s:
                await asyncio.sleep(spread_s * i / n_callers)
            plan = BalancePlan(representations(setup), groups[i])
            results = await reader.read(plan.calls, setup.pin)
            return await plan.finish(reader, results, setup.pin)

        jobs = [
            (s, one(i, s, r))
            for i in range(n_callers)
            for s, r in zip(setups, readers, strict=True)
        ]
        t0 = time.perf_counter()
        done = await asyncio.gather(*(job for _, job in jobs))
        elapsed = time.perf_counter() - t0
        requests = sum(r.rpc.requests for r in readers) - before
    out: dict[tuple[int, str, str], int] = {}
    for (s, _), reads in zip(jobs, done, strict=True):
        for account, row in reads.items():
            for b in row:
                assert b.raw_amount is not None, (s.chain.name, account, b)
                token = "native" if b.rep.standard == "native" else b.rep.address
                out[s.chain.chain_id, token, account] = b.raw_amount
    return out, CallersRun(elapsed, requests, len(out))


async def callers_case(
    setups: Sequence[ChainSetup], accounts: Sequence[str], args: argparse.Namespace
) -> tuple[CallersRun, CallersRun, list[tuple[float | None, CallersRun]]]:
    """Plain vs coalesced, `--per-caller` accounts each, all at once; then callers of one
    account each (API requests) arriving over `--spread-ms`: plain, and coalesced at
    windows of 0 (next loop turn), 1, 2 and 5 ms. Best of `--repeat`, interleaved."""
    truth = {(s.chain.chain_id, t, a): q for s in setups for (t, a), q in s.expected.items()}
    n, k, spread = args.callers, args.per_caller, args.spread_ms / 1000
    cases: list[tuple[float | None, int, float]] = [(None, k, 0.0), (0.002, k, 0.0)]
    cases += [(w, 1, spread) for w in (None, 0.0, 0.001, 0.002, 0.005)]
    runs: list[list[CallersRun]] = [[] for _ in cases]
    for _ in range(args.repeat):
        for (window, per, spread_s), done in zip(cases, runs, strict=True):
            values, run = await callers(setups, accounts, n, per, window, spread_s)
            assert all(truth[key] == v for key, v in values.items()), "callers read wrong numbers"
            done.append(run)
    best = [min(r, key=lambda run: run.secs) for r in runs]
    return best[0], best[1], [(w, run) for (w, _, _), run in zip(cases[2:], best[2:], strict=True)]


# ---------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> None:
    accounts = account_addresses(args.accounts)
    with tempfile.TemporaryDirectory(prefix="bench-adapters-") as tmp:
        t0 = time.perf_counter()
        async with Devnet.start(state_dir=tmp, keeper=False) as net:
            async with aiohttp.ClientSession() as session:
                setups = list(
                    await asyncio.gather(
                        *(
                            setup_chain(session, ch, accounts, args.tokens)
                            for ch in net.config.chains
                        )
                    )
                )
            seeded = time.perf_counter() - t0
            print(f"devnet up and seeded in {seeded:.1f} s: {len(setups)} chains, "
                  f"{args.accounts} accounts x ({args.tokens} tokens + native)")  # fmt: skip
            truth = {
                (s.chain.chain_id, t, a): q for s in setups for (t, a), q in s.expected.items()
            }
            total = len(truth)

            floor_runs, project_runs = [], []
            for _ in range(args.repeat):
                values, secs, reqs = await floor(setups, accounts)
                assert values == truth, "floor read other numbers than were written"
                floor_runs.append((secs, reqs))
                pvalues, psecs, preqs, pcalls = await project(setups, accounts)
                assert pvalues == truth, "adapters read other numbers than were written"
                project_runs.append((psecs, preqs, pcalls))
            b_secs, b_reqs = min(floor_runs)
            c_secs, c_reqs, c_calls = min(project_runs)

            first = setups[0]
            naive_values, a_secs, a_reqs = await naive(first, accounts, args.naive_reads)
            for (t, a), v in naive_values.items():
                assert v == pvalues[first.chain.chain_id, t, a], ("naive and adapters differ", t, a)
            n_naive = len(naive_values)
            plain, shared, sweep = await callers_case(setups, accounts, args)

    a_rate, b_rate, c_rate = n_naive / a_secs, total / b_secs, total / c_secs
    per_chain = total // len(setups)
    print()
    print(
        f"{'method':<34}{'reads':>8}{'seconds':>10}{'balances/s':>13}"
        f"{'HTTP requests':>15}{'per chain per 1k':>18}"
    )
    rows = [
        (
            "(a) naive AsyncWeb3, 1 chain",
            n_naive,
            a_secs,
            a_rate,
            a_reqs,
            a_reqs / (n_naive / 1000),
        ),
        (
            "(b) floor: aiohttp + Multicall3",
            total,
            b_secs,
            b_rate,
            b_reqs,
            b_reqs / len(setups) / (per_chain / 1000),
        ),
        (
            "(c) adapters, all safety on",
            total,
            c_secs,
            c_rate,
            c_reqs,
            c_reqs / len(setups) / (per_chain / 1000),
        ),
    ]
    for name, n, secs, rate, reqs, per in rows:
        print(f"{name:<34}{n:>8}{secs:>10.3f}{rate:>13,.0f}{reqs:>15}{per:>18.2f}")
    print(f"(c) JSON-RPC calls: {c_calls} ({c_calls / len(setups):.1f} per chain for "
          f"{per_chain} reads); all {total} values equal across methods (naive on its "
          f"{n_naive}-read subsample)")  # fmt: skip
    print()
    n, k = args.callers, args.per_caller
    print(f"(d) {n} concurrent callers x {k} accounts x {len(setups)} chains, one pin each")
    print(f"{'reader':<34}{'reads':>8}{'seconds':>10}{'balances/s':>13}{'HTTP requests':>15}")
    for name, run in (("plain EvmAdapter", plain), ("CoalescingReader (2 ms window)", shared)):
        print(f"{name:<34}{run.reads:>8}{run.secs:>10.3f}{run.reads / run.secs:>13,.0f}"
              f"{run.requests:>15}")  # fmt: skip
    print(f"{n} callers x 1 account x {len(setups)} chains, arriving over {args.spread_ms} ms:")
    for window, run in sweep:
        name = "plain" if window is None else f"window {window * 1000:.0f} ms"
        print(f"  {name:<14}{run.secs:>8.3f} s{run.requests:>6} requests")
    speed = (shared.reads / shared.secs) / (plain.reads / plain.secs)
    fewer = plain.requests / max(1, shared.requests)
    print(f"adapters: {c_rate / a_rate:.1f}x naive, {c_rate / b_rate:.2f} of floor; "
          f"coalesced callers {speed:.1f}x reads/s, {fewer:.1f}x fewer requests")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=10)
    parser.add_argument("--naive-reads", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--per-caller", type=int, default=20)
    parser.add_argument("--spread-ms", type=float, default=20.0)
    asyncio.run(main(parser.parse_args()))
