"""Every figure the service serves, from the inputs of one computation: `compute` is the
one path from chain states to a report (margin §5-§7, capacity §8, stress §9), used live
and on replay, so a stored snapshot's outputs can be recomputed byte for byte."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from crossmargin.core.config import Config
from crossmargin.core.errors import CrossmarginError
from crossmargin.pipeline.capacity import capacity_report
from crossmargin.pipeline.margin import margin_report, margin_reports
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.report import CapacityReport, MarginReport, StressReport, updated
from crossmargin.pipeline.stress import stress_report
from crossmargin.pipeline.value import assess, assess_many
from oracle.estimation import RiskEstimates

Kind = Literal["margin", "capacity", "stress"]
Report = MarginReport | CapacityReport | StressReport


@dataclass(frozen=True, slots=True)
class Request:
    """What was asked: the kind of figure, for whom, on which target, for which asset;
    as of which time or blocks (§15) and at which address on which chain (§1).

    `blocks` and `addresses` are (chain name, value) pairs, kept sorted by chain so
    equal requests are equal. `addresses` holds only chains where the address read is
    not `account`. Recorded in the snapshot only when given, so a request without them
    is recorded (and identified) as before they existed."""

    kind: Kind
    account: str
    target: str | None = None  # chain name (margin, capacity)
    asset: str | None = None  # capacity: one borrow asset, or None for every asset
    at: int | None = None  # §15: unix seconds; each chain at its last block <= at
    blocks: tuple[tuple[str, int], ...] = ()  # §15: explicit block numbers per chain
    addresses: tuple[tuple[str, str], ...] = ()  # §1: the account's address on a chain

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(sorted(self.blocks)))
        object.__setattr__(
            self, "addresses", tuple(sorted((c, a) for c, a in self.addresses if a != self.account))
        )

    @property
    def as_of(self) -> bool:
        """About a past time (§15), not the chains' pins of now."""
        return self.at is not None or bool(self.blocks)

    def address_on(self, chain: str) -> str:
        """The address read on `chain` (§1)."""
        return dict(self.addresses).get(chain, self.account)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target_chain": self.target, "asset": self.asset}
        if self.at is not None:
            out["at"] = self.at
        if self.blocks:
            out["blocks"] = dict(self.blocks)
        if self.addresses:
            out["addresses"] = dict(self.addresses)
        return out


def compute(
    config: Config,
    states: list[ChainState],
    req: Request,
    estimates: RiskEstimates | None = None,
) -> Report:
    """The one path from inputs to a report, live and on replay. `estimates`: §6 sigma
    and rho from the price history (None: from config alone)."""
    a = assess(config, states, req.account, estimates)
    if req.kind == "margin":
        assert req.target is not None
        return margin_report(a, req.target)
    if req.kind == "capacity":
        assert req.target is not None
        return capacity_report(a, req.target, req.asset)
    return stress_report(a)


def compute_many(
    config: Config,
    requests: Sequence[Request],
    states: Mapping[str, list[ChainState]],
    estimates: RiskEstimates | None = None,
) -> list[Report | CrossmarginError]:
    """`compute` for a batch, report for report the same (tested): every account valued
    once (`assess_many`, prices per distinct feed set) and the margin requests of one
    target in one risk call (`margin_reports`). A request that fails is its error."""
    accounts = list(dict.fromkeys(r.account for r in requests))
    twin = _twins(accounts, states)
    unique = [a for a in accounts if a not in twin]
    out: list[Report | CrossmarginError | None] = [None] * len(requests)
    try:
        valued = assess_many(config, {a: states[a] for a in unique}, estimates)
        assessed = dict(zip(unique, valued, strict=True))
    except CrossmarginError:
        assessed = {}  # one account's failure must stay its own: value them one by one
    # per target, the margin report of each account whose states are its own (a twin's
    # is its first twin's, with its own address)
    by_target: dict[str, dict[str, list[int]]] = {}
    for i, r in enumerate(requests):
        source = twin.get(r.account, r.account)
        if r.kind == "margin" and source in assessed and r.target is not None:
            by_target.setdefault(r.target, {}).setdefault(source, []).append(i)
    for target, sources in by_target.items():
        try:
            reports = margin_reports([assessed[a] for a in sources], target)
        except CrossmarginError:
            continue  # computed one by one below, so the error is that request's
        for (source, idx), report in zip(sources.items(), reports, strict=True):
            for i in idx:
                account = requests[i].account
                same = account == source
                out[i] = report if same else updated(report, account=account)
    for i, r in enumerate(requests):
        if out[i] is None:
            try:
                out[i] = compute(config, states[r.account], r, estimates)
            except CrossmarginError as exc:
                out[i] = exc
    done = [o for o in out if o is not None]
    assert len(done) == len(requests)
    return done


_SHARED_FIELDS = ("chain", "pin", "feeds", "sequencer", "block_proof")  # one object per read
_OWN_FIELDS = ("balances", "protocols")
# the state's shared objects (by identity), and every other field (by value): the chain's
# error, the address read (§1), the account's proofs (§13), a field added later
_SHARED = operator.attrgetter(*_SHARED_FIELDS)
_OTHER = operator.attrgetter(
    *(f.name for f in dataclasses.fields(ChainState) if f.name not in _SHARED_FIELDS + _OWN_FIELDS)
)


def _twins(accounts: Sequence[str], states: Mapping[str, list[ChainState]]) -> dict[str, str]:
    """Accounts whose states are alike, each to the first of them: read in one pass (the
    same pin, feed and sequencer objects per chain) with the same balance and protocol
    reads and equal everything else; an empty account's, typically. Their reports
    differ in the account only, so each is computed once (`compute_many`). An account
    with its own proofs (§13), or a state field that cannot be compared, is its own."""
    firsts: dict[tuple[object, ...], str] = {}
    out: dict[str, str] = {}
    for account in accounts:
        key = _alike(states[account])
        if key is None:
            continue
        try:
            first = firsts.setdefault(key, account)
        except TypeError:  # an unhashable field value: this account is its own
            continue
        if first != account:
            out[account] = first
    return out


def _alike(states: list[ChainState]) -> tuple[object, ...] | None:
    """What makes two accounts' states give the same report but for the account: the
    shared objects, balance reads and protocol reads by identity (the caller holds them,
    so ids stay theirs), the rest by value. Identity is enough and cheap: a read hands
    every account that holds nothing in a representation or market the same immutable
    object (adapters/balances.py, pipeline/protocol_read.py), so empty accounts share
    every one; accounts with equal holdings read apart are merely computed twice."""
    key: list[object] = []
    for st in states:
        if st.holder_proof is not None:
            return None
        key += (
            tuple(map(id, _SHARED(st))),
            _OTHER(st),
            tuple(map(id, st.balances)),
            tuple(map(id, st.protocols)),
        )
    return tuple(key)
