"""METHOD.md §7 attribution as served: in every margin report, the positions' 6-decimal
`margin_usd` strings add up digit for digit to `margin_requirement_usd`, and so do the
chains'. Property-tested on generated holdings of the devnet's risk config (its real
assets, representations, latencies and parameters), with hedged and over-hedged books
(collateral a bridge away, same-asset debt on the target) and with debt that cannot be
valued (§4: no no-debt cap). Pure: no chain is read.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from crossmargin.core.config import Config, RepresentationConfig, load_config
from crossmargin.pipeline.margin import margin_report
from crossmargin.pipeline.report import ChainSummary, MarginReport
from crossmargin.pipeline.value import Assessment, Valued

CONFIG: Config = load_config(
    Path(__file__).resolve().parents[2] / "configs" / "devnet.toml", env={}
)
PRICES = {"ETH": Fraction(3000), "BTC": Fraction(60000), "USDC": Fraction(1)}
SETTINGS = settings(max_examples=150, deadline=None)


def _valued(rep: RepresentationConfig, usd: Fraction) -> Valued:
    """A position of about `usd` (> 0) in `rep`, as whole base units."""
    price = PRICES[rep.asset] * Fraction(997, 1000)  # not a round number
    raw = max(1, int(usd / price * 10**rep.decimals))
    value = Fraction(raw, 10**rep.decimals) * price
    chain_id = CONFIG.chain(rep.chain).chain_id
    return Valued(chain_id, rep, raw, price, value if rep.kind == "collateral" else -value)


USD = st.fractions(min_value=Fraction(1, 100), max_value=Fraction(10**8), max_denominator=10**6)


@st.composite
def holdings(draw: st.DrawFn) -> list[Valued]:
    """Any subset of the configured representations with any amounts, plus a hedge:
    collateral of one asset and 0.5-3x as much debt of that asset on another chain."""
    reps = CONFIG.representations
    chosen = draw(st.lists(st.sampled_from(reps), max_size=8, unique=True))
    out = [_valued(r, draw(USD)) for r in chosen]
    debts = [r for r in reps if r.kind == "debt"]
    if debts and draw(st.booleans()):
        debt = draw(st.sampled_from(debts))
        colls = [r for r in reps if r.kind == "collateral" and r.asset == debt.asset]
        coll = draw(st.sampled_from(colls))
        amount = draw(USD)
        ratio = draw(st.fractions(Fraction(1, 2), Fraction(3), max_denominator=1000))
        out += [_valued(coll, amount), _valued(debt, amount * ratio)]
    return out


def assessment(valued: list[Valued], gaps: list[str], config: Config = CONFIG) -> Assessment:
    rows = [
        ChainSummary(
            chain_id=c.chain_id, name=c.name, status="ok", collateral_usd=None, debt_usd=None
        )
        for c in CONFIG.chains
    ]
    return Assessment(config, "0x" + "11" * 20, {}, valued, [], [], rows, [], gaps, bool(gaps))


def assert_exact(report: MarginReport) -> None:
    m = report.totals.margin_requirement_usd
    assert m is not None
    shares = [p.margin_usd for p in report.positions]
    assert all(s is not None for s in shares)
    assert sum((Fraction(s) for s in shares if s), Fraction(0)) == Fraction(m)
    chains = [c.margin_usd for c in report.chains]
    assert sum((Fraction(c) for c in chains if c), Fraction(0)) == Fraction(m)


@SETTINGS
@given(holdings(), st.sampled_from([c.name for c in CONFIG.chains]), st.booleans())
def test_served_shares_add_up_exactly(valued: list[Valued], target: str, hidden: bool) -> None:
    gaps = ["a debt could not be read"] if hidden else []
    report = margin_report(assessment(valued, gaps), target)
    assert_exact(report)
    if hidden:  # §4: debt-dependent totals are null, the requirement is not capped
        t = report.totals
        assert (t.debt_usd, t.equity_usd, t.free_margin_usd, t.health) == (None,) * 4
        assert t.liquidatable is None
        total = sum((Fraction(v) for v in report.haircuts.model_dump().values() if v), Fraction(0))
        assert t.margin_requirement_usd is not None
        assert abs(Fraction(t.margin_requirement_usd) - total) <= Fraction(6, 10**6)


@SETTINGS
@given(st.sampled_from([c.name for c in CONFIG.chains]), USD, st.data())
def test_no_debt_cap_is_exactly_the_collateral(
    target: str, usd: Fraction, data: st.DataObject
) -> None:
    # a position whose components exceed its value (hypothetically 200% vol): M is capped
    # at the collateral exactly, free margin is exactly 0, and the one share is all of M
    coll = [r for r in CONFIG.representations if r.kind == "collateral" and r.asset == "ETH"]
    rep = data.draw(st.sampled_from(coll))
    wild = CONFIG.model_copy(
        update={
            "assets": [
                a.model_copy(update={"sigma": 2.0}) if a.symbol == "ETH" else a
                for a in CONFIG.assets
            ]
        }
    )
    report = margin_report(assessment([_valued(rep, usd)], [], wild), target)
    t = report.totals
    assert t.margin_requirement_usd == t.collateral_usd
    assert t.free_margin_usd == "0.000000"
    assert t.liquidatable is False
    assert_exact(report)
