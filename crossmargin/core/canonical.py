"""Canonical JSON (METHOD.md §10): the one text of a snapshot document and of each blob it
names, whose sha256 (`digest`) is its id.

Keys sorted, no insignificant whitespace, ASCII only, and every number a decimal string
(integers as they are, floats in their shortest round-trip form without an exponent), so
any client can re-serialise a document and get the same bytes. A module of its own,
below every layer that writes or checks such text (pipeline/snapshot.py builds documents,
api/ stores them and logs their ids): it needs nothing of ours but the error tree.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

from crossmargin.core.errors import SnapshotError


def decimal_str(value: float) -> str:
    """Shortest round-trip decimal of a float, never in exponent form."""
    if not math.isfinite(value):
        raise SnapshotError(f"not a finite number: {value!r}")
    return format(Decimal(repr(float(value))), "f")


LEAF_TYPES = frozenset({str, bool, type(None)})  # exact types `plain` keeps as they are


def plain(value: Any) -> Any:
    """JSON-ready value with every number as a decimal string."""
    t = type(value)  # the exact builtin types first: a document has ~10^3 values
    if t in LEAF_TYPES:
        return value
    # containers test their leaves inline: most values are strings, no call for them
    if t is dict:
        return {
            k if type(k) is str else str(k): v if type(v) in LEAF_TYPES else plain(v)
            for k, v in value.items()
        }
    if t is list:
        return [v if type(v) in LEAF_TYPES else plain(v) for v in value]
    if t is int:
        return str(value)
    return _plain_other(value)


def _plain_other(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return decimal_str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    raise SnapshotError(f"cannot put {type(value).__name__} in a snapshot")


def canonical(value: Any) -> str:
    return dumps(plain(value))


def dumps(value: Any) -> str:
    """Canonical JSON of a value `plain` already (every number a string).

    orjson writes it, byte for byte as `json.dumps(sort_keys, compact, ensure_ascii)`
    does, whenever its output is printable ASCII (tested on every code point below
    U+0800 and on real documents): control characters are escaped alike, and a value
    it writes otherwise (non-ASCII or DEL raw, where json escapes them) or refuses
    (ints past 64 bits, surrogates) goes to json itself. `plain` leaves no floats, whose
    forms would differ. A string of printable ASCII but `"` and `\\` (a hash, an
    address, a decimal: most of a document) is written as it is, quoted, as both do."""
    if type(value) is str and value.isascii() and value.isprintable():
        if '"' not in value and "\\" not in value:
            return f'"{value}"'
    try:
        out = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError
        out = b"\x80"
    if out.isascii() and b"\x7f" not in out:
        return out.decode("ascii")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class _Keys(dict[str, str]):
    """`"name":` as canonical JSON writes an object's key, encoded once per name (keys
    are a few fixed names)."""

    def __missing__(self, name: str) -> str:
        text = self[name] = dumps(name) + ":"
        return text


_KEY = _Keys()


def members(texts: Mapping[str, str]) -> str:
    """The canonical text of an object from its members' canonical texts (keys sorted,
    as `dumps` sorts them): a document is spliced from pieces encoded once each, not
    dumped whole for every account (`test_batch_documents_are_the_bytes_they_always_were`
    compares with the whole dump)."""
    return "{" + ",".join([_KEY[k] + texts[k] for k in sorted(texts)]) + "}"
