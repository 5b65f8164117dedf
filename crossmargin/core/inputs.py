"""Parsing of the as-of (METHOD.md §15) and per-chain address (§1) inputs, shared by the
API's query strings and the CLI's options, so both accept exactly the same text."""

from __future__ import annotations

from datetime import UTC, datetime

from crossmargin.core.errors import InputConflict, InputError

MAX_PAIRS = 64


def parse_time(text: str, what: str = "at") -> int:
    """Unix seconds (digits), or an ISO-8601 date-time with an offset or `Z` (a time
    without one is refused: it would depend on the server's zone)."""
    text = text.strip()
    if text.isdigit() and len(text) <= 12:
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InputError(
            f"{what}: expected unix seconds or an ISO-8601 date-time, got {text[:40]!r}"
        ) from None
    if when.tzinfo is None:
        raise InputError(f"{what}: give the time zone (e.g. 'Z' or '+00:00'): {text[:40]!r}")
    seconds = int(when.astimezone(UTC).timestamp())
    if seconds < 0:
        raise InputError(f"{what}: before 1970")
    return seconds


def parse_pairs(text: str, what: str) -> list[tuple[str, str]]:
    """`chain:value,chain:value` -> [(chain, value)]; each chain at most once."""
    out: list[tuple[str, str]] = []
    for i, part in enumerate(p.strip() for p in text.split(",")):
        chain, sep, value = part.partition(":")
        chain, value = chain.strip(), value.strip()
        if not sep or not chain or not value:
            raise InputError(f"{what}.{i}: expected chain:value, got {part[:60]!r}")
        out.append((chain, value))
    if len(out) > MAX_PAIRS:
        raise InputError(f"{what}: at most {MAX_PAIRS} chains")
    return out


def parse_blocks(text: str) -> list[tuple[str, int]]:
    """`chain:number,...` (§15)."""
    out = []
    for chain, value in parse_pairs(text, "blocks"):
        if not value.isdigit() or len(value) > 15:
            raise InputError(f"blocks: {chain}: not a block number: {value[:40]!r}")
        out.append((chain, int(value)))
    return out


def one_per_chain(
    pairs: list[tuple[str, str]] | list[tuple[str, int]], what: str
) -> dict[str, str | int]:
    """Pairs (chain names already resolved) as a mapping; a chain given twice with
    different values is a conflict (the same value twice is the same request)."""
    out: dict[str, str | int] = {}
    for chain, value in pairs:
        old = out.setdefault(chain, value)
        if str(old).lower() != str(value).lower():
            raise InputConflict(f"{what}: chain {chain} is given {old} and {value}")
    return out
