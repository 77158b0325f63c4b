"""The dashboard's access to the database: the engine, the data version, and the cached reads
of what the pages show, cleared on write.

Every cached read is keyed on the database URL and a *data version*: one cheap query of the
highest ids and the latest patient change, so a write by this dashboard, another session or the
command line changes the key and the next rerun reads fresh data (PRODUCT.md §8). A write from a
page also calls ``clear_caches`` so every page shows the new data at once.

A page rerun reads only what it shows: a patient page loads only its patient (``load_record``,
through the MRN and patient-id indexes); the ward overview (dashboard.ward_model) loads the active
patients set-wise.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import TYPE_CHECKING, Any

import streamlit as st
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitoring import display
from monitoring.guideline import GuidelineProfile, load_profile
from monitoring.models import AlertEpisode, AuditEntry, ClinicalFinding, LabResult, MedicationRow, Patient, Photo
from monitoring.records import PatientRecord, load_record

if TYPE_CHECKING:
    # Imported where a table is built: half a second of start-up the sign-in form and the ward
    # overview do not need (bench/bench_startup.py).
    import pandas as pd

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


def now_minute() -> dt.datetime:
    """The current local time to the minute: the timeline's now line (a cache key that changes
    once a minute, not on every rerun)."""
    return dt.datetime.now().replace(second=0, microsecond=0)


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


# The columns of ``patient_rows()["labs"]`` a person reads (the others are the page's data).
ENTRY_LAB_COLUMNS = ("id", "taken_at", "test", "value", "unit", "as received", "reference range", "source", "amended")


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
                "test": display.test_label(r.test),
                # Text for every row (one column type: a PCR's 'detected' beside numbers made
                # pyarrow refuse the column), with a censored result's comparator: '<30', '>1000'.
                "value": (
                    display.value_text(r.test, r.value, r.unit, r.comparator) if r.value is not None else (r.value_text or "")
                ),
                "unit": display.unit_label(r.unit),
                "as received": display.as_received(r.original_value, r.original_unit),
                "reference range": display.reference_range(r.test, r.ref_low, r.ref_high, r.unit),
                "source": r.source,
                "amended": "yes" if r.amended_at else "",
                # Data for the page, not shown (ENTRY_LAB_COLUMNS): the test's key and the range at
                # full precision in the canonical unit (the form pre-fills it and stores it again).
                "test_key": r.test,
                "ref_low": r.ref_low,
                "ref_high": r.ref_high,
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
    rows = labs[(labs["test_key"] == test) & (labs["ref_low"].notna() | labs["ref_high"].notna())]
    if rows.empty:
        return None, None
    first = rows.iloc[0]
    low, high = first["ref_low"], first["ref_high"]
    return (None if pd.isna(low) else float(low)), (None if pd.isna(high) else float(high))


def csv_bytes(df: pd.DataFrame) -> bytes:
    """The table as CSV for a download: text cells that a spreadsheet would run as a formula are
    prefixed with ' (monitoring.spreadsheet); numeric columns are written as they are."""
    from monitoring.spreadsheet import formula_safe

    buf = io.StringIO()
    df.map(formula_safe).to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")


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
