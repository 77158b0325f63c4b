"""What the pages show, read through cached queries that a write clears.

Every cached read is keyed on the database URL and a *data version*: one cheap query of the
highest ids and the latest patient change, so a write by this dashboard, another session or the
command line changes the key and the next rerun reads fresh data (PRODUCT.md §8). A write from a
page also calls ``clear_caches`` so every page shows the new data at once.

A page rerun reads only what it shows: the ward overview loads the active patients set-wise
(``monitoring.records.load_records``: a fixed number of queries), a patient page loads only its
patient (``load_record``, through the MRN and patient-id indexes).

The ward overview is evaluated incrementally (``ward_rows``): each active patient has a *patient
version* (``patient_versions``: one query of per-patient index maxima) and a process-wide cache keeps
each patient's evaluated row under (database, profile, as-of date, patient) with the version it was
computed from. After one new result only that patient's record is read and evaluated again; the
other rows are reused.

All clinical judgement comes from ``monitoring`` (rules, steroids, summary, the guideline
profile); this module arranges it for display. Thresholds drawn on the timeline are the profile's
numbers applied to the patient's data, never literals.
"""

from __future__ import annotations

import datetime as dt
import io
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import streamlit as st
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dashboard.figures import DoseStep, DoseTrack, Panel, Point, Series, Threshold, Timeline, temperature_panel
from monitoring import catalogue, display, limits, severity
from monitoring.guideline import GuidelineProfile, load_profile
from monitoring.models import AlertEpisode, AuditEntry, ClinicalFinding, LabResult, MedicationRow, Patient, Photo
from monitoring.records import LabPoint, PatientRecord, load_record, load_records

if TYPE_CHECKING:
    # Imported where a table is built: half a second of start-up the sign-in form and the ward
    # overview do not need (bench/bench_startup.py).
    import pandas as pd

# Tests of the ward overview, in the order of the columns.
WARD_TESTS: tuple[str, ...] = ("alt", "creatinine", "eosinophils", "ferritin")
# Timeline panels: (panel key, title, tests drawn in it).
PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("liver", "ALT and AST", ("alt", "ast")),
    ("kidney", "Creatinine", ("creatinine",)),
    ("eosinophils", "Eosinophils", ("eosinophils",)),
    ("ferritin", "Ferritin", ("ferritin",)),
)
UNIT_SYSTEMS = ("conventional", "SI")


# --- engine, version, caches ----------------------------------------------------------------


def database_url() -> str:
    """The database the dashboard shows: resolved exactly like the command line (PRODUCT.md §6)."""
    from monitoring.db import resolve_database_url

    return resolve_database_url(None)


@st.cache_resource(show_spinner="Opening the database…")
def _engine(url: str) -> Engine:
    from monitoring.demo import ensure_demo
    from monitoring.schema import open_database

    engine = open_database(url)
    # First run on an empty database: the synthetic demo cohort, labelled synthetic everywhere.
    ensure_demo(engine)
    return engine


def engine() -> Engine:
    return _engine(database_url())


def data_version(eng: Engine | None = None) -> tuple[Any, ...]:
    """Changes whenever anything shown changes: the highest id of every table a page shows
    (inserts) and the highest audit id (amendments, hides, findings, and every change of a
    patient's details: monitoring.services and monitoring.store audit each one, so ``updated_at``
    need not be scanned). Primary-key maxima only: an index lookup each, whatever the number of
    patients (a page rerun must not cost more with 5,000 patients than with 50)."""
    eng = eng or engine()
    stmt = select(
        select(func.max(AuditEntry.id)).scalar_subquery(),
        select(func.max(LabResult.id)).scalar_subquery(),
        select(func.max(MedicationRow.id)).scalar_subquery(),
        select(func.max(ClinicalFinding.id)).scalar_subquery(),
        select(func.max(Photo.id)).scalar_subquery(),
        select(func.max(Patient.id)).scalar_subquery(),
        select(func.max(AlertEpisode.id)).scalar_subquery(),
    )
    with eng.connect() as conn:
        row = conn.execute(stmt).one()
    return tuple(str(v) for v in row)


def clear_caches() -> None:
    """After a write: every page reads fresh data on its next run."""
    st.cache_data.clear()
    patient_options.clear()


def profile() -> GuidelineProfile:
    """The guideline profile in force (DRESS_GUIDELINE_PROFILE or the default file)."""
    return load_profile()


