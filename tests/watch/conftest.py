"""Fixtures of the watch tests: a devnet of their own (they move balances and prices,
which the shared session devnet must not see)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devnet import BackgroundDevnet, Devnet


@pytest.fixture(scope="package")
def own_devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with BackgroundDevnet(state_dir=tmp_path_factory.mktemp("watch-devnet"), keeper=False) as net:
        yield net
