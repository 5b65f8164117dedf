"""The watch store and outbox on SQLite and PostgreSQL: an alert and the state it moves
are stored together; a pending alert is due until acknowledged, then never again;
failures back off and end dead; deleting a watch kills its undelivered alerts."""

from __future__ import annotations

import time

from api.store import Store
from api.watch.delivery import backoff, signature
from api.watch.rules import Thresholds, crossings, evaluate
from api.watch.store import NewAlert, WatchStore
from crossmargin.core.config import WatchConfig

A = "0x" + "ab" * 20
B = "0x" + "cd" * 20


def _fields(**extra: object) -> dict[str, object]:
    return {
        "accounts": [A, B],
        "target": "ethereum",
        "method": "var",
        "thresholds": Thresholds(health_below=1.2),
        "webhook_url": "http://127.0.0.1:9/hook",
        "secret": "0123456789abcdef",
        **extra,
    }


def _alert(wid: str, account: str, breached: bool) -> NewAlert:
    return NewAlert(wid, "k", account, "health_below", breached, "f" * 64, {"account": account})


def test_outbox_lifecycle(database: str) -> None:
    store = Store.open(database)
    try:
        ws = WatchStore(store)
        w = ws.create("k", _fields())
        assert ws.get("other", w.id) is None
        assert ws.owned("other") == []
        (aid,) = ws.record([_alert(w.id, A, True)])
        assert ws.states() == {(w.id, A): {"health_below": True}}
        (due,) = ws.due(time.time(), 10)
        assert due.id == aid
        assert due.secret == "0123456789abcdef"
        ws.failed(aid, 1, time.time() + 60, "the webhook answered HTTP 500", dead=False)
        assert ws.due(time.time(), 10) == []  # backing off
        assert ws.due(time.time() + 61, 10)[0].attempts == 1
        ws.delivered(aid, 2)
        assert ws.due(time.time() + 3600, 10) == []  # acknowledged: never again
        ws.failed(aid, 3, 0.0, "late failure", dead=True)  # cannot undo a delivery
        (row,) = ws.alerts("k")
        assert row["status"] == "delivered"
        assert row["attempts"] == 2

        (aid2,) = ws.record([_alert(w.id, B, True)])
        assert ws.delete("k", w.id)
        (dead,) = ws.alerts("k", status="dead")
        assert dead["id"] == aid2
        assert ws.states() == {}
        assert not ws.delete("k", w.id)
    finally:
        store.close()


def test_update_keeps_or_restarts_state(database: str) -> None:
    store = Store.open(database)
    try:
        ws = WatchStore(store)
        w = ws.create("k", _fields())
        ws.record([_alert(w.id, A, True), _alert(w.id, B, True)])
        ws.update("k", w.id, {"accounts": [A]})  # B dropped: its state goes
        assert ws.states() == {(w.id, A): {"health_below": True}}
        ws.update("k", w.id, {"secret": "another-secret-xyz"})  # state kept
        assert ws.states() == {(w.id, A): {"health_below": True}}
        ws.update("k", w.id, {"thresholds": Thresholds(health_below=1.5)})  # restarted
        assert ws.states() == {}
        assert ws.update("other", w.id, {"secret": "x" * 16}) is None
    finally:
        store.close()


def test_crossings_and_unknowns() -> None:
    th = Thresholds(health_below=1.2, free_margin_below="100", liquidatable=True, partial=True)
    report = {
        "status": "ok",
        "totals": {"health": "1.1", "debt_usd": "5", "free_margin_usd": "100.000000"},
    }
    now = evaluate(th, report)
    assert now == {
        "health_below": True,
        "free_margin_below": False,  # strictly below
        "liquidatable": None,  # null figure: unknown
        "partial": False,
    }
    assert [c.condition for c in crossings({}, now)] == ["health_below"]
    assert crossings({"health_below": True, "liquidatable": True}, now) == []  # unknown holds
    no_debt = evaluate(th, {"status": "ok", "totals": {"health": None, "debt_usd": "0.000000"}})
    assert no_debt["health_below"] is False
    unknown = evaluate(th, {"status": "partial", "totals": {"health": None, "debt_usd": None}})
    assert unknown["health_below"] is None


def test_signature_and_backoff() -> None:
    sig = signature("s", "1700000000", b'{"a":1}')
    assert sig == "v1=" + __import__("hmac").new(b"s", b'1700000000.{"a":1}', "sha256").hexdigest()
    cfg = WatchConfig(retry_base_s=1.0, retry_max_s=10.0)
    assert backoff(cfg, 1, lambda: 1.0) == 1.0
    assert backoff(cfg, 3, lambda: 1.0) == 4.0
    assert backoff(cfg, 3, lambda: 0.0) == 2.0  # jitter: half to all of it
    assert backoff(cfg, 30, lambda: 1.0) == 10.0  # capped
