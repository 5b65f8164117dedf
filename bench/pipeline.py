"""Benchmark: the whole pipeline at the speed of the chain reads, four ways, one run.

    .venv/bin/python bench/pipeline.py [--accounts 1000,10000] [--rss-accounts 100000]

One process starts its own devnet (4 anvil chains, state in a temporary directory) and
funds N accounts with anvil cheatcodes (anvil_setBalance; anvil_setStorageAt on the
OpenZeppelin tokens' `_balances` and `_totalSupply` slots): a third empty, a third
wallet-only (native coin and a token), a third with collateral and debt, over the 4
chains. One block is mined; nothing moves the chains after that, so every method below
reads the same pinned blocks. For each N, measured in the same run:

  (a) floor   the adapters' raw read of exactly what the engine reads per chain: every
              balance, the feeds and the §12 protocol calls (`ProtocolPlan(config, chain,
              owners).calls`, as crossmargin/pipeline/read.py builds them); per chain one
              pin and `EvmAdapter.read` of those calls, chains concurrently, no decoding
              beyond the multicall envelope (best of 2). The floor without the protocol
              calls is printed too; the ratios use the full one;
  (b) engine  `Engine.run` end to end in batches: read, value, report, and each report's
              snapshot appended to a SQLite store (api/store), in 2 worker processes
              (crossmargin/workers.py: each its own engine; the storing runs in them);
  (c) api     `POST /v1/margin:batch` on `crossmargin serve --workers 2` (a subprocess;
              the client is another), batches of `api.max_batch`, 8 clients;
  (d) scan    `crossmargin scan` as the CLI runs it by default (a subprocess, start-up
              included; worker processes from 1,000 accounts) into a JSONL file. Its
              start-up alone (the interpreter, imports, config, stores: a scan of an
              empty input, best of 3) is printed beside it, and the rate beyond it.

Every method's totals are asserted equal per account. With `--rss-accounts` a scan of
that many (random, mostly empty) accounts is run and its peak RSS printed: the VmHWM of
the scan process and of each of its children (the workers) summed. Last line:
`pipeline: N accounts/s, 0.XX of read floor; api batch 0.XX; scan 0.XX` (for the
largest N; accounts/s is the engine's).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: this file's folder would shadow the package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import aiohttp
import orjson
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

KEY_HEADER = "X-API-Key"
ENGINE_BATCH = 256  # as `crossmargin scan` (--batch-size): a batch reads while another computes
ENGINE_WORKERS = 2  # worker processes of (b), as `crossmargin scan`'s default
# concurrent batches: connections are spread evenly over the API's workers
# (crossmargin/cli/accept.py), each worker's batches are computed one after another
API_CLIENTS = 8
TOTALS = ("collateral_usd", "debt_usd", "equity_usd", "margin_requirement_usd", "health")


# ---------------------------------------------------------------- accounts and funding


def slot(account: str, index: int) -> str:
    """OpenZeppelin 5 ERC20 mapping slot: keccak(account . index)."""
    return "0x" + keccak(bytes(12) + bytes.fromhex(account[2:]) + index.to_bytes(32, "big")).hex()


def word(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()


def make_accounts(n: int) -> list[str]:
    rng = random.Random(11)
    return [to_checksum_address(f"0x{rng.getrandbits(160):040x}") for _ in range(n)]


def holdings(config: Any, accounts: Sequence[str]) -> dict[str, list[tuple[Any, int]]]:
    """Per chain: (representation, account, raw amount) to write. Account i: i % 3 == 0
    empty, 1 wallet-only (native + one collateral token), 2 collateral and debt."""
    rng = random.Random(7)
    out: dict[str, list[tuple[Any, int]]] = {c.name: [] for c in config.chains}
    for i, account in enumerate(accounts):
        if i % 3 == 0:
            continue
        chain = config.chains[i % len(config.chains)]
        reps = [r for r in config.representations if r.chain == chain.name]
        native = next(r for r in reps if r.is_native)
        tokens = [r for r in reps if r.kind == "collateral" and not r.is_native]
        debts = [r for r in reps if r.kind == "debt"]
        out[chain.name].append(((native, account), rng.randrange(1, 50) * 10**17))
        token = tokens[i % len(tokens)]
        out[chain.name].append(((token, account), rng.randrange(1, 10**4) * 10**token.decimals))
        if i % 3 == 2 and debts:
            debt = debts[i % len(debts)]
            # a tenth of a unit: always far below the collateral, whatever the asset
            out[chain.name].append(((debt, account), 10 ** max(0, debt.decimals - 1)))
    return out


async def fund(config: Any, urls: dict[str, str], accounts: Sequence[str]) -> None:
    from devnet.rpc import Rpc

    plan = holdings(config, accounts)
    async with aiohttp.ClientSession() as session:

        async def chain(c: Any) -> None:
            rpc = Rpc(session, urls[c.name], c.chain_id)
            writes: list[tuple[str, list[Any]]] = []
            supply: dict[str, int] = {}
            for (rep, account), raw in plan[c.name]:
                if rep.is_native:
                    writes.append(("anvil_setBalance", [account, hex(raw)]))
                else:
                    writes.append(
                        ("anvil_setStorageAt", [rep.address, slot(account, 0), word(raw)])
                    )
                    supply[rep.address] = supply.get(rep.address, 0) + raw
            for token, total in supply.items():
                old = int(await rpc.call("eth_getStorageAt", [token, word(2), "latest"]), 16)
                writes.append(("anvil_setStorageAt", [token, word(2), word(old + total)]))
            for i in range(0, len(writes), 2000):
                await rpc.batch(writes[i : i + 2000])
            await rpc.call("evm_mine", [])

        await asyncio.gather(*(chain(c) for c in config.chains))


# ---------------------------------------------------------------- (a) the read floor


async def floor(config: Any, accounts: Sequence[str]) -> tuple[float, float]:
    """Seconds for one pin and one read per chain of what the engine reads (balances,
    feeds, §12 protocol calls), chains concurrently, best of 2; and the same without the
    protocol calls."""
    from adapters.balances import BalancePlan
    from crossmargin.engine import open_adapters
    from crossmargin.pipeline.protocol_read import ProtocolPlan
    from oracle.feeds import plan_feeds

    async with open_adapters(config) as adapters:
        plain = {
            n: BalancePlan([r for r in config.representations if r.chain == n], accounts).calls
            + list(plan_feeds(config, config.chain(n)).calls)
            for n in adapters
        }
        full = {n: plain[n] + ProtocolPlan(config, config.chain(n), accounts).calls for n in plain}

        async def best(plans: dict[str, Any]) -> float:
            async def one(name: str) -> None:
                a = adapters[name]
                await a.read(plans[name], await a.pin())

            fastest = float("inf")
            for _ in range(2):
                t0 = time.perf_counter()
                await asyncio.gather(*(one(n) for n in adapters))
                fastest = min(fastest, time.perf_counter() - t0)
            return fastest

        return await best(full), await best(plain)


# ---------------------------------------------------------------- (b) the engine


def store_all(store: Any, config: Any, results: Sequence[Any], est: Any) -> dict[str, Any]:
    """The batch's snapshots appended in one transaction (`Store.append_many`); the
    totals per account."""
    from api.store import Item
    from crossmargin.pipeline.snapshot import document

    totals, items = {}, []
    for r in results:
        report = r.unwrap()
        build = functools.partial(document, config, r.request, r.states, report, estimates=est)
        items.append(Item(r.request.account, "margin", build, target=r.request.target))
        totals[r.request.account] = report.totals.model_dump(mode="json")
    store.append_many(items)
    return totals


_STORES: dict[str, Any] = {}  # in a worker process: its own connection to each store


def store_batch(engine: Any, results: list[Any], db: str) -> dict[str, Any]:
    """`WorkerPool` finish, in a worker: the batch's snapshots stored (`store_all`) through
    the worker's own connection to `db`, opened at its first batch and left to the
    process's exit; the totals per account are what comes back."""
    from api.store import Store

    store = _STORES.get(db) or _STORES.setdefault(db, Store.open(db))
    history = engine.history
    est = None if history is None else history.estimates(engine.config, None)
    return store_all(store, engine.config, results, est)


