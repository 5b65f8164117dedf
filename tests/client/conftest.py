"""Fixtures of the client tests: the API on the devnet, served on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp.test_utils import TestServer
from client_helpers import with_api

from api.app import create_app


@pytest_asyncio.fixture(loop_scope="session")
async def served(devnet: Any, tmp_path: Path) -> AsyncIterator[str]:
    """The anonymous API (generous limits) on the devnet; its base URL."""
    config = with_api(devnet, anonymous=True, anonymous_rate_per_s=1e4, anonymous_burst=10_000)
    app = create_app(config, database=f"sqlite:///{tmp_path / 'client.db'}")
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("")).rstrip("/")
