"""Steroid course analysis from the dose schedule (PRODUCT.md §5 definitions, exactly).

- Systemic corticosteroid daily dose = sum over prednisone, prednisolone, methylprednisolone,
  dexamethasone and hydrocortisone (route not topical) of daily dose x prednisone-equivalence
  factor (1, 1, 1.25, 6.67, 0.25; Meikle & Tyler 1977, CLINICAL_REFERENCE.md §4).
- A schedule row holds from its start date until the next row of the same drug; dose 0 = stopped.
- Course: a run of days with dose > 0, its start is day 0; a day with dose 0 ends it. The course
  considered is the latest that started on or before the as-of date. Taper start, stop and taper
  length are computed on the schedule WITH the plan (rows after as-of).
- Taper start: the first day of the course with a dose lower than the day before, after the
  course's last increase (course start counts as an increase).
- Stop: the first day after course start with dose 0. Taper length = stop - taper start in days;
  0 for an abrupt stop with no decrease before it; None while no stop exists.

The total dose is a step function: it only changes on dates where some steroid row starts, so
everything is computed on those change points, never day by day.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from monitoring.drugs import normalise_drug, second_line_kind, steroid_factor
from monitoring.records import DoseRow, PatientRecord

__all__ = [
    "DosePoint",
    "CourseInfo",
    "Course",
    "dose_equal",
    "dose_above",
    "pred_eq_changes",
    "daily_doses",
    "dose_on",
    "courses",
    "analyse_course",
    "second_line_starts",
    "last_day_above",
    "course_day",
    "course_day_words",
    "dose_lines",
]

# Doses are compared with a tolerance, not exactly: the dexamethasone factor 6.67 is a rounding of
# 20/3, so 0.75 mg dexamethasone (5.0025 mg) and 5 mg prednisone are the same dose to a clinician,
# and float sums carry noise (6 mg x 6.67 = 40.019999...). 0.1 % or 0.01 mg is far below any real
# dose step. This is arithmetic, not a clinical threshold, so it is not in the guideline profile.
_REL_TOL = 1e-3
_ABS_TOL = 0.01


def dose_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=_REL_TOL, abs_tol=_ABS_TOL)


def dose_above(a: float, b: float) -> bool:
    """a > b beyond float noise."""
    return a > b and not dose_equal(a, b)


def _positive(dose: float) -> bool:
    return dose_above(dose, 0.0)


@dataclass(frozen=True)
class DosePoint:
    """The prednisone-equivalent dose from ``date`` until the next point."""

    date: dt.date
    pred_eq_mg: float
    planned: bool  # dated after the as-of date: part of the plan


@dataclass(frozen=True)
class Course:
    start: dt.date
    stop: dt.date | None  # first day with dose 0 after start; None while no stop (plan included)
    taper_start: dt.date | None
    taper_days: int | None


@dataclass(frozen=True)
class CourseInfo:
    course_start: dt.date | None
    day_of_course: int | None  # as-of minus course start while the course is ongoing, else None
    current_pred_eq_mg: float  # on the as-of date (0 when none)
    current_mg_per_kg: float | None  # None without a recorded weight
    taper_start: dt.date | None
    stop_date: dt.date | None
    taper_days: int | None
    ongoing: bool  # dose > 0 on the as-of date within the considered course
    second_line: tuple[tuple[str, dt.date], ...]  # IVIG / cyclosporine starts, plan included
    schedule: tuple[DosePoint, ...]  # one point per change of the total, plan included

    def as_dict(self) -> dict[str, object]:
        return {
            "course_start": _iso(self.course_start),
            "day_of_course": self.day_of_course,
            "current_pred_eq_mg": _round(self.current_pred_eq_mg),
            "current_mg_per_kg": _round(self.current_mg_per_kg),
            "taper_start": _iso(self.taper_start),
            "stop_date": _iso(self.stop_date),
            "taper_days": self.taper_days,
            "ongoing": self.ongoing,
            "second_line": [{"drug": d, "start_date": s.isoformat()} for d, s in self.second_line],
        }


def _iso(d: dt.date | None) -> str | None:
    return d.isoformat() if d is not None else None


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _steroid_rows(meds: Iterable[DoseRow]) -> list[tuple[DoseRow, str, float]]:
    # The resolver is cached: re-reading stored names (legacy rows, tests) costs a dict lookup.
    out = []
    for m in meds:
        factor = steroid_factor(m.drug, m.route, m.drug_as_entered)
        if factor is None:
            continue
        out.append((m, normalise_drug(m.drug), factor))
    return out


def pred_eq_changes(meds: Sequence[DoseRow]) -> list[tuple[dt.date, float]]:
    """The total systemic prednisone-equivalent dose as a step function: (date, mg/day) at each
    date where it changes, first point where the first steroid row starts. Consecutive points
    with the same dose (within tolerance) are merged, keeping the earlier one: a switch between
    steroids at an equal prednisone-equivalent dose on one date is not a change of dose."""
    out: list[tuple[dt.date, float]] = []
    for day, total in _exact_changes(meds):
        if out and dose_equal(out[-1][1], total):
            continue
        out.append((day, total))
    return out


def _exact_changes(meds: Sequence[DoseRow]) -> list[tuple[dt.date, float]]:
    """(date, total) at every date where a steroid row starts, totals as computed (no merging):
    what is reported as the dose on a date."""
    rows = _steroid_rows(meds)
    if not rows:
        return []
    by_date: dict[dt.date, list[tuple[str, float]]] = {}
    for m, drug, factor in rows:
        by_date.setdefault(m.start_date, []).append((drug, m.daily_dose_mg * factor))
    current: dict[str, float] = {}
    out: list[tuple[dt.date, float]] = []
    for day in sorted(by_date):
        # Rows are in (start_date, id) order: on a duplicate (drug, date) the row stored last wins.
        for drug, mg in by_date[day]:
            current[drug] = mg
        # Rounded to 1 µg: removes float noise (6 x 6.67 = 40.019999...) from reported doses.
        out.append((day, round(sum(current.values()), 6)))
    return out


def _value_on(changes: Sequence[tuple[dt.date, float]], day: dt.date) -> float:
    value = 0.0
    for d, mg in changes:
        if d > day:
            break
        value = mg
    return value


def dose_on(meds: Sequence[DoseRow], day: dt.date) -> float:
    """Systemic prednisone-equivalent mg on ``day`` (0 when none)."""
    return _value_on(_exact_changes(meds), day)


def _drop_repeats(changes: Sequence[tuple[dt.date, float]]) -> list[tuple[dt.date, float]]:
    out: list[tuple[dt.date, float]] = []
    for d, mg in changes:
        if not out or out[-1][1] != mg:
            out.append((d, mg))
    return out


def daily_doses(meds: Sequence[DoseRow], start: dt.date, end: dt.date) -> dict[dt.date, float]:
    """Systemic prednisone-equivalent mg/day for every date from ``start`` to ``end`` inclusive."""
    changes = _exact_changes(meds)
    out: dict[dt.date, float] = {}
    value = _value_on(changes, start)
    i = 0
    while i < len(changes) and changes[i][0] <= start:
        i += 1
    day = start
    while day <= end:
        while i < len(changes) and changes[i][0] <= day:
            value = changes[i][1]
            i += 1
        out[day] = value
        day += dt.timedelta(days=1)
    return out


def courses(changes: Sequence[tuple[dt.date, float]]) -> list[Course]:
    """Every course on the schedule (plan included), oldest first."""
    out: list[Course] = []
    i, n = 0, len(changes)
    while i < n:
        if not _positive(changes[i][1]):
            i += 1
            continue
        start = changes[i][0]
        # Walk the course: the last increase (course start counts), then the first decrease after it.
        last_increase = i
        j = i + 1
        while j < n and _positive(changes[j][1]):
            if dose_above(changes[j][1], changes[j - 1][1]):
                last_increase = j
            j += 1
        stop = changes[j][0] if j < n else None
        taper_start = None
        for k in range(last_increase + 1, j):
            if dose_above(changes[k - 1][1], changes[k][1]):
                taper_start = changes[k][0]
                break
        if stop is None:
            taper_days = None
        elif taper_start is None:
            taper_days = 0  # abrupt stop: no decrease before it
        else:
            taper_days = (stop - taper_start).days
        out.append(Course(start, stop, taper_start, taper_days))
        i = j
    return out


def second_line_starts(meds: Sequence[DoseRow]) -> tuple[tuple[str, dt.date], ...]:
    """Starts of IVIG or cyclosporine (plan included): a row with dose > 0 after none or a stop."""
    running: dict[str, bool] = {}
    out: list[tuple[str, dt.date]] = []
    for m in meds:
        drug = second_line_kind(m.drug)
        if drug is None:
            continue
        on = _positive(m.daily_dose_mg)
        if on and not running.get(drug, False):
            out.append((drug, m.start_date))
        running[drug] = on
    return tuple(out)


def last_day_above(changes: Sequence[tuple[dt.date, float]], limit_mg: float) -> tuple[bool, dt.date | None]:
    """The last day with a dose above ``limit_mg`` on the schedule.

    Returns (known, day): (True, None) when the dose was never above the limit; (False, None) when
    the schedule ends above it (no day at or below the limit after the last day above it).
    """
    last: dt.date | None = None
    above = False
    for d, mg in changes:
        if dose_above(mg, limit_mg):
            above = True
        elif above:
            last = d - dt.timedelta(days=1)
            above = False
    if above:
        return False, None
    return True, last


def analyse_course(record: PatientRecord, as_of: dt.date) -> CourseInfo:
    """The steroid course of PRODUCT.md §5 as of ``as_of``: the latest course that started on or
    before it, with taper start, stop and taper length computed on the schedule with the plan."""
    exact = _exact_changes(record.meds)
    all_courses = courses(pred_eq_changes(record.meds))
    current = _value_on(exact, as_of)
    weight = record.patient.weight_kg
    schedule = tuple(DosePoint(d, mg, d > as_of) for d, mg in _drop_repeats(exact))
    considered = None
    for c in all_courses:
        if c.start <= as_of:
            considered = c
    second = second_line_starts(record.meds)
    mg_per_kg = current / weight if weight else None
    if considered is None:
        return CourseInfo(None, None, current, mg_per_kg, None, None, None, False, second, schedule)
    ongoing = considered.stop is None or considered.stop > as_of
    return CourseInfo(
        course_start=considered.start,
        day_of_course=course_day(considered.start, as_of) if ongoing else None,
        current_pred_eq_mg=current,
        current_mg_per_kg=mg_per_kg,
        taper_start=considered.taper_start,
        stop_date=considered.stop,
        taper_days=considered.taper_days,
        ongoing=ongoing,
        second_line=second,
        schedule=schedule,
    )


def course_day(course_start: dt.date, as_of: dt.date) -> int:
    """The day of the steroid course on ``as_of``: the first dose's date is day 0 (PRODUCT.md §5,
    'its start is day 0'). The one count: ``CourseInfo.day_of_course``, the STALLED_RESPONSE_DAY7
    rule's day-7 line and every screen that names the course day use it."""
    return (as_of - course_start).days


