"""The web page in real headless Chromium against the devnet: the figures it shows are the
API's (fetched from the same server and compared), the charts are drawn, and a bad address
and an unavailable chain each get a clear state. Screenshots go to test-artifacts/web/."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route
from web_helpers import ARTIFACTS, ServedApp

UNKNOWN_FIGURES = ["debt_usd", "equity_usd", "free_margin_usd"]

COMPONENTS = ["market", "bridge_latency", "correlation", "bridge_risk", "concentration", "floor"]
FIGURES = ["collateral_usd", "debt_usd", "equity_usd", "margin_requirement_usd", "free_margin_usd"]
SETTLED = '#status[data-state="ok"], #status[data-state="partial"], #status[data-state="error"]'


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


def snapshot_id(url: str) -> str | None:
    with urllib.request.urlopen(url, timeout=30) as resp:
        sid: str | None = resp.headers.get("Snapshot-Id")
        return sid


def usd(value: str) -> str:
    """What the page shows for a USD decimal string (format.js `usd`)."""
    d = Decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    return f"{'-' if d < 0 else ''}${abs(d):,.2f}"


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page whose JS errors fail the test (a 4xx fetch is logged by Chromium: allowed)."""
    width, height = getattr(request, "param", (1280, 900))
    context = browser.new_context(viewport={"width": width, "height": height})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    pg.on(
        "console",
        lambda m: (
            errors.append(f"console: {m.text}")
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    yield pg
    context.close()
    assert errors == []


def open_account(page: Page, base: str, account: str, target: str) -> None:
    page.goto(f"{base}/?account={account}&target={target}")
    page.wait_for_selector(SETTLED, timeout=20_000)


def test_demo_account_figures_match_the_api(page: Page, web_server: ServedApp, devnet: Any) -> None:
    base = web_server.url
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(base + "/")
    page.wait_for_selector("#demo-chips .chip")  # demo accounts from the devnet manifest
    assert page.locator("#demo-chips .chip").all_inner_texts() == list(devnet.demo_accounts)
    assert page.locator("#target option").count() == len(devnet.config.chains)
    page.select_option("#target", "arbitrum")
    page.click("#demo-chips .chip:text-is('bob')")
    page.wait_for_selector(SETTLED, timeout=20_000)
    assert page.get_attribute("#status", "data-state") == "ok"

    bob = devnet.demo_accounts["bob"]
    q = "?target_chain=arbitrum"
    _, margin = get_json(f"{base}/v1/accounts/{bob}/margin{q}")
    _, capacity = get_json(f"{base}/v1/accounts/{bob}/capacity{q}")
    _, stress = get_json(f"{base}/v1/accounts/{bob}/stress")
    assert margin["status"] == "ok"
    assert float(margin["totals"]["debt_usd"]) > 0  # bob: the waterfall has a debt step

    assert page.inner_text("#account") == bob
    assert page.inner_text("#result-status") == "ok"
    for key in FIGURES:  # exact value kept, rounded value shown
        money = page.locator(f'#totals [data-field="{key}"] .money')
        assert money.get_attribute("data-value") == margin["totals"][key]
        assert money.inner_text() == usd(margin["totals"][key])
    health = page.locator('#totals [data-field="health"] .ratio')
    assert health.get_attribute("data-value") == margin["totals"]["health"]
    assert health.inner_text() == str(
        Decimal(margin["totals"]["health"]).quantize(Decimal("0.001"))
    )

    for cap in capacity["capacities"]:
        row = page.locator(f'#capacity tr[data-asset="{cap["asset"]}"]')
        assert row.locator('[data-field="capacity_usd"] .money').inner_text() == usd(
            cap["capacity_usd"]
        )
        assert (
            row.locator('[data-field="amount"] span').get_attribute("data-value") == cap["amount"]
        )

    # waterfall: gross collateral, the six components, debt, free margin
    steps = page.locator("#waterfall g.wf-step")
    assert steps.evaluate_all("gs => gs.map(g => g.dataset.step)") == [
        "collateral",
        *COMPONENTS,
        "debt",
        "free_margin",
    ]
    assert page.locator("#waterfall svg rect.wf-bar").count() == len(COMPONENTS) + 3
    bars = page.locator("#waterfall rect.wf-bar").evaluate_all("rs => rs.map(r => r.dataset.value)")
    t = margin["totals"]
    assert bars == [
        t["collateral_usd"],
        *(margin["haircuts"][c] for c in COMPONENTS),
        t["debt_usd"],
        t["free_margin_usd"],
    ]
    # per-chain bars: collateral, debt and margin share for each chain
    assert page.locator("#chains g.chain-row").count() == len(margin["chains"])
    assert page.locator("#chains rect.chain-bar").count() == 3 * len(margin["chains"])
    # stress: one bar per scenario, the worst named
    assert page.locator("#stress-chart rect.stress-bar").count() == len(stress["scenarios"])
    assert page.locator("#stress-chart g.worst").get_attribute("data-scenario") == stress["worst"]

    # positions, price sources, block pins
    rows = page.locator("#positions tbody tr")
    assert rows.count() == len(margin["positions"])
    shown = rows.locator('[data-field="value_usd"] .money').evaluate_all(
        "ms => ms.map(m => m.dataset.value)"
    )
    assert shown == [p["value_usd"] for p in margin["positions"]]
    for price in margin["prices"]:
        src = page.locator(f'#prices [data-asset="{price["asset"]}"] tbody tr')
        assert src.count() == len(price["sources"])
    for pin in margin["as_of"]:
        cell = page.locator(f'#blocks tr[data-chain="{pin["name"]}"] [data-field="block_number"]')
        assert cell.inner_text() == str(pin["block_number"])
    # the JSON behind the page: the margin snapshot (id and link), and the raw answer
    assert page.get_attribute("#snapshot a.raw-link", "href") == f"/v1/accounts/{bob}/margin{q}"
    if snapshot_id(f"{base}/v1/accounts/{bob}/margin{q}") is not None:  # a snapshot store
        sid = page.inner_text("#snapshot-id")
        assert page.get_attribute("#snapshot a.snapshot-link", "href") == f"/v1/snapshots/{sid}"
        status, snap = get_json(f"{base}/v1/snapshots/{sid}")
        assert status == 200
        assert (snap["id"], snap["account"], snap["kind"]) == (sid, bob, "margin")

    assert all(r.startswith(base + "/") for r in requests), "the page loads nothing from elsewhere"
    page.screenshot(path=ARTIFACTS / "desktop-bob.png", full_page=True)


@pytest.mark.parametrize("page", [(390, 844)], indirect=True)
def test_phone_width(page: Page, web_server: ServedApp, devnet: Any) -> None:
    alice = devnet.demo_accounts["alice"]
    open_account(page, web_server.url, alice, "base")
    assert page.get_attribute("#status", "data-state") == "ok"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
    assert page.locator("#positions thead").is_hidden()  # rows become labelled cards
    _, margin = get_json(f"{web_server.url}/v1/accounts/{alice}/margin?target_chain=base")
    assert page.locator("#waterfall rect.wf-bar").count() == len(COMPONENTS) + 3
    free = page.locator('#totals [data-field="free_margin_usd"] .money').inner_text()
    assert free == usd(margin["totals"]["free_margin_usd"])
    page.screenshot(path=ARTIFACTS / "phone-alice.png", full_page=True)


def test_bad_address_shows_the_problem_detail(page: Page, web_server: ServedApp) -> None:
    page.goto(web_server.url + "/")
    page.wait_for_selector("body[data-ready]")
    page.fill("#address", "0x1234")
    page.click("#go")
    page.wait_for_selector(SETTLED, timeout=20_000)
    status, problem = get_json(f"{web_server.url}/v1/accounts/0x1234/margin")
    assert status == 400
    assert page.get_attribute("#status", "data-state") == "error"
    assert page.inner_text("#status-title") == problem["title"]
    assert page.inner_text("#status-detail") == problem["detail"]
    assert page.locator("#results").is_hidden()
    page.screenshot(path=ARTIFACTS / "bad-address.png", full_page=True)


@pytest.mark.parametrize("page", [(1280, 900), (390, 844)], indirect=True)
def test_unavailable_chain_is_partial(page: Page, dead_base_server: ServedApp, devnet: Any) -> None:
    bob = devnet.demo_accounts["bob"]
    open_account(page, dead_base_server.url, bob, "arbitrum")
    _, margin = get_json(f"{dead_base_server.url}/v1/accounts/{bob}/margin?target_chain=arbitrum")
    assert margin["status"] == "partial"
    assert page.get_attribute("#status", "data-state") == "partial"
    assert page.inner_text("#result-status") == "partial"
    assert "base (8453) unavailable" in page.inner_text("#status-detail")
    row = page.locator('#chains g.chain-row[data-chain="base"]')
    assert "unavailable" in (row.get_attribute("class") or "")
    assert "unavailable" in (row.text_content() or "")
    assert page.locator("#chains rect.chain-bar").count() == 3 * (len(margin["chains"]) - 1)
    assert (
        page.inner_text('#blocks tr[data-chain="base"] [data-field="block_number"]') == "not read"
    )
    base_rows = page.locator('#positions tr[data-chain="8453"]')
    assert base_rows.count() == len([p for p in margin["positions"] if p["chain_id"] == 8453])
    assert set(base_rows.evaluate_all("rs => rs.map(r => r.dataset.status)")) == {"unavailable"}
    free = page.locator('#totals [data-field="free_margin_usd"] .money')  # null: not a 0
    assert margin["totals"]["free_margin_usd"] is None
    assert free.get_attribute("data-value") == ""
    assert free.inner_text() == "unknown"  # base may hold debt: it cannot be valued (§4)
    assert page.locator("#warnings [data-code='chain_unavailable']").count() == 1
    width = page.viewport_size["width"] if page.viewport_size else 0
    page.screenshot(path=ARTIFACTS / f"partial-{width}.png", full_page=True)


def test_loading_state_then_result(page: Page, web_server: ServedApp, devnet: Any) -> None:
    held: list[Route] = []

    def hold(route: Route) -> None:  # the margin answer waits until released
        held.append(route)

    page.route("**/v1/accounts/*/margin*", hold)
    carol = devnet.demo_accounts["carol"]
    page.goto(f"{web_server.url}/?account={carol}&target=ethereum")
    page.wait_for_selector('#status[data-state="loading"]')
    assert page.inner_text("#status-title") == "Loading\u2026"
    while not held:
        page.wait_for_timeout(10)
    held[0].continue_()
    page.wait_for_selector(SETTLED, timeout=20_000)
    assert page.get_attribute("#status", "data-state") == "ok"
    assert page.inner_text("#account") == carol


def assert_debt_unknown_page(page: Page, base: str, account: str, target: str) -> dict[str, Any]:
    """METHOD.md §4 on the page: every figure the API leaves null because debt cannot be
    valued reads "unknown" with the reason, never 0 or a bare dash."""
    q = f"?target_chain={target}"
    _, margin = get_json(f"{base}/v1/accounts/{account}/margin{q}")
    _, capacity = get_json(f"{base}/v1/accounts/{account}/capacity{q}")
    _, stress = get_json(f"{base}/v1/accounts/{account}/stress")
    (reason,) = [w["detail"] for w in margin["warnings"] if w["code"] == "debt_unknown"]
    assert page.get_attribute("#status", "data-state") == "partial"
    assert "debt cannot be valued" in page.inner_text("#status-detail")
    for key in UNKNOWN_FIGURES:
        assert margin["totals"][key] is None
        value = page.locator(f'#totals [data-field="{key}"] .money')
        assert value.inner_text() == "unknown", key
        assert value.get_attribute("data-value") == ""
        assert value.get_attribute("title") == reason
    health = page.locator('#totals [data-field="health"] .ratio')
    assert (health.inner_text(), health.get_attribute("title")) == ("unknown", reason)
    assert page.inner_text("#debt-unknown") == f"Debt cannot be valued. {reason}"
    # what could be valued is still shown as numbers
    coll = page.locator('#totals [data-field="collateral_usd"] .money')
    assert coll.inner_text() == usd(margin["totals"]["collateral_usd"])
    # capacity: 0 for every asset, with the reason
    assert "unknown" in page.inner_text("#capacity p.lead")
    for cap in capacity["capacities"]:
        assert cap["capacity_usd"] == "0.000000"
        row = page.locator(f'#capacity tr[data-asset="{cap["asset"]}"]')
        assert row.locator('[data-field="capacity_usd"] .money').inner_text() == "$0.00"
        assert "capacity 0" in row.inner_text()
    # waterfall: debt and free margin unknown
    for step in ("debt", "free_margin"):
        text = page.locator(f'#waterfall g[data-step="{step}"] text.val').text_content()
        assert text == "unknown", step
    # stress: no scenario says solvent or insolvent; no worst
    assert stress["worst"] is None
    rows = page.locator("#stress-chart g.stress-row")
    assert rows.count() == len(stress["scenarios"])
    for s in stress["scenarios"]:
        row = page.locator(f'#stress-chart g[data-scenario="{s["name"]}"]')
        assert "solvency unknown" in (row.text_content() or "")
        assert "insolvent" not in (row.text_content() or "")
        assert row.locator("rect.stress-bar.unknown").count() == 1
    assert page.locator("#stress-chart g.worst").count() == 0
    assert page.locator("#stress-chart rect.stress-bar.solvent").count() == 0
    assert "Equity now unknown" in page.inner_text("#stress-note")
    return margin


@pytest.mark.parametrize("page", [(1280, 900), (390, 844)], indirect=True)
def test_debt_on_an_unavailable_chain_is_unknown(
    page: Page, dead_base_server: ServedApp, devnet: Any
) -> None:
    bob = devnet.demo_accounts["bob"]
    open_account(page, dead_base_server.url, bob, "arbitrum")
    assert_debt_unknown_page(page, dead_base_server.url, bob, "arbitrum")
    width = page.viewport_size["width"] if page.viewport_size else 0
    page.screenshot(path=ARTIFACTS / f"debt-unknown-{width}.png", full_page=True)


def test_unpriced_debt_is_unknown_per_chain(
    page: Page, unpriced_usdc_server: ServedApp, devnet: Any
) -> None:
    carol = devnet.demo_accounts["carol"]  # ETH against USDC debt
    open_account(page, unpriced_usdc_server.url, carol, "arbitrum")
    margin = assert_debt_unknown_page(page, unpriced_usdc_server.url, carol, "arbitrum")
    unknown_chains = [c for c in margin["chains"] if c["debt_usd"] is None]
    assert unknown_chains  # the chain holding the unpriced USDC debt
    for c in margin["chains"]:
        debt = page.locator(f'#blocks tr[data-chain="{c["name"]}"] [data-field="debt_usd"]')
        row = page.locator(f'#chains g.chain-row[data-chain="{c["name"]}"]')
        if c["debt_usd"] is None:
            assert debt.inner_text() == "unknown"
            assert "debt unknown" in (row.text_content() or "")
            assert row.locator("rect.chain-bar.debt.unknown").count() == 1
        else:
            assert debt.inner_text() == usd(c["debt_usd"])
    page.screenshot(path=ARTIFACTS / "unpriced-debt.png", full_page=True)


def test_protocol_panel_shows_the_protocols_own_figures(
    page: Page, web_server: ServedApp, devnet: Any
) -> None:
    """METHOD.md §12 on the page: erin's Aave accounts, each row the API's exact figures."""
    base, erin = web_server.url, devnet.demo_accounts["erin"]
    open_account(page, base, erin, "arbitrum")
    _, margin = get_json(f"{base}/v1/accounts/{erin}/margin?target_chain=arbitrum")
    assert {p["chain"] for p in margin["protocols"]} == {"ethereum", "arbitrum"}
    for p in margin["protocols"]:
        row = page.locator(f'#protocols tr[data-chain="{p["chain"]}"]')
        hf = row.locator('[data-field="health_factor"] span')
        assert hf.get_attribute("data-value") == p["health_factor"]
        assert hf.inner_text() == str(Decimal(p["health_factor"]).quantize(Decimal("0.001")))
        for key in ("total_debt_usd", "available_borrows_usd"):
            money = row.locator(f'[data-field="{key}"] .money')
            assert money.get_attribute("data-value") == p[key]
            assert money.inner_text() == usd(p[key])
    warned = page.locator('#warnings li[data-code="local_liquidation_risk"]')
    assert warned.count() == 1


def test_as_of_picker_sends_at_and_shows_the_past_figures(
    page: Page, web_server: ServedApp, devnet: Any
) -> None:
    """METHOD.md §15 on the page: the date-time picker (UTC) sends `at=` as unix seconds;
    the figures shown are the API's for that time, and the URL keeps it."""
    account = devnet.demo_accounts["alice"]
    _, now = get_json(f"{web_server.url}/v1/accounts/{account}/margin?target_chain=arbitrum")
    at = max(b["timestamp"] for b in now["as_of"])
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/margin" in r.url else None)
    page.goto(web_server.url + "/")
    page.wait_for_selector("body[data-ready]")
    page.fill("#address", account)
    page.select_option("#target", "arbitrum")
    page.fill("#at", datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    page.click("#go")
    page.wait_for_selector(SETTLED, timeout=20_000)
    assert any(f"at={at}" in u for u in asked), asked
    assert f"at={at}" in page.url
    _, past = get_json(
        f"{web_server.url}/v1/accounts/{account}/margin?target_chain=arbitrum&at={at}"
    )
    assert page.inner_text("#status-title") == "As of a past time"
    assert usd(past["totals"]["collateral_usd"]) in page.inner_text("#totals")
