"""`/docs`: the API reference renders in real Chromium from files this server serves, with
no request anywhere else (any non-loopback request is aborted and fails the test)."""

from __future__ import annotations

import json
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Route
from web_helpers import ARTIFACTS, ServedApp


def test_docs_render_offline(browser: Browser, web_server: ServedApp) -> None:
    base = web_server.url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    outside: list[str] = []
    errors: list[str] = []

    def guard(route: Route) -> None:
        if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{base}/docs")
        page.wait_for_selector("body[data-ready=true] .opblock", timeout=30_000)
        with urllib.request.urlopen(f"{base}/openapi.json", timeout=30) as resp:
            spec: dict[str, Any] = json.load(resp)
        ids = {op["operationId"] for item in spec["paths"].values() for op in item.values()}
        shown = page.locator(".opblock .opblock-summary-path").all_inner_texts()
        paths = {p.replace("\u200b", "") for p in shown}
        assert paths == set(spec["paths"])
        assert page.locator(".opblock").count() == len(ids)
        assert "crossmargin" in page.locator(".info .title").inner_text()
        page.screenshot(path=str(ARTIFACTS / "docs.png"))
    finally:
        context.close()
    assert outside == [], "the API reference must load nothing from elsewhere"
    assert errors == []