def _noop(engine: Any, results: list[Any], extra: Any) -> None:
    """`WorkerPool` finish of the warm-up job."""


def engine_run(
    config: Any, accounts: Sequence[str], db: str, workers: int = ENGINE_WORKERS
) -> tuple[float, dict[str, Any]]:
    """Batches of ENGINE_BATCH through `Engine.run` in `workers` worker processes
    (crossmargin/workers.py), two batches in flight per worker (one reading while the
    other computes), each batch's snapshots stored in its worker. Timed once every worker
    has its engine, as the single engine was timed after `Engine.connect`."""
    from api.store import Store
    from crossmargin.core.config import config_hash, risk_document
    from crossmargin.pipeline.figures import Request
    from crossmargin.workers import WorkerPool

    store = Store.open(db)
    store.put_config(config_hash(config), risk_document(config))
    store.close()
    target = config.settlement_chain
    totals: dict[str, Any] = {}
    # fork: this process has one thread here, and `store_batch` lives in __main__
    with WorkerPool(config, None, workers, start_method="fork") as pool:

        async def go() -> float:
            await asyncio.gather(*(pool.run([], _noop) for _ in range(2 * workers)))
            jobs = [
                ([Request("margin", a, target) for a in accounts[i : i + ENGINE_BATCH]], db)
                for i in range(0, len(accounts), ENGINE_BATCH)
            ]
            t0 = time.perf_counter()
            async for done in pool.map_ordered(jobs, store_batch):
                totals.update(done)
            return time.perf_counter() - t0

        elapsed = asyncio.run(go())
    return elapsed, totals


