"""The devnet's one error type: setup failed, and the message says where and why."""

from __future__ import annotations

from crossmargin.core.errors import CrossmarginError


class DevnetError(CrossmarginError):
    """The local chains could not be started or do not hold the configured state."""
