"""The API reference at `/docs`: Swagger UI (npm `swagger-ui-dist`, pinned in
package.json) rendering this server's own /openapi.json, served from here, offline.

The bundle is read from the checkout's `node_modules/swagger-ui-dist` (`make setup`
installs it), or from `api/static/vendor/swagger-ui/` where a packager put the same two
files. Nothing is fetched from elsewhere: the page's CSP allows only this origin (plus
inline styles, which Swagger UI sets on elements), and `docs.js` turns off the online
spec validator Swagger UI would otherwise call. Without the bundle `/docs` is a 404
problem naming the fix.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from api.problems import ApiProblem
from api.web import STATIC

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ("swagger-ui-bundle.js", "swagger-ui.css")
PLACES = (STATIC / "vendor" / "swagger-ui", ROOT / "node_modules" / "swagger-ui-dist")
DOCS_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


def bundle_dir(places: tuple[Path, ...] = PLACES) -> Path | None:
    """The first place holding every file of the bundle."""
    return next((p for p in places if all((p / f).is_file() for f in BUNDLE)), None)


def _read(path: Path) -> bytes:
    return path.read_bytes()


def add_docs_routes(app: web.Application, places: tuple[Path, ...] = PLACES) -> None:
    """`/docs` (the page), `/docs/{name}` (its script, styles and the bundle)."""
    found = bundle_dir(places)
    files = {"docs.js": STATIC / "docs.js"}
    if found is not None:
        files |= {name: found / name for name in BUNDLE}

    def missing() -> ApiProblem:
        return ApiProblem(
            404,
            "the API reference is not installed (run `make setup`: npm swagger-ui-dist)",
            type_="/problems/not-found",
        )

    async def page(request: web.Request) -> web.Response:
        if found is None:
            raise missing()
        body = await asyncio.to_thread(_read, STATIC / "docs.html")
        return web.Response(body=body, content_type="text/html", charset="utf-8",
                            headers=DOCS_HEADERS)  # fmt: skip

    async def asset(request: web.Request) -> web.Response:
        path = files.get(request.match_info["name"])
        if path is None:
            raise (
                missing()
                if found is None
                else ApiProblem(404, "no such file", type_="/problems/not-found")
            )
        body = await asyncio.to_thread(_read, path)
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        return web.Response(body=body, content_type=TYPES[path.suffix], charset="utf-8",
                            headers=headers)  # fmt: skip

    app.router.add_get("/docs", page)
    app.router.add_get("/docs/{name}", asset)
