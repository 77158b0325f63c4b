"""The ward model: every active patient's row of the ward overview, in attention order.

The ward overview is evaluated incrementally (``ward_rows``): each active patient has a *patient
version* (``patient_versions``: one query of per-patient index maxima) and a process-wide cache keeps
each patient's evaluated row under (database, profile, as-of date, patient) with the version it was
computed from. After one new result only that patient's record is read and evaluated again; the
other rows are reused. The active patients are loaded set-wise (``monitoring.records.load_records``:
a fixed number of queries).

All clinical judgement comes from ``monitoring`` (rules, steroids, limits, the guideline profile);
this module arranges it for display.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import streamlit as st
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dashboard.store import _engine, profile, today
from dashboard.timeline_model import point_limits
from monitoring import catalogue, display, limits, severity
from monitoring.guideline import GuidelineProfile
from monitoring.models import AlertEpisode, AuditEntry, ClinicalFinding, LabResult, MedicationRow, Patient, Photo
from monitoring.records import PatientRecord, load_records

# Tests of the ward overview, in the order of the columns.
WARD_TESTS: tuple[str, ...] = ("alt", "creatinine", "eosinophils", "ferritin")


# --- ward overview ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """The latest value of a test and its change since the previous value."""

    test: str
    value: float
    unit: str
    delta: float | None
    taken_at: dt.datetime
    crossed: str  # '' or e.g. '↑ above 2×ULN'
    preliminary: bool = False  # the latest value is a preliminary result (PRODUCT.md §6 edition 2)
    comparator: str | None = None  # a censored latest result: '<30', '>1000' (PRODUCT.md §4)
    previous_censored: bool = False  # the change from a censored previous result is not known

    def text(self) -> str:
        # A converted value (65 umol/L = 0.735... mg/dL) must not look more precise than the
        # laboratory measured: the value and its change share the test's display precision.
        main = display.value_text(self.test, self.value, self.unit, self.comparator)
        if self.comparator:
            return main  # no change can be computed from a censored value
        if self.delta is None:
            return f"{main} (previous censored)" if self.previous_censored else f"{main} (first)"
        places = display.decimals(self.test, self.unit)
        if round(self.delta, places) == 0:
            return f"{main} → 0"
        arrow = "↑" if self.delta > 0 else "↓"
        return f"{main} {arrow} {'+' if self.delta > 0 else '−'}{display.number(self.test, abs(self.delta), self.unit)}"


def latest_change(test: str, record: PatientRecord, prof: GuidelineProfile, as_of: dt.date) -> Change | None:
    """The latest value, its change since the previous one, and the line it crossed: the lines and
    the comparison of monitoring.limits, judged as of ``as_of`` (so the mark agrees with the alert:
    a creatinine exactly at 1.5 × baseline crossed nothing)."""
    # Censored results count: the latest troponin '<30 ng/L' is the one shown, never an older number.
    pts = [p for p in record.results(test, as_of) if p.shown_value is not None]
    if not pts:
        return None
    last = pts[-1]
    number = last.shown_value
    assert number is not None
    prev = pts[-2] if len(pts) > 1 else None
    crossed = ""
    if prev is not None and prev.value is not None:
        before = {lim.label: lim.judge(prev) for lim in point_limits(test, prev, record, prof, as_of)}
        for lim in point_limits(test, last, record, prof, as_of):
            now = lim.judge(last)
            was = before.get(lim.label)
            # Only a decided crossing: a censored value that cannot be judged crosses nothing.
            if now is not None and was is not None and was != now:
                crossed = f"↑ above {lim.label}" if now else f"↓ below {lim.label}"
    exact = limits.comparator_of(last) is None and (prev is None or limits.comparator_of(prev) is None)
    return Change(
        test=test,
        value=number,
        unit=last.unit,
        delta=None if prev is None or prev.value is None or not exact else number - prev.value,
        taken_at=last.taken_at,
        crossed=crossed,
        preliminary=last.status == "preliminary",
        comparator=limits.comparator_of(last),
        previous_censored=prev is not None and limits.comparator_of(prev) is not None,
    )


@dataclass(frozen=True)
class WardRow:
    mrn: str
    name: str
    synthetic: bool
    setting: str
    worst: str  # critical / warning / info / ''
    n_critical: int
    n_warning: int
    day_since_onset: int | None
    course_day: int | None
    dose_mg: float | None
    dose_mg_per_kg: float | None
    changes: dict[str, Change | None]
    alerts: tuple[tuple[str, str], ...]  # (severity, code): critical first, the unacknowledged first within a severity
    new: tuple[str, ...]  # what is new since yesterday, in words
    # code -> how it was handled ('acknowledged: IVIG ordered', 'snoozed until 2026-12-05'); absent: unacknowledged
    handled: dict[str, str] = field(default_factory=dict)
    unhandled_worst: bool = False  # an alert of the worst severity that nobody acknowledged
    # IVIG / cyclosporine started on or before the ward date (drug kind, start), from analyse_course
    second_line: tuple[tuple[str, dt.date], ...] = ()
    course_start: dt.date | None = None  # the first dose of the ongoing course (course day 0)


def handled_text(ep: AlertEpisode, as_of: dt.date) -> str | None:
    """How an episode was handled, in words (None while nobody has acknowledged or snoozed it)."""
    from monitoring import episodes

    state = episodes.effective_state(ep, as_of)
    if state == episodes.ACKNOWLEDGED:
        return f"acknowledged: {episodes.ACK_REASONS.get(ep.ack_reason or '', ep.ack_reason or '').removesuffix(' …')}"
    if state == episodes.SNOOZED and ep.snoozed_until is not None:
        return f"snoozed until {ep.snoozed_until.isoformat()}"
    return None


def ward_row(
    record: PatientRecord,
    prof: GuidelineProfile,
    as_of: dt.date,
    open_episodes: Sequence[AlertEpisode] = (),
    alerts: Sequence[Any] | None = None,
) -> WardRow:
    """One patient's ward row. "New since yesterday" and acknowledgements come from the patient's
    open alert episodes (monitoring.episodes): an alert without an episode yet counts as new."""
    from monitoring.rules import RULES, evaluate
    from monitoring.steroids import analyse_course

    alerts = list(evaluate(record, as_of, prof) if alerts is None else alerts)
    by_code = {ep.code: ep for ep in open_episodes}
    course = analyse_course(record, as_of)
    onset = record.patient.onset_date
    changes = {test: latest_change(test, record, prof, as_of) for test in WARD_TESTS}
    handled: dict[str, str] = {}
    new: list[str] = []
    from monitoring.episodes import is_new

    for a in alerts:
        ep = by_code.get(a.code)
        if ep is not None and (text := handled_text(ep, as_of)):
            handled[a.code] = text
        if ep is None or is_new(ep, as_of):
            reopened = ep is not None and ep.reopen_count and ep.onset_date < as_of
            new.append(f"{'new evidence' if reopened else 'new'} {a.severity}: {a.title or a.code}")
    for test, ch in changes.items():
        if ch and ch.crossed and ch.taken_at.date() >= as_of - dt.timedelta(days=1):
            new.append(f"{catalogue.lookup(test).label} {ch.crossed}")
    order = {code: i for i, code in enumerate(RULES)}
    # Acknowledged and snoozed alerts stay shown, below the unacknowledged ones of their severity.
    alerts.sort(key=lambda a: (severity.rank(a.severity), a.code in handled, order.get(a.code, len(order))))
    severities = [a.severity for a in alerts]
    worst = str(min(severities, key=severity.rank)) if severities else ""
    return WardRow(
        mrn=record.patient.mrn,
        name=record.patient.name,
        synthetic=record.patient.synthetic,
        setting=record.patient.setting,
        worst=worst,
        n_critical=severities.count("critical"),
        n_warning=severities.count("warning"),
        day_since_onset=(as_of - onset).days if onset else None,
        course_day=course.day_of_course,
        course_start=course.course_start if course.day_of_course is not None else None,
        dose_mg=course.current_pred_eq_mg if course.current_pred_eq_mg else None,
        dose_mg_per_kg=course.current_mg_per_kg if course.current_pred_eq_mg else None,
        changes=changes,
        alerts=tuple((str(a.severity), a.code) for a in alerts),
        new=tuple(new),
        handled=handled,
        unhandled_worst=any(a.severity == worst and a.code not in handled for a in alerts),
        # A planned start (after the ward date) is not yet treatment: the timeline shows the plan.
        second_line=tuple((drug, start) for drug, start in course.second_line if start <= as_of),
    )


def sort_ward(rows: Sequence[WardRow]) -> list[WardRow]:
    """Whoever needs attention first: critical, then warning, then the rest; within a severity the
    patients with an unacknowledged alert of it first; more alerts first."""
    return sorted(
        rows,
        key=lambda r: (severity.rank(r.worst), not r.unhandled_worst, -r.n_critical, -r.n_warning, r.name.lower()),
    )


@st.cache_data(show_spinner="Evaluating patients…", max_entries=16)
def ward(url: str, version: tuple[Any, ...], as_of: dt.date, profile_key: str = "") -> list[WardRow]:
    """Every active patient, evaluated as of ``as_of`` and yesterday, in attention order.

    Cached on the global data version, so a rerun with nothing changed reuses the list; when the
    version moves, ``ward_rows`` evaluates again only the patients whose own version moved.
    ``profile_key`` (path and version of the guideline profile) is part of every key: a changed
    profile re-evaluates."""
    return ward_rows(url, as_of, profile_key)


def patient_versions(eng: Engine, *, active_only: bool = True) -> dict[int, tuple[Any, ...]]:
    """Per patient, a tuple that changes whenever anything the ward shows of that patient changes.

    - a new result, dose row, finding or photograph: the highest id of that table for the patient;
    - an amendment or a hide (which add no row): every one is audited with the patient's id
      (monitoring.services, monitoring.photos, monitoring.taper), so the highest audit id for the
      patient moves;
    - a change of the patient's details, by the dashboard or an import's upsert
      (monitoring.store.write_batch, whose batch audit entry names no patient): ``updated_at``.

    One query: a correlated ``max(id)`` per table, each answered from the (patient_id, ...) index
    alone (a covering index search per patient, never a table scan), about 20 ms for 300 patients
    of 60 days. Versions come from the database, so writes by another process (the command line)
    are seen on the next rerun."""
    pt = Patient.__table__  # type: ignore[attr-defined]

    def newest(model: Any) -> Any:
        t = model.__table__
        return select(func.max(t.c.id)).where(t.c.patient_id == pt.c.id).correlate(pt).scalar_subquery()

    stmt = select(
        pt.c.id,
        pt.c.updated_at,
        newest(LabResult),
        newest(MedicationRow),
        newest(ClinicalFinding),
        newest(Photo),
        newest(AuditEntry),
        newest(AlertEpisode),  # an episode opened by another process (the notifier, an import)
    )
    if active_only:
        stmt = stmt.where(pt.c.active.is_(True))
    with eng.connect() as conn:
        return {int(row[0]): tuple(str(v) for v in row[1:]) for row in conn.execute(stmt)}


@dataclass(frozen=True)
class WardEvaluation:
    """What the last ``ward_rows`` call did: how many active patients, whose rows it evaluated
    (patient ids, read from the database and run through the rules) and how many it reused."""

    patients: int
    evaluated: tuple[int, ...]
    reused: int


# Process-wide (every session of this server shares it): (url, profile_key, as_of, patient id) ->
# (patient version, row). A stale version is replaced in place; the least recently used entries go
# beyond the bound (a few kB each), so a server running for weeks of as-of dates stays small.
_WARD_CACHE: OrderedDict[tuple[str, str, dt.date, int], tuple[tuple[Any, ...], WardRow]] = OrderedDict()
_WARD_CACHE_MAX = 20_000
_WARD_LOCK = threading.Lock()
_last_evaluation = WardEvaluation(0, (), 0)


def ward_rows(url: str, as_of: dt.date, profile_key: str = "") -> list[WardRow]:
    """Every active patient's ward row, in attention order, evaluating only the patients whose
    version (``patient_versions``) differs from the one their cached row was computed from.

    A write between reading the versions and reading the records can only make a row newer than
    its recorded version: the next call sees the version move and evaluates it again, so a row is
    never older than the version it is filed under."""
    global _last_evaluation
    eng = _engine(url)
    versions = patient_versions(eng)
    rows: dict[int, WardRow] = {}
    stale: list[int] = []
    with _WARD_LOCK:
        for pid, version in versions.items():
            key = (url, profile_key, as_of, pid)
            hit = _WARD_CACHE.get(key)
            if hit is not None and hit[0] == version:
                _WARD_CACHE.move_to_end(key)
                rows[pid] = hit[1]
            else:
                stale.append(pid)
    if stale:
        from monitoring import episodes
        from monitoring.rules import evaluate

        prof = profile()
        with Session(eng, expire_on_commit=False) as s:
            # All stale: the set-wise load without an id list (the database filters on active).
            records = load_records(s, None if len(stale) == len(versions) else stale, active_only=True)
            # Only the patients whose version was read: one activated since is evaluated on the next run.
            records = [r for r in records if r.patient.id in versions]
            alerts = {r.patient.id: evaluate(r, as_of, prof) for r in records}
            # The ward's evaluation keeps the episodes current too (written only when one changes).
            if as_of == today():
                episodes.sync_evaluated(s, records, alerts, as_of=as_of, profile=prof)  # type: ignore[arg-type]
            open_eps: dict[int, list[AlertEpisode]] = {}
            for ep in episodes.open_episodes(s, [r.patient.id for r in records if r.patient.id is not None]):
                open_eps.setdefault(ep.patient_id, []).append(ep)
        fresh = {
            r.patient.id: ward_row(r, prof, as_of, open_eps.get(r.patient.id or 0, ()), alerts[r.patient.id])
            for r in records
        }
        with _WARD_LOCK:
            for pid, row in fresh.items():
                _WARD_CACHE[(url, profile_key, as_of, pid)] = (versions[pid], row)
                _WARD_CACHE.move_to_end((url, profile_key, as_of, pid))
            while len(_WARD_CACHE) > _WARD_CACHE_MAX:
                _WARD_CACHE.popitem(last=False)
        rows.update(fresh)
    _last_evaluation = WardEvaluation(len(versions), tuple(sorted(stale)), len(versions) - len(stale))
    return sort_ward(list(rows.values()))


def last_ward_evaluation() -> WardEvaluation:
    """What the last ward evaluation in this process did (benchmarks and tests read it)."""
    return _last_evaluation


def clear_ward_cache() -> None:
    """Forget every evaluated ward row (a cold start, for benchmarks and tests). Writes never need
    this: a write moves the patient's version."""
    with _WARD_LOCK:
        _WARD_CACHE.clear()
