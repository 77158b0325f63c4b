"""The write path shared by every importer (CSV, FHIR, demo, dashboard entry).

Importers validate and convert their input into ``PatientIn`` / ``LabIn`` / ``MedIn`` records,
then hand them to ``write_batch``, which checks them against the database set-wise (MRNs known,
conflicting values) and inserts them in bulk inside the caller's transaction. Any problem rejects
the whole batch: ``BatchRejected`` carries every problem and nothing has been written.

Rules (PRODUCT.md §6): identical rows already stored are skipped (re-import changes nothing); a
CSV row with the same patient, test and time as a stored result but a different value is an
error; FHIR Observations are identified by resource id (``source_id``), so two Observations with
different ids at the same time are both kept; a medication row for a stored (patient, drug, start
date) with a different dose is a conflict.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select, update
from sqlmodel import Session

from monitoring.models import AuditEntry, LabResult, MedicationRow, Patient, utcnow

PATIENT_FIELDS = (
    "name",
    "sex",
    "birth_date",
    "weight_kg",
    "onset_date",
    "culprit_drugs",
    "baseline_creatinine_mg_dl",
    "resolved_date",
    "setting",
    "active",
    "synthetic",
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, precise enough to find and fix it."""

    where: str  # "labs.csv: row 5" or "bundle.json: Observation/abc (entry[3])"
    column: str | None
    value: Any
    reason: str

    def __str__(self) -> str:
        parts = [self.where]
        if self.column is not None:
            parts.append(f"column {self.column}")
        if self.value is not None:
            parts.append(f"value {_show(self.value)}")
        parts.append(self.reason)
        return ": ".join(parts)


