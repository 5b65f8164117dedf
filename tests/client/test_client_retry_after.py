"""Retry-After as the client reads it: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from crossmargin.client.client import retry_after

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 0 ", 0.0),
        (formatdate(NOW + 12, usegmt=True), 12.0),
        (formatdate(NOW - 5, usegmt=True), 0.0),  # a date in the past: now
        (None, None),
        ("soon", None),
        ("-1", None),
        ("1.5", None),  # not delta-seconds
    ],
)
def test_retry_after(header: str | None, seconds: float | None) -> None:
    assert retry_after(header, now=NOW) == seconds
