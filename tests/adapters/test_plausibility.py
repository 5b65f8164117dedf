"""METHOD.md §4 plausibility: every token's totalSupply() rides in the balances' multicall
(once per token), and a balance above it is `implausible`: collateral counts 0 with a
warning, debt counts in full. Pure tests of the call plan and its decoding, then a
devnet of this module's own with hostile tokens (contracts/src/weird/LyingToken.sol)
deployed by the test, checked in the margin report, its RPC cost and its snapshot.

| token (LyingToken, USDC) | balance vs totalSupply() | expected |
|---|---|---|
| LIE | one unit above | implausible collateral, counted 0 |
| FAIR | equal | counted (and implausible once above max_position_usd) |
| NOSUP | totalSupply() reverts | implausible collateral, counted 0 |
| LIEDEBT (debt) | far above | debt counted in full, flagged |
| LIEVAULT (erc4626 over USDC) | shares one unit above | implausible collateral, counted 0 |
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from adapter_helpers import read_states, send
from aiohttp.test_utils import TestClient, TestServer

from adapters import calls as c
from adapters.balances import BalancePlan
from adapters.calls import Call, CallResult
from adapters.evm import BlockPin, EvmAdapter
from api.app import create_app
from api.audit import verify
from api.store import Store
from crossmargin.cli.render import render_margin
from crossmargin.core.canonical import canonical
from crossmargin.core.config import ChainConfig, Config, RepresentationConfig, load_config
from crossmargin.engine import Engine
from crossmargin.pipeline.report import MarginReport, Position, fixed6
from crossmargin.pipeline.stored import expand, replay, replay_config
from devnet import BackgroundDevnet, Devnet
from devnet.evm import DEPLOYER, artifact, calldata, deploy_data
from devnet.rpc import Rpc

ROOT = Path(__file__).resolve().parents[2]
CHAIN = "ethereum"
ACCOUNT = c.checksum("0x00000000000000000000000000000000000b0b01")
U = 10**6  # USDC units
LIES = ("LIE", "FAIR", "NOSUP", "LIEDEBT", "LIEVAULT")


# ---------------------------------------------------------------- pure: plan and decode


def _words(*values: int) -> bytes:
    return b"".join(v.to_bytes(32, "big") for v in values)


class Answers:
    """A `ChainReader` answering (target, selector) from a table; unknown calls revert."""

    def __init__(self, chain: ChainConfig, table: dict[tuple[str, bytes], CallResult]) -> None:
        self.chain = chain
        self.table = table
        self.sent: list[list[Call]] = []

    async def pin(self) -> BlockPin:
        return BlockPin(self.chain.chain_id, 1, "0x" + "ab" * 32, 1_800_000_000)

    async def read(self, calls: list[Call], pin: BlockPin) -> list[CallResult]:
        self.sent.append(calls)
        return [self.table.get((x.target, x.data[:4]), CallResult(False, b"")) for x in calls]


TOKEN = c.checksum("0x" + "11" * 20)
VAULT = c.checksum("0x" + "22" * 20)
UNDERLYING = c.checksum("0x" + "33" * 20)
OTHERS = [c.checksum(f"0x{i:040x}") for i in range(1, 6)]


def _reps() -> list[RepresentationConfig]:
    def rep(symbol: str, address: str, **kw: Any) -> RepresentationConfig:
        return RepresentationConfig(chain=CHAIN, asset="USDC", symbol=symbol, address=address, **kw)

    return [
        rep("ETH", "native", decimals=18),
        rep("TOK", TOKEN, decimals=6),
        rep("VLT", VAULT, decimals=6, standard="erc4626"),
    ]


def test_total_supply_is_one_call_per_token_whatever_the_number_of_accounts() -> None:
    reps = _reps()
    for n in (1, 2, 5):
        plan = BalancePlan(reps, OTHERS[:n])
        supply = [x.target for x in plan.calls if x.data == c.SEL_TOTAL_SUPPLY]
        assert sorted(supply) == sorted({TOKEN, VAULT})  # once per token, not per account
        assert len(plan.calls) == 2 * 2 + 1 + n * len(reps)  # decimals+supply, asset(), rows
    one, five = BalancePlan(reps, OTHERS[:1]), BalancePlan(reps, OTHERS)
    assert len(five.calls) - len(one.calls) == 4 * len(reps)  # an account adds its rows only


@pytest.mark.asyncio
async def test_supply_is_decoded_per_token_and_carried_by_every_read() -> None:
    config = load_config(ROOT / "configs" / "devnet.toml", env={})
    chain = config.chain(CHAIN)

    def ok(*values: int) -> CallResult:
        return CallResult(True, _words(*values))

    table = {
        (TOKEN, c.SEL_DECIMALS): ok(6),
        (TOKEN, c.SEL_TOTAL_SUPPLY): ok(1000 * U),
        (TOKEN, c.SEL_BALANCE_OF): ok(1001 * U),
        (VAULT, c.SEL_DECIMALS): ok(9),
        (VAULT, c.SEL_TOTAL_SUPPLY): ok(50 * 10**9),
        (VAULT, c.SEL_ASSET): ok(int(UNDERLYING, 16)),
        (VAULT, c.SEL_BALANCE_OF): ok(70 * 10**9),
        (VAULT, c.SEL_CONVERT_TO_ASSETS): ok(70 * U),
        (UNDERLYING, c.SEL_DECIMALS): ok(6),
        (c.MULTICALL3, c.SEL_GET_ETH_BALANCE): ok(10**18),
    }
    reader = Answers(chain, table)
    plan = BalancePlan(_reps(), OTHERS[:2])
    pin = await reader.pin()
    reads = await plan.finish(reader, await reader.read(plan.calls, pin), pin)
    for row in reads.values():
        eth, tok, vlt = row
        assert (eth.raw_amount, eth.total_supply, eth.supply_error) == (10**18, None, None)
        assert (tok.raw_amount, tok.total_supply, tok.supply_error) == (1001 * U, 1000 * U, None)
        assert (vlt.raw_amount, vlt.shares, vlt.total_supply) == (70 * U, 70 * 10**9, 50 * 10**9)
        assert vlt.error is None
    assert len(reader.sent) == 2  # balances + supplies, then the vault conversion

    # A totalSupply() that reverts or returns short data: the balance is still read,
    # and the read says why the supply is unknown (never a supply of 0).
    for bad, needle in ((CallResult(False, b""), "reverted"), (CallResult(True, b"\1"), "got 1")):
        broken = Answers(chain, {**table, (TOKEN, c.SEL_TOTAL_SUPPLY): bad})
        res = await broken.read(plan.calls, pin)
        tok = plan.decode(res)[OTHERS[0]][1]
        assert (tok.raw_amount, tok.total_supply, tok.error) == (1001 * U, None, None)
        assert tok.supply_error is not None
        assert "TOK totalSupply()" in tok.supply_error
        assert needle in tok.supply_error


def test_empty_positions_decode_alike_however_the_zero_word_arrives() -> None:
    """A zero balance decodes to the same read whether the reader hands back the shared
    `ZERO_RESULT` (adapters) or an equal value of its own (a fake), a whole empty row
    or one zero beside a holding; the rows are each account's own lists."""
    plan = BalancePlan(_reps(), OTHERS[:4])
    token_level = [
        CallResult(True, _words(6)),  # TOK decimals
        CallResult(True, _words(1000 * U)),  # TOK totalSupply
        CallResult(True, _words(6)),  # VLT decimals
        CallResult(True, _words(50 * 10**9)),  # VLT totalSupply
        CallResult(True, _words(int(UNDERLYING, 16))),  # VLT asset()
    ]
    own_zero = CallResult(True, bytes(32))
    assert own_zero is not c.ZERO_RESULT
    rows = [
        [c.ZERO_RESULT] * 3,
        [own_zero] * 3,
        [c.ZERO_RESULT, CallResult(True, _words(5 * U)), own_zero],
        [CallResult(False, b""), own_zero, c.ZERO_RESULT],
    ]
    reads = plan.decode(token_level + [r for row in rows for r in row])
    empty, same, holder, broken = (reads[a] for a in OTHERS[:4])
    assert empty == same
    assert empty is not same
    eth, tok, vlt = empty
    assert (eth.raw_amount, eth.onchain_decimals, eth.error) == (0, 18, None)
    assert (tok.raw_amount, tok.onchain_decimals, tok.total_supply) == (0, 6, 1000 * U)
    assert (vlt.raw_amount, vlt.shares, vlt.total_supply, vlt.error) == (0, 0, 50 * 10**9, None)
    assert holder[0] == eth
    assert holder[2] == vlt
    assert (holder[1].raw_amount, holder[1].total_supply) == (5 * U, 1000 * U)
    assert broken[0].raw_amount is None
    assert "reverted" in (broken[0].error or "")
    assert broken[1:] == empty[1:]


