"""The `crossmargin` console script and its commands."""

from crossmargin.cli.main import console, main

__all__ = ["console", "main"]
