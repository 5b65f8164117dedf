"""Helpers of the client tests: the API's operations as /openapi.json lists them, config
variants, keys, a dead URL."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

from api.app import api_operations
from api.openapi import spec
from api.security import new_key
from crossmargin.core.config import ApiKeyConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config(ROOT / "configs" / "devnet.toml", env={})
DOCUMENT = spec(api_operations(CONFIG), anonymous=True, version="test")
OPS = [(path, verb, op) for path, item in DOCUMENT["paths"].items() for verb, op in item.items()]


def snake(name: str) -> str:
    """The client method of an operationId: getMargin -> get_margin."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def free_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def with_api(devnet: Any, **api: Any) -> Any:
    """The devnet config with some `[api]` settings replaced."""
    config = devnet.config
    return config.model_copy(update={"api": config.api.model_copy(update=api)})


def make_key(name: str, rate_per_s: float, burst: int) -> tuple[str, ApiKeyConfig]:
    key, digest = new_key()
    return key, ApiKeyConfig(name=name, sha256=digest, rate_per_s=rate_per_s, burst=burst)
