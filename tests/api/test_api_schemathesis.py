"""Schemathesis (every check, every phase) against a real server on a free loopback
port, on the devnet, with each snapshot store. Bounded: at most 25 examples per
operation and a fixed seed (override with CROSSMARGIN_ST_SEED)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from api_helpers import ServerThread, api_config, make_key

from api.app import create_app

HERE = Path(__file__).parent
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_schemathesis_finds_nothing(devnet: Any, database: str, tmp_path: Path) -> None:
    # The fuzzer is one client sending thousands of requests: lift the anonymous limit.
    # It sends a key (watches need one); the watcher stays off: the fuzzed watches'
    # webhooks would be POSTed to whatever hosts it makes up.
    key, entry = make_key("fuzz", rate_per_s=1e5, burst=100_000)
    config = api_config(devnet, anonymous_rate_per_s=1e5, anonymous_burst=100_000, keys=[entry])
    config = config.model_copy(update={"watch": config.watch.model_copy(update={"enabled": False})})
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "api_st_hooks",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "CROSSMARGIN_ST_ACCOUNTS": ",".join(devnet.demo_accounts.values()),
    }
    with ServerThread(create_app(config, database=database)) as server:
        proc = subprocess.run(
            [
                str(SCHEMATHESIS),
                "run",
                f"{server.url}/openapi.json",
                "--max-examples=25",
                f"--seed={os.environ.get('CROSSMARGIN_ST_SEED', '20240601')}",
                "--request-timeout=20",
                "--no-color",
                "--checks=all",
                f"--header=X-API-Key: {key}",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=420,  # 20 operations; the suite shares 2 cores (150 s was for 10)
        )
    report = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    assert "No issues found" in proc.stdout, report
