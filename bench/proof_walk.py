"""Benchmark: why adapters/proof.py walks storage proofs itself instead of using `trie`.

    .venv/bin/python bench/proof_walk.py [--slots 5000] [--lookups 2000]

A random contract storage trie (keccak(slot) -> rlp(value)) is built with `trie`'s
HexaryTrie; the proofs of `--lookups` of its slots, as a node serves them, are then
verified twice in the same run against the root: by `trie`'s own
`HexaryTrie.get_from_proof` (the maintained library, the baseline) and by our walker
(`adapters.proof.prove_slot` over `node_db`, one decode memo per batch, as the prover
uses it). Both must give every value; the last line states the ratio.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: this file's folder would shadow the package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import rlp
from eth_hash.auto import keccak
from trie.hexary import HexaryTrie

from adapters.proof import node_db, prove_slot


def _build(n: int, rng: random.Random) -> tuple[HexaryTrie, dict[int, int]]:
    slots = {rng.getrandbits(256): rng.getrandbits(128) + 1 for _ in range(n)}
    t = HexaryTrie({})
    for slot, value in slots.items():
        t.set(keccak(slot.to_bytes(32, "big")), rlp.encode(value))
    return t, slots


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--slots", type=int, default=5000)
    p.add_argument("--lookups", type=int, default=2000)
    args = p.parse_args()
    rng = random.Random(1)
    t, slots = _build(args.slots, rng)
    root = t.root_hash
    asked = rng.sample(sorted(slots), min(args.lookups, len(slots)))
    proofs: list[Any] = [t.get_proof(keccak(s.to_bytes(32, "big"))) for s in asked]
    served = [[rlp.encode(node) for node in proof] for proof in proofs]  # eth_getProof's form

    start = time.perf_counter()
    theirs = [
        int.from_bytes(
            rlp.decode(HexaryTrie.get_from_proof(root, keccak(s.to_bytes(32, "big")), pr)), "big"
        )
        for s, pr in zip(asked, proofs, strict=True)
    ]
    baseline = time.perf_counter() - start

    start = time.perf_counter()
    memo: dict[bytes, Any] = {}
    ours = [
        prove_slot(root, s, node_db(nodes), memo) for s, nodes in zip(asked, served, strict=True)
    ]
    walker = time.perf_counter() - start

    want = [slots[s] for s in asked]
    assert theirs == want, "trie's HexaryTrie disagrees with the trie it built"
    assert ours == want, "the walker disagrees with HexaryTrie"
    n = len(asked)
    print(f"storage trie of {len(slots):,} slots, {n:,} proofs verified, same values both ways")
    print(f"trie.HexaryTrie.get_from_proof: {baseline / n * 1e6:,.0f} us per proof (baseline)")
    print(f"adapters.proof walker:          {walker / n * 1e6:,.0f} us per proof")
    print(f"proof walk: {baseline / walker:.1f}x faster than trie's HexaryTrie")


if __name__ == "__main__":
    main()
