"""The one orchestrator: a batch of requests in, one result per request out.

Every caller (the API's single and batch endpoints, `margin`, `scan`, capacity, stress)
goes through `Engine.run`: a single account is a batch of one. Per chain the batch is
pinned once (or at the pins the caller gives) and every account of the batch is read in
shared multicalls (`read_chain_many`: feeds once per chain, balances chunked by the
adapter); then each request's report is computed by the one pure function
(`crossmargin.pipeline.figures.compute`). A request that cannot be answered (refused,
bad input) is that request's `Result.error`, never the batch's.

The engine does no I/O of its own: it is given its chain readers (name -> `ChainReader`,
adapters/evm.py), so the pure core runs on an in-memory fake as well as on real chains.
`Engine.connect(config)` opens the real `EvmAdapter`s for callers that want them.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from adapters.asof import pin_at, pin_number
from adapters.coalesce import CoalescingReader
from adapters.evm import BlockPin, ChainReader, EvmAdapter
from crossmargin.core.codes import Code
from crossmargin.core.config import Config, checksummed
from crossmargin.core.errors import (
    AsOfUnavailable,
    BeforeGenesis,
    ChainError,
    CrossmarginError,
    DecodeError,
    InputError,
    StateUnavailable,
)
from crossmargin.core.inputs import one_per_chain
from crossmargin.pipeline.figures import Report, Request, compute, compute_many
from crossmargin.pipeline.read import ChainState, read_chain_many
from crossmargin.pipeline.report import CapacityReport, MarginReport, StressReport
from crossmargin.pipeline.value import Assessment, assess
from oracle.estimation import RiskEstimates
from oracle.store import HistoryStore

Pinned = BlockPin | str  # a chain's pin, or why it could not be pinned (public form)
Addresses = tuple[tuple[str, str], ...]  # (chain, address) where not the account's own
Pairs = Mapping[str, str] | Sequence[tuple[str, str]]  # chain (name or id) -> address


def parse_account(address: str) -> str:
    """Accept lower/upper-case hex or a correct EIP-55 checksum; return checksummed."""
    try:
        return checksummed(address)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def target_name(config: Config, target: str | int | None) -> str:
    """A chain name or id (None: the settlement chain) -> its name."""
    key = config.settlement_chain if target in (None, "") else target
    try:
        return config.chain(str(key)).name
    except KeyError:
        known = ", ".join(f"{c.name} ({c.chain_id})" for c in config.chains)
        raise InputError(f"unknown target chain {key!r}; known: {known}") from None


YOUNG_GC_THRESHOLD = 10_000  # allocations between young collections (CPython: 700)
_collecting_less = False


def collect_less() -> None:
    """Tune the cyclic garbage collector for a process that runs the engine, once (the
    `crossmargin` console script calls it; a library never changes its host's GC): a
    batch allocates ~10^5 short-lived containers (reads, states, reports, documents), so
    at CPython's default the collector runs every few accounts, and its full collections
    walk the whole heap (~0.15 s each at bench scale; ~80 us of CPU per account in all,
    bench/pipeline.py's mix). The heap built so far (modules, config: never garbage) is
    frozen out of the collector's walks, and young objects are collected every
    `YOUNG_GC_THRESHOLD` allocations. Memory is still freed by reference counting; only
    cycles wait longer."""
    global _collecting_less
    if _collecting_less:
        return
    _collecting_less = True
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_GC_THRESHOLD), middle, old)


@asynccontextmanager
async def open_adapters(config: Config) -> AsyncIterator[dict[str, EvmAdapter]]:
    """One real adapter per configured chain over one HTTP session, closed on exit. Each
    is a `CoalescingReader`: concurrent callers at one pin (API requests, scan batches,
    the history sync) share its multicalls, so every caller batches for free."""
    async with aiohttp.ClientSession() as session:
        adapters = {c.name: CoalescingReader(c, session) for c in config.chains}
        try:
            yield dict(adapters)
        finally:
            await asyncio.gather(*(a.close() for a in adapters.values()))


@dataclass(frozen=True, slots=True)
class Result:
    """One request's outcome: the states it was computed from, and its report or the
    reason there is none (a `CrossmarginError` of this request alone)."""

    request: Request
    states: list[ChainState]
    report: Report | None
    error: CrossmarginError | None = None

    def unwrap(self) -> Report:
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


class Engine:
    """`readers`: one `ChainReader` per configured chain (by name). `history`: the
    price-history store (oracle/store.py); with it sigma and rho are estimated from the
    stored daily closes (METHOD.md §6), without it they come from config."""

    def __init__(
        self,
        config: Config,
        readers: Mapping[str, ChainReader],
        history: HistoryStore | None = None,
    ) -> None:
        missing = [c.name for c in config.chains if c.name not in readers]
        if missing:
            raise ValueError(f"no reader for chains {missing}")
        self.config = config
        self.readers: dict[str, ChainReader] = {c.name: readers[c.name] for c in config.chains}
        self.history = history
        self._methods: dict[str, Config] = {}

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, config: Config, history: HistoryStore | None = None
    ) -> AsyncIterator[Engine]:
        """The engine over the real chains: `async with Engine.connect(config) as engine`."""
        async with open_adapters(config) as adapters:
            yield cls(config, adapters, history)

    # ------------------------------------------------------------------ requests

    def target(self, target: str | int | None) -> str:
        return target_name(self.config, target)

    def method(self, method: str | None) -> Config:
        """The config to compute with: this one, its risk method set to `method`."""
        if method is None or method == self.config.risk.method:
            return self.config
        cfg = self._methods.get(method)
        if cfg is None:
            risk = self.config.risk.model_copy(update={"method": method})
            cfg = self._methods[method] = self.config.model_copy(update={"risk": risk})
        return cfg

    async def estimates(self, before: int | None = None) -> RiskEstimates | None:
        """§6 parameters from the history store (cached there), or None without one;
        `before` (§15): from the closes final before that time only."""
        if self.history is None:
            return None
        return await asyncio.to_thread(self.history.estimates, self.config, before)

    def addresses(self, account: str, given: Pairs | None = None) -> Addresses:
        """§1: the account's address per chain where it is not `account`: the config's
        `[[accounts]]` entry, then what the request gives (it wins), by chain name. A
        chain given twice (by name and id, say) with different addresses conflicts."""
        pairs = list(given.items()) if isinstance(given, Mapping) else list(given or ())
        named = [(self.target(c), parse_account(str(a))) for c, a in pairs]
        out = {**self.config.addresses_of(account), **one_per_chain(named, "addresses")}
        return tuple(sorted((c, str(a)) for c, a in out.items() if a != account))

    def blocks(self, given: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
        """§15 blocks by chain name; a chain given two different numbers conflicts."""
        named = [(self.target(c), int(n)) for c, n in given]
        return tuple((c, int(n)) for c, n in one_per_chain(named, "blocks").items())

    # ------------------------------------------------------------------ §15 as of

    async def pin_as_of(
        self, at: int | None, blocks: Sequence[tuple[str, int]] = ()
    ) -> dict[str, Pinned]:
        """§15: each chain at its given block, else at its last block at or before `at`.
        A chain whose first block is after `at` is unavailable (its reason); every chain
        so, a time in the future, a block not final, or a node without the old block
        refuse the request (`AsOfUnavailable`)."""
        given = dict(blocks)
        unknown = [c for c in given if c not in self.readers]
        if unknown:
            raise InputError(f"blocks: unknown chain {unknown[0]!r}")
        if at is None and set(given) != set(self.readers):
            missing = ", ".join(c for c in self.readers if c not in given)
            raise AsOfUnavailable(
                missing, f"blocks: name every chain, or give at= too (missing: {missing})"
            )

        async def one(name: str) -> Pinned | AsOfUnavailable:
            reader = self.readers[name]
            if not isinstance(reader, EvmAdapter):
                raise InputError("a past time needs the real chain readers")
            try:
                if name in given:
                    return await pin_number(reader, given[name])
                assert at is not None
                return await pin_at(reader, at)
            except BeforeGenesis as exc:
                return exc
            except (ChainError, DecodeError) as exc:
                return exc.public(name)

        names = list(self.readers)
        got = dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))
        early = [g for g in got.values() if isinstance(g, AsOfUnavailable)]
        if early and len(early) == len(got):
            raise early[0]
        return {
            n: f"{g.error_code}: {g}" if isinstance(g, AsOfUnavailable) else g
            for n, g in got.items()
        }

    @staticmethod
    def check_as_of(states: Sequence[ChainState]) -> None:
        """§15: a node that has the old block but not its state is a refusal, not an
        unavailable chain: the request is about that time and cannot be answered."""
        for st in states:
            if st.error is not None and st.error.startswith(f"{Code.BLOCK_UNAVAILABLE}:"):
                name = st.chain.name
                raise StateUnavailable(
                    name,
                    f"the endpoints of chain {name} cannot serve the state at block "
                    f"{st.pin.number if st.pin else '?'} (an archive node is needed for "
                    "a past time)",
                )

    @staticmethod
    def cutoff(at: int | None, pins: Mapping[str, Pinned]) -> int | None:
        """§15: the time §6 closes must be final before: `at`, or with explicit blocks
        the latest pinned block's timestamp."""
        if at is not None:
            return at
        stamps = [p.timestamp for p in pins.values() if isinstance(p, BlockPin)]
        return max(stamps) if stamps else None

    # ------------------------------------------------------------------ the pipeline

    async def pin(self) -> dict[str, Pinned]:
        """Every chain pinned once, concurrently; a chain that cannot be is its reason."""

        async def one(name: str) -> Pinned:
            try:
                return await self.readers[name].pin()
            except (ChainError, DecodeError) as exc:
                return exc.public(name)

        names = list(self.readers)
        return dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))

    async def read(
        self,
        accounts: Sequence[str],
        pins: Mapping[str, Pinned] | None = None,
        addresses: Mapping[str, Addresses] | None = None,
    ) -> list[list[ChainState]]:
        """Each account's states (one per chain, config order), all chains concurrently:
        per chain one pin (`pins[name]`, or pinned here) and one shared read of every
        account. A chain whose pin is a reason is that reason in every account's state.
        `addresses` (§1): per account, its address on the chains where it differs."""
        mapped = {a: dict(m) for a, m in (addresses or {}).items() if m}

        async def chain(name: str) -> list[ChainState]:
            reader = self.readers[name]
            pin = None if pins is None else pins[name]
            here = {a: m.get(name, a) for a, m in mapped.items()}
            if isinstance(pin, str):
                return [ChainState(reader.chain, error=pin, address=here.get(a)) for a in accounts]
            return await read_chain_many(self.config, reader, accounts, pin, here)

        if not accounts:
            return []
        per_chain = await asyncio.gather(*(chain(n) for n in self.readers))
        return [[states[i] for states in per_chain] for i in range(len(accounts))]

    def evaluate(
        self,
        req: Request,
        states: list[ChainState],
        estimates: RiskEstimates | None,
        method: str | None = None,
    ) -> Result:
        """The pure step (CPU only: callers may run it in a worker thread)."""
        try:
            report = compute(self.method(method), states, req, estimates)
        except CrossmarginError as exc:  # refused, bad input: this request only
            return Result(req, states, None, exc)
        return Result(req, states, report)

    def evaluate_many(
        self,
        requests: Sequence[Request],
        states: Mapping[str, list[ChainState]],
        estimates: RiskEstimates | None,
        method: str | None = None,
    ) -> list[Result]:
        """`evaluate` for a batch in one pass (`figures.compute_many`: each account valued
        once, one risk call per target); CPU only, like `evaluate`."""
        done = compute_many(self.method(method), requests, states, estimates)
        return [
            Result(r, states[r.account], None, d)
            if isinstance(d, CrossmarginError)
            else Result(r, states[r.account], d)
            for r, d in zip(requests, done, strict=True)
        ]

    async def run(
        self,
        requests: Sequence[Request],
        method: str | None = None,
        pins: Mapping[str, Pinned] | None = None,
    ) -> list[Result]:
        """The unit of work: read every distinct account once, then compute each request
        (results in request order). The computing runs in a worker thread, so the event
        loop goes on reading other batches meanwhile. Requests about different times
        (§15), or one account at different addresses (§1), go as separate groups."""
        if not requests:
            return []
        groups: dict[tuple[object, ...], list[int]] = {}
        seen: dict[str, Addresses] = {}
        for i, r in enumerate(requests):
            split = seen.setdefault(r.account, r.addresses) != r.addresses
            groups.setdefault((r.at, r.blocks, r.addresses if split else None), []).append(i)
        if len(groups) > 1:
            out: list[Result | None] = [None] * len(requests)
            for idx in groups.values():
                done = await self.run([requests[i] for i in idx], method, pins)
                for i, res in zip(idx, done, strict=True):
                    out[i] = res
            return [r for r in out if r is not None]
        return await self._run_group(requests, method, pins)

    async def _run_group(
        self,
        requests: Sequence[Request],
        method: str | None,
        pins: Mapping[str, Pinned] | None,
    ) -> list[Result]:
        """`run` for requests about one time, each account at one set of addresses."""
        first = requests[0]
        accounts = list(dict.fromkeys(r.account for r in requests))
        addresses = {r.account: r.addresses for r in requests}
        try:
            if pins is None and first.as_of:
                pins = await self.pin_as_of(first.at, first.blocks)
            read = await self.read(accounts, pins, addresses)
            if first.as_of:
                for st in read:
                    self.check_as_of(st)
        except AsOfUnavailable as exc:
            return [Result(r, [], None, exc) for r in requests]
        states = dict(zip(accounts, read, strict=True))
        cut = self.cutoff(first.at, pins) if first.as_of and pins is not None else None
        est = await self.estimates(cut)

        def compute_all() -> list[Result]:
            return self.evaluate_many(requests, states, est, method)

        return await asyncio.to_thread(compute_all)

    # ------------------------------------------------------------------ batches of one

    async def margin(
        self,
        address: str,
        target: str | int | None = None,
        at: int | None = None,
        blocks: Sequence[tuple[str, int]] = (),
        addresses: Pairs | None = None,
    ) -> MarginReport:
        """One account's margin; as of `at` or `blocks` (§15), at `addresses` (§1)."""
        account = parse_account(address)
        req = Request(
            "margin", account, self.target(target), None, at, self.blocks(blocks),
            self.addresses(account, addresses),
        )  # fmt: skip
        report = (await self.run([req]))[0].unwrap()
        assert isinstance(report, MarginReport)
        return report

    async def capacity(
        self, address: str, target: str | int | None = None, asset: str | None = None
    ) -> CapacityReport:
        req = Request("capacity", parse_account(address), self.target(target), asset)
        report = (await self.run([req]))[0].unwrap()
        assert isinstance(report, CapacityReport)
        return report

    async def stress(self, address: str) -> StressReport:
        report = (await self.run([Request("stress", parse_account(address))]))[0].unwrap()
        assert isinstance(report, StressReport)
        return report

    async def assess(self, address: str) -> Assessment:
        """The valued positions behind every report of one account (§2-§4)."""
        account = parse_account(address)
        states = (await self.read([account]))[0]
        return assess(self.config, states, account, await self.estimates())