def today() -> dt.date:
    return dt.date.today()


WARD_REFRESH_ENV = "DRESS_WARD_REFRESH_S"
WARD_REFRESH_DEFAULT_S = 30


def ward_refresh_s() -> int:
    """How often a ward board left open looks for new data (DRESS_WARD_REFRESH_S, default 30 s)."""
    import os

    raw = os.environ.get(WARD_REFRESH_ENV, "").strip()
    try:
        value = int(raw) if raw else WARD_REFRESH_DEFAULT_S
    except ValueError:
        value = WARD_REFRESH_DEFAULT_S
    return max(1, value)


# --- patients ---------------------------------------------------------------------------------


@st.cache_resource(show_spinner=False, max_entries=8)
def patient_options(url: str, version: tuple[Any, ...]) -> tuple[tuple[str, str], ...]:
    """(MRN, label) of every patient, active first, for the patient pickers.

    Immutable and shared by every session (cache_resource): a cache_data hit would unpickle a copy
    of every patient's label on each rerun of every patient page."""
    pt = Patient.__table__  # type: ignore[attr-defined]
    with Session(_engine(url)) as s:
        rows = s.execute(
            select(pt.c.mrn, pt.c.name, pt.c.active, pt.c.synthetic).order_by(pt.c.active.desc(), pt.c.name)
        ).all()
    return tuple(
        (mrn, f"{name} · {mrn}" + (" · synthetic" if synthetic else "") + ("" if active else " · inactive"))
        for mrn, name, active, synthetic in rows
    )


@st.cache_data(show_spinner=False, max_entries=64)
def patient_record(url: str, version: tuple[Any, ...], mrn: str) -> PatientRecord | None:
    with Session(_engine(url)) as s:
        try:
            return load_record(s, mrn)
        except LookupError:
            return None


@st.cache_data(show_spinner=False, max_entries=64)
def photo_dates(url: str, version: tuple[Any, ...], patient_id: int) -> tuple[dt.date, ...]:
    """Dates with a photograph (metadata only: the image bytes are never read here)."""
    ph = Photo.__table__  # type: ignore[attr-defined]
    with Session(_engine(url)) as s:
        rows = s.execute(
            select(ph.c.taken_on).where(ph.c.patient_id == patient_id, ph.c.hidden.is_(False)).distinct().order_by(ph.c.taken_on)
        ).scalars()
        return tuple(rows)


@st.cache_data(show_spinner=False, max_entries=64)
def patient_episodes(url: str, version: tuple[Any, ...], patient_id: int) -> tuple[AlertEpisode, ...]:
    """Every alert episode of a patient, oldest first (open ones carry acknowledgement and snooze)."""
    from monitoring.episodes import episodes_of

    with Session(_engine(url), expire_on_commit=False) as s:
        rows = episodes_of(s, patient_id)
        s.expunge_all()
    return tuple(rows)


def alert_onsets(eps: Sequence[AlertEpisode]) -> list[tuple[dt.date, str]]:
    """(onset date, words) of each episode, for the timeline's onset marks."""
    from dashboard.widgets import code_label

    out = []
    for ep in eps:
        words = f"{ep.severity} {code_label(ep.code)} from {ep.onset_date.isoformat()}"
        if ep.closed_at is not None:
            words += f", no longer holding since {ep.closed_at.date().isoformat()} (UTC)"
        out.append((ep.onset_date, words))
    return out


