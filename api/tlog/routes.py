"""The log's v1 operations (METHOD.md §10): the latest signed tree head, the public key,
inclusion and consistency proofs. Proofs are read from the stored subtree hashes
(O(log n) rows); the tree head is signed when asked, over the store's current size."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from api.models import (
    ConsistencyProof,
    InclusionProof,
    LogKey,
    Queries,
)
from api.models import (
    SignedTreeHead as TreeHeadModel,
)
from api.openapi import Call, Operation
from api.problems import ApiProblem
from api.store import Store
from api.tlog.heads import Signer, TreeHead

SIGNER = web.AppKey("tlog_signer", Signer)
JSON = "application/json"
UNSIGNED = "/problems/no-signing-key"


def _json(body: str) -> web.Response:
    return web.Response(text=body, content_type=JSON)


def _signer(call: Call) -> Signer:
    signer = call.request.app.get(SIGNER)
    if signer is None:
        raise ApiProblem(404, "this service signs no tree heads (no api.tlog_key)", type_=UNSIGNED)
    return signer


def _bad_size(detail: str) -> ApiProblem:
    """A tree the log has not (yet) grown to, or a prefix larger than its tree: there is
    no such proof to serve (404; the request itself is well formed)."""
    return ApiProblem(404, detail, type_="/problems/bad-tree-size")


def log_operations(q: Queries, store_of: Callable[[Call], Store]) -> list[Operation]:
    async def tree_head(call: Call) -> web.Response:
        signer, store = _signer(call), store_of(call)
        size, root = await asyncio.to_thread(store.log.head)
        sth = signer.sign(TreeHead(size, root, int(time.time() * 1000)))
        return _json(TreeHeadModel(**sth.to_json()).model_dump_json())

    async def key(call: Call) -> web.Response:
        signer = _signer(call)
        pem = Ed25519PublicKey.from_public_bytes(signer.public_key).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        out = LogKey(
            algorithm="Ed25519",
            public_key=signer.public_key.hex(),
            public_key_pem=pem.decode(),
            key_id=signer.key_id,
        )
        return _json(out.model_dump_json())

    async def inclusion(call: Call) -> web.Response:
        store, sid = store_of(call), call.path["id"]
        size, root = await asyncio.to_thread(store.log.head)
        n: int = getattr(call.query, "tree_size", None) or size
        if n > size:
            raise _bad_size(f"tree_size {n} is larger than the log ({size})")
        found = await asyncio.to_thread(store.log.inclusion, sid, n)
        if found is None:
            raise ApiProblem(
                404, f"snapshot {sid} is not in the tree of size {n}", type_="/problems/not-found"
            )
        index, path = found
        if n != size:
            _, root = await asyncio.to_thread(store.log.head, n)
        out = InclusionProof(
            snapshot_id=sid,
            leaf_index=index,
            tree_size=n,
            root_hash=root.hex(),
            audit_path=[h.hex() for h in path],
        )
        return _json(out.model_dump_json())

    async def consistency(call: Call) -> web.Response:
        store, query = store_of(call), call.query
        size = await asyncio.to_thread(store.log.size)
        first: int = getattr(query, "first", 1)
        second: int = getattr(query, "second", None) or size
        if not first <= second <= size:
            raise _bad_size(f"need first <= second <= {size} (the log's size)")

        def read() -> tuple[bytes, bytes, list[bytes]]:
            return (
                store.log.head(first)[1],
                store.log.head(second)[1],
                store.log.consistency(first, second),
            )

        a, b, proof = await asyncio.to_thread(read)
        out = ConsistencyProof(
            first=first,
            second=second,
            first_root=a.hex(),
            second_root=b.hex(),
            proof=[h.hex() for h in proof],
        )
        return _json(out.model_dump_json())

    log = "/v1/log"
    return [
        Operation(
            "GET",
            f"{log}/tree-head",
            "getTreeHead",
            "The transparency log's latest signed tree head (§10)",
            tree_head,
            TreeHeadModel,
            q.empty,
            errors=(404,),
            tag="audit",
            description="Keep it: `crossmargin audit verify --tree-head FILE` proves a store "
            "still holds, unchanged and in order, every snapshot it covers. 404 "
            "(`no_signing_key`) where no key is configured.",
        ),
        Operation(
            "GET",
            f"{log}/key",
            "getLogKey",
            "The public key that signs tree heads",
            key,
            LogKey,
            q.empty,
            errors=(404,),
            tag="audit",
        ),
        Operation(
            "GET",
            f"{log}/inclusion/{{id}}",
            "getInclusionProof",
            "Inclusion proof of a snapshot in the tree of size tree_size",
            inclusion,
            InclusionProof,
            q.inclusion,
            errors=(404,),
            tag="audit",
        ),
        Operation(
            "GET",
            f"{log}/consistency",
            "getConsistencyProof",
            "Consistency proof: the tree of size first is a prefix of the tree of size second",
            consistency,
            ConsistencyProof,
            q.consistency,
            errors=(404,),
            tag="audit",
        ),
    ]