# ---------------------------------------------------------------- devnet


@dataclass
class Hostile:
    net: Devnet
    config: Config
    address: dict[str, str]


async def _deploy(net: Devnet) -> dict[str, str]:
    usdc = next(
        r.address for r in net.config.representations if r.chain == CHAIN and r.symbol == "USDC"
    )
    async with aiohttp.ClientSession() as session:
        rpc = Rpc(session, net.rpc_url(CHAIN), net.config.chain(CHAIN).chain_id)
        art = artifact("LyingToken")
        types = ["string", "string", "uint8", "address"]
        zero = "0x" + "00" * 20
        deployed = await send(
            rpc,
            DEPLOYER,
            [
                (None, deploy_data(art, types, [s, s, 6, usdc if s == "LIEVAULT" else zero]))
                for s in LIES
            ],
        )
        a = dict(zip(LIES, deployed, strict=True))
        setup = {  # symbol: (balance, supply, supply reverts)
            "LIE": (1000 * U, 1000 * U - 1, False),
            "FAIR": (2000 * U, 2000 * U, False),
            "NOSUP": (300 * U, 300 * U, True),
            "LIEDEBT": (500 * U, 1, False),
            "LIEVAULT": (700 * U, 700 * U - 1, False),
        }
        txs: list[tuple[str | None, str]] = []
        for symbol, (balance, supply, reverts) in setup.items():
            txs.append((a[symbol], calldata("setBalance(address,uint256)", ACCOUNT, balance)))
            txs.append((a[symbol], calldata("setTotalSupply(uint256,bool)", supply, reverts)))
        await send(rpc, DEPLOYER, txs)
    return a