def split_times(config: Any, accounts: Sequence[str]) -> dict[str, float]:
    """Where the engine's time goes, on in-memory states (seconds per 1,000 accounts):
    read (the adapters, timed in (a)), compute (`Engine.evaluate_many`), document (the
    snapshot's canonical JSON, its shared blobs not counted)."""
    from crossmargin.engine import Engine
    from crossmargin.pipeline.figures import Request
    from crossmargin.pipeline.snapshot import document

    async def go() -> dict[str, float]:
        async with Engine.connect(config) as engine:
            states = await engine.read(accounts)
        reqs = [Request("margin", a, config.settlement_chain) for a in accounts]
        t0 = time.perf_counter()
        results = engine.evaluate_many(reqs, dict(zip(accounts, states, strict=True)), None)
        t1 = time.perf_counter()
        size = sum(
            len(document(config, r.request, r.states, r.unwrap(), "0" * 64).text) for r in results
        )
        t2 = time.perf_counter()
        k = 1000 / len(accounts)
        return {"compute": (t1 - t0) * k, "document": (t2 - t1) * k, "bytes": size / len(accounts)}

    return asyncio.run(go())


# ---------------------------------------------------------------- (c) the API


async def _load(args: argparse.Namespace, accounts: list[str]) -> None:
    """Child mode: POST every account in batches from API_CLIENTS clients; print JSON."""
    size = args.batch
    groups = [accounts[i : i + size] for i in range(0, len(accounts), size)]
    totals: dict[str, Any] = {}
    headers = {KEY_HEADER: os.environ["CROSSMARGIN_BENCH_KEY"]}
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as s:

        async def client() -> None:
            while groups:
                group = groups.pop()
                async with s.post(f"{args.load}/v1/margin:batch", json={"accounts": group}) as r:
                    body = orjson.loads(await r.read())  # the load, not the server, is parsing
                    assert r.status == 200, body
                for item in body["results"]:
                    assert item["error"] is None, item
                    totals[item["account"]] = item["margin"]["totals"]

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(API_CLIENTS)))
        elapsed = time.perf_counter() - t0
    print(json.dumps({"elapsed": elapsed, "totals": totals}))


API_WORKERS = 2  # `crossmargin serve --workers N`: the API on both cores