@st.cache_data(show_spinner=False, max_entries=64)
def patient_rows(url: str, version: tuple[Any, ...], mrn: str) -> dict[str, pd.DataFrame]:
    """Stored results and dose rows of one patient with their ids, for correction on the Entry page."""
    import pandas as pd

    with Session(_engine(url)) as s:
        pid = s.execute(select(Patient.id).where(Patient.mrn == mrn)).scalar_one_or_none()
        if pid is None:
            return {"labs": pd.DataFrame(), "meds": pd.DataFrame()}
        labs = s.execute(
            select(LabResult).where(LabResult.patient_id == pid, LabResult.hidden == False)  # noqa: E712
            .order_by(LabResult.taken_at.desc(), LabResult.id.desc())  # type: ignore[attr-defined]
        ).scalars().all()
        meds = s.execute(
            select(MedicationRow).where(MedicationRow.patient_id == pid, MedicationRow.hidden == False)  # noqa: E712
            .order_by(MedicationRow.start_date.desc(), MedicationRow.id.desc())  # type: ignore[attr-defined]
        ).scalars().all()
    lab_df = pd.DataFrame(
        [
            {
                "id": r.id,
                "taken_at": r.taken_at.strftime("%Y-%m-%d %H:%M"),
                "test": r.test,
                # Text for every row (one column type: a PCR's 'detected' beside numbers made
                # pyarrow refuse the column), with a censored result's comparator: '<30', '>1000'.
                "value": (
                    display.value_text(r.test, r.value, r.unit, r.comparator) if r.value is not None else (r.value_text or "")
                ),
                "unit": r.unit,
                "as received": f"{r.original_value} {r.original_unit}".strip(),
                "ref_low": r.ref_low,
                "ref_high": r.ref_high,
                "source": r.source,
                "amended": "yes" if r.amended_at else "",
            }
            for r in labs
        ]
    )
    med_df = pd.DataFrame(
        [
            {
                "id": r.id,
                "start_date": r.start_date.isoformat(),
                "drug": r.drug,
                "daily dose (mg)": r.daily_dose_mg,
                "as entered": f"{r.dose_as_entered} {r.unit_as_entered}",
                "route": r.route or "",
                "source": r.source,
                "amended": "yes" if r.amended_at else "",
            }
            for r in meds
        ]
    )
    return {"labs": lab_df, "meds": med_df}


def last_reference(labs: pd.DataFrame, test: str) -> tuple[float | None, float | None]:
    """(LLN, ULN) of the patient's latest ``test`` result that carried a reference range, in the
    canonical unit (``patient_rows`` order, newest first): the Entry form's pre-filled range
    (issue 18 point 1), so a result typed without its range is judged by the laboratory's ULN."""
    import pandas as pd

    if labs.empty:
        return None, None
    rows = labs[(labs["test"] == test) & (labs["ref_low"].notna() | labs["ref_high"].notna())]
    if rows.empty:
        return None, None
    first = rows.iloc[0]
    low, high = first["ref_low"], first["ref_high"]
    return (None if pd.isna(low) else float(low)), (None if pd.isna(high) else float(high))


# --- thresholds: the profile's numbers applied to this patient's data -------------------------


def _fmt(test: str, x: float, units: str = "conventional") -> str:
    """A number of ``test`` in the chosen unit system at the test's one display precision."""
    return display.number(test, x, display_unit(test, units))


def baseline_creatinine(
    record: PatientRecord, as_of: dt.date, prof: GuidelineProfile | None = None
) -> tuple[float | None, str]:
    """The baseline creatinine the renal rule uses (monitoring.limits, PRODUCT.md §5), and its origin."""
    found = limits.baseline_creatinine(record, as_of)
    if found is None:
        return None, ""
    return found.value, found.source


def _uln_threshold(
    test: str, points: Sequence[LabPoint], prof: GuidelineProfile, multiple: float, label: str, severity: str, shade: bool
) -> Threshold | None:
    """A ULN-based line that follows each result's own ULN (the laboratory's ref_high wins)."""
    if not points:
        uln = limits.uln(prof, test).value
        return Threshold(f"{test}_{label}", f"{label}", severity, value=uln * multiple, shade_above=shade,
                         basis="profile default ULN")
    ulns = [(u.value, u.is_default) for u in (limits.uln(prof, test, p.ref_high) for p in points)]
    defaults = {is_default for _, is_default in ulns}
    if defaults == {True}:
        basis = "profile default ULN"
    elif defaults == {False}:
        basis = "laboratory ULN"
    else:
        basis = "laboratory ULN where given, else profile default"
    values = [u * multiple for u, _ in ulns]
    if len(set(values)) == 1:
        return Threshold(f"{test}_{label}", label, severity, value=values[0], shade_above=shade, basis=basis)
    steps: list[tuple[dt.datetime, float]] = []
    for p, v in zip(points, values, strict=True):
        if not steps or steps[-1][1] != v:
            steps.append((p.taken_at, v))
    return Threshold(f"{test}_{label}", label, severity, steps=tuple(steps), shade_above=shade, basis=basis)