def _config(config: Config, a: dict[str, str]) -> Config:
    def rep(symbol: str, **kw: Any) -> RepresentationConfig:
        return RepresentationConfig(
            chain=CHAIN, asset="USDC", symbol=symbol, address=a[symbol], decimals=6, **kw
        )

    extra = [
        rep("LIE"),
        rep("FAIR"),
        rep("NOSUP"),
        rep("LIEDEBT", kind="debt"),
        rep("LIEVAULT", standard="erc4626"),
    ]
    return config.model_copy(update={"representations": [*config.representations, *extra]})


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    with BackgroundDevnet(state_dir=tmp_path_factory.mktemp("lying-devnet"), keeper=False) as n:
        address = asyncio.run(_deploy(n))
        yield Hostile(n, _config(n.config, address), address)


def _margin(config: Config) -> MarginReport:
    async def run() -> MarginReport:
        async with Engine.connect(config) as engine:
            return await engine.margin(ACCOUNT, CHAIN)

    return asyncio.run(run())


def _mine(report: MarginReport) -> dict[str, Position]:
    return {p.symbol: p for p in report.positions if p.symbol in LIES}


def _usdc(report: MarginReport) -> tuple[Fraction, Fraction]:
    usdc = next(p for p in report.prices if p.asset == "USDC")
    assert usdc.collateral_usd is not None
    assert usdc.debt_usd is not None
    low = min(Fraction(int(s.answer or 0), 10**s.decimals) for s in usdc.sources if s.valid)
    high = max(Fraction(int(s.answer or 0), 10**s.decimals) for s in usdc.sources if s.valid)
    assert (usdc.collateral_usd, usdc.debt_usd) == (fixed6(low), fixed6(high))
    return low, high


def test_balances_above_total_supply_in_the_margin_report(hostile: Hostile) -> None:
    report = _margin(hostile.config)
    low, high = _usdc(report)
    p = _mine(report)
    assert set(p) == set(LIES)  # every position is listed
    for symbol, raw, why in (
        ("LIE", 1000 * U, f"balance {1000 * U} above totalSupply() {1000 * U - 1}"),
        ("NOSUP", 300 * U, "totalSupply() unreadable (NOSUP totalSupply(): call reverted)"),
        ("LIEVAULT", 700 * U, f"shares {700 * U} above totalSupply() {700 * U - 1}"),
    ):
        assert (p[symbol].status, p[symbol].reason) == ("implausible", why)
        assert (p[symbol].raw_amount, p[symbol].value_usd) == (str(raw), "0.000000")
        assert p[symbol].price_usd == fixed6(low)  # shown, not counted
        assert p[symbol].margin_usd is None
    assert (p["FAIR"].status, p["FAIR"].reason) == ("ok", None)
    assert p["FAIR"].value_usd == fixed6(2000 * low)
    debt = p["LIEDEBT"]  # debt above the supply still counts in full
    assert (debt.status, debt.value_usd) == ("ok", fixed6(-500 * high))
    assert debt.reason == f"balance {500 * U} above totalSupply() 1"

    assert report.totals.collateral_usd == fixed6(2000 * low)  # FAIR only
    assert report.totals.debt_usd == fixed6(500 * high)
    eth_row = next(ch for ch in report.chains if ch.name == CHAIN)
    assert eth_row.collateral_usd == fixed6(2000 * low)
    flagged = sorted(w.detail.split(" ")[0] for w in report.warnings if w.code == "implausible")
    assert flagged == ["LIE", "LIEDEBT", "LIEVAULT", "NOSUP"]
    details = {w.detail.split(" ")[0]: w.detail for w in report.warnings}
    assert details["LIE"].endswith("; counted 0")
    assert details["LIEDEBT"].endswith("; debt counted in full")
    assert report.status == "ok"  # nothing hidden: every figure is accounted for
    table = render_margin(report, width=200)  # the CLI says why, never a bare 0
    rows = {r.split()[1]: r.split() for r in table.splitlines() if r.startswith(" ethereum ")}
    assert [rows[x][5] for x in ("LIE", "NOSUP", "LIEVAULT")] == ["implausible"] * 3
    assert rows["LIEDEBT"][5] == fixed6(-500 * high)


