"""Snapshots (METHOD.md §10): a computation's inputs and outputs as one canonical JSON
document, whose sha256 is the snapshot's id.

Canonical JSON: keys sorted, no insignificant whitespace, ASCII only, and every number
a decimal string (integers as they are, floats in their shortest round-trip form
without an exponent), so any client can re-serialise a document and get the same bytes.

The inputs are what the engine read (one `ChainState` per chain: pinned block, raw
balances, feed readings) plus the risk parameters used; `crossmargin.pipeline.figures.
compute` is the one function that turns inputs into a report, live and on replay, so
`replay` of a stored document must give byte-identical outputs. A document also names
the previous snapshot of the same account (`prev`), which makes each account's record a hash chain.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from crossmargin.core.config import ChainConfig, Config, RepresentationConfig, config_hash
from crossmargin.core.errors import CrossmarginError
from crossmargin.pipeline.figures import Report
from crossmargin.pipeline.figures import Request as Request
from crossmargin.pipeline.figures import compute as compute
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.report import CapacityReport, MarginReport, StressReport
from crossmargin.pipeline.risk import asset_sigma, correlation, margin_params
from oracle.estimation import RiskEstimates

VERSION = "1"
GENESIS = "0" * 64  # `prev` of an account's first snapshot

REPORTS: dict[str, type[BaseModel]] = {
    "margin": MarginReport,
    "capacity": CapacityReport,
    "stress": StressReport,
}


class SnapshotError(CrossmarginError):
    """A stored document that does not decode into engine inputs."""


# ---------------------------------------------------------------- canonical JSON


def decimal_str(value: float) -> str:
    """Shortest round-trip decimal of a float, never in exponent form."""
    if not math.isfinite(value):
        raise SnapshotError(f"not a finite number: {value!r}")
    return format(Decimal(repr(float(value))), "f")


def plain(value: Any) -> Any:
    """JSON-ready value with every number as a decimal string."""
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
    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# ---------------------------------------------------------------- inputs: chain states
#
# Engine inputs are dataclasses (ChainState, BalanceRead, FeedReading, RoundData, ...);
# they are written field by field, so a field added to them is recorded without a change
# here. Config objects inside them are written as references (a chain by name, a
# representation by chain and address) and resolved against the snapshot's config.


def encode(value: Any) -> Any:
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


def _decode(config: Config, tp: Any, v: Any, where: str) -> Any:  # noqa: C901
    """`v` (canonical JSON, numbers as strings) as a value of type `tp`; strict."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):
        if v is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        if len(arms) != 1:
            raise SnapshotError(f"{where}: cannot decode a {tp}")
        return _decode(config, arms[0], v, where)
    if origin in (list, tuple):
        if not isinstance(v, list) or (origin is tuple and args[-1] is not Ellipsis):
            raise SnapshotError(f"{where}: expected a list")
        items = [_decode(config, args[0], x, f"{where}.{i}") for i, x in enumerate(v)]
        return items if origin is list else tuple(items)
    if tp is bool:
        if not isinstance(v, bool):
            raise SnapshotError(f"{where}: expected true or false")
        return v
    if tp is int:
        if not isinstance(v, str) or not _INT.match(v):
            raise SnapshotError(f"{where}: expected a decimal integer string")
        return int(v)
    if tp is float:
        if not isinstance(v, str) or not _FLOAT.match(v):
            raise SnapshotError(f"{where}: expected a decimal number string")
        return float(v)
    if tp is str:
        if not isinstance(v, str):
            raise SnapshotError(f"{where}: expected a string")
        return v
    if tp is date:
        try:
            return date.fromisoformat(_decode_str(v, where))
        except ValueError:
            raise SnapshotError(f"{where}: expected an ISO date") from None
    if tp is ChainConfig:
        try:
            return config.chain(_decode(config, str, v, where))
        except KeyError:
            raise SnapshotError(f"{where}: chain {v!r} is not in the config") from None
    if tp is RepresentationConfig:
        ref = _obj(v, where)
        for rep in config.representations:
            if (rep.chain, rep.address, rep.symbol) == (
                ref.get("chain"),
                ref.get("address"),
                ref.get("symbol"),
            ) and len(ref) == 3:
                return rep
        raise SnapshotError(f"{where}: not a configured representation")
    if isinstance(tp, type) and (dataclasses.is_dataclass(tp) or hasattr(tp, "_fields")):
        d = _obj(v, where)
        hints = typing.get_type_hints(tp)
        fields = _field_names(tp)
        if set(d) - set(fields):
            raise SnapshotError(f"{where}: unknown fields {sorted(set(d) - set(fields))}")
        kwargs = {
            name: _decode(config, hints[name], d[name], f"{where}.{name}")
            for name in fields
            if name in d  # absent: a field newer than the document; its default applies
        }
        try:
            return tp(**kwargs)
        except TypeError as exc:
            raise SnapshotError(f"{where}: {exc}") from None
    raise SnapshotError(f"{where}: cannot decode a {tp}")


