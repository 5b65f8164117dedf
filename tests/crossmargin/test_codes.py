"""One list of codes (crossmargin/core/codes.py): every code used anywhere is in it, and
docs/codes.md lists exactly the enumeration with its meanings."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import oracle.validity as validity
from crossmargin.core import errors
from crossmargin.core.codes import USES, Code, markdown_table
from crossmargin.pipeline.report import PositionStatus

ROOT = Path(__file__).resolve().parents[2]


def _subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _subclasses(sub)
    return out


def test_every_code_has_one_meaning() -> None:
    assert list(USES) == list(Code)
    assert all(meaning.strip() and uses for uses, meaning in USES.values())


def test_doc_lists_exactly_the_enumeration() -> None:
    doc = (ROOT / "docs" / "codes.md").read_text()
    table = doc[doc.index("| code |") :]
    assert table == markdown_table()
    listed = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M)
    assert listed == [c.value for c in Code]


def test_feed_reasons_are_codes() -> None:
    reasons = {
        v for k, v in vars(validity).items() if k.isupper() and isinstance(v, str) and k != "PYTH"
    } - {validity.CHAINLINK}
    assert reasons  # the constants are still where this test looks
    assert reasons <= set(Code)


def test_error_codes_are_codes() -> None:
    found = {
        c.__dict__["error_code"]
        for c in _subclasses(errors.CrossmarginError)
        if "error_code" in c.__dict__
    }
    assert len(found) >= 14
    assert found <= set(Code)


def test_position_statuses_are_codes() -> None:
    assert set(typing.get_args(PositionStatus)) <= set(Code)


def test_code_literals_in_sources_are_codes() -> None:
    """Strings assigned as codes in the package (warnings, health) outside the enumeration
    would be undocumented: `code="..."`, `code = "..."`, `error_code="..."`."""
    pattern = re.compile(r"\b(?:error_)?code\s*=\s*\"([a-z_]+)\"")
    used: dict[str, str] = {}
    for folder in ("adapters", "oracle", "aggregator", "crossmargin", "api"):
        for path in (ROOT / folder).rglob("*.py"):
            for code in pattern.findall(path.read_text()):
                used[code] = str(path.relative_to(ROOT))
    assert used  # the pattern still finds the code sites
    assert {c: p for c, p in used.items() if c not in set(Code)} == {}
