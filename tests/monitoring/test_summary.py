"""Patient summary (PRODUCT.md §5 last paragraph, §6 keys), especially the patch-test date."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.records import DoseRow, LabPoint, PatientInfo, PatientRecord
from monitoring.summary import add_months, patch_test_earliest, summarise
from tests.monitoring.engine_builder import Chart, day


def test_summary_has_the_keys_of_section_6(session) -> None:
    c = Chart(session, weight_kg=80)
    c.dose("prednisone", 1, 60)
    s = summarise(c.record(), day(5))
    json.dumps(s)
    assert s["day_since_onset"] == 5
    assert {"course_start", "day_of_course", "current_pred_eq_mg", "current_mg_per_kg", "taper_start", "stop_date", "taper_days"} <= set(
        s["steroid"]
    )
    assert s["steroid"]["course_start"] == day(1).isoformat()
    assert s["steroid"]["day_of_course"] == 4
    assert s["steroid"]["current_pred_eq_mg"] == 60 and s["steroid"]["current_mg_per_kg"] == 0.75
    assert {"score", "category", "items"} <= set(s["regiscar"])
    assert "patch_test_earliest" in s and "reasons" in s["patch_test"]


def test_day_since_onset_unknown_without_onset(session) -> None:
    c = Chart(session, onset=None)
    assert summarise(c.record(), day(3))["day_since_onset"] is None


def test_patch_test_is_the_later_of_six_months_and_28_days_off_steroids(session) -> None:
    c = Chart(session, resolved=day(30))  # 2026-04-01
    c.dose("prednisone", 0, 60)
    c.dose("prednisone", 20, 10)  # last day above 10 mg: day 19
    c.dose("prednisone", 60, 0)
    s = summarise(c.record(), day(25))
    assert s["patch_test"]["after_resolution"] == "2026-10-01"
    assert s["patch_test"]["last_day_above_mg"] == day(19).isoformat()
    assert s["patch_test_earliest"] == "2026-10-01"

    late = Chart(session, resolved=day(30))
    late.dose("prednisone", 0, 60)
    late.dose("prednisone", 200, 5)  # planned: above 10 mg until day 199
    p = patch_test_earliest(late.record())
    assert p["earliest"] == (day(199) + dt.timedelta(days=28)).isoformat()


def test_patch_test_null_without_resolution_or_while_dose_stays_above_10(session) -> None:
    c = Chart(session)
    c.dose("prednisone", 0, 20)
    c.dose("prednisone", 30, 0)
    s = summarise(c.record(), day(40))
    assert s["patch_test_earliest"] is None
    assert any("No resolution date" in r for r in s["patch_test"]["reasons"])
    d = Chart(session, resolved=day(30))
    d.dose("prednisone", 0, 20)  # no plan down to 10 mg
    assert summarise(d.record(), day(40))["patch_test_earliest"] is None


def test_patch_test_without_any_steroid_above_10(session) -> None:
    c = Chart(session, resolved=day(30))
    c.dose("prednisone", 0, 10)  # exactly 10 mg is not above
    assert patch_test_earliest(c.record())["earliest"] == "2026-10-01"
    d = Chart(session, resolved=day(30))
    d.dose("dexamethasone", 0, 1.5)  # 10.005 mg: 10 mg to a clinician, not above
    assert patch_test_earliest(d.record())["earliest"] == "2026-10-01"


def test_patch_test_uses_plan_and_resolution_after_as_of(session) -> None:
    c = Chart(session, resolved=day(300))
    c.dose("prednisone", 0, 40)
    c.dose("prednisone", 100, 0)  # planned stop
    s = summarise(c.record(), day(10))  # both in the future relative to as-of
    assert s["patch_test_earliest"] == add_months(day(300), 6).isoformat()


def test_switch_at_10_mg_equivalent_counts_as_at_or_below(session) -> None:
    c = Chart(session, resolved=day(5))
    c.dose("prednisone", 0, 40)
    c.dose("prednisone", 10, 0)
    c.dose("methylprednisolone", 10, 8)  # 10 mg prednisone-equivalent
    c.dose("methylprednisolone", 20, 0)
    p = patch_test_earliest(c.record())
    assert p["last_day_above_mg"] == day(9).isoformat()


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (dt.date(2026, 8, 31), 6, dt.date(2027, 2, 28)),
        (dt.date(2027, 8, 31), 6, dt.date(2028, 2, 29)),
        (dt.date(2026, 1, 15), 6, dt.date(2026, 7, 15)),
        (dt.date(2026, 12, 1), 1, dt.date(2027, 1, 1)),
        (dt.date(2026, 7, 31), 0, dt.date(2026, 7, 31)),
    ],
)
def test_add_calendar_months(start: dt.date, months: int, expected: dt.date) -> None:
    assert add_months(start, months) == expected


@settings(max_examples=100, deadline=None)
@given(st.dates(dt.date(2000, 1, 1), dt.date(2090, 12, 31)), st.integers(0, 60))
def test_add_months_properties(start: dt.date, months: int) -> None:
    out = add_months(start, months)
    assert (out.year * 12 + out.month) - (start.year * 12 + start.month) == months
    assert out.day <= start.day and out >= start


# --- property: a row dated after the as-of date changes the summary only through the plan ---------

_START = dt.date(2026, 1, 1)
_INFO = PatientInfo(1, "H1", "Hypothesis", None, None, 60.0, _START, (), None, dt.date(2026, 2, 15), "inpatient", True, True, None)
_PLAN_KEYS = {"taper_start", "stop_date", "taper_days", "second_line"}

med = st.tuples(st.sampled_from(["prednisone", "dexamethasone", "ivig"]), st.integers(0, 50), st.sampled_from([0, 5, 10, 20, 40, 60]))
lab = st.tuples(st.sampled_from(["eosinophils", "temperature", "alt"]), st.integers(0, 50), st.floats(0.5, 1))


def _rec(meds: list, labs: list) -> PatientRecord:
    rows, seen = [], set()
    for i, (drug, off, mg) in enumerate(meds):
        if (drug, off) not in seen:
            seen.add((drug, off))
            rows.append(DoseRow(i + 1, drug, _START + dt.timedelta(days=off), float(mg), "oral", str(mg), "mg", "t"))
    rows.sort(key=lambda m: (m.start_date, m.id))
    units = {"eosinophils": ("10^9/L", 3.0), "temperature": ("Cel", 40.0), "alt": ("U/L", 600.0)}
    points = []
    for i, (test, off, frac) in enumerate(labs):
        unit, top = units[test]
        v = round(top * frac, 2)
        points.append(LabPoint(i + 1, test, dt.datetime.combine(_START + dt.timedelta(days=off), dt.time(9)), v, unit, None, str(v), unit, None, None, None, "t", False))
    points.sort(key=lambda p: (p.taken_at, p.id))
    return PatientRecord(_INFO, tuple(points), tuple(rows), {})


@settings(max_examples=60, deadline=None)
@given(st.lists(med, max_size=10), st.lists(lab, max_size=15), st.integers(0, 50), med, lab)
def test_rows_after_as_of_change_only_plan_fields(meds, labs, as_of_offset, extra_med, extra_lab) -> None:
    as_of = _START + dt.timedelta(days=as_of_offset)
    base = summarise(_rec(meds, labs), as_of)
    later_lab = (extra_lab[0], as_of_offset + 1 + extra_lab[1] % 10, extra_lab[2])
    assert summarise(_rec(meds, [*labs, later_lab]), as_of) == base
    later_med = (extra_med[0], as_of_offset + 1 + extra_med[1] % 10, extra_med[2])
    changed = summarise(_rec([*meds, later_med], labs), as_of)
    for key in set(base["steroid"]) - _PLAN_KEYS:
        assert changed["steroid"][key] == base["steroid"][key], key
    for key in ("day_since_onset", "regiscar"):
        assert changed[key] == base[key]
    if base["steroid"]["taper_days"] is not None:
        assert base["steroid"]["taper_days"] >= 0
