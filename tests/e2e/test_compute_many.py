"""The batch step and the replay step agree: `compute_many` over a mixed batch gives,
request for request, the bytes `compute` (what replay runs) gives alone."""

from __future__ import annotations

import asyncio
from typing import Any

from crossmargin.engine import Engine
from crossmargin.pipeline.figures import Request, compute, compute_many


def test_a_mixed_batch_is_what_each_request_gives_alone(devnet: Any) -> None:
    config = devnet.config
    accounts = [*devnet.demo_accounts.values(), "0x" + "ee" * 20, "0x" + "ef" * 20]  # 2 empty

    async def read() -> dict[str, Any]:
        async with Engine.connect(config) as engine:
            return dict(zip(accounts, await engine.read(accounts), strict=True))

    states = asyncio.run(read())
    requests = [
        *(Request("margin", a, t) for a in accounts for t in ("arbitrum", "base")),
        *(Request("capacity", a, "optimism") for a in accounts[:3]),
        Request("capacity", accounts[1], "ethereum", "USDC"),
        *(Request("stress", a) for a in accounts[-3:]),
    ]
    batch = compute_many(config, requests, states)
    assert len(batch) == len(requests)
    for req, got in zip(requests, batch, strict=True):
        alone = compute(config, states[req.account], req)
        assert not isinstance(got, Exception), got
        assert got.model_dump_json() == alone.model_dump_json(), req