def panel_thresholds(record: PatientRecord, prof: GuidelineProfile, as_of: dt.date) -> dict[str, list[Threshold]]:
    """Threshold lines per panel, in the canonical unit, from the profile and this patient's data."""
    hep = prof.threshold("hepatic_alt_uln_multiple")
    renal = prof.threshold("renal_creatinine_baseline_multiple")
    out: dict[str, list[Threshold]] = {}
    liver: list[Threshold] = []
    alt = [p for p in record.results("alt") if p.value is not None]
    ast = [p for p in record.results("ast") if p.value is not None]
    for test, pts in (("alt", alt), ("ast", ast)):
        if test == "ast" and not pts:
            continue
        name = "ALT" if test == "alt" else "AST"
        uln = _uln_threshold(test, pts, prof, 1.0, f"{name} ULN", "info", False)
        double = _uln_threshold(test, pts, prof, hep.value, f"{name} {hep.value:g}×ULN", "warning", test == "alt")
        if test == "ast" and liver and uln and double and uln.values() == liver[0].values():
            continue  # same limits as ALT: one pair of lines says it
        liver += [t for t in (uln, double) if t is not None]
    out["liver"] = liver
    base, basis = baseline_creatinine(record, as_of, prof)
    kidney: list[Threshold] = []
    if base is not None:
        kidney.append(Threshold("creatinine_baseline", "baseline", "info", value=base, basis=basis))
        kidney.append(
            Threshold(
                "creatinine_renal",
                f"{renal.value:g}× baseline",
                "warning",
                value=base * renal.value,
                shade_above=True,
                basis=renal.basis if renal.basis != "sourced" else "",
            )
        )
    out["kidney"] = kidney
    eos_mod, eos_high = prof.threshold("eosinophils_moderate"), prof.threshold("eosinophils_high")
    out["eosinophils"] = [
        Threshold("eosinophils_moderate", "RegiSCAR +1", "info", value=eos_mod.value, shade_above=False),
        Threshold("eosinophils_high", "eosinophilia", "warning", value=eos_high.value, shade_above=True),
    ]
    fer, fer_crit = prof.threshold("ferritin_high"), prof.threshold("ferritin_critical")
    out["ferritin"] = [
        Threshold("ferritin_high", "high", "warning", value=fer.value, shade_above=True),
        Threshold("ferritin_critical", "consider HLH", "critical", value=fer_crit.value, shade_above=True),
    ]
    return out


def point_limits(
    test: str, point: LabPoint, record: PatientRecord, prof: GuidelineProfile, as_of: dt.date
) -> tuple[limits.Limit, ...]:
    """The lines this result is judged against, in the canonical unit: monitoring.limits, the same
    lines and the same comparison the rules use."""
    return limits.limits_for(test, point, record, prof, as_of)


def flags(test: str, point: LabPoint, record: PatientRecord, prof: GuidelineProfile, as_of: dt.date) -> str:
    """Words for the table: the highest line this result is beyond ('> 2×ULN', '≥ 1.5'), so colour
    is never needed; a censored value that cannot be decided says so."""
    if point.value is None:
        return point.value_text or ""
    beyond = ""
    undecided: list[str] = []
    for lim in point_limits(test, point, record, prof, as_of):
        decision = lim.judge(point)
        if decision is True:
            beyond = f"{lim.symbol} {lim.label}"
        elif decision is None:
            undecided.append(lim.label)
    if undecided:
        return (beyond + "; " if beyond else "") + f"censored: cannot tell against {', '.join(undecided)}"
    return beyond


# --- units ------------------------------------------------------------------------------------


def display_unit(test: str, units: str) -> str:
    t = catalogue.lookup(test)
    return t.si_unit if units == "SI" and t.si_unit else t.canonical_unit


def to_display(test: str, value: float, units: str) -> float:
    t = catalogue.lookup(test)
    if units == "SI" and t.si_unit:
        return catalogue.from_canonical(t, value, t.si_unit)
    return value


# --- timeline ---------------------------------------------------------------------------------


