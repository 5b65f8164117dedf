"""Offline re-proof of a stored snapshot (METHOD.md §13): every verdict it records is
derived again from the headers and proofs it stores, with no node.

A snapshot of a chain in verified mode carries that chain's pinned header and the
tokens' account proofs (shared by its batch) and the account's own proofs with one
verdict per balance (adapters/prover.py). `reprove` recomputes each verdict with the
same `Judge` the live read used; a changed header, node, balance or verdict shows as
a verdict that differs from the stored one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from adapters.prover import Judge
from crossmargin.core.config import Config
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.state_codec import decode_states


class Reproof:
    """Counts of one document's re-proof, and what did not re-prove."""

    def __init__(self) -> None:
        self.positions = 0
        self.proven = 0
        self.problems: list[str] = []


def _verified(states: list[ChainState]) -> Iterator[ChainState]:
    for s in states:
        if s.chain.verification == "proof" and s.available:
            yield s


def reprove(config: Config, expanded: dict[str, Any]) -> Reproof:
    """Re-derive every stored verdict of an expanded document (`stored.expand`)."""
    out = Reproof()
    inputs = expanded.get("inputs")
    chains = inputs.get("chains") if isinstance(inputs, dict) else None
    states = decode_states(config, chains)
    for s in _verified(states):
        name = s.chain.name
        if s.block_proof is None or s.holder_proof is None or s.pin is None:
            out.problems.append(f"{name}: verified chain stored without its proofs")
            continue
        stored = s.holder_proof.verdicts
        got = Judge(s.pin.hash, s.block_proof).verdicts(s.holder_proof, s.balances)
        out.positions += len(got)
        out.proven += sum(v.ok for v in got)
        if len(stored) != len(got):
            out.problems.append(f"{name}: {len(stored)} verdicts for {len(got)} balances")
            continue
        for b, want, have in zip(s.balances, stored, got, strict=True):
            if (want.proven, want.ok) != (have.proven, have.ok):
                out.problems.append(
                    f"{name} {b.rep.symbol}: stored verdict ({_says(want.ok)}) is not what "
                    f"the stored proofs prove ({_says(have.ok)}: {have.reason or 'equal'})"
                )
    return out


def _says(ok: bool) -> str:
    return "proven" if ok else "unverified"
