"""METHOD.md §11: USD figures are half-even to 6 decimals, exactly, at any magnitude."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from crossmargin.report import fixed6


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