def api_run(config: Any, accounts: Sequence[str], tmp: Path) -> tuple[float, dict[str, Any]]:
    """The API as `crossmargin serve --workers API_WORKERS` (a subprocess, bench/served.py)
    on the devnet's config file (`tmp/devnet`, as main starts it) with a bench key."""
    from api.security import new_key
    from bench.served import bench_config, serve
    from crossmargin.core.config import load_config

    source = tmp / "devnet" / "crossmargin.toml"
    if load_config(source, env={}) != config:
        raise SystemExit(f"api: {source} is not the devnet config this run reads")
    key, digest = new_key()
    settings = {
        "cache_entries": 2 * len(accounts) + 100,
        "request_timeout_s": 600.0,  # a batch's wait in the queue is the bench's load
    }
    path = bench_config(
        source, tmp / f"api-{len(accounts)}.toml", digest, settings, rate=1e6, burst=10_000_000
    )
    db = f"sqlite:///{tmp / f'api-{len(accounts)}.db'}"
    src = tmp / f"accounts-{len(accounts)}.txt"
    src.write_text("\n".join(accounts) + "\n")
    print(f"api: crossmargin serve --workers {API_WORKERS} (subprocess)", flush=True)
    with serve(path, db, API_WORKERS, tmp / f"api-{len(accounts)}.log") as base:
        child = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--load",
            base,
            "--accounts-file",
            str(src),
            "--batch",
            str(config.api.max_batch),
        ]
        env = {**os.environ, "CROSSMARGIN_BENCH_KEY": key}
        out = subprocess.run(child, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"api load failed:\n{out.stdout}\n{out.stderr}")
    result = json.loads(out.stdout)
    return float(result["elapsed"]), result["totals"]


# ---------------------------------------------------------------- (d) scan


class ChildPeaks(threading.Thread):
    """Every 20 ms, each descendant of `pid` and its VmHWM (a high-water mark: the last
    reading is its peak up to then; a worker's last is taken idle, at its stop)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peaks: dict[int, int] = {}
        self.done = threading.Event()

    def descendants(self) -> list[int]:
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            try:
                kids = [int(k) for k in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
            except OSError:
                continue
            out += kids
            todo += kids
        return out

    def run(self) -> None:
        from crossmargin.workers import vm_hwm_kib

        while not self.done.wait(0.02):
            for p in self.descendants():
                self.peaks[p] = max(self.peaks.get(p, 0), vm_hwm_kib(p))


def scan_startup(config_path: Path, tmp: Path) -> float:
    """Seconds of `crossmargin scan` with nothing to scan (best of 3): what every scan
    pays before its first account, whatever N."""
    src = tmp / "scan-empty.txt"
    src.write_text("")
    best = float("inf")
    for i in range(3):
        argv = [str(Path(sys.executable).with_name("crossmargin")), "scan", "--input", str(src)]
        argv += ["--output", str(tmp / f"scan-empty-{i}.jsonl"), "--config", str(config_path)]
        argv += ["--db", f"sqlite:///{tmp / 'history-empty.db'}"]
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def scan_run(
    config_path: Path, accounts: Sequence[str], tmp: Path, tag: str
) -> tuple[float, dict[str, Any], list[int]]:
    """Seconds, totals per account, peak RSS (KiB) of one `crossmargin scan`: the VmHWM of
    its process (told by itself at the end), then each child's (polled): the workers'.
    VmHWM, not ru_maxrss, which a child started by fork and exec inherits from the
    parent (this process, which holds every method's totals, read as the scan's). Summed,
    pages a forked worker shares with the scan process count in both: an upper bound."""
    src, out = tmp / f"scan-{tag}.txt", tmp / f"scan-{tag}.jsonl"
    src.write_text("\n".join(accounts) + "\n")
    argv = [
        sys.executable,
        "-c",
        "import sys\n"
        "from crossmargin.cli import main\n"
        "from crossmargin.engine import collect_less\n"
        "from crossmargin.workers import vm_hwm_kib  # imported by the CLI anyway\n"
        "collect_less()  # as the console script\n"
        "code = main(sys.argv[1:])\n"
        "print(vm_hwm_kib(), file=sys.stderr)\n"
        "sys.exit(code)",
        "scan",
        "--input",
        str(src),
        "--output",
        str(out),
        "--config",
        str(config_path),
        "--db",
        f"sqlite:///{tmp / f'history-{tag}.db'}",
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = ChildPeaks(proc.pid)
    peaks.start()
    _, stderr = proc.communicate()
    elapsed = time.perf_counter() - t0
    peaks.done.set()
    peaks.join()
    if proc.returncode not in (0, 3):
        raise SystemExit(f"scan failed ({proc.returncode}):\n{stderr[-3000:]}")
    rss = [int(stderr.strip().splitlines()[-1]), *peaks.peaks.values()]
    totals = {}
    with out.open() as f:
        for line in f:
            rec = json.loads(line)
            assert rec["status"] == "ok", rec
            totals[rec["account"]] = rec["report"]["totals"]
    return elapsed, totals, rss


# ---------------------------------------------------------------- main


def mb(rss: list[int]) -> str:
    """Peak RSS of a scan's processes: the sum, then the scan process's and its workers'."""
    parts = " + ".join(f"{k / 1024:.0f}" for k in rss)
    return f"{sum(rss) / 1024:.0f} MB summed over its processes: {parts}"