def _show(value: Any) -> str:
    text = str(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return repr(text)


class BatchRejected(Exception):
    """The batch was refused; nothing was written. ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class PatientIn:
    mrn: str
    name: str | None = None
    values: dict[str, Any] = field(default_factory=dict)  # only the fields given (upsert)
    where: str = ""


@dataclass
class LabIn:
    mrn: str
    test: str
    taken_at: dt.datetime
    value: float | None
    unit: str
    original_value: str
    original_unit: str
    loinc: str | None = None
    value_text: str | None = None
    ref_low: float | None = None
    ref_high: float | None = None
    source: str = "csv"
    source_id: str | None = None
    where: str = ""


@dataclass
class MedIn:
    mrn: str
    drug: str
    drug_as_entered: str
    start_date: dt.date
    daily_dose_mg: float
    dose_as_entered: str
    unit_as_entered: str
    route: str | None = None
    source: str = "csv"
    source_id: str | None = None
    where: str = ""
    # mg/kg doses are resolved against the patient's weight at write time when set
    dose_per_kg: float | None = None


@dataclass
class BatchResult:
    patients_created: int = 0
    patients_updated: int = 0
    labs_inserted: int = 0
    labs_skipped: int = 0
    meds_inserted: int = 0
    meds_skipped: int = 0
    skipped_resources: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _same_value(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def write_batch(
    session: Session,
    *,
    patients: Sequence[PatientIn] = (),
    labs: Sequence[LabIn] = (),
    meds: Sequence[MedIn] = (),
    username: str | None = None,
    source: str = "import",
    description: str | None = None,
) -> BatchResult:
    """Check and write one batch inside the caller's transaction. Raises BatchRejected."""
    problems: list[Problem] = []
    result = BatchResult()

    # --- patients: upsert by MRN -------------------------------------------------------------
    mrns_needed = {p.mrn for p in patients} | {lab.mrn for lab in labs} | {m.mrn for m in meds}
    existing = {
        row.mrn: row
        for row in session.execute(select(Patient).where(Patient.mrn.in_(mrns_needed))).scalars()  # type: ignore[attr-defined]
    } if mrns_needed else {}
    merged: dict[str, PatientIn] = {}
    for p in patients:
        prev = merged.get(p.mrn)
        if prev is None:
            merged[p.mrn] = PatientIn(p.mrn, p.name, dict(p.values), p.where)
        else:
            if p.name:
                prev.name = p.name
            prev.values.update(p.values)
    weights: dict[str, float | None] = {mrn: row.weight_kg for mrn, row in existing.items()}
    for mrn, p in merged.items():
        if "weight_kg" in p.values:
            weights[mrn] = p.values["weight_kg"]

    known = set(existing) | set(merged)
    for rec in [*labs, *meds]:
        if rec.mrn not in known:
            problems.append(Problem(rec.where, "mrn", rec.mrn, "unknown MRN: not in the database and not in this import"))
        if isinstance(rec, MedIn) and rec.dose_per_kg is not None and rec.mrn in known:
            w = weights.get(rec.mrn)
            if not w:
                problems.append(
                    Problem(rec.where, "unit", rec.unit_as_entered, f"a mg/kg dose needs the weight of patient {rec.mrn}, which is not recorded")
                )
            else:
                rec.daily_dose_mg = rec.dose_per_kg * w
    for mrn, p in merged.items():
        if mrn not in existing and not p.name:
            problems.append(Problem(p.where, "name", None, f"new patient {mrn} needs a name"))
    if problems:
        raise BatchRejected(problems)

    now = utcnow()
    for mrn, p in merged.items():
        row = existing.get(mrn)
        if row is None:
            row = Patient(mrn=mrn, name=p.name or mrn, **p.values)
            session.add(row)
            existing[mrn] = row
            result.patients_created += 1
        else:
            changes = {k: v for k, v in p.values.items() if getattr(row, k) != v}
            if p.name and p.name != row.name:
                changes["name"] = p.name
            if changes:
                before = {k: _jsonable(getattr(row, k)) for k in changes}
                for k, v in changes.items():
                    setattr(row, k, v)
                row.updated_at = now
                session.add(
                    AuditEntry(
                        username=username,
                        action="amend",
                        entity="patient",
                        entity_id=str(row.id),
                        patient_id=row.id,
                        before=before,
                        after={k: _jsonable(v) for k, v in changes.items()},
                        reason=description or f"{source} upsert",
                    )
                )
                result.patients_updated += 1
    session.flush()
    ids = {mrn: row.id for mrn, row in existing.items()}

    # --- labs -------------------------------------------------------------------------------
    lab_rows = _check_labs(session, labs, ids, problems, result)
    med_rows = _check_meds(session, meds, ids, problems, result)
    if problems:
        raise BatchRejected(problems)
    if lab_rows:
        for r in lab_rows:
            r["created_at"] = now
            r["entered_by"] = username
        session.execute(insert(LabResult.__table__), lab_rows)  # type: ignore[attr-defined]
        result.labs_inserted = len(lab_rows)
    if med_rows:
        for r in med_rows:
            r["created_at"] = now
            r["entered_by"] = username
        session.execute(insert(MedicationRow.__table__), med_rows)  # type: ignore[attr-defined]
        result.meds_inserted = len(med_rows)
    if result.patients_created or lab_rows or med_rows or result.patients_updated:
        session.add(
            AuditEntry(
                username=username,
                action="import",
                entity="batch",
                after={
                    "source": source,
                    "patients_created": result.patients_created,
                    "patients_updated": result.patients_updated,
                    "labs_inserted": result.labs_inserted,
                    "meds_inserted": result.meds_inserted,
                },
                reason=description,
            )
        )
    session.flush()
    return result


def _jsonable(v: Any) -> Any:
    if isinstance(v, dt.date | dt.datetime):
        return v.isoformat()
    return v


def _check_labs(
    session: Session,
    labs: Sequence[LabIn],
    ids: dict[str, int | None],
    problems: list[Problem],
    result: BatchResult,
) -> list[dict[str, Any]]:
    if not labs:
        return []
    patient_ids = {ids[lab.mrn] for lab in labs}
    tests = {lab.test for lab in labs}
    # Stored results of the patients and tests concerned: one query, compared in memory.
    by_key: dict[tuple[int, str, dt.datetime], list[tuple[float | None, str | None, str | None]]] = defaultdict(list)
    by_source: dict[tuple[int, str], tuple[str, dt.datetime, float | None, str | None]] = {}
    lt = LabResult.__table__  # type: ignore[attr-defined]
    chunk = sorted(patient_ids)
    for i in range(0, len(chunk), 500):
        stmt = select(lt.c.patient_id, lt.c.test, lt.c.taken_at, lt.c.value, lt.c.value_text, lt.c.source_id).where(
            lt.c.patient_id.in_(chunk[i : i + 500]), lt.c.test.in_(tests)
        )
        for pid, test, taken_at, value, value_text, source_id in session.execute(stmt):
            by_key[(pid, test, taken_at)].append((value, value_text, source_id))
            if source_id is not None:
                by_source[(pid, source_id)] = (test, taken_at, value, value_text)
    # A FHIR resource id is one result whatever its test: a resent Observation whose code changed
    # must meet its stored self here, or the unique index refuses the insert with a traceback.
    source_ids = sorted({lab.source_id for lab in labs if lab.source_id is not None})
    for i in range(0, len(source_ids), 500):
        stmt = select(lt.c.patient_id, lt.c.test, lt.c.taken_at, lt.c.value, lt.c.value_text, lt.c.source_id).where(
            lt.c.patient_id.in_(chunk), lt.c.source_id.in_(source_ids[i : i + 500])
        )
        for pid, test, taken_at, value, value_text, source_id in session.execute(stmt):
            by_source[(pid, source_id)] = (test, taken_at, value, value_text)
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[int, str, dt.datetime], LabIn] = {}
    seen_source: set[tuple[int, str]] = set()
    for lab in labs:
        pid = ids[lab.mrn]
        assert pid is not None
        key = (pid, lab.test, lab.taken_at)
        if lab.source_id is not None:
            # FHIR: identity is the resource id.
            sk = (pid, lab.source_id)
            if sk in seen_source:
                result.labs_skipped += 1
                continue
            stored = by_source.get(sk)
            if stored is not None:
                if stored[0] == lab.test and stored[1] == lab.taken_at and _same_value(stored[2], lab.value) and stored[3] == lab.value_text:
                    result.labs_skipped += 1
                    continue
                problems.append(
                    Problem(
                        lab.where,
                        "value",
                        lab.original_value,
                        f"resource {lab.source_id} is stored with a different value or time; corrections are amendments made in the dashboard",
                    )
                )
                continue
            seen_source.add(sk)
        else:
            stored_values = by_key.get(key, [])
            if any(_same_value(v, lab.value) and vt == lab.value_text for v, vt, _ in stored_values):
                result.labs_skipped += 1
                continue
            if stored_values:
                v, vt, _ = stored_values[0]
                problems.append(
                    Problem(
                        lab.where,
                        "value",
                        lab.original_value,
                        f"conflicts with the stored {lab.test} of {lab.taken_at.isoformat(sep=' ')} "
                        f"({v if v is not None else vt} {lab.unit}); corrections are amendments made in the dashboard",
                    )
                )
                continue
            prev = seen.get(key)
            if prev is not None:
                if _same_value(prev.value, lab.value) and prev.value_text == lab.value_text:
                    result.labs_skipped += 1
                    continue
                problems.append(
                    Problem(
                        lab.where,
                        "value",
                        lab.original_value,
                        f"conflicts with {prev.where} (same patient, test and time, different value)",
                    )
                )
                continue
            seen[key] = lab
        rows.append(
            {
                "patient_id": pid,
                "test": lab.test,
                "loinc": lab.loinc,
                "taken_at": lab.taken_at,
                "value": lab.value,
                "unit": lab.unit,
                "value_text": lab.value_text,
                "original_value": lab.original_value,
                "original_unit": lab.original_unit,
                "ref_low": lab.ref_low,
                "ref_high": lab.ref_high,
                "source": lab.source,
                "source_id": lab.source_id,
                "hidden": False,
            }
        )
    return rows


