"""A stored snapshot document read back (METHOD.md §10): what the API serves from a
stored result and what `audit verify` checks. `blob_refs` names the blobs a version "2"
document refers to, `expand` puts them back in place, each checked against its hash
(`compact` is its inverse), `request_of` and `report_of` give its request and report,
and `replay` recomputes its outputs from its inputs (with the config it was stored
with, `replay_config`), to be compared byte for byte. Documents are built in snapshot.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from crossmargin.core.canonical import canonical, digest
from crossmargin.core.config import Config, stored_config
from crossmargin.core.errors import SnapshotError
from crossmargin.core.memo import IdentityMemo
from crossmargin.pipeline.figures import Report, Request, compute
from crossmargin.pipeline.report import CapacityReport, MarginReport, StressReport
from crossmargin.pipeline.snapshot import (
    ACCOUNT_FIELDS,
    SHARED_OUTPUTS,
    V1,
    VERSION,
    Built,
    blob,
    parameters,
)
from crossmargin.pipeline.state_codec import (
    OWN_OPTIONAL,
    decode,
    decode_states,
    decode_str,
    json_int,
    json_list,
    json_obj,
    json_opt_str,
)
from oracle.estimation import RiskEstimates

REPORTS: dict[str, type[BaseModel]] = {
    "margin": MarginReport,
    "capacity": CapacityReport,
    "stress": StressReport,
}


_SHA = re.compile(r"^[0-9a-f]{64}$")


def blob_refs(doc: dict[str, Any]) -> list[str]:
    """The blob hashes a document names (none for a version "1" document)."""
    if doc.get("v") != VERSION:
        return []
    inputs = json_obj(doc.get("inputs"), "inputs")
    chains = [json_obj(c, "inputs.chains.*") for c in json_list(inputs.get("chains"), "chains")]
    refs = [c.get(k) for c in chains for k in ("state", "proof")]
    refs += [inputs.get("estimates"), inputs.get("parameters"), doc.get("shared_outputs")]
    return [r for r in refs if isinstance(r, str)]


def _load_blob(blobs: Mapping[str, str], sha: Any, where: str) -> Any:
    if not isinstance(sha, str) or not _SHA.match(sha):
        raise SnapshotError(f"{where}: expected a blob hash")
    text = blobs.get(sha)
    if text is None:
        raise SnapshotError(f"{where}: blob {sha} is missing")
    # this very text object checked before under this name: not hashed and re-dumped
    # again (a store hands out one object per blob, and every stored result served
    # names the same few blobs)
    _CHECKED_BLOBS.get((text,), (sha,), lambda: _check_blob(text, sha, where))
    return json.loads(text)


def _check_blob(text: str, sha: str, where: str) -> bool:
    if not text.isascii() or digest(text) != sha:
        raise SnapshotError(f"{where}: blob {sha} does not hash to its name (changed)")
    if canonical(json.loads(text)) != text:
        raise SnapshotError(f"{where}: blob {sha} is not canonical")
    return True


_CHECKED_BLOBS: IdentityMemo[bool] = IdentityMemo(4096)


def _join_chain(blobs: Mapping[str, str], entry: Any, where: str) -> dict[str, Any]:
    entry = json_obj(entry, where)
    if set(entry) - {"protocols", "proof", *OWN_OPTIONAL} != {"state", "balances"}:
        raise SnapshotError(f"{where}: expected state and balances (and protocols, address, proof)")
    protocols = {k: entry[k] for k in ("protocols", *OWN_OPTIONAL) if k in entry}
    if "proof" in entry:
        protocols["holder_proof"] = _load_blob(blobs, entry["proof"], f"{where}.proof")
    shared = json_obj(_load_blob(blobs, entry["state"], f"{where}.state"), f"{where}.state")
    tokens = json_list(shared.pop("tokens", None), f"{where}.state.tokens")
    own = json_list(entry["balances"], f"{where}.balances")
    if len(tokens) != len(own):
        raise SnapshotError(f"{where}: {len(own)} balances for {len(tokens)} tokens")
    balances = []
    for i, (token, mine) in enumerate(zip(tokens, own, strict=True)):
        mine = json_list(mine, f"{where}.balances.{i}")
        if len(mine) != len(ACCOUNT_FIELDS):
            raise SnapshotError(f"{where}.balances.{i}: expected {len(ACCOUNT_FIELDS)} values")
        token = json_obj(token, f"{where}.state.tokens.{i}")
        balances.append({**token, **dict(zip(ACCOUNT_FIELDS, mine, strict=True))})
    return {**shared, "balances": balances, **protocols}


def expand(doc: dict[str, Any], blobs: Mapping[str, str]) -> dict[str, Any]:
    """A document with its blobs put back in place, in the version "1" shape (what
    replay and the served-document check read). Every blob is checked against its hash;
    a missing or changed blob is a SnapshotError. A version "1" document is returned
    as it is."""
    v = doc.get("v")
    if v == V1:
        return doc
    if v != VERSION:
        raise SnapshotError(f"v: unknown document version {v!r}")
    inputs = json_obj(doc.get("inputs"), "inputs")
    if set(inputs) != {"chains", "estimates", "parameters"}:
        raise SnapshotError("inputs: expected chains, estimates and parameters")
    chains = json_list(inputs["chains"], "inputs.chains")
    est = inputs["estimates"]
    own = json_obj(doc.get("outputs"), "outputs")
    shared = json_obj(_load_blob(blobs, doc.get("shared_outputs"), "shared_outputs"), "outputs")
    if set(shared) - set(SHARED_OUTPUTS) or set(own) & set(SHARED_OUTPUTS):
        raise SnapshotError("outputs: sections in the wrong place")
    rest = {k: v for k, v in doc.items() if k != "shared_outputs"}
    return {
        **rest,
        "outputs": {**own, **shared},
        "inputs": {
            "chains": [_join_chain(blobs, c, f"inputs.chains.{i}") for i, c in enumerate(chains)],
            "estimates": None if est is None else _load_blob(blobs, est, "inputs.estimates"),
            "parameters": _load_blob(blobs, inputs["parameters"], "inputs.parameters"),
        },
    }


def _split_outputs(outputs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the account's own outputs, those every account of a batch has alike)."""
    outputs = json_obj(outputs, "outputs")
    own = {k: v for k, v in outputs.items() if k not in SHARED_OUTPUTS}
    return own, {k: v for k, v in outputs.items() if k in SHARED_OUTPUTS}


