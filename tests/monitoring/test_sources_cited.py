"""What a clinician reads as a source names the real source (a guideline, a paper, or 'product design
choice'), never one of this project's internal files (CLINICAL_REFERENCE.md, PRODUCT.md, ... or a
'§' section of one): issue 18 point 10. Covers the profile's thresholds and alert sources (shown on
the timeline, taper and follow-up pages, in the report and by `alerts`), the follow-up schedule, and
every string literal the dashboard and the monitoring package show (docstrings excepted)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from monitoring.followup import load_followup_schedule
from monitoring.guideline import default_profile

ROOT = Path(__file__).resolve().parents[2]
INTERNAL = re.compile(r"\b[A-Z_]+\.md\b|§")


def test_the_pattern_catches_an_internal_citation() -> None:
    assert INTERNAL.search("PRODUCT.md §4 default") and INTERNAL.search("(CLINICAL_REFERENCE.md §5)")
    assert INTERNAL.search("see §3")
    assert not INTERNAL.search("Kardaun et al., BJD 2007;156:609; product design choice (default, configurable)")


def test_profile_threshold_and_alert_sources_cite_real_sources() -> None:
    p = default_profile()
    bad = {key: t.source for key, t in p.thresholds.items() if INTERNAL.search(t.source)}
    bad |= {code: a.source for code, a in p.alerts.items() if INTERNAL.search(a.source) or INTERNAL.search(a.title)}
    assert not bad


def test_design_choices_say_so_in_their_source() -> None:
    """Where no source gives the number, the source says it is this product's choice."""
    p = default_profile()
    unsaid = [key for key, t in p.thresholds.items() if t.basis == "design choice" and "design choice" not in t.source.lower()]
    assert not unsaid


def test_followup_checks_cite_real_sources() -> None:
    checks = load_followup_schedule()
    assert checks
    assert not [(c.label, c.source) for c in checks if INTERNAL.search(c.source) or INTERNAL.search(c.label)]


def _shown_strings(path: Path) -> list[tuple[int, str]]:
    """String literals of a module that are not docstrings (a bare string statement)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.value) for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }
    return [
        (node.lineno, node.value) for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


MODULES = sorted([*(ROOT / "dashboard").rglob("*.py"), *(ROOT / "monitoring").rglob("*.py")])


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_string_shown_by_the_code_cites_an_internal_file(path: Path) -> None:
    bad = [(line, text[:120]) for line, text in _shown_strings(path) if INTERNAL.search(text)]
    assert not bad, f"{path.relative_to(ROOT)}: {bad}"
