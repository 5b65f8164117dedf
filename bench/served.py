"""The benches' API server: `crossmargin serve --workers N` as a subprocess, on a copy
of the devnet's config with a bench key and the bench's [api] settings.

A thread of the bench's own process (as before) shares one core with the bench; the
workers are what a deployment runs. /metrics is per worker (`rpc_requests` scrapes on
fresh connections until it has seen every worker, by `crossmargin_worker_info`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

CROSSMARGIN = Path(sys.executable).with_name("crossmargin")
WORKER_INFO = re.compile(r'^crossmargin_worker_info\{pid="(\d+)",worker="(\d+)"\} 1\.0$', re.M)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # a JSON string is a TOML basic string


def bench_config(
    source: Path,
    out: Path,
    key_digest: str,
    settings: Mapping[str, Any],
    *,
    rate: float,
    burst: int,
) -> Path:
    """`source` (a devnet config) with `settings` in its [api] table and one key `bench`
    (rate, burst), written to `out`."""
    lines = source.read_text(encoding="utf-8").splitlines()
    start = lines.index("[api]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    kept = [ln for ln in lines[start + 1 : end] if ln.split("=")[0].strip() not in settings]
    table = ["[api]", *kept, *(f"{k} = {_toml(v)}" for k, v in settings.items())]
    key = [
        "[[api.keys]]",
        'name = "bench"',
        f'sha256 = "{key_digest}"',
        f"rate_per_s = {float(rate)!r}",
        f"burst = {int(burst)}",
    ]
    text = "\n".join([*lines[:start], *table, *lines[end:], "", *key]) + "\n"
    out.write_text(text, encoding="utf-8")
    return out


@contextmanager
def serve(config: Path, database: str, workers: int, log: Path) -> Iterator[str]:
    """`crossmargin serve --workers N --port 0` until the block ends; its base URL."""
    env = {k: v for k, v in os.environ.items() if k != "CROSSMARGIN_DATABASE_URL"}
    argv = [str(CROSSMARGIN), "serve", "--config", str(config), "--db", database]
    argv += ["--port", "0", "--workers", str(workers)]
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            found = re.search(r"^listening on (http://\S+)$", log.read_text(), re.M)
            if found:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"crossmargin serve did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield found.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def rpc_requests(headers: Mapping[str, str], base: str, workers: int) -> float:
    """RPC requests so far, summed over the workers (each scraped once)."""
    seen: dict[str, float] = {}
    for _ in range(50 * workers):
        conn = aiohttp.TCPConnector(force_close=True)  # a new connection: maybe a new worker
        async with (
            aiohttp.ClientSession(connector=conn, headers=headers) as s,
            s.get(f"{base}/metrics") as resp,
        ):
            text = await resp.text()
        pids = WORKER_INFO.findall(text)
        pid = pids[0][0] if pids else "single"
        seen[pid] = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("crossmargin_rpc_requests_total{")
        )
        if len(seen) >= workers:
            break
    return sum(seen.values())
