"""Engine inputs as a snapshot records them (METHOD.md §10), and back: `encode` writes
chain states (and the §6 estimates) as plain JSON values, `decode_states` reads them
back strictly into the very records, so replay computes from exactly what was read.
The codec of one kind of value, apart from how a document is put together (snapshot.py)
and read back (stored.py).

Engine inputs are dataclasses (ChainState, BalanceRead, FeedReading, RoundData, ...);
they are written field by field, so a field added to them is recorded without a change
here. Config objects inside them are written as references (a chain by name, a
representation by chain and address) and resolved against the snapshot's config.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from datetime import date
from typing import Any

from crossmargin.core.canonical import LEAF_TYPES, plain
from crossmargin.core.config import ChainConfig, Config, RepresentationConfig
from crossmargin.core.errors import SnapshotError
from crossmargin.pipeline.read import ChainState

# §1: recorded only for an account read at other addresses, per account, beside balances
OWN_OPTIONAL = ("address", "has_code")


_RECORDS: dict[type, tuple[str, ...] | None] = {}


def _record_fields(tp: type) -> tuple[str, ...] | None:
    """The field names of a dataclass or NamedTuple type (None: not a record), looked up
    once per type: `encode` runs for every value of every snapshot's inputs."""
    names = _RECORDS.get(tp, ())
    if names == ():
        if dataclasses.is_dataclass(tp):
            names = tuple(f.name for f in dataclasses.fields(tp))
        elif issubclass(tp, tuple) and hasattr(tp, "_fields"):
            names = tuple(tp._fields)
        else:
            names = None
        _RECORDS[tp] = names
    return names


def encode(value: Any) -> Any:
    t = type(value)  # the exact builtin types first, then records by their cached fields
    if t is str or t is int or t is bool or value is None:
        return value
    if t is list:
        return [encode(v) for v in value]
    names = _record_fields(t)
    if names is not None:
        return {name: encode(getattr(value, name)) for name in names}
    return _encode_other(value)


def plain_encoded(value: Any) -> Any:
    """`plain(encode(value))` in one pass (a document's per-account inputs)."""
    t = type(value)
    if t in LEAF_TYPES:
        return value
    if t is int:
        return str(value)
    if t is list or t is tuple:
        return [plain_encoded(v) for v in value]
    names = _record_fields(t)
    if names is not None:
        return {name: plain_encoded(getattr(value, name)) for name in names}
    return plain(encode(value))


def _encode_other(value: Any) -> Any:
    if isinstance(value, ChainConfig):
        return value.name
    if isinstance(value, RepresentationConfig):
        return {"chain": value.chain, "address": value.address, "symbol": value.symbol}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
        return {name: encode(getattr(value, name)) for name in value._fields}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise SnapshotError(f"cannot record a {type(value).__name__} as an input")


_INT = re.compile(r"^-?[0-9]{1,80}$")
_FLOAT = re.compile(r"^-?[0-9]{1,400}(\.[0-9]{1,400})?$")

Decoder = typing.Callable[[Config, Any, Any, str], Any]


