"""Every operation of /openapi.json has its client method (named after the operationId,
in snake case) taking every path parameter, query parameter and body field: an endpoint
added to the API without its client method fails here."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from client_helpers import DOCUMENT, OPS, snake

from crossmargin.client import Client

# path parameter -> argument
PATH_ARGS = {"address": "address", "id": "snapshot_id", "watch_id": "watch_id"}


def _body_fields(op: dict[str, Any]) -> set[str]:
    if "requestBody" not in op:
        return set()
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return set(DOCUMENT["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"])


@pytest.mark.parametrize(("path", "verb", "op"), OPS, ids=[op["operationId"] for *_, op in OPS])
def test_operation_has_a_client_method(path: str, verb: str, op: dict[str, Any]) -> None:
    method = getattr(Client, snake(op["operationId"]), None)
    assert method is not None, f"no Client.{snake(op['operationId'])} for {verb} {path}"
    assert inspect.iscoroutinefunction(method)
    params = inspect.signature(method).parameters
    for p in op["parameters"]:
        if p["in"] == "path":
            arg = PATH_ARGS[p["name"]]
            assert params[arg].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, arg
        else:
            assert p["name"] in params, f"{op['operationId']}: no keyword {p['name']}"
            assert params[p["name"]].kind is inspect.Parameter.KEYWORD_ONLY
            assert params[p["name"]].default is None
    for name in _body_fields(op):
        assert name in params, f"{op['operationId']}: no argument for body field {name}"


def test_no_method_without_an_operation() -> None:
    """The client's public methods are exactly the operations (plus its lifecycle)."""
    public = {n for n, v in vars(Client).items() if inspect.isfunction(v) and n[0] != "_"}
    assert public - {"close"} == {snake(op["operationId"]) for *_, op in OPS}
