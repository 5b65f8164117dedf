"""The one orchestrator: a batch of requests in, one result per request out.

Every caller (the API's single and batch endpoints, `margin`, `scan`, capacity, stress)
goes through `Engine.run`: a single account is a batch of one. Per chain the batch is
pinned once (or at the pins the caller gives) and every account of the batch is read in
shared multicalls (`read_chain_many`: feeds once per chain, balances chunked by the
adapter); then each request's report is computed by the one pure function
(`crossmargin.pipeline.snapshot.compute`). A request that cannot be answered (refused,
bad input) is that request's `Result.error`, never the batch's.

The engine does no I/O of its own: it is given its chain readers (name -> `ChainReader`,
adapters/evm.py), so the pure core runs on an in-memory fake as well as on real chains.
`Engine.connect(config)` opens the real `EvmAdapter`s for callers that want them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

from adapters.coalesce import CoalescingReader
from adapters.evm import BlockPin, ChainReader, EvmAdapter
from crossmargin.core.config import Config, checksummed
from crossmargin.core.errors import ChainError, CrossmarginError, DecodeError, InputError
from crossmargin.pipeline.figures import Report, Request, compute, compute_many
from crossmargin.pipeline.read import ChainState, read_chain_many
from crossmargin.pipeline.report import CapacityReport, MarginReport, StressReport
from crossmargin.pipeline.value import Assessment, assess
from oracle.estimation import RiskEstimates
from oracle.store import HistoryStore

Pinned = BlockPin | str  # a chain's pin, or why it could not be pinned (public form)


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

    async def estimates(self) -> RiskEstimates | None:
        """§6 parameters from the history store (cached there), or None without one."""
        if self.history is None:
            return None
        return await asyncio.to_thread(self.history.estimates, self.config)

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
        self, accounts: Sequence[str], pins: Mapping[str, Pinned] | None = None
    ) -> list[list[ChainState]]:
        """Each account's states (one per chain, config order), all chains concurrently:
        per chain one pin (`pins[name]`, or pinned here) and one shared read of every
        account. A chain whose pin is a reason is that reason in every account's state."""

        async def chain(name: str) -> list[ChainState]:
            reader = self.readers[name]
            pin = None if pins is None else pins[name]
            if isinstance(pin, str):
                return [ChainState(reader.chain, error=pin) for _ in accounts]
            return await read_chain_many(self.config, reader, accounts, pin)

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
        loop goes on reading other batches meanwhile."""
        accounts = list(dict.fromkeys(r.account for r in requests))
        states = dict(zip(accounts, await self.read(accounts, pins), strict=True))
        est = await self.estimates()

        def compute_all() -> list[Result]:
            return self.evaluate_many(requests, states, est, method)

        return await asyncio.to_thread(compute_all)

    # ------------------------------------------------------------------ batches of one

    async def margin(self, address: str, target: str | int | None = None) -> MarginReport:
        req = Request("margin", parse_account(address), self.target(target))
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
