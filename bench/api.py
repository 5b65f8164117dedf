"""Benchmark: the HTTP API under load, on the devnet, from a second process on loopback.

Run from the repository root:  .venv/bin/python bench/api.py [--clients 50]
[--seconds 30] [--database URL] [--workers 1] [--baseline REV]. This process starts
the devnet and the API as `crossmargin serve --workers N` (a subprocess, bench/served.py;
N = 1, serve's default, is one process; a config file in a temporary directory with a
bench API key); the load comes from a child process (`--load`): CLIENTS concurrent
clients, each sending its next request when the last is answered, a mix of
single-account margin requests (80%) and batches of BATCH accounts (20%), in two phases:

- uncached: every account is new (random addresses: a full read of all four chains);
- cached:   the accounts of the uncached phase and the demo accounts, asked again.

Printed per phase and kind: requests, throughput, p50/p99 latency, errors; and RPC
requests per served account, from every worker's /metrics (every RPC request counts:
pins, chain-id checks, multicalls).

Baseline, in the same run (`--baseline REV`, default BASELINE; `--baseline ''` skips
it): the same load against the project as it was at REV, by REV's own bench/api.py
(its tree from `git archive`, run with this venv and node_modules, on a devnet of its
own, after this run's). BASELINE is the head on which issue 11 was filed (API ~125-190
fresh accounts/s; its target: 5x). Last line: `api: uncached N accounts/s, R.Rx the
baseline's; cached N/s, R.Rx`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: this file's folder would shadow the package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import aiohttp

from bench.served import bench_config, rpc_requests, serve

KEY_HEADER = "X-API-Key"
ROOT = Path(__file__).resolve().parents[1]
BASELINE = "bf8cc8f"  # the head issue 11 was filed on: its API figures are "today's"
SERVED = re.compile(r"^(uncached|cached)\s+accounts served \d+ \((\d+)/s\)", re.M)


# ---------------------------------------------------------------- the load (child process)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _phase(
    session: aiohttp.ClientSession,
    base: str,
    accounts: list[str],
    fresh: bool,
    args: argparse.Namespace,
) -> dict[str, Any]:
    rng = random.Random(1)
    stats: dict[str, list[float]] = {"single": [], "batch": []}
    errors: dict[str, int] = {"single": 0, "batch": 0}
    served = 0
    used: list[str] = []
    deadline = time.perf_counter() + args.seconds

    def pick(n: int) -> list[str]:
        if fresh:
            new = ["0x" + secrets.token_hex(20) for _ in range(n)]
            used.extend(new)
            return new
        return rng.sample(accounts, n)

    async def client() -> None:
        nonlocal served
        while time.perf_counter() < deadline:
            batch = rng.random() < args.batch_share
            t0 = time.perf_counter()
            try:
                if batch:
                    group = pick(args.batch)
                    async with session.post(
                        f"{base}/v1/margin:batch", json={"accounts": group}
                    ) as resp:
                        body = await resp.read()
                        ok = resp.status == 200 and b'"error":{' not in body
                    n = len(group)
                else:
                    (account,) = pick(1)
                    async with session.get(f"{base}/v1/accounts/{account}/margin") as resp:
                        await resp.read()
                        ok = resp.status == 200
                    n = 1
            except (aiohttp.ClientError, TimeoutError):
                ok, n = False, 0
            kind = "batch" if batch else "single"
            stats[kind].append(time.perf_counter() - t0)
            if ok:
                served += n
            else:
                errors[kind] += 1
            if args.think_ms:
                await asyncio.sleep(rng.expovariate(1000.0 / args.think_ms))

    headers = {KEY_HEADER: os.environ["CROSSMARGIN_BENCH_KEY"]}
    rpc0 = await rpc_requests(headers, base, args.workers)
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(args.clients)))
    elapsed = time.perf_counter() - t0
    rpc = await rpc_requests(headers, base, args.workers) - rpc0
    accounts.extend(used)
    return {
        "elapsed_s": elapsed,
        "served_accounts": served,
        "rpc_per_account": rpc / served if served else float("nan"),
        "kinds": {
            k: {
                "requests": len(v),
                "per_s": len(v) / elapsed,
                "p50_ms": 1000 * _pct(v, 0.50),
                "p99_ms": 1000 * _pct(v, 0.99),
                "errors": errors[k],
            }
            for k, v in stats.items()
        },
    }


async def _load(args: argparse.Namespace) -> None:
    base = args.load
    headers = {KEY_HEADER: os.environ["CROSSMARGIN_BENCH_KEY"]}
    conn = aiohttp.TCPConnector(limit=args.clients + 4)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=conn, headers=headers, timeout=timeout) as s:
        accounts = [a for a in args.accounts.split(",") if a]
        warm = await _phase(s, base, [], True, argparse.Namespace(**{**vars(args), "seconds": 1}))
        uncached = await _phase(s, base, accounts, True, args)
        cached = await _phase(s, base, accounts, False, args)
    print(json.dumps({"warmup": warm, "uncached": uncached, "cached": cached}))


# ---------------------------------------------------------------- devnet + server (parent)


def _report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    print(f"API: crossmargin serve --workers {args.workers} (subprocess)")
    print(
        f"API load: {args.clients} clients, {args.seconds:g} s per phase, "
        f"{int(100 * (1 - args.batch_share))}% single / {int(100 * args.batch_share)}% "
        f"batches of {args.batch}, think time {args.think_ms:g} ms"
    )
    head = f"{'phase':<9} {'kind':<7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
    print(head + f" {'errors':>6}")
    for phase in ("uncached", "cached"):
        r = result[phase]
        for kind, k in r["kinds"].items():
            print(
                f"{phase:<9} {kind:<7} {k['requests']:>8} {k['per_s']:>8.1f} "
                f"{k['p50_ms']:>8.2f} {k['p99_ms']:>8.2f} {k['errors']:>6}"
            )
        print(
            f"{phase:<9} accounts served {r['served_accounts']} "
            f"({r['served_accounts'] / r['elapsed_s']:.0f}/s), "
            f"RPC requests per served account {r['rpc_per_account']:.4f}"
        )


def baseline(rev: str, args: argparse.Namespace) -> dict[str, int]:
    """Accounts/s per phase of REV's own bench/api.py under the same load (see module)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        git = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True)
        if git.returncode != 0:
            raise SystemExit(f"baseline {rev}: {git.stderr.decode().strip()} (--baseline '')")
        subprocess.run(["tar", "-x", "-C", str(tree)], input=git.stdout, check=True)
        (tree / "node_modules").symlink_to(ROOT / "node_modules")
        argv = [sys.executable, "bench/api.py", "--clients", str(args.clients)]
        argv += ["--seconds", str(args.seconds), "--batch", str(args.batch)]
        argv += ["--batch-share", str(args.batch_share), "--think-ms", str(args.think_ms)]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        out = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
    found = {phase: int(rate) for phase, rate in SERVED.findall(out.stdout)}
    if out.returncode != 0 or set(found) != {"uncached", "cached"}:
        raise SystemExit(f"baseline {rev} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--seconds", type=float, default=30.0, help="per phase")
    p.add_argument("--batch", type=int, default=10, help="accounts per batch request")
    p.add_argument("--batch-share", type=float, default=0.2)
    p.add_argument("--think-ms", type=float, default=0.0, help="mean pause between requests")
    p.add_argument("--database", help="snapshot store URL (default: a temporary SQLite file)")
    p.add_argument("--workers", type=int, default=1, help="API worker processes (serve's default)")
    p.add_argument("--baseline", default=BASELINE, help="git revision measured alike ('': none)")
    p.add_argument("--load", help=argparse.SUPPRESS)  # child mode: the server's base URL
    p.add_argument("--accounts", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.load:
        asyncio.run(_load(args))
        return 0

    from api.security import new_key
    from devnet import BackgroundDevnet

    key, digest = new_key()
    with (
        tempfile.TemporaryDirectory() as tmp,
        BackgroundDevnet(state_dir=Path(tmp) / "devnet", keeper=False) as net,
    ):
        config = bench_config(
            net.config_path,
            Path(tmp) / "bench.toml",
            digest,
            {"max_batch": 100, "cache_entries": 100_000},
            rate=1e6,
            burst=1_000_000,
        )
        database = args.database or f"sqlite:///{Path(tmp) / 'snapshots.db'}"
        with serve(config, database, args.workers, Path(tmp) / "serve.log") as base:
            child = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--load",
                base,
                "--workers",
                str(args.workers),
                "--clients",
                str(args.clients),
                "--seconds",
                str(args.seconds),
                "--batch",
                str(args.batch),
                "--batch-share",
                str(args.batch_share),
                "--think-ms",
                str(args.think_ms),
                "--accounts",
                ",".join(net.demo_accounts.values()),
            ]
            env = {**os.environ, "CROSSMARGIN_BENCH_KEY": key}
            try:
                out = subprocess.run(child, env=env, capture_output=True, text=True, check=True)
            except subprocess.CalledProcessError as exc:
                print(exc.stdout, exc.stderr, file=sys.stderr)
                raise
    result = json.loads(out.stdout)
    _report(args, result)
    if not args.baseline:
        return 0
    base = baseline(args.baseline, args)
    rate = {p: result[p]["served_accounts"] / result[p]["elapsed_s"] for p in base}
    print(
        f"baseline {args.baseline}, same load: uncached {base['uncached']}/s, "
        f"cached {base['cached']}/s"
    )
    print(
        f"api: uncached {rate['uncached']:,.0f} accounts/s, "
        f"{rate['uncached'] / base['uncached']:.1f}x the baseline's; "
        f"cached {rate['cached']:,.0f}/s, {rate['cached'] / base['cached']:.1f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
