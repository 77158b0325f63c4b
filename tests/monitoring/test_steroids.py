"""Steroid course analysis (PRODUCT.md §5 definitions), from the clinic's point of view."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.records import DoseRow, PatientInfo, PatientRecord
from monitoring.rules import evaluate
from monitoring.steroids import (
    CourseInfo,
    analyse_course,
    course_day_words,
    daily_doses,
    dose_lines,
    dose_on,
    last_day_above,
    pred_eq_changes,
)
from tests.monitoring.engine_builder import Chart, day


def test_dexamethasone_6_mg_is_40_02_mg_prednisone(session) -> None:
    c = Chart(session)
    c.dose("dexamethasone", 0, 6, route="iv")
    info = analyse_course(c.record(), day(1))
    assert info.current_pred_eq_mg == pytest.approx(40.02, abs=1e-9)
    assert info.as_dict()["current_pred_eq_mg"] == 40.02


def test_equivalence_factors_sum_over_systemic_steroids(session) -> None:
    c = Chart(session, weight_kg=80)
    c.dose("Solu-Medrol", 0, 40, route="iv")  # brand of methylprednisolone: 40 x 1.25 = 50
    c.dose("hydrocortisone", 0, 100, route="iv")  # 100 x 0.25 = 25
    info = analyse_course(c.record(), day(0))
    assert info.current_pred_eq_mg == pytest.approx(75)
    assert info.current_mg_per_kg == pytest.approx(75 / 80)


def test_topical_route_is_ignored(session) -> None:
    c = Chart(session)
    c.dose("hydrocortisone", 0, 100, route="topical")
    c.dose("prednisone", 0, 30)
    assert analyse_course(c.record(), day(3)).current_pred_eq_mg == 30
    topical_only = Chart(session)
    topical_only.dose("clobetasol", 0, 30, route="topical")
    topical_only.dose("hydrocortisone", 0, 30, route="cutaneous")
    info = analyse_course(topical_only.record(), day(3))
    assert info.course_start is None and info.current_pred_eq_mg == 0 and not info.ongoing


def test_no_weight_gives_no_mg_per_kg(session) -> None:
    c = Chart(session, weight_kg=None)
    c.dose("prednisone", 0, 60)
    info = analyse_course(c.record(), day(0))
    assert info.current_pred_eq_mg == 60 and info.current_mg_per_kg is None


def test_switch_between_steroids_at_equal_dose_is_not_a_taper(session) -> None:
    c = Chart(session)
    c.dose("methylprednisolone", 0, 48, route="iv")  # 60 mg prednisone-equivalent
    c.dose("methylprednisolone", 5, 0, route="iv")
    c.dose("prednisone", 5, 60)  # switch on day 5 at the same equivalent dose
    c.dose("prednisone", 20, 40)
    c.dose("prednisone", 50, 0)
    info = analyse_course(c.record(), day(6))
    assert info.course_start == day(0)
    assert info.current_pred_eq_mg == 60
    assert info.taper_start == day(20)
    assert info.stop_date == day(50)
    assert info.taper_days == 30


def test_switch_dexamethasone_to_prednisone_with_factor_rounding_is_not_a_taper(session) -> None:
    # 0.75 mg dexamethasone is 5 mg prednisone (Meikle & Tyler); 0.75 x 6.67 = 5.0025.
    c = Chart(session)
    c.dose("prednisone", 0, 20)
    c.dose("prednisone", 10, 0)
    c.dose("dexamethasone", 10, 3)  # 20.01
    c.dose("dexamethasone", 20, 0)
    c.dose("prednisone", 20, 20)
    c.dose("prednisone", 40, 10)
    c.dose("prednisone", 70, 0)
    info = analyse_course(c.record(), day(25))
    assert info.course_start == day(0)
    assert info.taper_start == day(40)
    assert info.taper_days == 30


def test_abrupt_stop_is_zero_days_with_no_taper_start(session) -> None:
    c = Chart(session)
    c.dose("prednisone", 0, 60)
    c.dose("prednisone", 10, 0)
    info = analyse_course(c.record(), day(12))
    assert info.stop_date == day(10)
    assert info.taper_start is None
    assert info.taper_days == 0
    assert not info.ongoing and info.day_of_course is None


def test_plan_in_the_future_sets_taper_and_stop(session) -> None:
    c = Chart(session)
    c.dose("prednisone", 0, 60)
    c.dose("prednisone", 30, 40)  # plan from here on (as-of day 10)
    c.dose("prednisone", 44, 20)
    c.dose("prednisone", 58, 0)
    info = analyse_course(c.record(), day(10))
    assert info.current_pred_eq_mg == 60 and info.ongoing and info.day_of_course == 10
    assert (info.taper_start, info.stop_date, info.taper_days) == (day(30), day(58), 28)
    assert [p.planned for p in info.schedule] == [False, True, True, True]


def test_no_stop_means_no_taper_length(session) -> None:
    c = Chart(session)
    c.dose("prednisone", 0, 60)
    c.dose("prednisone", 14, 40)
    info = analyse_course(c.record(), day(20))
    assert info.taper_start == day(14)
    assert info.stop_date is None and info.taper_days is None


def test_taper_start_is_after_the_last_increase(session) -> None:
    c = Chart(session)
    c.dose("prednisone", 0, 60)
    c.dose("prednisone", 7, 40)  # a first decrease ...
    c.dose("prednisone", 10, 60)  # ... undone by a flare: the last increase
    c.dose("prednisone", 24, 40)
    c.dose("prednisone", 60, 0)
    info = analyse_course(c.record(), day(30))
    assert info.taper_start == day(24)
    assert info.taper_days == 36


def test_course_that_stops_and_restarts(session) -> None:
    c = Chart(session)
    c.dose("prednisone", 0, 60)
    c.dose("prednisone", 10, 30)
    c.dose("prednisone", 20, 0)
    c.dose("prednisone", 40, 40)  # relapse: a new course
    c.dose("prednisone", 70, 20)
    c.dose("prednisone", 100, 0)
    rec = c.record()
    first = analyse_course(rec, day(25))
    assert (first.course_start, first.taper_start, first.stop_date, first.taper_days) == (day(0), day(10), day(20), 10)
    assert not first.ongoing and first.current_pred_eq_mg == 0
    second = analyse_course(rec, day(40))
    assert (second.course_start, second.taper_start, second.stop_date, second.taper_days) == (day(40), day(70), day(100), 30)
    assert second.day_of_course == 0 and second.ongoing
    before = analyse_course(rec, day(-1))
    assert before.course_start is None and before.current_pred_eq_mg == 0


def test_dose_zero_row_of_one_drug_does_not_stop_another(session) -> None:
    c = Chart(session)
    c.dose("prednisone", 0, 40)
    c.dose("hydrocortisone", 0, 40, route="iv")  # +10
    c.dose("hydrocortisone", 3, 0, route="iv")
    info = analyse_course(c.record(), day(5))
    assert info.current_pred_eq_mg == 40 and info.stop_date is None
    assert info.taper_start == day(3)


def test_hidden_rows_are_not_part_of_the_schedule(session) -> None:
    c = Chart(session)
    c.dose("prednisone", 0, 60)
    c.dose("prednisone", 5, 0, hidden=True)  # entered in error and hidden
    info = analyse_course(c.record(), day(10))
    assert info.ongoing and info.stop_date is None


def test_second_line_starts_listed_with_plan(session) -> None:
    c = Chart(session)
    c.dose("prednisone", 0, 60)
    c.dose("IVIG", 8, 35000, route="iv")
    c.dose("IVIG", 10, 0, route="iv")
    c.dose("ciclosporin", 30, 200)
    info = analyse_course(c.record(), day(9))
    assert info.second_line == (("ivig", day(8)), ("cyclosporine", day(30)))


def test_daily_doses_step_function(session) -> None:
    c = Chart(session)
    c.dose("prednisone", 2, 60)
    c.dose("prednisone", 4, 40)
    rec = c.record()
    doses = daily_doses(rec.meds, day(0), day(5))
    assert list(doses.values()) == [0, 0, 60, 60, 40, 40]
    assert dose_on(rec.meds, day(3)) == 60


def test_last_day_above_ten_mg(session) -> None:
    c = Chart(session)
    c.dose("prednisone", 0, 60)
    c.dose("prednisone", 20, 10)
    c.dose("prednisone", 30, 0)
    changes = pred_eq_changes(c.record().meds)
    assert last_day_above(changes, 10) == (True, day(19))
    assert last_day_above(changes, 100) == (True, None)  # never above
    assert last_day_above([(day(0), 60.0)], 10) == (False, None)  # never comes down


# --- property tests over random schedules: the change-point arithmetic against the literal
# day-by-day definitions of PRODUCT.md §5 ------------------------------------------------------

_FACTORS = {"prednisone": 1.0, "methylprednisolone": 1.25, "dexamethasone": 6.67, "hydrocortisone": 0.25}
_PATIENT = PatientInfo(1, "H1", "Hypothesis", None, None, 70.0, dt.date(2026, 1, 1), (), None, None, "inpatient", True, True, None)
_START = dt.date(2026, 1, 1)

dose_values = st.sampled_from([0, 0, 5, 10, 20, 30, 40, 60])
rows = st.lists(
    st.tuples(st.sampled_from(sorted(_FACTORS)), st.integers(0, 60), dose_values, st.sampled_from(["oral", "oral", "topical"])),
    max_size=12,
)


def _record(spec: list[tuple[str, int, int, str]]) -> PatientRecord:
    seen: set[tuple[str, int]] = set()
    meds = []
    for i, (drug, offset, mg, route) in enumerate(spec):
        if (drug, offset) in seen:  # one row per (drug, start date), as the database enforces
            continue
        seen.add((drug, offset))
        meds.append(DoseRow(i + 1, drug, _START + dt.timedelta(days=offset), float(mg), route, str(mg), "mg", "test"))
    meds.sort(key=lambda m: (m.start_date, m.id))
    return PatientRecord(_PATIENT, (), tuple(meds), {})


def _reference_daily(rec: PatientRecord, last: dt.date) -> list[tuple[dt.date, float]]:
    out = []
    d = _START - dt.timedelta(days=1)
    while d <= last:
        total = 0.0
        for drug, factor in _FACTORS.items():
            current = 0.0
            for m in rec.meds:
                if m.drug == drug and m.route != "topical" and m.start_date <= d:
                    current = m.daily_dose_mg
            total += current * factor
        out.append((d, total))
        d += dt.timedelta(days=1)
    return out


def _eq(a: float, b: float) -> bool:
    return abs(a - b) <= max(0.01, 1e-3 * max(abs(a), abs(b)))


def _reference_course(rec: PatientRecord, as_of: dt.date) -> tuple | None:
    daily = _reference_daily(rec, _START + dt.timedelta(days=70))
    starts = [i for i in range(1, len(daily)) if daily[i][1] > 0.01 and not daily[i - 1][1] > 0.01]
    starts = [i for i in starts if daily[i][0] <= as_of]
    if not starts:
        return None
    s = starts[-1]
    e = next((i for i in range(s + 1, len(daily)) if not daily[i][1] > 0.01), None)
    end = e if e is not None else len(daily)
    last_inc = s
    for i in range(s + 1, end):
        if daily[i][1] > daily[i - 1][1] and not _eq(daily[i][1], daily[i - 1][1]):
            last_inc = i
    taper = next(
        (daily[i][0] for i in range(last_inc + 1, end) if daily[i][1] < daily[i - 1][1] and not _eq(daily[i][1], daily[i - 1][1])),
        None,
    )
    stop = daily[e][0] if e is not None else None
    days = None if stop is None else (0 if taper is None else (stop - taper).days)
    return daily[s][0], taper, stop, days


@settings(max_examples=100, deadline=None)
@given(rows, st.integers(0, 70))
def test_course_matches_the_day_by_day_definition(spec, as_of_offset) -> None:
    rec = _record(spec)
    as_of = _START + dt.timedelta(days=as_of_offset)
    info = analyse_course(rec, as_of)
    ref = _reference_course(rec, as_of)
    if ref is None:
        assert info.course_start is None
        return
    # The reference walks equal-within-tolerance neighbours pairwise, the engine merges them: the
    # definitions agree whenever no dose differs from its neighbour by a hair, which holds here.
    assert (info.course_start, info.taper_start, info.stop_date, info.taper_days) == ref


@settings(max_examples=100, deadline=None)
@given(rows, st.integers(0, 70))
def test_taper_length_never_negative_and_ordered(spec, as_of_offset) -> None:
    rec = _record(spec)
    info = analyse_course(rec, _START + dt.timedelta(days=as_of_offset))
    if info.taper_days is not None:
        assert info.taper_days >= 0
        assert info.stop_date is not None and info.course_start is not None
        assert info.course_start < info.stop_date
        if info.taper_start is not None:
            assert info.course_start < info.taper_start < info.stop_date
    if info.ongoing:
        assert info.current_pred_eq_mg > 0


@settings(max_examples=100, deadline=None)
@given(rows, st.integers(0, 70))
def test_current_dose_matches_the_day_by_day_sum(spec, as_of_offset) -> None:
    rec = _record(spec)
    as_of = _START + dt.timedelta(days=as_of_offset)
    expected = dict(_reference_daily(rec, as_of))[as_of]
    assert analyse_course(rec, as_of).current_pred_eq_mg == pytest.approx(expected, abs=1e-6)
    assert daily_doses(rec.meds, as_of, as_of)[as_of] == pytest.approx(expected, abs=1e-6)


def _words(info: CourseInfo) -> str | None:
    return course_day_words(info.course_start, info.day_of_course)


def test_course_day_words_say_the_count_the_day_7_rule_uses(session) -> None:
    """Issue 18 point 7: the first dose is day 0, said so; on the day the STALLED rule first holds
    the words say 'day 7', and the day before 'day 6' (the same count: steroids.course_day)."""
    c = Chart(session)
    c.lab("alt", 0, 400)
    c.dose("prednisone", 0, 60)
    c.lab("alt", 6, 350)  # 87.5 % of the start value: stalled from day 7
    c.dose("pantoprazole", 0, 40)
    record = c.record()
    assert _words(analyse_course(record, day(0))) == f"day 0 of steroids (first dose {day(0).isoformat()})"
    before = analyse_course(record, day(6))
    assert _words(before) == f"day 6 of steroids (first dose {day(0).isoformat()})"
    assert "STALLED_RESPONSE_DAY7" not in {a.code for a in evaluate(record, day(6))}
    on = analyse_course(record, day(7))
    stalled = next(a for a in evaluate(record, day(7)) if a.code == "STALLED_RESPONSE_DAY7")
    assert _words(on) == f"day {stalled.evidence['day_of_course']} of steroids (first dose {day(0).isoformat()})"
    assert stalled.evidence["day_of_course"] == on.day_of_course == 7
    assert stalled.message.startswith("Day 7 of systemic steroids")


def test_no_course_day_words_without_an_ongoing_course(session) -> None:
    c = Chart(session)
    assert _words(analyse_course(c.record(), day(3))) is None
    c.dose("prednisone", 0, 60)
    c.dose("prednisone", 5, 0)  # stopped on day 5
    assert _words(analyse_course(c.record(), day(6))) is None


def test_dose_lines_given_stops_at_now_and_the_plan_starts_there() -> None:
    """Issue 18 point 11: the given line holds the last dose until the now line, never over the plan."""
    now = dt.datetime(2026, 3, 1, 9, 30)
    sched = [(dt.date(2026, 2, 20), 60.0, False), (dt.date(2026, 2, 27), 50.0, False), (dt.date(2026, 3, 4), 40.0, True)]
    given, planned = dose_lines(sched, now)
    assert given == [(dt.datetime(2026, 2, 20), 60.0), (dt.datetime(2026, 2, 27), 50.0), (now, 50.0)]
    assert planned == [(now, 50.0), (dt.datetime(2026, 3, 4), 40.0)]
    assert dose_lines(sched[:2], now) == (given, [])  # no plan: given to now
    only_plan = [(dt.date(2026, 3, 4), 40.0, True)]
    assert dose_lines(only_plan, now) == ([], [(dt.datetime(2026, 3, 4), 40.0)])
