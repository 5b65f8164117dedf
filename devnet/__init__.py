"""The embedded devnet: four local anvil chains in the state configs/devnet.toml describes.

Entry points: `Devnet.start(...)` (async context manager), `BackgroundDevnet` (sync,
runs it in a thread) and `main(argv)` (the `crossmargin devnet` subcommand).
"""

from __future__ import annotations

from devnet.background import BackgroundDevnet
from devnet.cli import main
from devnet.errors import DevnetError
from devnet.manifest import Manifest, read_manifest
from devnet.net import Devnet

__all__ = ["BackgroundDevnet", "Devnet", "DevnetError", "Manifest", "main", "read_manifest"]
