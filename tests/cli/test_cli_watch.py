"""`crossmargin watch` refuses bad input with one line on stderr and a non-zero exit,
before it connects to anything or prints a secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CROSSMARGIN = Path(sys.executable).with_name("crossmargin")
GOOD = "0x" + "ab" * 20


@pytest.mark.parametrize(
    ("lines", "extra", "message"),
    [
        (["0x12"], ["--health-below", "1.2"], "--accounts line 1: not an address"),
        (["# none"], ["--health-below", "1.2"], "--accounts: no address in the file"),
        ([GOOD], [], "thresholds: at least one threshold is needed"),
        ([GOOD], ["--health-below", "1.2", "--webhook", "ftp://x"], "--webhook: the webhook"),
        ([GOOD], ["--health-below", "1.2", "--secret", "short"], "--secret: at least 16"),
        ([GOOD], ["--health-below", "1.2", "--target-chain", "solana"], "unknown --target-chain"),
        ([GOOD], ["--free-margin-below", "lots"], "thresholds: String should match pattern"),
    ],
)
def test_bad_input_is_one_line(
    tmp_path: Path, lines: list[str], extra: list[str], message: str
) -> None:
    accounts = tmp_path / "accounts.txt"
    accounts.write_text("\n".join(lines) + "\n")
    argv = [str(CROSSMARGIN), "watch", "--config", str(ROOT / "configs/devnet.toml")]
    argv += ["--accounts", str(accounts), "--db", f"sqlite:///{tmp_path / 'w.db'}"]
    if "--webhook" not in extra:
        argv += ["--webhook", "http://127.0.0.1:9/hook"]
    proc = subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr
    assert "secret" not in proc.stderr.lower() or "--secret" in message
    assert "Traceback" not in proc.stderr
