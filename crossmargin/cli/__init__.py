"""The `crossmargin` console script and its commands."""

from crossmargin.cli.main import main

__all__ = ["main"]