def compact(doc: dict[str, Any]) -> Built:
    """The inverse of `expand`: a document in the expanded shape (JSON as `expand` gives
    it) as a version "2" document and its blobs."""
    inputs = json_obj(doc.get("inputs"), "inputs")
    blobs: dict[str, str] = {}

    def put(value: Any) -> str:
        sha, text = blob(value)
        blobs[sha] = text
        return sha

    chains = []
    for i, c in enumerate(json_list(inputs.get("chains"), "inputs.chains")):
        per_account = (
            "balances",
            "protocols",
            "holder_proof",
            *OWN_OPTIONAL,
        )  # beside the shared state
        shared = {
            k: v for k, v in json_obj(c, f"inputs.chains.{i}").items() if k not in per_account
        }
        own = [
            json_obj(b, f"inputs.chains.{i}.balances.*") for b in json_list(c.get("balances"), "b")
        ]
        shared["tokens"] = [{k: v for k, v in b.items() if k not in ACCOUNT_FIELDS} for b in own]
        balances = [[b.get(k) for k in ACCOUNT_FIELDS] for b in own]
        entry: dict[str, Any] = {"state": put(shared), "balances": balances}
        if c.get("protocols"):
            entry["protocols"] = c["protocols"]
        for key in OWN_OPTIONAL:
            if c.get(key) is not None:
                entry[key] = c[key]
        if c.get("holder_proof"):
            entry["proof"] = put(c["holder_proof"])
        chains.append(entry)
    est = inputs.get("estimates")
    compacted = {
        "chains": chains,
        "estimates": None if est is None else put(est),
        "parameters": put(inputs.get("parameters")),
    }
    mine, alike = _split_outputs(doc.get("outputs"))
    compacted_doc = {
        **doc,
        "v": VERSION,
        "inputs": compacted,
        "outputs": mine,
        "shared_outputs": put(alike),
    }
    return Built(canonical(compacted_doc), blobs)


def request_of(doc: dict[str, Any]) -> Request:
    kind = doc.get("kind")
    if kind not in REPORTS:
        raise SnapshotError(f"kind: unknown {kind!r}")
    r = json_obj(doc.get("request"), "request")
    if set(r) - {"target_chain", "asset", "at", "blocks", "addresses"}:
        raise SnapshotError("request: unknown fields")
    at = r.get("at")
    blocks = json_obj(r.get("blocks", {}), "request.blocks")
    addresses = json_obj(r.get("addresses", {}), "request.addresses")
    return Request(
        kind=kind,
        account=decode_str(doc.get("account"), "account"),
        target=json_opt_str(r.get("target_chain"), "request.target_chain"),
        asset=json_opt_str(r.get("asset"), "request.asset"),
        at=None if at is None else json_int(at, "request.at"),
        blocks=tuple((c, json_int(n, f"request.blocks.{c}")) for c, n in blocks.items()),
        addresses=tuple((c, decode_str(a, f"request.addresses.{c}")) for c, a in addresses.items()),
    )


def replay(
    config: Config, doc: dict[str, Any], blobs: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """Recompute from a stored document's inputs: (parameters, outputs) as canonical
    JSON, to be compared byte for byte with the stored ones. A version "2" document is
    expanded with `blobs` first; without `blobs`, `doc` must be in the expanded
    (version "1") shape already, as `expand` returns it."""
    if doc.get("v") not in (V1, VERSION):
        raise SnapshotError(f"v: unknown document version {doc.get('v')!r}")
    if blobs is not None:
        doc = expand(doc, blobs)
    req = request_of(doc)
    inputs = json_obj(doc.get("inputs"), "inputs")
    states = decode_states(config, inputs.get("chains"))
    if "estimates" not in inputs:
        raise SnapshotError("inputs.estimates: missing")
    estimates = decode(config, RiskEstimates | None, inputs["estimates"], "inputs.estimates")
    report = compute(config, states, req, estimates)
    params = canonical(parameters(config, estimates))
    return params, canonical(report.model_dump(mode="json"))


def report_of(doc: dict[str, Any]) -> Report:
    """A stored document's outputs as the report model (decimal strings coerced back);
    a version "2" document expanded (`expand`) first."""
    if doc.get("v") == VERSION and "shared_outputs" in doc:
        raise SnapshotError("a version 2 document: expand it with its blobs first")
    model = REPORTS[request_of(doc).kind]
    report = model.model_validate(json_obj(doc.get("outputs"), "outputs"))
    assert isinstance(report, MarginReport | CapacityReport | StressReport)
    return report


REPLAY_URL = "http://replay.invalid"  # a stored config has no endpoints; replay reads nothing


def replay_config(text: str) -> Config:
    """A config rebuilt from its stored `risk_document` (endpoints are not stored)."""
    raw = json.loads(text)
    for chain in json_list(json_obj(raw, "config").get("chains"), "config.chains"):
        json_obj(chain, "config.chains.*")["rpc_urls"] = [REPLAY_URL]
    return stored_config(text, raw)
