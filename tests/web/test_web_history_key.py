"""The history chart and the key field in real Chromium on the devnet: the chart's points
are the snapshots endpoint's (ids, health, free margin, unavailable chains), each a link to
its snapshot; on a deployment that requires a key, the page asks for one, keeps it in
session storage and sends it with every request."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page
from web_helpers import ARTIFACTS, ServedApp, serve

from api.security import new_key
from crossmargin.core.config import ApiKeyConfig

SETTLED = '#status[data-state="ok"], #status[data-state="partial"], #status[data-state="error"]'


def with_api(config: Any, **api: Any) -> Any:
    return config.model_copy(update={"api": config.api.model_copy(update=api)})


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.load(resp)


def mine(url: str) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "evm_mine", "params": []}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert "error" not in json.load(resp)


@pytest.fixture(scope="module")
def fresh_pins_server(devnet: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    """Pins are not reused: a block mined on a chain makes the next margin a new snapshot."""
    db = tmp_path_factory.mktemp("web-history") / "snapshots.db"
    with serve(with_api(devnet.config, pin_ttl_s=0.0), devnet.manifest_path, db) as served:
        yield served


@pytest.fixture(scope="module")
def keyed_server(
    devnet: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServedApp, str]]:
    key, digest = new_key()
    entry = ApiKeyConfig(name="page", sha256=digest, rate_per_s=100.0, burst=100)
    config = with_api(devnet.config, anonymous=False, keys=[entry])
    db = tmp_path_factory.mktemp("web-keyed") / "snapshots.db"
    with serve(config, devnet.manifest_path, db) as served:
        yield served, key


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    pg.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    yield pg
    context.close()
    assert errors == []


def chart(page: Page, panel: str) -> list[tuple[str, str]]:
    dots = page.locator(f"#history g[data-panel={panel}] circle.hist-point")
    pairs = dots.evaluate_all("ds => ds.map(d => [d.dataset.id, d.dataset.value])")
    return [(i, v) for i, v in pairs]


def expected(base: str, account: str, target: str) -> list[dict[str, Any]]:
    page = get_json(f"{base}/v1/accounts/{account}/snapshots?kind=margin&limit=100")
    items = [
        s for s in page["items"]
        if s["target_chain"] == target and s["figures"]["method"] == "var"
    ]  # fmt: skip
    return list(reversed(items))


def test_history_points_are_the_snapshots(
    page: Page, fresh_pins_server: ServedApp, devnet: Any
) -> None:
    base, alice = fresh_pins_server.url, devnet.demo_accounts["alice"]
    margin = f"{base}/v1/accounts/{alice}/margin?target_chain=base"
    for _ in range(2):  # two more snapshots at later blocks
        get_json(margin)
        for chain in devnet.config.chains:
            mine(devnet.rpc_url(chain.name))
    page.goto(f"{base}/?account={alice}&target=base")
    page.wait_for_selector("#history[data-ready=true]", timeout=30_000)
    points = expected(base, alice, "base")
    assert len(points) >= 3
    ids = [p["id"] for p in points]
    assert chart(page, "health") == [(p["id"], p["figures"]["health"] or "") for p in points]
    free = [(p["id"], p["figures"]["free_margin_usd"] or "") for p in points]
    assert chart(page, "free") == free
    links = page.locator("#history g[data-panel=health] a.hist-link")
    assert links.evaluate_all("as => as.map(a => a.getAttribute('href'))") == [
        f"/v1/snapshots/{i}" for i in ids
    ]
    assert page.locator("#history .hist-down").count() == 0  # every chain was read
    assert page.is_hidden("#key-form")  # this deployment needs no key
    assert f"{len(points)} stored margin snapshot(s) on base" in page.inner_text("#history-note")
    page.screenshot(path=str(ARTIFACTS / "history.png"), full_page=True)
    with page.expect_navigation():
        links.last.click()  # the latest point opens its snapshot
    snapshot = json.loads(page.inner_text("body"))
    assert snapshot["id"] == ids[-1]
    assert snapshot["document"]["outputs"]["totals"]["health"] == points[-1]["figures"]["health"]


def test_unavailable_chain_is_marked(page: Page, dead_base_server: ServedApp, devnet: Any) -> None:
    base, bob = dead_base_server.url, devnet.demo_accounts["bob"]
    page.goto(f"{base}/?account={bob}&target=arbitrum")
    page.wait_for_selector("#history[data-ready=true]", timeout=30_000)
    drawn = chart(page, "free")
    # the snapshots stored up to the page's load, oldest first; the page's live stream
    # may store a newer one meanwhile (a chain down: results are not cached), not drawn
    points = expected(base, bob, "arbitrum")[: len(drawn)]
    assert points
    assert all(p["figures"]["unavailable_chains"] == ["base"] for p in points)
    marks = page.locator("#history g[data-panel=free] path.hist-down")
    assert marks.count() == len(points)
    assert {marks.nth(i).get_attribute("data-chains") for i in range(len(points))} == {"base"}
    assert drawn == [(p["id"], "") for p in points]  # free margin unknown


def test_key_field_on_a_keyed_deployment(
    page: Page, keyed_server: tuple[ServedApp, str], devnet: Any, tmp_path: Path
) -> None:
    served, key = keyed_server
    alice = devnet.demo_accounts["alice"]
    sent: list[str | None] = []
    page.on(
        "request",
        lambda r: sent.append(r.headers.get("x-api-key")) if "/v1/accounts/" in r.url else None,
    )
    page.goto(f"{served.url}/?account={alice}&target=base")
    page.wait_for_selector(SETTLED, timeout=20_000)
    assert page.get_attribute("#status", "data-state") == "error"
    assert "API key is required" in page.inner_text("#status-detail")
    assert page.is_visible("#key-form")
    assert page.is_hidden("#key-forget")  # no key stored yet
    assert page.is_hidden("#results")
    page.fill("#api-key", key)
    page.click("#key-use")
    page.wait_for_selector('#status[data-state="ok"], #status[data-state="partial"]')
    assert page.inner_text("#account") == alice
    assert page.evaluate("sessionStorage.getItem('crossmargin.apiKey')") == key
    page.wait_for_selector("#history[data-ready=true]", timeout=30_000)
    assert page.locator("#history circle.hist-point").count() >= 2  # health and free margin
    assert None in sent  # the first requests, before the key
    assert sent[-1] == key  # every request since carries it
    assert sent[sent.index(key) :] == [key] * len(sent[sent.index(key) :])
    with page.expect_popup() as popup:  # a snapshot link is fetched with the key
        page.click("#snapshot a.snapshot-link")
    shown = popup.value
    shown.wait_for_load_state()
    assert json.loads(shown.inner_text("body"))["id"] == page.inner_text("#snapshot-id")
    shown.close()
    page.reload()  # the key stays for the tab's session
    page.wait_for_selector('#status[data-state="ok"], #status[data-state="partial"]')
    assert page.inner_text("#account") == alice