def timeline(
    record: PatientRecord, prof: GuidelineProfile, as_of: dt.date, *, units: str = "conventional",
    photos: Sequence[dt.date] = (),
    alert_onsets: Sequence[tuple[dt.date, str]] = (),
) -> Timeline:
    """Everything the timeline figure draws for one patient, in the chosen unit system."""
    from monitoring.steroids import analyse_course

    thresholds = panel_thresholds(record, prof, as_of)
    panels: list[Panel] = []
    for key, title, tests in PANELS:
        unit = display_unit(tests[0], units)
        series: list[Series] = []
        for test in tests:
            pts = []
            for p in record.results(test):
                number = p.shown_value  # a censored result is drawn at its bound, its comparator in the hover
                if number is None:
                    continue
                lines = point_limits(test, p, record, prof, as_of)
                ref = ", ".join(f"{lim.label} {_fmt(test, to_display(test, lim.value, units), units)}" for lim in lines)
                if test in ("alt", "ast"):
                    ref += " (laboratory)" if not limits.uln(prof, test, p.ref_high).is_default else " (profile default)"
                pts.append(
                    Point(
                        taken_at=p.taken_at,
                        value=to_display(test, number, units),
                        canonical=number,
                        canonical_unit=p.unit,
                        received=f"{p.original_value} {p.original_unit}".strip()
                        + (f" (laboratory flag {p.abnormal_flags})" if p.abnormal_flags else ""),
                        amended=p.amended,
                        preliminary=p.status == "preliminary",
                        reference=ref,
                        comparator=limits.comparator_of(p),
                    )
                )
            if pts or test == tests[0]:
                series.append(Series(test, catalogue.lookup(test).label, unit, tuple(pts)))
        converted = tuple(_convert_threshold(th, tests[0], units) for th in thresholds.get(key, []))
        drawn = [s.label for s in series if s.points]
        panels.append(Panel(key, " and ".join(drawn) if drawn else title, unit, tuple(series), converted))
    course = analyse_course(record, as_of)
    steps = tuple(DoseStep(p.date, p.pred_eq_mg, p.planned) for p in course.schedule)
    dose = DoseTrack(
        steps=steps,
        second_line=tuple(course.second_line),
        course_start=course.course_start,
        course_day=course.day_of_course,
    )
    return Timeline(onset=record.patient.onset_date, today=as_of, panels=tuple(panels), dose=dose, photo_dates=tuple(photos),
                    temperature=temperature_panel(record, prof), alert_onsets=tuple(alert_onsets))


@st.cache_data(show_spinner=False, max_entries=32)
def timeline_figure(
    url: str,
    version: tuple[Any, ...],
    mrn: str,
    as_of: dt.date,
    units: str,
    x_mode: str,
    x_range: tuple[dt.date, dt.date] | None,
    profile_key: str = "",
) -> Any:
    """The patient's timeline figure, built once per data version and view (a few hundred ms for
    months of daily results): reruns that change nothing on the figure reuse it."""
    from dashboard.figures import timeline_figure as build

    record = patient_record(url, version, mrn)
    if record is None:
        raise LookupError(f"unknown MRN {mrn!r}")
    photos = photo_dates(url, version, record.patient.id)
    onsets = alert_onsets(patient_episodes(url, version, record.patient.id or 0))
    return build(timeline(record, profile(), as_of, units=units, photos=photos, alert_onsets=onsets), x_mode=x_mode, x_range=x_range)


def _convert_threshold(th: Threshold, test: str, units: str) -> Threshold:
    if units != "SI" or not catalogue.lookup(test).si_unit:
        return th
    return Threshold(
        th.key,
        th.label,
        th.severity,
        value=None if th.value is None else to_display(test, th.value, units),
        steps=tuple((when, to_display(test, v, units)) for when, v in th.steps),
        shade_above=th.shade_above,
        basis=th.basis,
    )


TABLE_TESTS: tuple[str, ...] = (
    "alt", "ast", "alp", "ggt", "bilirubin", "creatinine", "eosinophils", "eosinophils_pct", "wbc",
    "atypical_lymphocytes_pct", "ferritin", "troponin_t", "troponin_i", "crp", "temperature", "bsa_pct",
    "hhv6_pcr", "ebv_pcr", "cmv_pcr", "tsh", "glucose", "weight",
)


