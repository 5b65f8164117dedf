"""The web page: `index.html` at `/`, its scripts and styles under `/static`, one JSON helper.

Everything the page needs is in `api/static/` (hand-written HTML, CSS and JS; charts are
inline SVG drawn by the page), so it works offline and loads nothing from elsewhere.
The page reads the same public endpoints as any client (margin, capacity, stress) plus:

    GET /v1/web/context -> {"settlement_chain": "ethereum",
                            "chains": [{"name": "ethereum", "chain_id": 1}, ...],
                            "demo_accounts": [{"name": "alice", "address": "0x..", "about": ".."}]}

`demo_accounts` lists the devnet's demo accounts only when a devnet manifest is found
(`app[MANIFEST]`, else `.devnet/manifest.json` in the working directory or the checkout)
and it describes the chains this server reads: at least one configured RPC URL must be
the manifest's URL for that chain. Otherwise it is empty.

Files are served by a plain handler over the files present at start-up, not aiohttp's
static resource, whose missing-file 404 and Range 416 are decided while sending, past
the point where an error can still become a problem+json (api/problems.py).
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from api.problems import ApiProblem
from crossmargin.core.config import Config

STATIC = Path(__file__).parent / "static"
MANIFEST = web.AppKey("web_manifest", Path)
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class _Loose(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class _ManifestChain(_Loose):
    name: str
    rpc_url: str


class _ManifestAccount(_Loose):
    name: str
    address: str
    about: str = ""


class _Manifest(_Loose):
    """The few manifest fields the page needs (devnet.manifest has them all)."""

    status: str
    chains: list[_ManifestChain]
    accounts: list[_ManifestAccount]


def demo_accounts(config: Config, manifest_text: str) -> list[dict[str, str]]:
    """The manifest's demo accounts if it is a running devnet that `config` reads."""
    try:
        manifest = _Manifest.model_validate_json(manifest_text)
    except ValidationError:
        return []
    urls = {c.name: c.rpc_url for c in manifest.chains}
    if manifest.status != "ready" or not any(urls.get(c.name) in c.rpc_urls for c in config.chains):
        return []
    return [{"name": a.name, "address": a.address, "about": a.about} for a in manifest.accounts]


def _manifest_paths(app: web.Application) -> list[Path]:
    explicit = app.get(MANIFEST)
    if explicit is not None:
        return [explicit]
    return [
        Path(".devnet/manifest.json"),
        Path(__file__).resolve().parents[1] / ".devnet/manifest.json",
    ]


def _read_first(paths: list[Path]) -> str | None:
    for p in paths:
        try:
            return p.read_text(encoding="utf-8")
        except OSError:
            continue
    return None


def _config(app: web.Application) -> Config:
    from api.app import ENGINE  # here, not at import time: api.app imports this module

    return app[ENGINE].config


async def context(request: web.Request) -> web.Response:
    config = _config(request.app)
    text = await asyncio.to_thread(_read_first, _manifest_paths(request.app))
    body: dict[str, Any] = {
        "settlement_chain": config.settlement_chain,
        "chains": [{"name": c.name, "chain_id": c.chain_id} for c in config.chains],
        "demo_accounts": demo_accounts(config, text) if text is not None else [],
    }
    return web.json_response(text=json.dumps(body), headers={"Cache-Control": "no-store"})


def _file(name: str, headers: dict[str, str]) -> web.Response:
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    body = (STATIC / name).read_bytes()  # the page's files are all UTF-8 text
    return web.Response(body=body, content_type=content_type, charset="utf-8", headers=headers)


async def index(request: web.Request) -> web.Response:
    return await asyncio.to_thread(_file, "index.html", PAGE_HEADERS)


def add_web_routes(app: web.Application) -> None:
    """`/` (the page), `/static/{name}` (the files of api/static/) and `/v1/web/context`."""
    names = frozenset(p.name for p in STATIC.iterdir() if p.is_file())
    headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in names:
            raise ApiProblem(404, "no such file", type_="/problems/not-found")
        return await asyncio.to_thread(_file, name, headers)

    app.router.add_get("/", index)
    app.router.add_get("/v1/web/context", context)
    app.router.add_get("/static/{name}", static)
