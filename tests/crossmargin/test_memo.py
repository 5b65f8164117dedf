"""crossmargin/core/memo.py: a result per (objects by identity, values by value)."""

from __future__ import annotations

from crossmargin.core.memo import IdentityMemo


def test_made_once_per_identity_and_value() -> None:
    memo: IdentityMemo[list[int]] = IdentityMemo(size=4)
    made: list[int] = []

    def make() -> list[int]:
        made.append(1)
        return [len(made)]

    a, b = [0], [0]  # equal, not the same object
    first = memo.get((a,), ("x",), make)
    assert memo.get((a,), ("x",), make) is first
    assert memo.get((b,), ("x",), make) is not first  # by identity, not by equality
    assert memo.get((a,), ("y",), make) is not first  # values by value
    assert len(made) == 3
    for k in range(5):  # bounded: cleared when full
        memo.get(([k],), (), make)
    assert memo.get((a,), ("x",), make) is not first
