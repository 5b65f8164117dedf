"""The watch operations: subscriptions (create, list, get, update, delete) and alerts,
each scoped to the calling API key: a key sees and changes only its own watches (an
other key's watch is 404, as one that does not exist). Anonymous callers get 401."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from api.openapi import Call, Operation
from api.problems import ApiProblem
from api.watch.models import Alert, AlertList, Deleted, Watch, WatchList, WatchModels, alert_query
from api.watch.store import WatchRow, WatchStore
from crossmargin.core.config import Config

WATCH_STORE = web.AppKey("watch_store", WatchStore)
ON_CHANGE = web.AppKey("watch_on_change", list)  # callables run after a watch changes
JSON = "application/json"


def _owner(call: Call) -> str:
    if call.principal is None or call.principal.bucket.startswith("anon:"):
        raise ApiProblem(
            401,
            "watches belong to an API key: send one (header X-API-Key)",
            type_="/problems/unauthorized",
            headers={"WWW-Authenticate": 'Bearer realm="crossmargin"'},
        )
    return call.principal.name


def _store(call: Call) -> WatchStore:
    return call.request.app[WATCH_STORE]


def _changed(call: Call) -> None:
    for fn in call.request.app.get(ON_CHANGE, []):
        fn()


def _served(row: WatchRow) -> Watch:
    return Watch(
        id=row.id,
        name=row.name,
        accounts=row.accounts,
        target_chain=row.target,
        method=row.method,
        thresholds=row.thresholds,
        webhook_url=row.webhook_url,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _json(model: Any, status: int = 200) -> web.Response:
    return web.Response(body=model.model_dump_json().encode(), status=status, content_type=JSON)


def _not_found() -> ApiProblem:
    return ApiProblem(404, "no such watch", type_="/problems/not-found")


def _fields(config: Config, body: Any, partial: bool) -> dict[str, Any]:
    data: dict[str, Any] = body.model_dump(exclude_unset=partial)
    if partial:
        data = {k: v for k, v in data.items() if v is not None or k == "name"}
    if "thresholds" in data:
        data["thresholds"] = body.thresholds
    if "target_chain" in data or not partial:
        data["target"] = config.chain(
            data.pop("target_chain", None) or config.settlement_chain
        ).name
    if "method" in data or not partial:
        data["method"] = data.get("method") or config.risk.method
    return data


def operations(config: Config) -> list[Operation]:
    m = WatchModels(config)
    q_alerts = alert_query()
    from api.models import Queries

    empty = Queries(config).empty

    async def create(call: Call) -> web.Response:
        owner = _owner(call)
        fields = _fields(config, call.body, partial=False)
        row = await asyncio.to_thread(_store(call).create, owner, fields)
        _changed(call)
        return _json(_served(row))

    async def listing(call: Call) -> web.Response:
        rows = await asyncio.to_thread(_store(call).owned, _owner(call))
        return _json(WatchList(watches=[_served(r) for r in rows]))

    async def get(call: Call) -> web.Response:
        row = await asyncio.to_thread(_store(call).get, _owner(call), call.path["watch_id"])
        if row is None:
            raise _not_found()
        return _json(_served(row))

    async def patch(call: Call) -> web.Response:
        owner, wid = _owner(call), call.path["watch_id"]
        fields = _fields(config, call.body, partial=True)
        row = await asyncio.to_thread(_store(call).update, owner, wid, fields)
        if row is None:
            raise _not_found()
        _changed(call)
        return _json(_served(row))

    async def remove(call: Call) -> web.Response:
        owner, wid = _owner(call), call.path["watch_id"]
        if not await asyncio.to_thread(_store(call).delete, owner, wid):
            raise _not_found()
        _changed(call)
        return _json(Deleted(id=wid, deleted=True))

    async def alerts(call: Call) -> web.Response:
        q: Any = call.query
        rows = await asyncio.to_thread(
            _store(call).alerts, _owner(call), q.watch_id, q.status, q.limit
        )
        items = [
            Alert(
                **{k: r[k] for k in Alert.model_fields if k != "payload"},
                payload=json.loads(r["body"]),
            )
            for r in rows
        ]
        return _json(AlertList(alerts=items))

    one = "/v1/watches/{watch_id}"
    t = "watch"
    return [
        Operation(
            "POST",
            "/v1/watches",
            "createWatch",
            "Watch accounts (§14)",
            create,
            Watch,
            empty,
            body=m.create,
            errors=(413, 415),
            tag=t,
            keyed=True,
            description="Alerts on threshold crossings go to `webhook_url`, signed "
            "with `secret` (README, Watching). The secret is never shown back.",
        ),
        Operation(
            "GET",
            "/v1/watches",
            "listWatches",
            "This key's watches",
            listing,
            WatchList,
            empty,
            tag=t,
            keyed=True,
        ),
        Operation(
            "GET", one, "getWatch", "One watch", get, Watch, empty, errors=(404,), tag=t, keyed=True
        ),
        Operation(
            "PATCH",
            one,
            "updateWatch",
            "Change a watch",
            patch,
            Watch,
            empty,
            body=m.update,
            errors=(404, 413, 415),
            tag=t,
            keyed=True,
            description="Only the fields given change. Changed thresholds, target or "
            "method restart every account's alert state.",
        ),
        Operation(
            "DELETE",
            one,
            "deleteWatch",
            "Delete a watch",
            remove,
            Deleted,
            empty,
            errors=(404,),
            tag=t,
            keyed=True,
            description="Its undelivered alerts become dead.",
        ),
        Operation(
            "GET",
            "/v1/alerts",
            "listAlerts",
            "This key's alerts and their delivery",
            alerts,
            AlertList,
            q_alerts,
            tag=t,
            keyed=True,
        ),
    ]
