"""Shared fixtures.

`devnet`: the local chains (crossmargin.devnet), started once per test session in a
helper thread and stopped at session end, also when tests fail or the run is
interrupted. The keeper is off, so every feed keeps exactly its generated rounds
(1..N, the last at start-up chain time). Chain time only moves when a block is mined;
a test that mines blocks past a heartbeat (or calls evm_increaseTime) should call
`asyncio.run(devnet.refresh_feeds())` or start its own Devnet.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from crossmargin.devnet import BackgroundDevnet, Devnet


@pytest.fixture(scope="session")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with BackgroundDevnet(state_dir=tmp_path_factory.mktemp("devnet"), keeper=False) as net:
        yield net


@pytest.fixture(scope="session", autouse=True)
def isolated_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Commands that default to the deployment database (.devnet/crossmargin.db) use a
    per-session one instead, so a developer's `make run` history never leaks into tests."""
    url = f"sqlite:///{tmp_path_factory.mktemp('database') / 'crossmargin.db'}"
    old = os.environ.get("CROSSMARGIN_DATABASE_URL")
    os.environ["CROSSMARGIN_DATABASE_URL"] = url
    yield url
    if old is None:
        os.environ.pop("CROSSMARGIN_DATABASE_URL", None)
    else:
        os.environ["CROSSMARGIN_DATABASE_URL"] = old
