"""monitoring.limits: the one comparison, the ULN of a result, baseline creatinine, and censored
values (PRODUCT.md §4, §5 'Limits in one place')."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from monitoring import limits
from monitoring.guideline import default_profile
from monitoring.limits import baseline_creatinine, decide, limits_for, uln
from tests.monitoring.engine_builder import Chart, day

PROF = default_profile()


def test_a_value_exactly_at_a_product_of_floats_is_at_it() -> None:
    # 1.5 x 1.2 = 1.7999999999999998 in floats: a creatinine of 1.8 is exactly at 1.5 x baseline.
    assert 1.5 * 1.2 != 1.8
    assert decide(1.8, 1.5 * 1.2, inclusive=False) is False
    assert decide(1.8, 1.5 * 1.2, inclusive=True) is True
    assert decide(1.81, 1.5 * 1.2, inclusive=False) is True
    assert decide(1.79, 1.5 * 1.2, inclusive=True) is False


@pytest.mark.parametrize(
    ("value", "comparator", "limit", "inclusive", "expected"),
    [
        # '<x' is some value below x: it exceeds no threshold >= x, and never makes a finding hold.
        (0.01, "<", 14.0, False, False),
        (14.0, "<", 14.0, False, False),
        (14.0, "<", 14.0, True, False),
        (20.0, "<", 14.0, False, None),  # below 20 may or may not be above 14: undecidable
        (14.0, "<=", 14.0, False, False),
        (14.0, "<=", 14.0, True, None),  # could be exactly 14
        # '>x' is some value above x: it exceeds every threshold <= x.
        (2000.0, ">", 500.0, True, True),
        (500.0, ">", 500.0, False, True),
        (400.0, ">", 500.0, True, None),
        (500.0, ">=", 500.0, True, True),
        (500.0, ">=", 500.0, False, None),
        (600.0, ">=", 500.0, False, True),
    ],
)
def test_censored_values(value: float, comparator: str, limit: float, inclusive: bool, expected: bool | None) -> None:
    assert decide(value, limit, inclusive=inclusive, comparator=comparator) is expected
    assert limits.exceeds(decide(value, limit, inclusive=inclusive, comparator=comparator)) is (expected is True)


def test_an_unknown_comparator_is_refused() -> None:
    with pytest.raises(ValueError, match="comparator"):
        decide(1.0, 2.0, inclusive=True, comparator="~")


def test_uln_laboratory_wins_else_default_flagged() -> None:
    assert uln(PROF, "alt") == limits.Uln(40, True)
    assert uln(PROF, "alt", 33.0) == limits.Uln(33.0, False)
    assert uln(PROF, "troponin_i") == limits.Uln(26, True)
    assert uln(PROF, "creatinine", 0.0).is_default  # a zero ref_high is no limit at all
    assert "default" in uln(PROF, "alt").basis and uln(PROF, "alt", 33.0).basis == "laboratory"
    with pytest.raises(KeyError, match="ferritin"):
        uln(PROF, "ferritin")


def test_baseline_recorded_wins_else_lowest_counted_as_of_the_date(session) -> None:
    c = Chart(session, baseline_creatinine=1.2)
    c.lab("creatinine", 1, 0.9)
    base = baseline_creatinine(c.record(), day(1))
    assert base is not None and base.value == 1.2 and base.recorded and base.source == "recorded baseline"

    d = Chart(session)
    assert baseline_creatinine(d.record(), day(5)) is None
    d.lab("creatinine", 1, 1.1)
    low = d.lab("creatinine", 2, 0.8)
    d.lab("creatinine", 3, 0.8)  # an equal low later: the earliest is the baseline row
    d.lab("creatinine", 6, 0.6)  # after the as-of date: not counted
    base = baseline_creatinine(d.record(), day(5))
    assert base is not None and base.value == 0.8 and base.row is not None and base.row.id == low.id
    assert base.source == f"lowest result, {day(2).isoformat()} (no baseline recorded)"


def test_a_censored_creatinine_is_never_the_baseline(session) -> None:
    c = Chart(session)
    c.lab("creatinine", 1, 1.0)
    row = c.lab("creatinine", 2, 0.3)
    record = c.record()
    censored = next(p for p in record.labs if p.id == row.id)._replace(comparator="<")
    record = dataclasses.replace(record, labs=tuple(censored if p.id == row.id else p for p in record.labs))
    base = baseline_creatinine(record, day(3))
    assert base is not None and base.value == 1.0


def test_limits_of_a_result_follow_its_own_uln_and_the_patient_baseline(session) -> None:
    c = Chart(session, baseline_creatinine=1.2)
    alt = c.lab("alt", 1, 70, ref_high=35)
    creat = c.lab("creatinine", 1, 1.8)
    record = c.record()
    points = {p.id: p for p in record.labs}
    uln_line, double = limits_for("alt", points[alt.id], record, PROF, day(1))
    assert (uln_line.value, double.value, double.label, double.inclusive) == (35, 70, "2×ULN", False)
    assert double.judge(points[alt.id]) is False  # 70 is at 2 x 35, not above it
    (renal,) = limits_for("creatinine", points[creat.id], record, PROF, day(1))
    assert renal.label == "1.5× baseline" and renal.judge(points[creat.id]) is False
    eos_low, eos_high = limits_for("eosinophils", points[alt.id], record, PROF, dt.date(2026, 1, 1))
    assert (eos_low.value, eos_high.value, eos_high.inclusive, eos_high.symbol) == (0.7, 1.5, True, "≥")


def test_the_laboratorys_lower_limit_is_a_line_a_result_is_at_or_above(session) -> None:
    """limits.lln_limit (the Follow-up checklist's 'below range'): the row's ref_low, inclusive, and
    no lower limit where the row gives none (no profile default exists)."""
    c = Chart(session)
    c.lab("tsh", 1, 0.4)
    point = c.record().labs[0]
    assert limits.lln_limit(point) is None  # the row sent no ref_low
    low = point._replace(ref_low=0.4)
    line = limits.lln_limit(low)
    assert line is not None and (line.value, line.inclusive, line.basis) == (0.4, True, "laboratory")
    assert line.judge(low) is True  # exactly at the lower limit is within the range
    assert line.judge(low._replace(value=0.39)) is False  # below it
    assert line.judge(low._replace(value=0.01, comparator="<")) is False  # '<0.01': below for certain
    assert line.judge(low._replace(value=1.0, comparator="<")) is None  # '<1': cannot say
    assert limits.lln_limit(point._replace(ref_low=0.0)) is None  # a zero lower limit is no limit
