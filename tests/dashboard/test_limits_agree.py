"""Limits in one place (PRODUCT.md §5): a value exactly at a threshold is at it on every screen.

Boundary values (exactly 2 × ULN, exactly 1.5 × baseline, exactly 1.5 ×10^9/L, 500 and
3000 ng/mL) go through the rules, the ward row's "crossed a line" mark, the timeline table's
"above" column and the clinic report, and all four give the same answer."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import Session

from dashboard import timeline_model, ward_model
from monitoring import catalogue, report
from monitoring.guideline import default_profile
from monitoring.rules import evaluate
from tests.monitoring.engine_builder import Chart, day

PROF = default_profile()
AS_OF = day(3)


def _screens(chart: Chart, test: str) -> dict[str, object]:
    """What each screen says about the latest result of ``test`` as of AS_OF."""
    record = chart.record()
    alerts = {a.code: a for a in evaluate(record, AS_OF, PROF)}
    ward = ward_model.ward_row(record, PROF, AS_OF)
    table = timeline_model.timeline_table(record, PROF, AS_OF)
    rows = table[table["test"] == catalogue.lookup(test).label]
    rep = report.report_data(record, AS_OF, PROF)
    return {
        "alerts": alerts,
        "crossed": ward.changes[test].crossed if ward.changes.get(test) else None,
        "above": rows["above"].iloc[-1],
        "report": {a.code: a.severity for a in rep.alerts},
    }


@pytest.mark.parametrize(
    ("test", "before", "at", "code", "holds_at", "label", "ref_high", "baseline"),
    [
        # ALT exactly 2 x the laboratory's ULN (70 = 2 x 35): not above it; HEPATIC does not hold.
        ("alt", 30.0, 70.0, "HEPATIC_INVOLVEMENT", False, "2×ULN", 35.0, None),
        # Creatinine exactly 1.5 x a recorded baseline of 1.2 (1.8; in floats 1.5 x 1.2 < 1.8).
        ("creatinine", 1.2, 1.8, "RENAL_INVOLVEMENT", False, "1.5× baseline", None, 1.2),
        # Eosinophils exactly 1.5 x10^9/L: at the line counts (>=), EOSINOPHILIA holds.
        ("eosinophils", 0.3, 1.5, "EOSINOPHILIA", True, "1.5", None, None),
        # Ferritin exactly 500 ng/mL: at the line counts, FERRITIN_HIGH (warning) holds.
        ("ferritin", 300.0, 500.0, "FERRITIN_HIGH", True, "500", None, None),
    ],
)
def test_exactly_at_a_threshold_every_screen_agrees(
    session: Session, test: str, before: float, at: float, code: str, holds_at: bool, label: str,
    ref_high: float | None, baseline: float | None,
) -> None:
    c = Chart(session, baseline_creatinine=baseline)
    c.lab(test, 2, before, ref_high=ref_high)
    c.lab(test, 3, at, ref_high=ref_high)
    s = _screens(c, test)
    assert (code in s["alerts"]) is holds_at  # type: ignore[operator]
    assert (code in s["report"]) is holds_at  # type: ignore[operator]
    crossed_line = f"↑ above {label}"
    assert (s["crossed"] == crossed_line) is holds_at, s["crossed"]
    assert (label in str(s["above"])) is holds_at, s["above"]

    # Just beyond the line every screen says so.
    step = {"alt": 0.5, "creatinine": 0.01, "eosinophils": -0.01, "ferritin": -1.0}[test]
    d = Chart(session, baseline_creatinine=baseline)
    d.lab(test, 2, before, ref_high=ref_high)
    d.lab(test, 3, at + step, ref_high=ref_high)
    t = _screens(d, test)
    flipped = not holds_at
    assert (code in t["alerts"]) is flipped  # type: ignore[operator]
    assert (code in t["report"]) is flipped  # type: ignore[operator]
    assert (t["crossed"] == crossed_line) is flipped, t["crossed"]
    assert (label in str(t["above"])) is flipped, t["above"]


def test_ferritin_exactly_3000_is_critical_on_every_screen(session: Session) -> None:
    c = Chart(session)
    c.lab("ferritin", 2, 1000.0)
    c.lab("ferritin", 3, 3000.0)
    s = _screens(c, "ferritin")
    assert s["alerts"]["FERRITIN_HIGH"].severity == "critical"  # type: ignore[index]
    assert s["report"]["FERRITIN_HIGH"] == "critical"  # type: ignore[index]
    assert s["crossed"] == "↑ above 3000" and s["above"] == "≥ 3000"


def test_recorded_baseline_1_2_and_creatinine_1_8_no_renal_alert_and_no_ward_mark(session: Session) -> None:
    """Issue 15: with a recorded baseline 1.2 mg/dL and a creatinine of 1.8, no RENAL alert holds,
    and the ward no longer shows '↑ above 1.5× baseline' (it compared strictly, in floats)."""
    c = Chart(session, baseline_creatinine=1.2)
    c.lab("creatinine", 1, 1.0)
    c.lab("creatinine", 3, 1.8)
    record = c.record()
    assert "RENAL_INVOLVEMENT" not in {a.code for a in evaluate(record, AS_OF, PROF)}
    row = ward_model.ward_row(record, PROF, AS_OF)
    assert row.changes["creatinine"] is not None and row.changes["creatinine"].crossed == ""
    assert not any("1.5× baseline" in n for n in row.new)
    # The report draws the same baseline and limit the rule used.
    lines = report._thresholds("creatinine", record, AS_OF, PROF, {"creatinine": list(record.results("creatinine", AS_OF))})
    assert [ln.last for ln in lines] == [1.2, 1.5 * 1.2]


def test_report_alt_lines_follow_each_results_uln(session: Session) -> None:
    """The report's ALT lines step with each result's own ULN, like the dashboard (it used only
    the latest result's ULN)."""
    c = Chart(session)
    c.lab("alt", 1, 100, ref_high=35)
    c.lab("alt", 2, 90)  # no range sent: the profile default applies to this row
    record = c.record()
    uln_line, double = report._thresholds("alt", record, AS_OF, PROF, {"alt": list(record.results("alt", AS_OF))})
    assert [v for _, v in uln_line.steps] == [35, 40]
    assert [v for _, v in double.steps] == [70, 80]
    assert uln_line.steps[1][0] == dt.datetime.combine(day(2), dt.time(8))
    assert "(default)" in uln_line.label