def test_max_position_usd_flags_a_collateral_position_not_debt(hostile: Hostile) -> None:
    base = _margin(hostile.config)
    low, high = _usdc(base)
    fair = 2000 * low

    def capped(limit: float) -> MarginReport:
        usdc = hostile.config.asset("USDC").model_copy(update={"max_position_usd": limit})
        assets = [usdc if x.symbol == "USDC" else x for x in hostile.config.assets]
        return _margin(hostile.config.model_copy(update={"assets": assets}))

    above = capped(float(fair) + 0.01)
    assert _mine(above)["FAIR"].status == "ok"
    assert above.totals.collateral_usd == fixed6(fair)

    below = capped(float(fair) - 0.01)
    p = _mine(below)
    assert (p["FAIR"].status, p["FAIR"].value_usd) == ("implausible", "0.000000")
    assert (
        p["FAIR"].reason == f"worth {fixed6(fair)} USD, above max_position_usd {float(fair) - 0.01}"
    )
    assert below.totals.collateral_usd == "0.000000"
    assert p["LIEDEBT"].value_usd == fixed6(-500 * high)  # debt is never capped
    assert below.totals.debt_usd == fixed6(500 * high)
    assert sum(w.code == "implausible" for w in below.warnings) == 5


@pytest.mark.asyncio
async def test_total_supply_costs_no_request_per_account(hostile: Hostile) -> None:
    """One account or fifty: the same RPC requests per chain (pin, one multicall, the
    vault conversion), because totalSupply() is per token in the same multicall."""
    chain = hostile.config.chain(CHAIN)
    many = [ACCOUNT, *(c.checksum(f"0x{i:040x}") for i in range(1, 50))]
    counts = []
    async with aiohttp.ClientSession() as session:
        for accounts in ([ACCOUNT], many):
            adapter = EvmAdapter(chain, session)
            states = await read_states(hostile.config, chain, accounts, adapter=adapter)
            assert all(s.available for s in states)
            counts.append(adapter.rpc.requests)
    assert counts[0] == counts[1]
    lie = next(b for b in states[0].balances if b.rep.symbol == "LIE")
    assert (lie.raw_amount, lie.total_supply) == (1000 * U, 1000 * U - 1)


def test_snapshot_of_an_implausible_position_replays_byte_identically(
    hostile: Hostile, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'snapshots.db'}"

    async def serve() -> tuple[str, dict[str, Any]]:
        async with TestClient(TestServer(create_app(hostile.config, database=url))) as client:
            resp = await client.get(f"/v1/accounts/{ACCOUNT}/margin?target_chain={CHAIN}")
            assert resp.status == 200, await resp.text()
            return resp.headers["Snapshot-Id"], await resp.json()

    sid, body = asyncio.run(serve())
    assert {p["symbol"]: p["status"] for p in body["positions"] if p["symbol"] in LIES} == {
        "LIE": "implausible",
        "FAIR": "ok",
        "NOSUP": "implausible",
        "LIEDEBT": "ok",
        "LIEVAULT": "implausible",
    }
    store = Store.open(url)
    try:
        audit = verify(store, sid)
        found = store.get(sid)
        assert found is not None
        doc = expand(json.loads(found[1]), store.blobs_for(found[1]))
        config_text = store.get_config(doc["inputs"]["parameters"]["config_hash"])
    finally:
        store.close()
    assert audit is not None
    assert (audit.ok, audit.replayed) == (True, 1), audit.findings
    # The supplies are inputs of the snapshot, so replay does not need the chain.
    (l1,) = [s for s in doc["inputs"]["chains"] if s["chain"] == CHAIN]
    supplies = {b["rep"]["symbol"]: (b["total_supply"], b["supply_error"]) for b in l1["balances"]}
    assert supplies["LIE"] == (str(1000 * U - 1), None)
    assert supplies["NOSUP"] == (None, "NOSUP totalSupply(): call reverted")
    assert supplies["LIEVAULT"] == (str(700 * U - 1), None)
    assert config_text is not None
    _, outputs = replay(replay_config(config_text), doc)
    assert outputs == canonical(doc["outputs"]) == canonical(body)

    # Without the stored supply the replay differs: it is an input that shapes the figure.
    for b in l1["balances"]:
        if b["rep"]["symbol"] == "LIE":
            b["total_supply"] = str(10**30)
    _, changed = replay(replay_config(config_text), doc)
    assert changed != outputs