def _check_meds(
    session: Session,
    meds: Sequence[MedIn],
    ids: dict[str, int | None],
    problems: list[Problem],
    result: BatchResult,
) -> list[dict[str, Any]]:
    if not meds:
        return []
    patient_ids = sorted({ids[m.mrn] for m in meds})
    mt = MedicationRow.__table__  # type: ignore[attr-defined]
    stored: dict[tuple[int, str, dt.date], float] = {}
    for pid, drug, start, dose in session.execute(
        select(mt.c.patient_id, mt.c.drug, mt.c.start_date, mt.c.daily_dose_mg).where(mt.c.patient_id.in_(patient_ids))
    ):
        stored[(pid, drug, start)] = dose
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[int, str, dt.date], MedIn] = {}
    for m in meds:
        pid = ids[m.mrn]
        assert pid is not None
        key = (pid, m.drug, m.start_date)
        if key in stored:
            if _same_value(stored[key], m.daily_dose_mg):
                result.meds_skipped += 1
                continue
            problems.append(
                Problem(
                    m.where,
                    "daily_dose",
                    m.dose_as_entered,
                    f"conflicts with the stored {m.drug} dose from {m.start_date.isoformat()} ({stored[key]:g} mg/day); "
                    "corrections are amendments made in the dashboard",
                )
            )
            continue
        prev = seen.get(key)
        if prev is not None:
            if _same_value(prev.daily_dose_mg, m.daily_dose_mg):
                result.meds_skipped += 1
                continue
            problems.append(
                Problem(m.where, "daily_dose", m.dose_as_entered, f"conflicts with {prev.where} (same patient, drug and start date)")
            )
            continue
        seen[key] = m
        rows.append(
            {
                "patient_id": pid,
                "drug": m.drug,
                "drug_as_entered": m.drug_as_entered,
                "start_date": m.start_date,
                "daily_dose_mg": m.daily_dose_mg,
                "dose_as_entered": m.dose_as_entered,
                "unit_as_entered": m.unit_as_entered,
                "route": m.route,
                "source": m.source,
                "source_id": m.source_id,
                "hidden": False,
            }
        )
    return rows


def patient_ids_by_mrn(session: Session, mrns: Iterable[str]) -> dict[str, int]:
    wanted = list(set(mrns))
    if not wanted:
        return {}
    pt = Patient.__table__  # type: ignore[attr-defined]
    return {mrn: pid for pid, mrn in session.execute(select(pt.c.id, pt.c.mrn).where(pt.c.mrn.in_(wanted)))}


def touch_patient(session: Session, patient_id: int) -> None:
    """Mark a patient as changed (used by caches keyed on updated_at)."""
    session.execute(update(Patient).where(Patient.id == patient_id).values(updated_at=utcnow()))  # type: ignore[arg-type]
