"""Operations as data, and the OpenAPI 3.1 document generated from them.

Each `Operation` names its handler and its pydantic models (query, body, response);
`bind` wraps the handler with authentication, rate limiting and input validation by
those same models, and `spec` writes the document from them: component schemas come
from `models_json_schema`, so there is no second, hand-kept copy of any schema.

A body is parsed only once it is known to be UTF-8 and at most MAX_JSON_DEPTH deep
(`json_depth`, a linear scan): Python's JSON parser recurses once per level, and a
100,000-deep body would crash the process.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from api.models import ADDRESS_SCHEMA, SNAPSHOT_ID_PATTERN, Problem, address
from api.problems import PROBLEM, TITLES, ApiProblem
from api.security import KEY_HEADER, Gate, Principal

REF = "#/components/schemas/{model}"
SNAPSHOT_ID_SCHEMA = {"type": "string", "pattern": SNAPSHOT_ID_PATTERN}
WATCH_ID_PATTERN = r"^[0-9a-f]{32}$"
PATH_PARAMS: dict[str, dict[str, Any]] = {
    "address": ADDRESS_SCHEMA,
    "id": SNAPSHOT_ID_SCHEMA,
    "watch_id": {"type": "string", "pattern": WATCH_ID_PATTERN},
}
COMMON_ERRORS = (400, 401, 403, 429, 500, 504)
MAX_DETAIL = 300
MAX_JSON_DEPTH = 32  # the batch body needs 2; room for what a model may add
_ESCAPE = re.compile(r"\\.", re.DOTALL)  # a backslash and the character it escapes
_STRING = re.compile(r'"[^"]*"')  # a string, once escapes are gone
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_OPENS = np.frombuffer(b"[{", dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class Call:
    """A validated request, as handlers see it."""

    request: web.Request
    principal: Principal | None
    gate: Gate
    path: dict[str, str]
    query: BaseModel
    body: BaseModel | None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    handler: Callable[[Call], Awaitable[web.StreamResponse]]
    response: type[BaseModel]
    query: type[BaseModel]
    body: type[BaseModel] | None = None
    secured: bool = True
    keyed: bool = False  # an API key is required even when anonymous access is on
    errors: tuple[int, ...] = ()
    snapshot_header: bool = False
    unavailable: bool = False  # may answer 503 with the same model (health)
    tag: str = "margin"
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _errors(exc: ValidationError, where: str) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (where, *err["loc"]))
        out.append({"location": loc, "detail": err["msg"].removeprefix("Value error, ")})
    return out


def _invalid(errors: list[dict[str, str]]) -> ApiProblem:
    first = errors[0]
    detail = f"{first['location']}: {first['detail']}"[:MAX_DETAIL]
    return ApiProblem(400, detail, type_="/problems/bad-input", errors=errors[:20])


def _validate_path(request: web.Request) -> dict[str, str]:
    out = dict(request.match_info)
    if "address" in out:
        try:
            out["address"] = address(out["address"])
        except ValueError as exc:
            raise _invalid(
                [{"location": "path.address", "detail": str(exc)[:MAX_DETAIL]}]
            ) from None
    if "id" in out and not _matches(SNAPSHOT_ID_PATTERN, out["id"]):
        raise _invalid([{"location": "path.id", "detail": "not a snapshot id (64 hex digits)"}])
    if "watch_id" in out and not _matches(WATCH_ID_PATTERN, out["watch_id"]):
        detail = "not a watch id (32 hex digits)"
        raise _invalid([{"location": "path.watch_id", "detail": detail}])
    return out


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern.strip("^$"), value) is not None


def _validate_query(model: type[BaseModel], request: web.Request) -> BaseModel:
    raw: dict[str, str] = {}
    for key, value in request.query.items():
        if key in raw:
            raise _invalid([{"location": f"query.{key}", "detail": "given more than once"}])
        raw[key] = value
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(_errors(exc, "query")) from None


def json_depth(text: str) -> int:
    """How deep the arrays and objects of `text` nest, without parsing it: strings (and
    the brackets in them) are cut out, then the running count of opening minus closing
    brackets is taken. Linear in the length. On invalid JSON the figure can be too high,
    never lower than the depth a parser reaches before it stops."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", _ESCAPE.sub("", text)))
    marks = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    steps = np.where(np.isin(marks, _OPENS), 1, -1)
    return int(np.cumsum(steps).max(initial=0))


