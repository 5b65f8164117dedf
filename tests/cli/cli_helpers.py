"""Running the real `crossmargin` console script in a child process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

CLI = [sys.executable, "-m", "crossmargin.cli"]


def child_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment with `extra` applied (None removes a variable)."""
    env = dict(os.environ)
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def sigint_default() -> None:
    """In the child before exec: SIGINT as a terminal gives it (a shell running the tests
    in the background may have it ignored, and Python then never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(
    *argv: str,
    env: Mapping[str, str | None] | None = None,
    cwd: Path | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env=child_env(env),
        cwd=cwd,
    )


def dead_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"
