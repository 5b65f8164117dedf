"""The v1 operations: thin handlers over `Service` and the snapshot store."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import web

from api.models import (
    AssetInfo,
    AssetList,
    ChainHealth,
    ChainInfo,
    ChainList,
    EndpointHealth,
    Health,
    Liveness,
    MarginBatch,
    Queries,
    RepresentationInfo,
    Snapshot,
    SnapshotFigures,
    SnapshotPage,
    SnapshotSummary,
    StoreHealth,
)
from api.openapi import Call, Operation
from api.problems import DOCUMENTED_ERROR, ApiProblem
from api.service import Served, Service
from api.store import Summary
from api.tlog.routes import log_operations
from crossmargin.core.config import Config
from crossmargin.core.errors import InputConflict
from crossmargin.core.inputs import parse_blocks, parse_pairs, parse_time
from crossmargin.engine import Engine
from crossmargin.pipeline.figures import Kind, Request
from crossmargin.pipeline.report import CapacityReport, MarginReport, StressReport
from crossmargin.pipeline.risk import asset_sigma

log = logging.getLogger("api")

ENGINE = web.AppKey("engine", Engine)
SERVICE = web.AppKey("service", Service)
JSON = "application/json"


def _json(body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, content_type=JSON, headers=headers)


def _served(served: Served, source: str) -> web.Response:
    headers = {"Snapshot-Id": served.snapshot_id, "X-Cache": source}
    if served.leaf_index is not None:
        headers["Snapshot-Leaf-Index"] = str(served.leaf_index)
    return _json(served.body, headers)


def _service(call: Call) -> Service:
    return call.request.app[SERVICE]


def _request(
    svc: Service, kind: Kind, call: Call, target: str | None = None, asset: str | None = None
) -> Request:
    """The request of a query string, with its time (§15) and addresses (§1), if given."""
    q = call.query
    at, blocks, given = (getattr(q, k, None) for k in ("at", "blocks", "addresses"))
    addresses = parse_pairs(given, "addresses") if given else None
    return svc.request(
        kind,
        call.path["address"],
        target,
        asset,
        None if at is None else parse_time(at),
        parse_blocks(blocks) if blocks else [],
        addresses,
    )


async def margin(call: Call) -> web.Response:
    svc, q = _service(call), call.query
    req = _request(svc, "margin", call, svc.target(getattr(q, "target_chain", None)))
    return _served(*await svc.serve(req, svc.method(getattr(q, "method", None))))


async def capacity(call: Call) -> web.Response:
    svc, q = _service(call), call.query
    target = svc.target(getattr(q, "target_chain", None))
    req = _request(svc, "capacity", call, target, getattr(q, "asset", None))
    return _served(*await svc.serve(req, svc.method(getattr(q, "method", None))))


async def stress(call: Call) -> web.Response:
    svc = _service(call)
    return _served(*await svc.serve(_request(svc, "stress", call), svc.config.risk.method))


async def margin_batch(call: Call) -> web.Response:
    svc, body = _service(call), call.body
    accounts: list[str] = list(getattr(body, "accounts", []))
    if call.principal is not None and len(accounts) > 1:  # one token per account (security.py)
        call.gate.admit(call.principal, len(accounts), paid=1)
    target = svc.config.chain(svc.target(getattr(body, "target_chain", None)))
    method = svc.method(getattr(body, "method", None))
    at = getattr(body, "at", None)
    given: dict[str, dict[str, str]] = getattr(body, "addresses", None) or {}
    unknown = [a for a in given if a not in accounts]
    if unknown:
        raise InputConflict(f"addresses: {unknown[0]} is not in accounts")
    reqs = [
        svc.request(
            "margin",
            a,
            target.name,
            None,
            at,
            list((getattr(body, "blocks", None) or {}).items()),
            given.get(a),
        )
        for a in accounts
    ]
    results = await svc.batch(reqs, method)
    items = []
    for account, out in results:
        head = b'{"account":' + json.dumps(account).encode()
        if isinstance(out, Served):
            sid = json.dumps(out.snapshot_id).encode() + b',"leaf_index":'
            sid += json.dumps(out.leaf_index).encode()
            items.append(
                head + b',"snapshot_id":' + sid + b',"margin":' + out.body + b',"error":null}'
            )
        else:
            none = b',"snapshot_id":null,"leaf_index":null,"margin":null,"error":'
            items.append(head + none + out + b"}")
    ref = json.dumps({"chain_id": target.chain_id, "name": target.name}).encode()
    body_bytes = (
        b'{"target_chain":'
        + ref
        + b',"method":'
        + json.dumps(method).encode()
        + b',"count":'
        + str(len(items)).encode()
        + b',"results":['
        + b",".join(items)
        + b"]}"
    )
    return _json(body_bytes)


def chain_list(config: Config) -> bytes:
    chains = [
        ChainInfo(
            name=c.name,
            chain_id=c.chain_id,
            block_tag=c.block_tag,
            confirmations=c.confirmations,
            sequencer_uptime_feed=c.sequencer_uptime_feed,
            to_hub_days=c.to_hub_days,
            from_hub_days=c.from_hub_days,
            endpoints=len(c.rpc_urls),
            settlement=c.name == config.settlement_chain,
        )
        for c in config.chains
    ]
    return (
        ChainList(settlement_chain=config.settlement_chain, chains=chains)
        .model_dump_json()
        .encode()
    )


def asset_list(config: Config) -> bytes:
    sigma = asset_sigma(config)
    assets = [
        AssetInfo(
            symbol=a.symbol,
            liquidation_horizon_days=a.liquidation_horizon_days,
            sigma=sigma[i],
            h_min=a.h_min,
            feeds=[{"chain": f.chain, "kind": f.kind, "address": f.address} for f in a.feeds],
            representations=[
                RepresentationInfo(
                    chain=r.chain,
                    symbol=r.symbol,
                    token=r.address,
                    decimals=r.decimals,
                    kind=r.kind,
                    bridged=r.bridged,
                )
                for r in config.representations
                if r.asset == a.symbol
            ],
        )
        for i, a in enumerate(config.assets)
    ]
    return AssetList(assets=assets).model_dump_json().encode()


HEALTH_WAIT_S = 1.5  # /v1/health waits this long for fresh answers, then tells what it knows
STORE_CHECK_S = 5.0  # the store's writability is checked again when older than this


async def health(call: Call) -> web.Response:
    """Readiness, from what this process last learned of every chain and of the store.
    It starts the refreshes that are due and waits at most HEALTH_WAIT_S for them (they
    go on without it), so a hanging node or database cannot hold the answer."""
    svc = _service(call)
    waiting = svc.pins.refresh()
    probe = _store_probe(svc)
    if probe is not None:
        waiting.append(probe)
    if waiting:
        await asyncio.wait(waiting, timeout=HEALTH_WAIT_S)
    now, mono = int(time.time()), time.monotonic()
    chains = [_chain_health(svc, name, now, mono) for name in svc.adapters]
    store = _store_health(svc, mono)
    up = sum(c.status == "ok" for c in chains)
    status = "down" if up == 0 or not store.writable else "ok" if up == len(chains) else "degraded"
    body = Health(status=status, store=store, chains=chains).model_dump_json().encode()
    resp = web.Response(body=body, status=503 if status == "down" else 200, content_type=JSON)
    resp[DOCUMENTED_ERROR] = True  # the 503 is the health document, not a problem
    return resp


async def liveness(call: Call) -> web.Response:
    """The process answers: no I/O, nothing awaited."""
    return _json(Liveness(status="live").model_dump_json().encode())


def _chain_health(svc: Service, name: str, now: int, mono: float) -> ChainHealth:
    adapter, known = svc.adapters[name], svc.pins.known(name)
    endpoints = []
    for i, ep in enumerate(adapter.rpc.endpoints):
        state: Any = "ok" if ep.stats.requests else "unused"
        fault = ep.refused or ep.last_error
        if ep.refused is not None:
            state = "refused"
        elif ep.not_before > mono:
            state = "rate_limited"
        elif ep.cooldown_until > mono:
            state = "cooling_down"
        else:
            fault = None
        endpoints.append(
            EndpointHealth(
                index=i,
                state=state,
                requests=ep.stats.requests,
                failures=ep.stats.failures,
                rate_limited=ep.stats.rate_limited,
                error_code=None if fault is None else fault.error_code,
            )
        )
    p, head = known.pin, known.head
    error, code = known.error, known.error_code
    if error is None and p is None:
        code = "no_answer_yet"
        error = f"{code}: chain {name} has not answered yet"
    status: Any = "unavailable" if error is not None else "ok"
    if status == "ok" and svc.pins.pinning(name):
        status = "stale"  # a new pin is taking longer than the health bound
    return ChainHealth(
        name=name,
        chain_id=adapter.chain.chain_id,
        status=status,
        head_block=head,
        pinned_block=p.number if p else None,
        pinned_block_timestamp=p.timestamp if p else None,
        lag_blocks=head - p.number if p and head is not None else None,
        age_s=now - p.timestamp if p else None,
        known_age_s=None if known.pin_at is None else round(mono - known.pin_at, 3),
        error_code=code,
        error=None if error is None else svc.scrub(error),
        endpoints=endpoints,
    )


def _store_probe(svc: Service) -> asyncio.Future[Any] | None:
    """The store's write probe under way, started if the last write is too old to say."""
    if svc.store_probe is not None and not svc.store_probe.done():
        return svc.store_probe
    last = svc.store.last_write
    if last is not None and time.monotonic() - last.at < STORE_CHECK_S:
        return None
    svc.store_probe = asyncio.ensure_future(asyncio.to_thread(svc.store.probe_write))
    svc.store_probe.add_done_callback(_log_failure)
    return svc.store_probe


