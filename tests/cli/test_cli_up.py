"""`crossmargin up` (what `make run` runs), `make run PORT=`, and `--version`."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
from cli_helpers import CLI, child_env, run, sigint_default

from crossmargin.core.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_version() -> None:
    res = run("--version")
    assert res.returncode == 0
    assert res.stdout.strip() == f"crossmargin {version('crossmargin')}"


def test_make_run_passes_port_to_up() -> None:
    def dry(*args: str) -> str:
        res = subprocess.run(
            ["make", "-n", "--no-print-directory", "run", *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
            cwd=ROOT,
            env=child_env({"MAKEFLAGS": None, "MAKELEVEL": None, "MFLAGS": None}),
        )
        return res.stdout.strip().splitlines()[-1]

    assert dry("PORT=9123") == ".venv/bin/crossmargin up --port 9123"
    assert dry() == ".venv/bin/crossmargin up"


def get(url: str) -> Any:
    async def go() -> Any:
        async with aiohttp.ClientSession() as s, s.get(url) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    return asyncio.run(go())


def test_up_listens_where_it_says_and_the_cli_reads_its_database(tmp_path: Path) -> None:
    """A whole `up` on its own chains: the URL it prints is where it answers, the config
    it writes names its database, and `margin` with that config (from another directory,
    no environment) gives the API's answer, history-based sigma included."""
    state = tmp_path / "state"
    log = tmp_path / "up.out"
    env = child_env({"CROSSMARGIN_DATABASE_URL": None})
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*CLI, "up", "--port", "0", "--state-dir", str(state)],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
            preexec_fn=sigint_default,
        )
    try:
        deadline, base = time.monotonic() + 240, None
        while base is None and time.monotonic() < deadline and proc.poll() is None:
            for line in log.read_text().splitlines():
                if line.startswith("API and web page: "):
                    base = line.removeprefix("API and web page: ").rstrip("/")
            time.sleep(0.2)
        assert base is not None, log.read_text()
        assert base.startswith("http://127.0.0.1:")
        assert not base.endswith(":0")
        assert get(f"{base}/v1/health")

        generated = state / "crossmargin.toml"
        config = load_config(generated, env={})
        assert config.api.database_url == f"sqlite:///{(state / 'crossmargin.db').resolve()}"

        manifest = json.loads((state / "manifest.json").read_text())
        carol = next(a["address"] for a in manifest["accounts"] if a["name"] == "carol")
        page = get(f"{base}/v1/accounts/{carol}/margin?target_chain=arbitrum")
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        res = subprocess.run(
            [*CLI, "margin", carol, "--target-chain", "arbitrum", "--json",
             "--config", str(generated)],
            capture_output=True, text=True, check=False, timeout=120, env=env, cwd=elsewhere,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        cli = json.loads(res.stdout)
        assert set(cli["parameters"]["sigma_source"].values()) == {"ewma"}
        # the chains move on (the keeper runs): same figures only at the same pins
        if cli["as_of"] == page["as_of"]:
            assert cli == page
        else:
            assert cli["parameters"]["sigma"] == page["parameters"]["sigma"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text()