def timeline_table(record: PatientRecord, prof: GuidelineProfile, as_of: dt.date, *, units: str = "conventional") -> pd.DataFrame:
    """The same data as the figure, one row per result, oldest first: value as shown, as received,
    canonical, the reference in force and the lines it is above, in words."""
    import pandas as pd

    onset = record.patient.onset_date
    rows: list[dict[str, Any]] = []
    for p in record.labs:
        t = catalogue.lookup(p.test)
        ref_high = p.ref_high
        # The test's one display precision: a converted value must not pretend to more than it had.
        number = p.shown_value  # a '<x' result shows its bound with its comparator
        shown = None if number is None else display.value_text(
            p.test, to_display(p.test, number, units), display_unit(p.test, units), limits.comparator_of(p)
        )
        if prof.default_uln(p.test) is not None:
            u = limits.uln(prof, p.test, ref_high)
            reference = f"ULN {_fmt(p.test, to_display(p.test, u.value, units), units)}" + (
                " (profile default)" if u.is_default else " (laboratory)"
            )
        elif ref_high is not None:
            reference = f"ULN {_fmt(p.test, to_display(p.test, ref_high, units), units)} (laboratory)"
        else:
            reference = ""
        rows.append(
            {
                "taken_at": p.taken_at.strftime("%Y-%m-%d %H:%M"),
                "day since onset": (p.taken_at.date() - onset).days if onset else None,
                "test": t.label,
                "value": shown,
                "unit": display.unit_label(display_unit(p.test, units)),
                "above": flags(p.test, p, record, prof, as_of),
                "as received": f"{p.original_value} {p.original_unit}".strip(),
                "laboratory flag": p.abnormal_flags or "",
                "canonical": (
                    display.quantity(p.test, number, p.unit, limits.comparator_of(p)) if number is not None else (p.value_text or "")
                ),
                "reference": reference,
                "source": p.source,
                "amended": "amended" if p.amended else "",
                "status": p.status,  # final, preliminary (until its final replaces it), amended
            }
        )
    return pd.DataFrame(rows)


def quoted_results(alert: Any) -> list[dict[str, Any]]:
    """The results an alert quotes, as table rows a clinician can trace: row id, test, value with
    its comparator and unit at the test's display precision, date and age in days as of the
    evaluation date (PRODUCT.md §5, age of the evidence)."""
    rows = []
    for q in alert.quoted:
        value = (
            display.quantity(q["test"], q["value"], q["unit"], q.get("comparator"))
            if q["value"] is not None
            else (q.get("value_text") or q.get("original_value") or "")
        )
        rows.append(
            {"row": q["row_id"], "test": display.test_label(q["test"]), "value": value, "taken": q["taken_at"].replace("T", " ")[:16],
             "age (days)": q["age_days"]}
        )
    return rows


def csv_bytes(df: pd.DataFrame) -> bytes:
    """The table as CSV for a download: text cells that a spreadsheet would run as a formula are
    prefixed with ' (monitoring.spreadsheet); numeric columns are written as they are."""
    from monitoring.spreadsheet import formula_safe

    buf = io.StringIO()
    df.map(formula_safe).to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")


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


SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2, "": 3}


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
    alerts.sort(key=lambda a: (SEVERITY_RANK.get(a.severity, 9), a.code in handled, order.get(a.code, len(order))))
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
        dose_mg=course.current_pred_eq_mg if course.current_pred_eq_mg else None,
        dose_mg_per_kg=course.current_mg_per_kg if course.current_pred_eq_mg else None,
        changes=changes,
        alerts=tuple((str(a.severity), a.code) for a in alerts),
        new=tuple(new),
        handled=handled,
        unhandled_worst=any(a.severity == worst and a.code not in handled for a in alerts),
    )


def sort_ward(rows: Sequence[WardRow]) -> list[WardRow]:
    """Whoever needs attention first: critical, then warning, then the rest; within a severity the
    patients with an unacknowledged alert of it first; more alerts first."""
    return sorted(
        rows,
        key=lambda r: (SEVERITY_RANK.get(r.worst, 9), not r.unhandled_worst, -r.n_critical, -r.n_warning, r.name.lower()),
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


# --- intake review list -----------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=8)
def review_items(url: str, version: tuple[Any, ...]) -> list[dict[str, Any]]:
    """The open items of the intake review list, oldest first (plain dicts: the page shows them as
    text; ``clear_caches`` after a write refreshes them)."""
    from monitoring import review

    with Session(_engine(url)) as s:
        items = review.open_items(s)
        return [
            {"id": i.id, "source": i.source, "location": i.location, "field": i.field or "", "value": i.value or "",
             "reason": i.reason, "kind": i.kind, "mrn": i.mrn or "", "record": i.record,
             "defaults": review.correction_defaults(i)}
            for i in items
        ]
