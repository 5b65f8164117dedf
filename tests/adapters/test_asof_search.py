"""METHOD.md §15's search (adapters/asof.py `_search`): the last block stamped <= τ, for
any non-decreasing timestamps (equal stamps, gaps, bursts), in few header rounds."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters import asof
from adapters.evm import BlockPin


class Headers:
    """Every header known up front (as in the adapter's cache); rounds are counted."""

    def __init__(self, stamps: list[int]) -> None:
        self.pins = {n: BlockPin(1, n, "0x" + f"{n:064x}", t) for n, t in enumerate(stamps)}
        self.rounds = 0

    async def __call__(self, adapter: Any, numbers: list[int]) -> dict[int, BlockPin]:
        self.rounds += 1
        return {n: self.pins[n] for n in numbers}


gaps = st.lists(st.integers(0, 50), min_size=2, max_size=400)


@settings(max_examples=300, deadline=None)
@given(gaps=gaps, data=st.data())
def test_search_finds_the_last_block_at_or_before_tau(gaps: list[int], data: Any) -> None:
    stamps = [1_000 + sum(gaps[: i + 1]) for i in range(len(gaps))]
    if stamps[-1] == stamps[0]:
        return  # no τ with lo <= τ < hi exists
    tau = data.draw(st.integers(stamps[0], stamps[-1] - 1))
    fake = Headers(stamps)
    original = asof.headers
    asof.headers = fake  # type: ignore[assignment]
    try:
        got = asyncio.run(
            asof._search(SimpleNamespace(), tau, fake.pins[0], fake.pins[len(stamps) - 1])  # type: ignore[arg-type]
        )
    finally:
        asof.headers = original
    expected = max(n for n, t in enumerate(stamps) if t <= tau)
    assert got.number == expected
    assert fake.rounds <= 2 * math.ceil(math.log2(len(stamps))) + 2


def test_regular_blocks_are_found_in_one_round() -> None:
    stamps = [1_000 + 12 * i for i in range(100_000)]
    fake = Headers(stamps)
    original = asof.headers
    asof.headers = fake  # type: ignore[assignment]
    try:
        tau = 1_000 + 12 * 54_321 + 5
        got = asyncio.run(asof._search(SimpleNamespace(), tau, fake.pins[0], fake.pins[99_999]))  # type: ignore[arg-type]
    finally:
        asof.headers = original
    assert got.number == 54_321
    assert fake.rounds == 1
