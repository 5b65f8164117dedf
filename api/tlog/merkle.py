"""RFC 9162 §2.1 Merkle tree hashing, as pure functions over node positions.

The leaves are hashed `SHA-256(0x00 || leaf)` and the nodes `SHA-256(0x01 || l || r)`
(domain separation: no leaf can pass for a node). The tree of n leaves splits at k, the
largest power of two below n, so every node of it is either a *perfect* subtree (2^level
leaves starting at a multiple of 2^level, named `(level, index)`) or a range [a, n) on
its right edge, whose hash is the right fold of the perfect subtrees covering it,
largest first (`cover`). Perfect subtrees never change once complete, so the store keeps
each one's hash when it completes (`CompactRange.push`), and a root, an inclusion proof
or a consistency proof is a few range hashes, each O(log n) stored nodes: no proof
recomputes the tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

Node = tuple[int, int]  # (level, index): the leaves [index * 2^level, (index + 1) * 2^level)
Range = tuple[int, int]  # leaves [begin, end)

EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162: the hash of the empty tree


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def cover(begin: int, end: int) -> list[Node]:
    """The perfect subtrees covering [begin, end), left to right, each as large as its
    alignment allows. For the ranges of an RFC 9162 tree (a perfect subtree, or [a, n)
    with a a multiple of a power of two above n - a) they shrink left to right, and the
    range's hash is their right fold (`fold`)."""
    nodes: list[Node] = []
    while begin < end:
        level = (begin & -begin).bit_length() - 1 if begin else (end - begin).bit_length()
        while (1 << level) > end - begin:
            level -= 1
        nodes.append((level, begin >> level))
        begin += 1 << level
    return nodes


def fold(hashes: list[bytes]) -> bytes:
    """node(h0, node(h1, ... node(h_{k-2}, h_{k-1}))): the hash of a right-edge range."""
    out = hashes[-1]
    for h in reversed(hashes[:-1]):
        out = node_hash(h, out)
    return out


def range_hash(r: Range, nodes: Mapping[Node, bytes]) -> bytes:
    """MTH of the leaves [begin, end) from the stored perfect subtrees."""
    return fold([nodes[n] for n in cover(*r)])


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size]) as leaf ranges, from the leaf upwards."""
    out: list[Range] = []
    begin, end = 0, size
    while end - begin > 1:
        k = split(end - begin)
        if index < begin + k:
            out.append((begin + k, end))
            end = begin + k
        else:
            out.append((begin, begin + k))
            begin += k
    return out[::-1]


def consistency_ranges(old: int, size: int) -> list[Range]:
    """RFC 9162 §2.1.4.1 PROOF(old, D[0:size]) as leaf ranges (0 < old <= size), in
    proof order; empty when old == size."""
    out: list[Range] = []
    begin, end, whole = 0, size, True
    while old != end - begin:
        k = split(end - begin)
        if old <= k:
            out.append((begin + k, end))
            end = begin + k
        else:
            out.append((begin, begin + k))
            begin, old, whole = begin + k, old - k, False
    if not whole:
        out.append((begin, end))
    return out[::-1]


def needed(ranges: Iterable[Range]) -> set[Node]:
    """Every stored node the ranges' hashes are made of."""
    return {n for r in ranges for n in cover(*r)}


class CompactRange:
    """The perfect subtrees covering [0, size): all a writer needs to append and all a
    reader needs for the root. `push` returns the nodes a new leaf completes."""

    def __init__(self, size: int = 0, hashes: list[bytes] | None = None) -> None:
        self.size = size
        self.hashes = list(hashes or [])  # of cover(0, size), largest first

    def push(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Append one leaf hash; the (node, hash) of the leaf and every subtree it ends."""
        index, h = self.size, leaf
        done = [((0, index), h)]
        level = 0
        while (index >> level) & 1:  # a right child: merge with the left sibling
            h = node_hash(self.hashes.pop(), h)
            level += 1
            done.append(((level, index >> level), h))
        self.hashes.append(h)
        self.size += 1
        return done

    def root(self) -> bytes:
        return fold(self.hashes) if self.hashes else EMPTY_ROOT