def _log_failure(probe: asyncio.Future[Any]) -> None:
    """A probe that raised (a bug: database errors are its result) is logged, not lost."""
    if not probe.cancelled() and (exc := probe.exception()) is not None:
        log.error("the store probe failed", exc_info=exc)


def _store_health(svc: Service, mono: float) -> StoreHealth:
    last = svc.store.last_write
    age = None if last is None else round(mono - last.at, 3)
    pending = svc.store_probe is not None and not svc.store_probe.done()
    if last is None or (pending and mono - last.at >= STORE_CHECK_S):
        code = "store_timeout"
        why = f"the snapshot store did not take a test write within {HEALTH_WAIT_S:g} s"
        return StoreHealth(writable=False, checked_age_s=age, error_code=code, error=why)
    if not last.ok:
        code = "store_not_writable"
        why = "the snapshot store refuses writes: reports cannot be stored, so none is served"
        return StoreHealth(writable=False, checked_age_s=age, error_code=code, error=why)
    return StoreHealth(writable=True, checked_age_s=age)


def _summary(s: Summary, leaf: int | None, document: str | None = None) -> SnapshotSummary:
    return SnapshotSummary(
        leaf_index=leaf,
        id=s.id,
        account=s.account,
        height=s.height,
        prev_id=s.prev_id,
        kind=s.kind,
        target_chain=s.target,
        asset=s.asset,
        created_at=s.created_at,
        figures=None if document is None else figures(document),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def figures(document: str) -> SnapshotFigures | None:
    """The headline figures of a stored document's outputs (v1 and v2 both keep `totals`,
    `status` and `chains` among the account's own outputs), or None if it has none."""
    try:
        doc = json.loads(document)
    except ValueError:
        return None
    out = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(out, dict):
        return None
    found_totals, found_chains = out.get("totals"), out.get("chains")
    totals: dict[str, Any] = found_totals if isinstance(found_totals, dict) else {}
    chains: list[Any] = found_chains if isinstance(found_chains, list) else []
    return SnapshotFigures(
        status=_text(out.get("status")),
        method=_text(out.get("method")),
        health=_text(totals.get("health")),
        free_margin_usd=_text(totals.get("free_margin_usd", out.get("free_margin_usd"))),
        unavailable_chains=[
            str(c.get("name"))
            for c in chains
            if isinstance(c, dict) and c.get("status") not in (None, "ok")
        ],
    )


async def snapshot(call: Call) -> web.Response:
    store = _service(call).store
    found = await asyncio.to_thread(store.get, call.path["id"])
    if found is None:
        raise ApiProblem(404, f"no snapshot {call.path['id']}", type_="/problems/not-found")
    s, text = found
    blobs = await asyncio.to_thread(store.blobs_for, text)
    leaf = await asyncio.to_thread(store.log.leaf_index, s.id) if store.has_log else None
    out = Snapshot(
        leaf_index=leaf,
        id=s.id,
        account=s.account,
        height=s.height,
        prev_id=s.prev_id,
        kind=s.kind,
        created_at=s.created_at,
        document=json.loads(text),
        blobs={h: json.loads(b) for h, b in blobs.items()},
    )
    return _json(out.model_dump_json().encode())


async def snapshot_page(call: Call) -> web.Response:
    store, q = _service(call).store, call.query
    limit: int = getattr(q, "limit", 20)
    cursor: str | None = getattr(q, "cursor", None)
    kind: str | None = getattr(q, "kind", None)
    account = call.path["address"]
    rows = await asyncio.to_thread(
        store.page_documents, account, limit + 1, None if cursor is None else int(cursor), kind
    )
    more = len(rows) > limit
    rows = rows[:limit]
    leaves = {}
    if store.has_log and rows:
        leaves = await asyncio.to_thread(store.log.leaf_indices, [r.id for r, _ in rows])
    page = SnapshotPage(
        account=account,
        items=[_summary(r, leaves.get(r.id), text) for r, text in rows],
        next_cursor=str(rows[-1][0].height) if more else None,
    )
    return _json(page.model_dump_json().encode())


def operations(config: Config) -> list[Operation]:
    """Every v1 operation; the router and /openapi.json are both built from this list."""
    q = Queries(config)
    chains, assets = chain_list(config), asset_list(config)

    async def get_chains(call: Call) -> web.Response:
        return _json(chains)

    async def get_assets(call: Call) -> web.Response:
        return _json(assets)

    acct = "/v1/accounts/{address}"
    snap = "Stored as a snapshot; its id is in the Snapshot-Id header."
    return [
        Operation(
            "GET",
            f"{acct}/margin",
            "getMargin",
            "Unified margin account (METHOD.md §2-§7)",
            margin,
            MarginReport,
            q.margin,
            errors=(409, 422),
            snapshot_header=True,
            description=snap,
        ),
        Operation(
            "GET",
            f"{acct}/capacity",
            "getCapacity",
            "Borrowing capacity (§8)",
            capacity,
            CapacityReport,
            q.capacity,
            errors=(409, 422),
            snapshot_header=True,
            description=snap,
        ),
        Operation(
            "GET",
            f"{acct}/stress",
            "getStress",
            "Stress scenarios (§9)",
            stress,
            StressReport,
            q.stress,
            errors=(409, 422),
            snapshot_header=True,
            description=snap,
        ),
        Operation(
            "POST",
            "/v1/margin:batch",
            "postMarginBatch",
            "Margin of many accounts",
            margin_batch,
            MarginBatch,
            q.empty,
            body=q.batch,
            errors=(409, 413, 415),
            description=f"At most {config.api.max_batch} distinct accounts, one snapshot "
            "each; an account that cannot be computed has its problem in `error`. "
            "Costs one rate-limit token per account, and is let in when the bucket holds "
            "min(accounts, burst) tokens.",
        ),
        Operation(
            "GET",
            "/v1/chains",
            "getChains",
            "Configured chains",
            get_chains,
            ChainList,
            q.empty,
            tag="reference",
        ),
        Operation(
            "GET",
            "/v1/assets",
            "getAssets",
            "Configured assets",
            get_assets,
            AssetList,
            q.empty,
            tag="reference",
        ),
        Operation(
            "GET",
            "/v1/health",
            "getHealth",
            "Readiness: per-chain head, lag and endpoint health; the store's writability",
            health,
            Health,
            q.empty,
            secured=False,
            tag="operations",
            unavailable=True,
            description=f"Answers within about {HEALTH_WAIT_S:g} s from what the process "
            "last learned, however slow a node is. 200 when `ok` or `degraded`, 503 when "
            "`down` (the store cannot write, or no chain is available).",
        ),
        Operation(
            "GET",
            "/v1/health/live",
            "getLiveness",
            "Liveness: the process answers (no I/O)",
            liveness,
            Liveness,
            q.empty,
            secured=False,
            tag="operations",
        ),
        Operation(
            "GET",
            "/v1/snapshots/{id}",
            "getSnapshot",
            "One stored snapshot",
            snapshot,
            Snapshot,
            q.empty,
            errors=(404,),
            tag="audit",
        ),
        Operation(
            "GET",
            f"{acct}/snapshots",
            "listSnapshots",
            "An account's snapshots, newest first, each with its headline figures",
            snapshot_page,
            SnapshotPage,
            q.page,
            tag="audit",
        ),
        *log_operations(q, lambda call: _service(call).store),
    ]
