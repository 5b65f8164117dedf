"""The log's Merkle tree (api/tlog/merkle.py) against the RFC 9162 definitions, checked
by the independent verifier in tlog_verifier.py: every size 1..N, every m <= n."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st
from tlog_verifier import consistency_ok, inclusion_ok, mth

from api.tlog.merkle import (
    EMPTY_ROOT,
    CompactRange,
    Node,
    consistency_ranges,
    cover,
    inclusion_ranges,
    leaf_hash,
    needed,
    range_hash,
)

N = 40


def _grow(leaves: list[bytes]) -> tuple[dict[Node, bytes], list[bytes]]:
    """Every node the store would keep, and the root after each append."""
    tree, nodes, roots = CompactRange(), {}, []
    for leaf in leaves:
        nodes.update(tree.push(leaf_hash(leaf)))
        roots.append(tree.root())
    return nodes, roots


def _check_all(leaves: list[bytes]) -> None:
    nodes, roots = _grow(leaves)
    for n in range(1, len(leaves) + 1):
        root = mth(leaves[:n])
        assert roots[n - 1] == root
        assert range_hash((0, n), {k: nodes[k] for k in cover(0, n)}) == root
        for i in range(n):
            ranges = inclusion_ranges(i, n)
            assert needed(ranges) <= nodes.keys()
            path = [range_hash(r, nodes) for r in ranges]
            assert inclusion_ok(i, n, leaves[i], path, root)
            assert not inclusion_ok(i, n, leaves[i] + b"x", path, root)
        for m in range(1, n + 1):
            proof = [range_hash(r, nodes) for r in consistency_ranges(m, n)]
            assert consistency_ok(m, n, mth(leaves[:m]), root, proof)
            if m < n:
                forged = mth([*leaves[: m - 1], b"forged"])
                assert not consistency_ok(m, n, forged, root, proof)


def test_every_size_and_prefix() -> None:
    _check_all([hashlib.sha256(str(i).encode()).digest() for i in range(N)])


def test_empty_and_single() -> None:
    assert CompactRange().root() == EMPTY_ROOT == mth([])
    nodes, roots = _grow([b"only"])
    assert roots == [mth([b"only"])]
    assert nodes == {(0, 0): leaf_hash(b"only")}
    assert inclusion_ranges(0, 1) == []
    assert consistency_ranges(1, 1) == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=24))
def test_any_leaves(leaves: list[bytes]) -> None:
    _check_all(leaves)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 1 << 40), st.data())
def test_proofs_are_logarithmic(n: int, data: st.DataObject) -> None:
    """Sizes far past what a test stores: a proof names at most 2 log2(n) stored nodes,
    and every range of it is covered by perfect subtrees inside the tree."""
    i = data.draw(st.integers(0, n - 1))
    m = data.draw(st.integers(1, n))
    for ranges in (inclusion_ranges(i, n), consistency_ranges(m, n)):
        keys = needed(ranges)
        assert len(keys) <= 2 * n.bit_length() + 1
        for level, index in keys:
            assert (index + 1) << level <= n
