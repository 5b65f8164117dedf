"""The service's one I/O object: it owns the HTTP session and one adapter per chain.

Open it with `async with Engine(config) as engine:`; every computation pins each chain
once, reads all chains concurrently, and hands the states to the pure valuation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import aiohttp

from adapters.evm import EvmAdapter
from crossmargin.core.config import Config, checksummed
from crossmargin.core.errors import InputError
from crossmargin.pipeline.capacity import capacity_report
from crossmargin.pipeline.margin import margin_report
from crossmargin.pipeline.read import ChainState, read_chain, read_chain_many
from crossmargin.pipeline.report import CapacityReport, MarginReport, StressReport
from crossmargin.pipeline.stress import stress_report
from crossmargin.pipeline.value import Assessment, assess
from oracle.estimation import RiskEstimates
from oracle.store import HistoryStore


def parse_account(address: str) -> str:
    """Accept lower/upper-case hex or a correct EIP-55 checksum; return checksummed."""
    try:
        return checksummed(address)
    except ValueError as exc:
        raise InputError(str(exc)) from None


class Engine:
    """`history`: the price-history store (oracle/store.py). With it, sigma and rho are
    estimated from the stored daily closes (METHOD.md §6); without, they come from config."""

    def __init__(self, config: Config, history: HistoryStore | None = None) -> None:
        self.config = config
        self.history = history
        self._session: aiohttp.ClientSession | None = None
        self.adapters: dict[str, EvmAdapter] = {}

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession()
        self.adapters = {c.name: EvmAdapter(c, self._session) for c in self.config.chains}
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def target(self, target: str | int | None) -> str:
        key = self.config.settlement_chain if target in (None, "") else target
        try:
            return self.config.chain(str(key)).name
        except KeyError:
            known = ", ".join(f"{c.name} ({c.chain_id})" for c in self.config.chains)
            raise InputError(f"unknown target chain {key!r}; known: {known}") from None

    async def read(self, account: str) -> list[ChainState]:
        return list(
            await asyncio.gather(
                *(read_chain(self.config, a, account) for a in self.adapters.values())
            )
        )

    async def read_many(self, accounts: Sequence[str]) -> dict[str, list[ChainState]]:
        """Many (checksummed) accounts in one computation: each chain pinned once, every
        account's balances in shared multicall batches, feeds read once per chain."""
        per_chain = await asyncio.gather(
            *(read_chain_many(self.config, a, accounts) for a in self.adapters.values())
        )
        return {acc: [states[i] for states in per_chain] for i, acc in enumerate(accounts)}

    async def assess(self, address: str) -> Assessment:
        """Every chain pinned once and read in one batch, then valued (METHOD.md §2-§4)."""
        account = parse_account(address)
        states = await self.read(account)
        return assess(self.config, states, account, await self.estimates())

    async def estimates(self) -> RiskEstimates | None:
        """§6 parameters from the history store (cached there), or None without one."""
        if self.history is None:
            return None
        return await asyncio.to_thread(self.history.estimates, self.config)

    async def margin(self, address: str, target: str | int | None = None) -> MarginReport:
        name = self.target(target)
        return margin_report(await self.assess(address), name)

    async def capacity(
        self, address: str, target: str | int | None = None, asset: str | None = None
    ) -> CapacityReport:
        name = self.target(target)
        return capacity_report(await self.assess(address), name, asset)

    async def stress(self, address: str) -> StressReport:
        return stress_report(await self.assess(address))
