"""The page follows its account live (METHOD.md §14): after a transfer to the shown
account, its free margin on the page changes to the API's new figure without a reload
(server-sent events from the API's watcher; the page has no polling loop)."""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from eth_utils.address import to_checksum_address
from playwright.sync_api import Browser, Page
from web_helpers import ARTIFACTS, ServedApp

from tests.jsonrpc import rpc_call as rpc

SETTLED = '#status[data-state="ok"], #status[data-state="partial"]'
FREE = '[data-field="free_margin_usd"] .money'


def fresh() -> str:
    return to_checksum_address("0x" + secrets.token_hex(20))


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    context.close()
    assert errors == []


def test_free_margin_updates_after_a_transfer_without_reload(
    page: Page, web_server: ServedApp, devnet: Any
) -> None:
    eth = devnet.rpc_url("ethereum")
    account, payer = fresh(), fresh()  # accounts of this test alone on the shared devnet
    rpc(eth, "anvil_setBalance", account, hex(10**18))
    rpc(eth, "anvil_setBalance", payer, hex(10 * 10**18))
    rpc(eth, "evm_mine")
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{web_server.url}/?account={account}&target=ethereum")
    page.wait_for_selector(SETTLED, timeout=30_000)
    before = page.locator(FREE).first.get_attribute("data-value")
    page.evaluate("window.__same_page = true")
    # the stream is up once the watcher's first computation of the account arrives
    page.wait_for_selector("body[data-live-updates]", timeout=30_000)
    loads = sum(r.endswith("/margin?target_chain=ethereum") for r in requests)

    rpc(eth, "anvil_impersonateAccount", payer)
    rpc(eth, "eth_sendTransaction", {"from": payer, "to": account, "value": hex(2 * 10**18)})
    rpc(eth, "evm_mine")
    after = before
    for _ in range(20):  # the API shares its pins for up to pin_ttl_s (1 s): ask again
        with urllib.request.urlopen(
            f"{web_server.url}/v1/accounts/{account}/margin?target_chain=ethereum", timeout=30
        ) as resp:
            after = json.load(resp)["totals"]["free_margin_usd"]
        if after != before:
            break
        time.sleep(0.5)
    assert after != before
    page.wait_for_selector(f'{FREE}[data-value="{after}"]', timeout=30_000)
    assert page.evaluate("window.__same_page") is True  # no reload
    assert sum(r.endswith("/margin?target_chain=ethereum") for r in requests) == loads
    assert any("/events" in r for r in requests)
    page.screenshot(path=str(ARTIFACTS / "live-update.png"))
