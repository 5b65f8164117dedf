"""METHOD.md §11: USD figures are half-even to 6 decimals, exactly, at any magnitude."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from crossmargin.pipeline.report import fixed6, fixed6_ratio, split6


def _reference(value: Fraction) -> str:
    with localcontext() as ctx:
        ctx.prec = 200
        exact = Decimal(value.numerator) / Decimal(value.denominator)
        return str(exact.quantize(Decimal("0.000001"), rounding=ROUND_HALF_EVEN))


def test_ties_go_to_even() -> None:
    assert fixed6(Fraction(5, 10**7)) == "0.000000"
    assert fixed6(Fraction(15, 10**7)) == "0.000002"
    assert fixed6(Fraction(-25, 10**7)) == "-0.000002"
    assert fixed6(None) is None


@given(
    st.integers(min_value=-(2**256), max_value=2**256),
    st.integers(min_value=0, max_value=40),
)
def test_matches_high_precision_decimal(numerator: int, scale: int) -> None:
    value = Fraction(numerator, 10**scale)
    assert fixed6(value) == _reference(value).replace("-0.000000", "0.000000")


# ---------------------------------------------------------------- split6 (§7 shares)

UNIT = Fraction(1, 10**6)
SHARES = st.lists(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False), max_size=12
)


@settings(deadline=None)  # Fraction arithmetic; the machine is shared
@given(SHARES)
def test_split6_sums_exactly_to_the_served_total(parts: list[float]) -> None:
    # the served shares of M add up to the served M, digit for digit, and each is within
    # one unit of 1e-6 of its exact value
    total = fixed6(sum((Fraction(p) for p in parts), Fraction(0)))
    shares = split6(total, parts)
    assert len(shares) == len(parts)
    if parts:
        assert sum((Fraction(x) for x in shares), Fraction(0)) == Fraction(total)
    for share, part in zip(shares, parts, strict=True):
        assert share == fixed6(Fraction(share))  # a well-formed fixed-6 string
        assert abs(Fraction(share) - Fraction(part)) < UNIT


@settings(deadline=None)
@given(SHARES.filter(bool), st.integers(-(10**6), 10**6))
def test_split6_absorbs_float_drift(parts: list[float], drift: int) -> None:
    # float shares that miss M by `drift` units (more than one per share, either sign)
    # still sum exactly, the drift spread as evenly as possible
    exact = Fraction(fixed6(sum((Fraction(p) for p in parts), Fraction(0))))
    total = fixed6(exact + drift * UNIT)
    shares = split6(total, parts)
    assert sum((Fraction(x) for x in shares), Fraction(0)) == Fraction(total)
    bound = (abs(drift) // len(parts) + 2) * UNIT
    assert all(abs(Fraction(x) - Fraction(p)) < bound for x, p in zip(shares, parts, strict=True))


def test_split6_largest_remainders_take_the_residue() -> None:
    # thirds of 1.000000: 0.333333 each rounded down leaves 1 unit, and the tie goes to
    # the earlier part; negated, -0.333334 each leaves 2 units for the first two
    third = Fraction(1, 3)
    assert split6("1.000000", [third, third, third]) == ["0.333334", "0.333333", "0.333333"]
    assert split6("0.000002", [0.0000014, 0.0000006]) == ["0.000001", "0.000001"]
    assert split6("-1.000000", [-third] * 3) == ["-0.333333", "-0.333333", "-0.333334"]
    assert split6("0.000000", []) == []


@given(st.integers(-(10**30), 10**30), st.integers(1, 10**20), st.integers(1, 10**12))
def test_fixed6_ratio_rounds_a_ratio_in_any_terms(n: int, d: int, k: int) -> None:
    assert fixed6_ratio(n * k, d * k) == fixed6(Fraction(n, d))


@given(st.floats(-1e9, 1e9, allow_nan=False))
def test_split6_of_one_part_is_the_total(part: float) -> None:
    total = fixed6(part)
    assert split6(total, [part]) == [total]
    assert split6(total, [part + 1e-3]) == [total]
