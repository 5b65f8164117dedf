"""`--db` on every command that reads the deployment database: a bad URL (flag or
$CROSSMARGIN_DATABASE_URL) is one line and exit 1 that names where it came from and never
echoes it; a good one makes the CLI read what the API beside it reads."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cli_helpers import CLI, child_env, run

from crossmargin.core.config import load_config
from devnet.up import record_database

ENV = "CROSSMARGIN_DATABASE_URL"
# password, host and port that must never reach an error message
SECRET_PG = "postgresql://alice:s3cret@127.0.0.1:1/db"

BAD = [
    ("garbage", "--db: not a database URL (sqlite:///PATH or postgresql://USER@HOST/DB)"),
    ("mysql://alice:s3cret@db.example.com/x", "--db: unsupported database 'mysql'"),
    ("foo://x", "--db: unsupported database 'foo'"),
    ("postgresql://alice:s3cret@127.0.0.1:notaport/db", "--db: not a database URL"),
    ("sqlite:////proc/nope/x.db", "--db: cannot use the SQLite database /proc/nope/x.db"),
    (SECRET_PG, "--db: cannot connect to the PostgreSQL database"),
    ("", "--db: not a database URL"),
]


def one_line_error(res: subprocess.CompletedProcess[str], expected: str) -> None:
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("crossmargin: error: ")
    assert expected in lines[0]
    for leak in ("s3cret", "alice", "127.0.0.1", "db.example.com"):
        assert leak not in res.stderr


@pytest.mark.parametrize(("url", "expected"), BAD, ids=[u or "empty" for u, _ in BAD])
def test_margin_refuses_a_bad_db_in_one_line(devnet: Any, url: str, expected: str) -> None:
    alice = devnet.demo_accounts["alice"]
    res = run("margin", alice, "--config", str(devnet.config_path), "--db", url)
    one_line_error(res, expected)


def commands(devnet: Any, tmp_path: Path) -> dict[str, list[str]]:
    src = tmp_path / "accounts.txt"
    src.write_text(devnet.demo_accounts["alice"] + "\n", encoding="utf-8")
    cfg = ["--config", str(devnet.config_path)]
    return {
        "margin": ["margin", devnet.demo_accounts["alice"], *cfg],
        "scan": ["scan", "--input", str(src), "--output", str(tmp_path / "o.jsonl"), *cfg],
        "audit": ["audit", "verify", "--all", *cfg],
        "prices": ["prices", "sync", *cfg],
        "serve": ["serve", "--port", "0", *cfg],
    }


@pytest.mark.parametrize("command", ["margin", "scan", "audit", "prices", "serve"])
def test_every_command_refuses_a_bad_db_flag_or_env(
    devnet: Any, tmp_path: Path, command: str
) -> None:
    argv = commands(devnet, tmp_path)[command]
    expected = (
        "--db: cannot use the snapshot store" if command == "audit" else "--db: cannot connect"
    )
    one_line_error(run(*argv, "--db", SECRET_PG), expected)
    one_line_error(
        run(*argv, env={ENV: "mysql://alice:s3cret@db.example.com/x"}),
        f"${ENV}: unsupported database 'mysql'",
    )
    assert not (tmp_path / "o.jsonl").exists()  # scan stopped before touching its output


def test_audit_keeps_database_as_a_hidden_alias(devnet: Any, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'none.db'}"
    res = run("audit", "verify", "--all", "--database", url, "--config", str(devnet.config_path))
    one_line_error(res, f"crossmargin: error: --db: no snapshot store at {tmp_path / 'none.db'}")
    assert "--database" not in run("audit", "verify", "--help").stdout


@pytest.fixture(scope="module")
def synced(devnet: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A deployment database holding the devnet's price history (`prices sync --db`)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('deployment') / 'crossmargin.db'}"
    res = run("prices", "sync", "--config", str(devnet.config_path), "--db", url)
    assert res.returncode == 0, res.stderr
    return url


@pytest.fixture
def served(devnet: Any, synced: str, tmp_path: Path) -> Iterator[str]:
    """`crossmargin serve --port 0 --db URL` in a child: the URL it says it listens on."""
    argv = [*CLI, "serve", "--port", "0", "--config", str(devnet.config_path), "--db", synced]
    log = tmp_path / "serve.err"
    with log.open("w") as err:
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=err, text=True, env=child_env({ENV: None})
        )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("listening on http://127.0.0.1:"), log.read_text()
        yield first.removeprefix("listening on ").strip()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]


def get_json(url: str) -> Any:
    async def get() -> Any:
        async with aiohttp.ClientSession() as s, s.get(url) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    return asyncio.run(get())


def test_margin_scan_and_audit_read_the_database_the_api_serves_from(
    devnet: Any, synced: str, served: str, tmp_path: Path
) -> None:
    base = served
    bob = devnet.demo_accounts["bob"]
    page = get_json(f"{base}/v1/accounts/{bob}/margin?target_chain=arbitrum")
    assert set(page["parameters"]["sigma_source"].values()) == {"ewma"}  # from the history

    cfg = ["--config", str(devnet.config_path)]
    cli = run("margin", bob, "--target-chain", "arbitrum", "--json", *cfg, "--db", synced)
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == page

    src, out = tmp_path / "accounts.txt", tmp_path / "out.jsonl"
    src.write_text(bob + "\n", encoding="utf-8")
    argv = ["scan", "--input", str(src), "--output", str(out), "--target-chain", "arbitrum"]
    res = run(*argv, *cfg, "--db", synced)
    assert res.returncode == 0, res.stderr
    assert json.loads(out.read_text(encoding="utf-8"))["report"] == page

    # without --db (another, empty database) sigma comes from config: --db is what agrees
    alone = run("margin", bob, "--target-chain", "arbitrum", "--json", *cfg)
    assert set(json.loads(alone.stdout)["parameters"]["sigma_source"].values()) == {"default"}

    audit = run("audit", "verify", "--all", *cfg, "--db", synced)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "snapshots in 1 account(s) checked" in audit.stdout
    assert audit.stdout.rstrip().endswith(": OK")


def test_prices_sync_accepts_a_postgresql_url_as_written(tmp_path: Path, devnet: Any) -> None:
    """`postgresql://` means psycopg 3 for every command (not SQLAlchemy's psycopg2)."""
    res = run("prices", "sync", "--config", str(devnet.config_path), "--db", SECRET_PG)
    one_line_error(res, "--db: cannot connect to the PostgreSQL database")


def test_up_records_the_database_in_its_config(tmp_path: Path, devnet: Any) -> None:
    """`crossmargin up` writes the database it serves from into the config it generates,
    without a password (that stays in the environment)."""
    path = tmp_path / "generated.toml"
    path.write_text(devnet.config_path.read_text(encoding="utf-8"), encoding="utf-8")
    assert "database_url" not in path.read_text(encoding="utf-8")
    sqlite = f"sqlite:///{tmp_path / 'state' / 'crossmargin.db'}"
    record_database(path, sqlite)
    assert load_config(path, env={}).api.database_url == sqlite
    record_database(path, "postgresql+psycopg://alice:s3cret@db.example.com:5432/cm")
    text = path.read_text(encoding="utf-8")
    assert "s3cret" not in text
    assert text.count("database_url") == 1
    cfg = load_config(path, env={})
    assert cfg.api.database_url == "postgresql+psycopg://alice@db.example.com:5432/cm"
    assert cfg.api.anonymous  # the rest of [api] is untouched