def same(name: str, a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys(), f"{name}: different accounts"
    for account, t in a.items():
        got = {k: b[account][k] for k in TOTALS}
        want = {k: t[k] for k in TOTALS}
        assert got == want, f"{name}: {account}: {got} != {want}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", default="1000,10000", help="comma-separated N")
    p.add_argument("--rss-accounts", type=int, default=100_000, help="0: skip")
    p.add_argument("--load", help=argparse.SUPPRESS)  # child mode: the API's base URL
    p.add_argument("--accounts-file", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=100, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.load:
        asyncio.run(_load(args, Path(args.accounts_file).read_text().split()))
        return 0

    from crossmargin.engine import collect_less

    collect_less()  # as the `crossmargin` console script does for `serve` and `scan`
    from devnet import BackgroundDevnet

    sizes = [int(n) for n in args.accounts.split(",")]
    line = ""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        with BackgroundDevnet(state_dir=tmp / "devnet", keeper=False) as net:
            config = net.config
            urls = {c.name: net.rpc_url(c.name) for c in config.chains}
            accounts = make_accounts(max(sizes))
            t0 = time.perf_counter()
            asyncio.run(fund(config, urls, accounts))
            print(f"funded {len(accounts)} accounts in {time.perf_counter() - t0:.1f} s")
            for n in sizes:
                batch = accounts[:n]
                f, f_plain = asyncio.run(floor(config, batch))
                e, engine_totals = engine_run(config, batch, f"sqlite:///{tmp / f'engine-{n}.db'}")
                a, api_totals = api_run(config, batch, tmp)
                s, scan_totals, rss = scan_run(net.config_path, batch, tmp, str(n))
                up = min(scan_startup(net.config_path, tmp), 0.9 * s)  # noise: never all of it
                same("api", engine_totals, api_totals)
                same("scan", engine_totals, scan_totals)
                print(
                    f"N={n}: floor {n / f:,.0f} accounts/s (without protocol calls "
                    f"{n / f_plain:,.0f}/s); engine ({ENGINE_WORKERS} worker processes) "
                    f"{n / e:,.0f}/s; api batch {n / a:,.0f}/s; "
                    f"scan {n / s:,.0f}/s (peak RSS {mb(rss)}; start-up {up:.2f} s, "
                    f"beyond it {n / (s - up):,.0f}/s, {f / (s - up):.2f} of the floor); "
                    "figures match",
                    flush=True,
                )
                line = (
                    f"pipeline: {n / e:,.0f} accounts/s, {f / e:.2f} of read floor; "
                    f"api batch {f / a:.2f}; scan {f / s:.2f}"
                )
            split = split_times(config, accounts[: min(len(accounts), 1000)])
            print(
                f"per 1,000 accounts: read {1000 * f / n:.2f} s (floor), compute "
                f"{split['compute']:.2f} s, snapshot document {split['document']:.2f} s "
                f"({split['bytes'] / 1000:.1f} KB each)",
                flush=True,
            )
            if args.rss_accounts:
                big = [
                    to_checksum_address("0x" + secrets.token_hex(20))
                    for _ in range(args.rss_accounts)
                ]
                big[: len(accounts)] = accounts[: len(big)]
                s, _, rss = scan_run(net.config_path, big, tmp, "rss")
                print(
                    f"scan of {len(big):,} accounts: {s:.0f} s ({len(big) / s:,.0f}/s), "
                    f"peak RSS {mb(rss)} (target < 500 MB)",
                    flush=True,
                )
    print(
        f"bench RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB"
    )
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