async def _validate_body(model: type[BaseModel], request: web.Request) -> BaseModel:
    if request.content_type != "application/json":
        raise ApiProblem(415, "the request body must be application/json")
    data = await request.read()  # at most the app's client_max_size, else 413
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid([{"location": "body", "detail": "not UTF-8 text"}]) from None
    # depth <= the count of opening brackets: a body with few (every usual one) is not
    # walked (json_depth's numpy pass costs more than the rest of a small batch's check)
    opens = text.count("[") + text.count("{")
    if opens > MAX_JSON_DEPTH and json_depth(text) > MAX_JSON_DEPTH:
        detail = f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        raise _invalid([{"location": "body", "detail": detail}])
    try:
        raw = json.loads(text)
    except ValueError:
        raise _invalid([{"location": "body", "detail": "not valid JSON"}]) from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(_errors(exc, "body")) from None


def bind(op: Operation, gate: Gate) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The aiohttp handler of an operation: auth, limit, validate, then the handler."""

    async def handle(request: web.Request) -> web.StreamResponse:
        principal = None
        if op.secured:
            principal = gate.authenticate(request)
            gate.admit(principal)
        path = _validate_path(request)
        query = _validate_query(op.query, request)
        body = await _validate_body(op.body, request) if op.body is not None else None
        return await op.handler(Call(request, principal, gate, path, query, body))

    return handle


# ---------------------------------------------------------------- the document


def _strip_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a string: drop the `null` arm pydantic adds."""
    s = {k: v for k, v in schema.items() if k not in ("title", "default", "description")}
    arms = s.pop("anyOf", None)
    if arms is not None:
        rest = [a for a in arms if a != {"type": "null"}]
        s.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
    if schema.get("default") is not None:
        s["default"] = schema["default"]
    return s


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in PATH_PARAMS:
        if "{" + name + "}" in op.path:
            params.append(
                {"name": name, "in": "path", "required": True, "schema": PATH_PARAMS[name]}
            )
    qs = op.query.model_json_schema()
    required = set(qs.get("required", []))
    for name, prop in qs.get("properties", {}).items():
        p = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            p["description"] = prop["description"]
        params.append({**p, "schema": _strip_null(prop)})
    return params


def _problem_response(status: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": TITLES.get(status, "Error"),
        "content": {PROBLEM: {"schema": {"$ref": REF.format(model="Problem")}}},
    }
    if status == 429:
        out["headers"] = {"Retry-After": {"schema": {"type": "string"}, "required": True}}
    if status == 401:
        out["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
    return out


def spec(ops: list[Operation], *, anonymous: bool, version: str) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = [(Problem, "serialization")]
    models += [(op.response, "serialization") for op in ops]
    models += [(op.body, "validation") for op in ops if op.body is not None]
    _, defs = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in ops:
        ok: dict[str, Any] = {
            "description": "OK",
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=op.response.__name__)}}
            },
        }
        if op.snapshot_header:
            ok["headers"] = {
                "Snapshot-Id": {
                    "description": "id of the stored snapshot of this computation",
                    "required": True,
                    "schema": SNAPSHOT_ID_SCHEMA,
                },
                "Snapshot-Leaf-Index": {
                    "description": "the snapshot's leaf index in the transparency log "
                    "(GET /v1/log/inclusion/{id})",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                },
            }
        statuses = sorted(set(op.errors) | (set(COMMON_ERRORS) if op.secured else {400, 500, 504}))
        down = {"503": ok | {"description": "Service Unavailable"}} if op.unavailable else {}
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": _parameters(op),
            "responses": {"200": ok} | {str(s): _problem_response(s) for s in statuses} | down,
            "security": (
                [{"ApiKey": []}, {"Bearer": []}] + ([{}] if anonymous and not op.keyed else [])
                if op.secured
                else []
            ),
        }
        if op.description:
            entry["description"] = op.description
        if op.body is not None:
            ref = {"$ref": REF.format(model=op.body.__name__)}
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry | op.extra
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crossmargin",
            "version": version,
            "description": "Unified cross-chain margin accounts (METHOD.md); every figure "
            "served is stored as a snapshot (GET /v1/snapshots/{id}).",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": KEY_HEADER},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