def _field_names(tp: type) -> list[str]:
    if dataclasses.is_dataclass(tp):
        return [f.name for f in dataclasses.fields(tp)]
    return list(getattr(tp, "_fields", ()))


def _obj(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise SnapshotError(f"{where}: expected an object")
    return v


def _list(v: Any, where: str) -> list[Any]:
    if not isinstance(v, list):
        raise SnapshotError(f"{where}: expected a list")
    return v


def _decode_str(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise SnapshotError(f"{where}: expected a string")
    return v


def _opt_str(v: Any, where: str) -> str | None:
    if v is not None and not isinstance(v, str):
        raise SnapshotError(f"{where}: expected a string or null")
    return v


def encode_states(states: list[ChainState]) -> list[Any]:
    return [encode(s) for s in states]


def decode_states(config: Config, data: Any) -> list[ChainState]:
    states = _decode(config, list[ChainState], data, "inputs.chains")
    assert all(isinstance(s, ChainState) for s in states)
    return list(states)


# ---------------------------------------------------------------- parameters, compute


def parameters(config: Config, estimates: RiskEstimates | None = None) -> dict[str, Any]:
    """The risk parameters a computation used (§6-§7): recorded, and checked on replay."""
    symbols = [a.symbol for a in config.assets]
    names = [c.name for c in config.chains]
    mp = margin_params(config, config.settlement_chain)
    return {
        "method": config.risk.method,
        "z": mp.z,
        "kappa": mp.kappa,
        "sigma": dict(zip(symbols, asset_sigma(config, estimates), strict=True)),
        "correlation": {
            a: dict(zip(symbols, row, strict=True))
            for a, row in zip(symbols, correlation(config, estimates), strict=True)
        },
        "latency_days": {
            a: {b: float(mp.latency[i, j]) for j, b in enumerate(names)}
            for i, a in enumerate(names)
        },
        "config_hash": config_hash(config),
    }


def document(
    config: Config,
    req: Request,
    states: list[ChainState],
    report: Report,
    prev: str,
    estimates: RiskEstimates | None = None,
) -> str:
    """The canonical snapshot document; its id is `digest` of this text."""
    return canonical(
        {
            "v": VERSION,
            "kind": req.kind,
            "account": req.account,
            "request": req.as_json(),
            "inputs": {
                "chains": encode_states(states),
                "estimates": encode(estimates),
                "parameters": parameters(config, estimates),
            },
            "outputs": report.model_dump(mode="json"),
            "prev": prev,
        }
    )


def request_of(doc: dict[str, Any]) -> Request:
    kind = doc.get("kind")
    if kind not in REPORTS:
        raise SnapshotError(f"kind: unknown {kind!r}")
    r = _obj(doc.get("request"), "request")
    return Request(
        kind=kind,
        account=_decode_str(doc.get("account"), "account"),
        target=_opt_str(r.get("target_chain"), "request.target_chain"),
        asset=_opt_str(r.get("asset"), "request.asset"),
    )


def replay(config: Config, doc: dict[str, Any]) -> tuple[str, str]:
    """Recompute from a stored document's inputs: (parameters, outputs) as canonical
    JSON, to be compared byte for byte with the stored ones."""
    if doc.get("v") != VERSION:
        raise SnapshotError(f"v: unknown document version {doc.get('v')!r}")
    req = request_of(doc)
    inputs = _obj(doc.get("inputs"), "inputs")
    states = decode_states(config, inputs.get("chains"))
    if "estimates" not in inputs:
        raise SnapshotError("inputs.estimates: missing")
    estimates = _decode(config, RiskEstimates | None, inputs["estimates"], "inputs.estimates")
    report = compute(config, states, req, estimates)
    params = canonical(parameters(config, estimates))
    return params, canonical(report.model_dump(mode="json"))


def report_of(doc: dict[str, Any]) -> Report:
    """A stored document's outputs as the report model (decimal strings coerced back)."""
    model = REPORTS[request_of(doc).kind]
    report = model.model_validate(_obj(doc.get("outputs"), "outputs"))
    assert isinstance(report, MarginReport | CapacityReport | StressReport)
    return report


REPLAY_URL = "http://replay.invalid"  # a stored config has no endpoints; replay reads nothing


def replay_config(text: str) -> Config:
    """A config rebuilt from its stored `risk_document` (endpoints are not stored)."""
    raw = json.loads(text)
    for chain in _list(_obj(raw, "config").get("chains"), "config.chains"):
        _obj(chain, "config.chains.*")["rpc_urls"] = [REPLAY_URL]
    return Config.model_validate(raw)
