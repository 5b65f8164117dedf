"""Fixtures of the CLI tests: devnet config variants (the helpers are in cli_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import dead_url


@pytest.fixture
def config_variant(devnet: Any, tmp_path: Path) -> Callable[..., Path]:
    """A copy of the devnet's generated config with text replaced (old, new pairs), for a
    real run under other parameters or with a chain's endpoint dead."""

    def make(*edits: tuple[str, str], name: str = "variant.toml") -> Path:
        text = devnet.config_path.read_text(encoding="utf-8")
        for old, new in edits:
            assert old in text, old
            text = text.replace(old, new, 1)
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return make


@pytest.fixture
def base_down(devnet: Any, config_variant: Callable[..., Path]) -> Path:
    """The devnet config with the `base` chain's only endpoint dead."""
    return config_variant((f'"{devnet.rpc_url("base")}"', f'"{dead_url()}"'), name="down.toml")
