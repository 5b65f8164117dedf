"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, and the API
(with the page) served on a free loopback port from a helper thread.

Chromium comes from the system package (`apt-get install chromium`; `make test` does it),
never from Playwright's own download. Without it the tests skip on a laptop and fail
under CI=true.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright
from web_helpers import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    ServedApp,
    serve,
    with_dead_chain,
    with_unpriced_asset,
)


@pytest.fixture(scope="module")
def web_server(devnet: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    db = tmp_path_factory.mktemp("web") / "snapshots.db"
    with serve(devnet.config, devnet.manifest_path, db) as served:
        yield served


@pytest.fixture(scope="module")
def dead_base_server(devnet: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    db = tmp_path_factory.mktemp("web-dead") / "snapshots.db"
    with serve(with_dead_chain(devnet.config, "base"), devnet.manifest_path, db) as served:
        yield served


@pytest.fixture(scope="module")
def unpriced_usdc_server(
    devnet: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    db = tmp_path_factory.mktemp("web-unpriced") / "snapshots.db"
    with serve(with_unpriced_asset(devnet.config, "USDC"), devnet.manifest_path, db) as served:
        yield served


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module scope on purpose: while Playwright's sync API is open, its event loop runs
    in this thread, and later tests that call asyncio.run() would fail."""
    if shutil.which(CHROMIUM) is None:
        why = f"{CHROMIUM} is missing (apt-get install chromium; `make test` installs it)"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(why)
        pytest.skip(why)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
