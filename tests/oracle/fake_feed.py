"""An in-memory Chainlink proxy with phases behind the `ChainReader` seam (no chain).

Answers the calls the oracle sends (latestRoundData, decimals, getRoundData,
phaseAggregators, latestRound) from a list of rounds, as a real proxy would at a pinned
block: rounds updated after the pin's timestamp do not exist yet; missing rounds revert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from eth_utils.abi import function_signature_to_4byte_selector as sel

from adapters.calls import Call, CallResult
from adapters.evm import BlockPin
from crossmargin.core.config import ChainConfig
from crossmargin.core.errors import TransportError

LATEST = sel("latestRoundData()")
DECIMALS = sel("decimals()")
GET_ROUND = sel("getRoundData(uint80)")
PHASE_AGG = sel("phaseAggregators(uint16)")
LATEST_ROUND = sel("latestRound()")
REVERT = CallResult(False, b"")


@dataclass(frozen=True)
class FakeRound:
    phase: int
    agg_round: int
    answer: int
    updated_at: int
    missing: bool = False  # getRoundData reverts for it

    @property
    def round_id(self) -> int:
        return (self.phase << 64) | self.agg_round


def _words(*values: int) -> bytes:
    return b"".join((v % (1 << 256)).to_bytes(32, "big") for v in values)


@dataclass
class FakeProxy:
    address: str
    rounds: list[FakeRound]
    decimals: int = 8

    def aggregator(self, phase: int) -> str:
        return "0x" + self.address[2:34].lower() + f"{phase:08x}"

    def owns(self, target: str) -> bool:
        return target == self.address or target.lower().startswith(
            "0x" + self.address[2:34].lower()
        )

    def visible(self, ts: int) -> list[FakeRound]:
        return [r for r in self.rounds if r.updated_at <= ts]

    def answer(self, call: Call, ts: int) -> CallResult:
        rounds = self.visible(ts)
        sel4, arg = call.data[:4], call.data[4:]
        if call.target == self.address:
            if sel4 == DECIMALS:
                return CallResult(True, _words(self.decimals))
            if sel4 == LATEST:
                r = rounds[-1]
                return CallResult(
                    True, _words(r.round_id, r.answer, r.updated_at, r.updated_at, r.round_id)
                )
            if sel4 == GET_ROUND:
                rid = int.from_bytes(arg, "big")
                for r in rounds:
                    if r.round_id == rid and not r.missing:
                        return CallResult(
                            True,
                            _words(rid, r.answer, r.updated_at, r.updated_at, rid),
                        )
                return REVERT
            if sel4 == PHASE_AGG:
                phase = int.from_bytes(arg, "big")
                known = {r.phase for r in rounds}
                addr = self.aggregator(phase) if phase in known else "0x" + "00" * 20
                return CallResult(True, _words(int(addr, 16)))
        for phase in {r.phase for r in rounds}:
            if call.target.lower() == self.aggregator(phase) and sel4 == LATEST_ROUND:
                last = max(r.agg_round for r in rounds if r.phase == phase)
                return CallResult(True, _words(last))
        return REVERT


@dataclass
class FakeReader:
    """`ChainReader` over fake proxies at a settable time; can fail after n reads."""

    chain: ChainConfig
    proxies: Sequence[FakeProxy]
    now: int
    fail_after: int | None = None
    reads: int = 0
    calls: list[int] = field(default_factory=list)

    async def pin(self) -> BlockPin:
        return BlockPin(self.chain.chain_id, self.now // 12, "0x" + "ab" * 32, self.now)

    async def read(self, calls: list[Call], pin: BlockPin) -> list[CallResult]:
        if self.fail_after is not None and self.reads >= self.fail_after:
            raise TransportError(self.chain.chain_id, "injected failure")
        self.reads += 1
        self.calls.append(len(calls))
        out = []
        for call in calls:
            proxy = next((p for p in self.proxies if p.owns(call.target)), None)
            out.append(REVERT if proxy is None else proxy.answer(call, pin.timestamp))
        return out
