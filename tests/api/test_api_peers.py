"""api/peers.py: the workers' mailboxes, in one process (each end as a worker holds it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from api.cache import Coalescer
from api.peers import Peers, mailboxes
from api.service import Served, Service


@pytest.mark.asyncio
async def test_a_message_reaches_every_other_worker_and_none_waits() -> None:
    boxes = mailboxes(3)
    peers = [
        Peers(boxes[i][0], [out for j, (_, out) in enumerate(boxes) if j != i]) for i in range(3)
    ]
    got: list[list[object]] = [[], [], []]
    arrived = asyncio.Event()

    def deliver(i: int) -> Callable[[object], None]:
        def take(message: object) -> None:
            got[i].append(message)
            if got[1] and got[2]:
                arrived.set()

        return take

    try:
        for i, p in enumerate(peers):
            p.open(deliver(i))
        message = ("cfg", ("margin", "0xabc"), {"body": b"x" * 5000})
        peers[0].send(message)
        await asyncio.wait_for(arrived.wait(), 5)
        assert got == [[], [message], [message]]  # not back to its sender
        assert (peers[0].sent, peers[1].received, peers[2].received) == (2, 1, 1)
    finally:
        for p in peers:
            p.close()
        for inbox, outbox in boxes:
            inbox.close()
            outbox.close()


@pytest.mark.asyncio
async def test_a_full_inbox_drops_instead_of_blocking() -> None:
    boxes = mailboxes(2)
    sender = Peers(boxes[0][0], [boxes[1][1]])  # worker 1 never reads its inbox
    try:
        for _ in range(5000):  # far more than any inbox holds
            sender.send(b"y" * 10_000)
        assert sender.dropped > 0
        assert sender.sent + sender.dropped == 5000
    finally:
        for inbox, outbox in boxes:
            inbox.close()
            outbox.close()


@pytest.mark.asyncio
async def test_a_peer_result_is_kept_only_under_this_workers_config() -> None:
    """`Service._from_peer`: a result is kept under its key when it answers to this
    worker's config hash of its method (a worker restarted on a changed config file has
    another), marked as not computed here; anything else is dropped."""
    service = SimpleNamespace(hashes={"var": "cfg-var", "es": "cfg-es"}, results=Coalescer(8))
    served = Served(b"{}", "a" * 64, False, 7)
    key = ("request", "var", (("ethereum", 1, "0x01"),), "config")
    Service._from_peer(service, ("cfg-es", key, served))  # type: ignore[arg-type]
    Service._from_peer(service, ("cfg-var", ("request", "var"), served))  # type: ignore[arg-type]
    Service._from_peer(service, ("cfg-var", key, "not a result"))  # type: ignore[arg-type]
    Service._from_peer(service, "garbage")  # type: ignore[arg-type]
    assert len(service.results) == 0
    Service._from_peer(service, ("cfg-var", key, served))  # type: ignore[arg-type]
    assert key in service.results

    async def not_computed_here() -> Served:
        raise AssertionError("a kept result is served from memory")

    kept, outcome = await service.results.get(key, not_computed_here)
    assert outcome == "hit"
    assert (kept.body, kept.snapshot_id, kept.stored, kept.leaf_index) == (b"{}", "a" * 64, True, 7)