def course_day_words(course_start: dt.date | None, day_of_course: int | None) -> str | None:
    """'day 7 of steroids (first dose 2026-11-25)' for an ongoing course (``CourseInfo``'s
    ``course_start`` and ``day_of_course``), else None: the count from 0 said with its first dose,
    so nobody is a day off at the day-7 question (issue 18 point 7)."""
    if day_of_course is None or course_start is None:
        return None
    return f"day {day_of_course} of steroids (first dose {course_start.isoformat()})"


def dose_lines(
    schedule: Iterable[tuple[dt.date, float, bool]], moment: dt.datetime
) -> tuple[list[tuple[dt.datetime, float]], list[tuple[dt.datetime, float]]]:
    """The dose schedule as a timeline's two step lines, each a list of (from, mg/day) points:
    given (solid) and planned (dashed). ``schedule`` is (date, mg, planned) per change, oldest
    first; ``moment`` is where the figure's now line stands (monitoring.display.as_of_moment).

    The last dose given holds until the now line (or until the plan takes over, if earlier) and
    stops there; the plan starts where the given line stops, from the dose then in force, so the
    two lines never overlap. The plan's tail to the end of the axis is the renderer's."""
    points = list(schedule)
    given = [(dt.datetime.combine(d, dt.time()), mg) for d, mg, planned in points if not planned]
    plan = [(dt.datetime.combine(d, dt.time()), mg) for d, mg, planned in points if planned]
    if not given:
        return [], plan
    until = min(plan[0][0], moment) if plan else moment
    until = max(until, given[-1][0])
    given.append((until, given[-1][1]))
    return given, ([(until, given[-1][1]), *plan] if plan else [])
