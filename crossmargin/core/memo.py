"""Results of pure functions of frozen objects, remembered by the objects' identity.

A batch's compute builds the same parameters from the same config again and again (a
few hundred microseconds a batch, all of a batch of one: an API request). Frozen
objects (config, estimates) are keyed by `id`, kept alive in the entry so an id is never
reused while it is a key, and checked by `is` on a hit; plain values (a chain name) by
value. Bounded: a long-running service that builds configs (per risk method, say)
does not grow it without limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class IdentityMemo(Generic[T]):
    """`get(objects, values, make)`: `make()` once per (objects by identity, values)."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._entries: dict[tuple[object, ...], tuple[tuple[object, ...], T]] = {}

    def get(
        self, objects: tuple[object, ...], values: tuple[object, ...], make: Callable[[], T]
    ) -> T:
        key = (*map(id, objects), *values)
        hit = self._entries.get(key)
        if hit is not None and all(map(_same, hit[0], objects)):
            return hit[1]
        made = make()
        if len(self._entries) >= self._size:
            self._entries.clear()
        self._entries[key] = (objects, made)
        return made


def _same(a: object, b: object) -> bool:
    return a is b