def decode(config: Config, tp: Any, v: Any, where: str) -> Any:
    """`v` (canonical JSON, numbers as strings) as a value of type `tp`; strict."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return _decode_union(config, tp, v, where)
    if origin in (list, tuple):
        return _decode_sequence(config, tp, v, where)
    leaf = _LEAVES.get(tp)
    if leaf is not None:
        return leaf(config, tp, v, where)
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or hasattr(tp, "_fields")):
        return _decode_record(config, tp, v, where)
    raise SnapshotError(f"{where}: cannot decode a {tp}")


def _decode_union(config: Config, tp: Any, v: Any, where: str) -> Any:
    args = typing.get_args(tp)
    if v is None and type(None) in args:
        return None
    arms = [a for a in args if a is not type(None)]
    if len(arms) != 1:
        raise SnapshotError(f"{where}: cannot decode a {tp}")
    return decode(config, arms[0], v, where)


def _decode_sequence(config: Config, tp: Any, v: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if not isinstance(v, list) or (origin is tuple and args[-1] is not Ellipsis):
        raise SnapshotError(f"{where}: expected a list")
    items = [decode(config, args[0], x, f"{where}.{i}") for i, x in enumerate(v)]
    return items if origin is list else tuple(items)


def _decode_bool(_config: Config, _tp: Any, v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise SnapshotError(f"{where}: expected true or false")
    return v


def _decode_int(_config: Config, _tp: Any, v: Any, where: str) -> int:
    return json_int(v, where)


def json_int(v: Any, where: str) -> int:
    if not isinstance(v, str) or not _INT.match(v):
        raise SnapshotError(f"{where}: expected a decimal integer string")
    return int(v)


def _decode_float(_config: Config, _tp: Any, v: Any, where: str) -> float:
    if not isinstance(v, str) or not _FLOAT.match(v):
        raise SnapshotError(f"{where}: expected a decimal number string")
    return float(v)


def _decode_text(_config: Config, _tp: Any, v: Any, where: str) -> str:
    return decode_str(v, where)


def _decode_date(_config: Config, _tp: Any, v: Any, where: str) -> date:
    try:
        return date.fromisoformat(decode_str(v, where))
    except ValueError:
        raise SnapshotError(f"{where}: expected an ISO date") from None


def _decode_chain(config: Config, _tp: Any, v: Any, where: str) -> ChainConfig:
    try:
        return config.chain(decode_str(v, where))
    except KeyError:
        raise SnapshotError(f"{where}: chain {v!r} is not in the config") from None


def _decode_rep(config: Config, _tp: Any, v: Any, where: str) -> RepresentationConfig:
    ref = json_obj(v, where)
    for rep in config.representations:
        if (rep.chain, rep.address, rep.symbol) == (
            ref.get("chain"),
            ref.get("address"),
            ref.get("symbol"),
        ) and len(ref) == 3:
            return rep
    raise SnapshotError(f"{where}: not a configured representation")


def _decode_record(config: Config, tp: type, v: Any, where: str) -> Any:
    d = json_obj(v, where)
    hints = typing.get_type_hints(tp)
    fields = _field_names(tp)
    if set(d) - set(fields):
        raise SnapshotError(f"{where}: unknown fields {sorted(set(d) - set(fields))}")
    kwargs = {
        name: decode(config, hints[name], d[name], f"{where}.{name}")
        for name in fields
        if name in d  # absent: a field newer than the document; its default applies
    }
    try:
        return tp(**kwargs)
    except TypeError as exc:
        raise SnapshotError(f"{where}: {exc}") from None


_LEAVES: dict[Any, Decoder] = {
    bool: _decode_bool,
    int: _decode_int,
    float: _decode_float,
    str: _decode_text,
    date: _decode_date,
    ChainConfig: _decode_chain,
    RepresentationConfig: _decode_rep,
}


def _field_names(tp: type) -> list[str]:
    if dataclasses.is_dataclass(tp):
        return [f.name for f in dataclasses.fields(tp)]
    return list(getattr(tp, "_fields", ()))


def json_obj(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise SnapshotError(f"{where}: expected an object")
    return v


def json_list(v: Any, where: str) -> list[Any]:
    if not isinstance(v, list):
        raise SnapshotError(f"{where}: expected a list")
    return v


def decode_str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise SnapshotError(f"{where}: expected a string")
    return v


def json_opt_str(v: Any, where: str) -> str | None:
    if v is not None and not isinstance(v, str):
        raise SnapshotError(f"{where}: expected a string or null")
    return v


def encode_states(states: list[ChainState]) -> list[Any]:
    """Chain states as recorded; `protocols` only where a protocol market was read, so
    documents of chains without one are as they were before §12 reads existed."""
    out = [encode(s) for s in states]
    for d in out:
        for key in ("block_proof", "holder_proof"):
            if not d[key]:
                del d[key]
        if not d["protocols"]:
            del d["protocols"]
        else:
            d["protocols"] = [lean(p) for p in d["protocols"]]
        for key in OWN_OPTIONAL:
            if d[key] is None:
                del d[key]
    return out


def decode_states(config: Config, data: Any) -> list[ChainState]:
    states = decode(config, list[ChainState], data, "inputs.chains")
    assert all(isinstance(s, ChainState) for s in states)
    return list(states)


def lean(read: dict[str, Any]) -> dict[str, Any]:
    """A protocol read without its empty optional fields (their defaults on decoding):
    an account's own part of a document is most of what each account adds."""
    return {k: v for k, v in read.items() if k in ("kind", "pool") or v not in (None, [])}
