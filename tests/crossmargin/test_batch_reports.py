"""The batch entry points (`assess_many`, `margin_reports`) against the one-account path
and a literal per-account valuation: a batch of N gives exactly the reports of N batches
of one, whatever the mix of accounts, and its exact totals are §4 written out."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from adapters.balances import BalanceRead
from adapters.calls import RoundData
from adapters.evm import BlockPin
from crossmargin.core.codes import Code
from crossmargin.core.config import load_config
from crossmargin.pipeline import figures
from crossmargin.pipeline.figures import Request, compute, compute_many
from crossmargin.pipeline.margin import margin_report, margin_reports
from crossmargin.pipeline.read import ChainState
from crossmargin.pipeline.report import fixed6, sum6
from crossmargin.pipeline.risk import run_risk_many
from crossmargin.pipeline.value import assess, assess_many
from oracle.validity import FeedReading

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_config(ROOT / "configs" / "devnet.toml", env={})
NOW = 1_800_000_000
ANSWERS = {"ETH": 3000 * 10**8, "BTC": 60_000 * 10**8, "USDC": 99_990_000}
FEEDS = {
    c.name: [
        FeedReading(a.symbol, c.chain_id, f.address, f.decimals, NOW,
                    RoundData(7, ANSWERS[a.symbol], NOW, NOW, 7), None)
        for a in CONFIG.assets
        for f in a.feeds
        if f.chain == c.name
    ]
    for c in CONFIG.chains
}  # fmt: skip
PINS = {c.name: BlockPin(c.chain_id, 100, "0x" + "ab" * 32, NOW) for c in CONFIG.chains}
DOWN = "node_unreachable: chain is down"


@st.composite
def account_states(draw: st.DrawFn) -> list[ChainState]:
    """One account over the 4 devnet chains: empty, held or unreadable balances, and now
    and then a chain that could not be read. Pins and feed lists are shared, as a batch
    read shares them."""
    states = []
    for chain in CONFIG.chains:
        if draw(st.integers(0, 9)) == 0:
            states.append(ChainState(chain, None, DOWN))
            continue
        reads = []
        for rep in (r for r in CONFIG.representations if r.chain == chain.name):
            raw = draw(
                st.one_of(
                    st.just(0),
                    st.integers(1, 10 ** (rep.decimals + 5)),
                    st.none(),
                )
            )
            error = "call reverted" if raw is None else None
            reads.append(BalanceRead(rep, raw, error, rep.decimals))
        states.append(ChainState(chain, PINS[chain.name], None, reads, FEEDS[chain.name]))
    return states


@settings(max_examples=40, deadline=None)
@given(st.lists(account_states(), min_size=1, max_size=6))
def test_batch_of_n_is_n_batches_of_one(accounts: list[list[ChainState]]) -> None:
    target = CONFIG.settlement_chain
    names = [f"0x{k + 1:040x}" for k in range(len(accounts))]
    batch = margin_reports(assess_many(CONFIG, dict(zip(names, accounts, strict=True))), target)
    singles = [
        margin_report(assess(CONFIG, states, name), target)
        for name, states in zip(names, accounts, strict=True)
    ]
    assert [r.model_dump_json() for r in batch] == [r.model_dump_json() for r in singles]
    for report, states in zip(batch, accounts, strict=True):
        _check_literal_totals(report.totals.collateral_usd, report.totals.debt_usd, states)
        served = [p.margin_usd or "" for p in report.positions if p.status == Code.OK]
        assert sum6(served) == report.totals.margin_requirement_usd  # §7: shares sum to M


def _empty() -> list[ChainState]:
    return [
        ChainState(
            c,
            PINS[c.name],
            None,
            [
                BalanceRead(r, 0, None, r.decimals)
                for r in CONFIG.representations
                if r.chain == c.name
            ],
            FEEDS[c.name],
        )
        for c in CONFIG.chains
    ]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(account_states(), min_size=1, max_size=4),
    st.lists(st.integers(0, 3), max_size=5),
)
def test_alike_accounts_are_computed_once_each_with_its_own_report(
    accounts: list[list[ChainState]], copies: list[int]
) -> None:
    """`compute_many` values accounts with alike states (equal balances at the batch's
    pins: empty accounts, here also copies) once; each gets exactly the report it gets
    computed alone, its own address in it."""
    states = {f"0x{k + 1:040x}": v for k, v in enumerate([*accounts, _empty()])}
    twins = {f"0x{k + 100:040x}" for k in range(len(copies) + 1)}
    for name, k in zip(sorted(twins), [len(accounts), *copies], strict=True):
        source = list(states.values())[k % (len(accounts) + 1)]
        states[name] = [dataclasses.replace(s, balances=list(s.balances)) for s in source]
    assert twins <= set(figures._twins(list(states), states))
    requests = [Request("margin", a, t) for a in states for t in ("base", "arbitrum")]
    for req, got in zip(requests, compute_many(CONFIG, requests, states), strict=True):
        alone = compute(CONFIG, states[req.account], req)
        assert not isinstance(got, Exception)
        assert got.model_dump_json() == alone.model_dump_json()
        assert got.account == req.account


def _check_literal_totals(collateral: str, debt: str | None, states: list[ChainState]) -> None:
    """§4 written out: collateral = sum of raw / 10^d * P_coll over readable collateral,
    debt the same at P_debt; null debt exactly when a debt position could not be read or a
    chain with debt representations is down."""
    price = {a: Fraction(ANSWERS[a], 10**8) for a in ANSWERS}  # one valid feed value each
    coll = Fraction(0)
    owed = Fraction(0)
    hidden = False
    for state in states:
        if not state.available:
            hidden = hidden or any(
                r.kind == "debt" for r in CONFIG.representations if r.chain == state.chain.name
            )
            continue
        for b in state.balances:
            if b.raw_amount is None:
                hidden = hidden or b.rep.kind == "debt"
                continue
            value = Fraction(b.raw_amount, 10**b.rep.decimals) * price[b.rep.asset]
            if b.rep.kind == "collateral":
                coll += value
            else:
                owed += value
    assert collateral == fixed6(coll)
    assert debt == (None if hidden else fixed6(owed))


# ---------------------------------------------------------------- the fast paths


@settings(max_examples=30, deadline=None)
@given(st.lists(account_states(), min_size=1, max_size=5))
def test_fast_report_parts_are_the_slow_ones(accounts: list[list[ChainState]]) -> None:
    """margin.py builds its models without the validator (`report.trusted`), its totals
    from integer ratios and its risk figures in bulk (`BatchRiskOutcome.accounts`):
    every model is what the validator builds from its fields, every total the Fraction
    formula's, every figure the per-account `BatchMarginResult.account`'s."""
    target = CONFIG.settlement_chain
    names = [f"0x{k + 1:040x}" for k in range(len(accounts))]
    assessed = assess_many(CONFIG, dict(zip(names, accounts, strict=True)))
    risk = run_risk_many(
        CONFIG, [a.valued for a in assessed], target, None, [a.debt_unknown for a in assessed]
    )
    reports = margin_reports(assessed, target)
    for k, (a, fast, report) in enumerate(zip(assessed, risk.accounts(), reports, strict=True)):
        one = risk.result.account(k, risk.spans[k])
        assert (fast.capped, fast.requirement) == (one.capped, one.requirement)
        assert fast.components == tuple(one.components.as_dict().values())
        assert fast.shares == one.positions.total.tolist()
        assert fast.horizon == one.horizon.tolist()
        assert np.array_equal(fast.haircut, one.haircut, equal_nan=True)
        _check_validated(report)
        for row in report.chains:  # a chain's share of M: its positions' shares, summed
            if row.margin_usd is not None:
                mine = [p.margin_usd or "" for p in report.positions if p.chain_id == row.chain_id]
                assert row.margin_usd == sum6([m for m in mine if m])
        m = a.collateral if one.capped else Fraction(one.requirement)
        health = (a.collateral - m) / a.debt if a.debt > 0 else None
        known = not a.debt_unknown
        assert report.totals.margin_requirement_usd == fixed6(m)
        assert report.totals.equity_usd == (fixed6(a.collateral - a.debt) if known else None)
        assert report.totals.free_margin_usd == (
            fixed6(a.collateral - a.debt - m) if known else None
        )
        assert report.totals.health == (fixed6(health) if known else None)
        assert report.totals.liquidatable == (a.collateral - a.debt - m < 0 if known else None)


def _check_validated(model: BaseModel) -> None:
    """`model` and its models are what validation builds from their fields: equal, each
    field of the same type, the fields in declaration order, the same JSON."""
    cls = type(model)
    assert list(model.__dict__) == list(cls.model_fields)
    again = cls(**model.__dict__)
    assert model == again
    assert model.model_dump_json() == again.model_dump_json()
    for name in cls.model_fields:
        mine, theirs = getattr(model, name), getattr(again, name)
        assert type(mine) is type(theirs), (cls.__name__, name, type(mine))
        for part in mine if isinstance(mine, list) else [mine]:
            if isinstance(part, BaseModel):
                _check_validated(part)
