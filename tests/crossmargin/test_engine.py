"""The engine on in-memory chains (no anvil): a batch is one pin and one read per chain,
a single account is a batch of one with the same figures, a failure stays with its
request, and given pins are honoured."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from eth_utils.address import to_checksum_address
from fake_chain import FakeChain, fake_chains, unreachable
from hypothesis import given, settings
from hypothesis import strategies as st

from crossmargin.core.config import Config, load_config
from crossmargin.core.errors import InputError
from crossmargin.engine import Engine
from crossmargin.pipeline.figures import Request
from crossmargin.pipeline.report import MarginReport

CONFIG: Config = load_config(
    Path(__file__).resolve().parents[2] / "configs" / "devnet.toml", env={}
)
PRICES = {"ETH": 3000.0, "BTC": 60000.0, "USDC": 1.0}
COLLATERAL = [r for r in CONFIG.representations if r.kind == "collateral"]
DEBT = [r for r in CONFIG.representations if r.kind == "debt"]


def account(i: int) -> str:
    return to_checksum_address(f"0x{i + 1:040x}")


def chains() -> dict[str, FakeChain]:
    return fake_chains(CONFIG, PRICES)


def fund(fake: dict[str, FakeChain], owner: str, holdings: list[tuple[int, int]]) -> None:
    """(representation index, whole units) over every representation of the config."""
    for rep_i, units in holdings:
        rep = CONFIG.representations[rep_i]
        fake[rep.chain].set_balance(rep.address, owner, units * 10**rep.decimals)


def margin(results: list[object]) -> list[MarginReport]:
    out = []
    for r in results:
        report = r.unwrap()  # type: ignore[attr-defined]
        assert isinstance(report, MarginReport)
        out.append(report)
    return out


@pytest.mark.asyncio
async def test_a_batch_is_one_pin_and_one_read_per_chain() -> None:
    fake = chains()
    accounts = [account(i) for i in range(300)]
    fund(fake, accounts[1], [(0, 2)])  # ethereum native: 2 ETH
    engine = Engine(CONFIG, fake)
    results = await engine.run([Request("margin", a, "ethereum") for a in accounts])
    assert [f.pins for f in fake.values()] == [1] * len(fake)
    assert [f.reads for f in fake.values()] == [1] * len(fake)
    reports = margin(results)
    assert [r.account for r in reports] == accounts
    assert Decimal(reports[0].totals.collateral_usd) == 0
    assert reports[1].status == "ok"
    assert Decimal(reports[1].totals.collateral_usd) == 6000


@pytest.mark.asyncio
async def test_requests_of_one_account_share_its_read() -> None:
    fake = chains()
    a = account(7)
    fund(fake, a, [(0, 1)])
    engine = Engine(CONFIG, fake)
    reqs = [Request("margin", a, "ethereum"), Request("stress", a), Request("margin", a, "base")]
    results = await engine.run(reqs)
    assert [r.request for r in results] == reqs
    assert all(r.error is None for r in results)
    assert [f.reads for f in fake.values()] == [1] * len(fake)
    alone = chains()
    await Engine(CONFIG, alone).run(reqs[:1])
    assert [f.calls for f in fake.values()] == [f.calls for f in alone.values()]


@pytest.mark.asyncio
async def test_a_failure_is_its_requests_alone() -> None:
    fake = chains()
    engine = Engine(CONFIG, fake)
    a, b = account(1), account(2)
    results = await engine.run(
        [Request("capacity", a, "ethereum", "NOPE"), Request("margin", b, "ethereum")]
    )
    assert isinstance(results[0].error, InputError)
    assert results[0].report is None
    with pytest.raises(InputError):
        results[0].unwrap()
    assert results[1].error is None


@pytest.mark.asyncio
async def test_an_unreachable_chain_is_partial_not_a_failure() -> None:
    fake = chains()
    a = account(3)
    fund(fake, a, [(0, 1)])
    fake["base"].down = unreachable(fake["base"].chain)
    report = await Engine(CONFIG, fake).margin(a, "ethereum")
    assert report.status == "partial"
    down = {c.name: c for c in report.chains if c.status != "ok"}
    assert set(down) == {"base"}


@pytest.mark.asyncio
async def test_given_pins_are_honoured() -> None:
    fake = chains()
    a = account(4)
    engine = Engine(CONFIG, fake)
    before = await engine.pin()
    fund(fake, a, [(0, 5)])
    old = margin(await engine.run([Request("margin", a, "ethereum")], pins=before))[0]
    new = margin(await engine.run([Request("margin", a, "ethereum")]))[0]
    assert Decimal(old.totals.collateral_usd) == 0
    assert Decimal(new.totals.collateral_usd) == 15000
    reason = "node_unreachable: no endpoint of chain base answered"
    pins = {**before, "base": reason}
    [states] = await engine.read([a], pins)
    assert {s.chain.name: s.error for s in states}["base"] == reason


def test_every_chain_needs_a_reader() -> None:
    fake = chains()
    del fake["base"]
    with pytest.raises(ValueError, match="base"):
        Engine(CONFIG, fake)


def test_unknown_target_is_bad_input() -> None:
    with pytest.raises(InputError, match="unknown target chain"):
        Engine(CONFIG, chains()).target("moon")


holdings = st.lists(
    st.tuples(st.integers(0, len(CONFIG.representations) - 1), st.integers(0, 10**6)),
    max_size=6,
)


@settings(max_examples=25, deadline=None)
@given(st.lists(holdings, min_size=1, max_size=6), st.sampled_from([c.name for c in CONFIG.chains]))
def test_a_batch_gives_each_account_its_batch_of_one_figures(
    books: list[list[tuple[int, int]]], target: str
) -> None:
    """Batching changes how chains are read, never a figure (one formula per figure)."""
    fake = chains()
    accounts = [account(100 + i) for i in range(len(books))]
    for a, book in zip(accounts, books, strict=True):
        fund(fake, a, book)
    engine = Engine(CONFIG, fake)

    async def go() -> tuple[list[MarginReport], list[MarginReport]]:
        pins = await engine.pin()
        batch = margin(
            await engine.run([Request("margin", a, target) for a in accounts], None, pins)
        )
        ones = [
            margin(await engine.run([Request("margin", a, target)], None, pins))[0]
            for a in accounts
        ]
        return batch, ones

    batch, ones = asyncio.run(go())
    assert [r.model_dump() for r in batch] == [r.model_dump() for r in ones]


@pytest.mark.asyncio
async def test_an_empty_batch_reads_nothing() -> None:
    fake = chains()
    assert await Engine(CONFIG, fake).run([]) == []
    assert [f.pins for f in fake.values()] == [0] * len(fake)


@pytest.mark.asyncio
async def test_per_chain_addresses_read_each_chain_at_its_address() -> None:
    """§1 on the fake chains: the balance on base is the mapped address's; the request
    says so per chain, and another account of the same batch is read as before."""
    fake = chains()
    a, b, wallet = account(1), account(2), account(3)
    base = next(i for i, r in enumerate(CONFIG.representations) if r.chain == "base")
    fund(fake, wallet, [(base, 4)])
    fund(fake, a, [(base, 1)])
    fund(fake, b, [(base, 1)])
    engine = Engine(CONFIG, fake)
    mapped = Request("margin", a, "ethereum", addresses=engine.addresses(a, {"base": wallet}))
    plain = Request("margin", b, "ethereum")
    ra, rb = margin(await engine.run([mapped, plain]))
    rows = {c.name: c for c in ra.chains}
    assert rows["base"].address == wallet
    assert rows["ethereum"].address == a
    assert rows["base"].contract is None  # a fake reader cannot say
    assert all(c.address is None for c in rb.chains)
    rep = CONFIG.representations[base]
    assert [
        p.raw_amount
        for p in ra.positions
        if p.token == rep.address and p.chain_id == rows["base"].chain_id
    ] == [str(4 * 10**rep.decimals)]
    assert [
        p.raw_amount
        for p in rb.positions
        if p.token == rep.address and p.chain_id == rows["base"].chain_id
    ] == [str(10**rep.decimals)]


def test_an_engine_leaves_its_hosts_collector_alone() -> None:
    """Building an engine changes nothing of the process's cyclic collector: a library
    does not tune its host's GC (the console script does, in a process of its own)."""
    import gc

    before = (gc.get_threshold(), gc.get_freeze_count())
    Engine(CONFIG, fake_chains(CONFIG, PRICES))
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_the_console_script_collects_young_objects_less_often() -> None:
    """The `crossmargin` console script tunes the collector once for its process
    (`collect_less`): the start-up heap frozen out of its walks, young collections every
    `YOUNG_GC_THRESHOLD` allocations instead of CPython's 700."""
    import subprocess
    import sys

    from crossmargin import engine as e

    probe = (
        "import gc, importlib\n"
        "m = importlib.import_module('crossmargin.cli.main')\n"
        "m.main = lambda argv=None: print(gc.get_threshold()[0], gc.get_freeze_count()) or 0\n"
        "m.console()\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    young, frozen = map(int, out.stdout.split())
    assert young >= e.YOUNG_GC_THRESHOLD > 700
    assert frozen > 0
