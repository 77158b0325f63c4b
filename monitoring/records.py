"""Plain, immutable patient records for the engine (steroids, rules, summary, RegiSCAR).

The engine never touches the ORM: it reads ``PatientRecord`` values built here, so a rule is a
plain function over plain data and is evaluated the same way for one patient or five thousand.

Loading is set-based (PRODUCT.md §8, performance): ``load_records`` issues a fixed number of
queries whatever the number of patients (patients, labs, medications, findings), each ordered in
SQL so that grouping is one linear pass. Hidden rows are excluded everywhere. BSA % entered with a
photograph is stored as a ``bsa_pct`` observation (monitoring.photos), so it arrives with the labs.
"""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from itertools import groupby, repeat
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import BindParameter, ColumnElement, Float, Select, bindparam, select
from sqlmodel import Session

from monitoring.db import table_of
from monitoring.models import ClinicalFinding, LabResult, MedicationRow, Patient

if TYPE_CHECKING:
    from monitoring.store import LabColumns

__all__ = [
    "PatientInfo",
    "LabPoint",
    "DoseRow",
    "PatientRecord",
    "load_record",
    "load_records",
]

# A bound-parameter list longer than this is split: SQLite refuses statements with more than
# 32 766 variables, and very long IN lists plan badly everywhere.
_ID_CHUNK = 10_000


@dataclass(frozen=True)
class PatientInfo:
    id: int
    mrn: str
    name: str
    sex: str | None
    birth_date: dt.date | None
    weight_kg: float | None
    onset_date: dt.date | None
    culprit_drugs: tuple[str, ...]
    baseline_creatinine_mg_dl: float | None
    resolved_date: dt.date | None
    setting: str
    active: bool
    synthetic: bool
    updated_at: dt.datetime | None
    # Drug allergies that are not DRESS culprits (FHIR AllergyIntolerance): shown, never matched.
    drug_allergies: tuple[str, ...] = ()
    # Each culprit as written, beside the stored name it resolved to: ((drug, as entered), ...).
    culprits_as_entered: tuple[tuple[str, str], ...] = ()

    def culprit_as_written(self, drug: str) -> str | None:
        """The text a culprit was written as, when it differs from its stored name ("Tegretol XR"
        for carbamazepine); None when it was written as stored or is not known."""
        written = [w for d, w in self.culprits_as_entered if d == drug and w.strip().lower() != drug]
        return "; ".join(dict.fromkeys(written)) or None


class LabPoint(NamedTuple):
    """One result or bedside observation, canonical value and unit plus what was received.

    A named tuple, not a dataclass: a record holds every result of a patient, an import of a
    million results builds a million of them, and a tuple is made at C speed (a frozen dataclass
    costs about seven times as much to build: bench/bench_import.py). Immutable like the rest."""

    id: int
    test: str
    taken_at: dt.datetime
    value: float | None
    unit: str
    value_text: str | None
    original_value: str
    original_unit: str
    ref_low: float | None
    ref_high: float | None
    loinc: str | None
    source: str
    amended: bool
    abnormal_flags: str | None = None  # the laboratory's own flags as sent (HL7 OBX-8: "H", "H~A")
    # Censored results (PRODUCT.md §4): '<', '<=', '>' or '>=' before ``value``; None when exact.
    comparator: str | None = None
    # final, preliminary (shown as such until its final replaces it), amended (PRODUCT.md §6 ed. 2)
    status: str = "final"
    # The bound of a '<x' / '<=x' result, for display only ("<30 ng/L"): ``value`` is None for the
    # rules, so such a result never makes a finding hold.
    censored_value: float | None = None

    @property
    def shown_value(self) -> float | None:
        """The number to show with ``comparator``: the value, or a '<x' result's bound."""
        return self.value if self.value is not None else self.censored_value


@dataclass(frozen=True)
class DoseRow:
    """A row of the dose schedule (PRODUCT.md §3): the dose holds until the next row of the drug."""

    id: int
    drug: str
    start_date: dt.date
    daily_dose_mg: float
    route: str | None
    dose_as_entered: str
    unit_as_entered: str
    source: str
    drug_as_entered: str = ""  # the name as written (brand names kept): shown in messages


def _day_end(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.max)


@dataclass(frozen=True)
class PatientRecord:
    patient: PatientInfo
    labs: tuple[LabPoint, ...]  # sorted by (taken_at, id): the last of a test is its latest value
    meds: tuple[DoseRow, ...]  # sorted by (start_date, id)
    findings: dict[str, str] = field(default_factory=dict)  # latest value per ClinicalFinding.item

    @cached_property
    def labs_by_test(self) -> dict[str, tuple[LabPoint, ...]]:
        """Results per catalogue key, each sorted by (taken_at, id) like ``labs``."""
        groups: dict[str, list[LabPoint]] = {}
        for p in self.labs:
            groups.setdefault(p.test, []).append(p)
        return {k: tuple(v) for k, v in groups.items()}

    def results(self, test: str, as_of: dt.date | None = None) -> tuple[LabPoint, ...]:
        """Results of ``test`` counted as of ``as_of``: the calendar date of taken_at, as recorded,
        is on or before it (PRODUCT.md §5: the time of day never excludes a result)."""
        points = self.labs_by_test.get(test, ())
        if as_of is None:
            return points
        end = bisect_right(points, _day_end(as_of), key=lambda p: p.taken_at)
        return points[:end]

    def latest(self, test: str, as_of: dt.date) -> LabPoint | None:
        """The latest result of ``test`` counted as of ``as_of``; ties on the same time go to the
        row stored last (highest id), which the (taken_at, id) order puts last."""
        counted = self.results(test, as_of)
        return counted[-1] if counted else None


# --- loading --------------------------------------------------------------------------------


def _patient_columns() -> Select:
    t = table_of(Patient)
    return select(
        t.c.id,
        t.c.mrn,
        t.c.name,
        t.c.sex,
        t.c.birth_date,
        t.c.weight_kg,
        t.c.onset_date,
        t.c.culprit_drugs,
        t.c.baseline_creatinine_mg_dl,
        t.c.resolved_date,
        t.c.setting,
        t.c.active,
        t.c.synthetic,
        t.c.updated_at,
        t.c.drug_allergies,
        t.c.culprits_as_entered,
    )


def _patient_info(row: Sequence[Any]) -> PatientInfo:
    """One row of ``_patient_columns()``: a Core row's values are typed Any, each is the Python
    type of its column (Integer id, Date birth_date, JSON lists for culprits, allergies and
    the culprits as written)."""
    (pid, mrn, name, sex, birth, weight, onset, culprits, baseline, resolved, setting, active, synthetic, updated,
     allergies, written) = row
    return PatientInfo(
        id=int(pid),
        mrn=str(mrn),
        name=str(name),
        sex=sex,
        birth_date=birth,
        weight_kg=weight,
        onset_date=onset,
        culprit_drugs=tuple(str(c) for c in (culprits or ())),
        baseline_creatinine_mg_dl=baseline,
        resolved_date=resolved,
        setting=str(setting or "inpatient"),
        active=bool(active),
        synthetic=bool(synthetic),
        updated_at=updated,
        drug_allergies=tuple(str(a) for a in (allergies or ())),
        culprits_as_entered=tuple(
            (str(w.get("drug", "")), str(w.get("as_entered", "")))
            for w in (written or ())
            if isinstance(w, dict)
        ),
    )


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for i in range(0, len(ids), _ID_CHUNK):
        yield ids[i : i + _ID_CHUNK]


_LAB_COLUMNS = (
    "patient_id", "id", "test", "taken_at", "value", "unit", "value_text", "original_value", "original_unit",
    "ref_low", "ref_high", "loinc", "source", "amended_at", "abnormal_flags", "comparator", "status",
)
_MED_COLUMNS = (
    "patient_id", "id", "drug", "start_date", "daily_dose_mg", "route", "dose_as_entered", "unit_as_entered",
    "source", "drug_as_entered",
)


@lru_cache(maxsize=4)
def _statements(active_only: bool, by_ids: bool) -> tuple[Select, Select, Select, Select]:
    """The four queries of ``load_records``, built once: the patients' ids, when given, are the
    expanding parameter ``ids`` (a statement built anew on every call costs more than running it
    for one patient: the lab feed loads one patient per message)."""
    pt = table_of(Patient)
    lt = table_of(LabResult)
    mt = table_of(MedicationRow)
    ft = table_of(ClinicalFinding)
    ids: BindParameter[list[int]] = bindparam("ids", expanding=True)

    def patient_filter(stmt: Select, column: ColumnElement[int]) -> Select:
        # Sub-select on the patient table: the database filters, no id list travels when None.
        if not active_only and not by_ids:
            return stmt
        sub = select(pt.c.id)
        if active_only:
            sub = sub.where(pt.c.active.is_(True))
        if by_ids:
            sub = sub.where(pt.c.id.in_(ids))
        return stmt.where(column.in_(sub))

    patients = _patient_columns()
    if active_only:
        patients = patients.where(pt.c.active.is_(True))
    if by_ids:
        patients = patients.where(pt.c.id.in_(ids))
    labs = select(*(lt.c[c] for c in _LAB_COLUMNS)).where(lt.c.hidden.is_(False))
    labs = patient_filter(labs, lt.c.patient_id).order_by(lt.c.patient_id, lt.c.taken_at, lt.c.id)
    meds = select(*(mt.c[c] for c in _MED_COLUMNS)).where(mt.c.hidden.is_(False))
    meds = patient_filter(meds, mt.c.patient_id).order_by(mt.c.patient_id, mt.c.start_date, mt.c.id)
    # Latest row per item is in force (models.ClinicalFinding): ordered, the last write wins.
    findings = patient_filter(select(ft.c.patient_id, ft.c.item, ft.c.value), ft.c.patient_id)
    findings = findings.order_by(ft.c.patient_id, ft.c.recorded_at, ft.c.id)
    return patients, labs, meds, findings


def _as_read(value: Any) -> Any:
    return value


def _cached(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process`` applied once per distinct stored value (None stays None)."""
    done: dict[Any, Any] = {None: None}

    def convert(stored: Any) -> Any:
        try:
            return done[stored]
        except KeyError:
            value = done[stored] = process(stored)
            return value

    return convert


# The lab query's columns whose stored value the column type converts on reading (on SQLite, the
# two times; Float's processor is skipped, SQLite returns floats already).
_CONVERTED_LAB_COLUMNS = ("taken_at", "amended_at")


def _lab_rows(
    session: Session, stmt: Select, params: dict[str, object]
) -> tuple[Sequence[Sequence[Any]], Callable[[Any], Any], Callable[[Any], Any]]:
    """The rows of the lab query, and the two functions that turn a row's ``taken_at`` and
    ``amended_at`` into what the ORM reads (a datetime, or None).

    On SQLite the rows are taken from the DBAPI cursor as stored, and the caller converts the two
    times in its one pass over the rows, each distinct value once, by the column type's own result
    processor: SQLAlchemy's per-row work, or transposing every column to convert two, costs more
    than the query at a million results (bench/bench_import.py). Other databases: the Core result,
    already converted (the functions return their argument)."""
    result = session.connection().execute(stmt, params)
    dialect = result.dialect
    if dialect.name != "sqlite":
        return result.all(), _as_read, _as_read
    try:
        rows = result.cursor.fetchall()
    finally:
        result.close()
    lt = table_of(LabResult)
    processors: dict[str, Callable[[Any], Any]] = {}
    for name in _LAB_COLUMNS:
        process = lt.c[name].type.dialect_impl(dialect).result_processor(dialect, None)
        if process is not None and not isinstance(lt.c[name].type, Float):
            processors[name] = process
    others = sorted(set(processors) - set(_CONVERTED_LAB_COLUMNS))
    if others:  # a column added to the query whose stored value must be converted too
        raise RuntimeError(f"records._lab_rows converts only {_CONVERTED_LAB_COLUMNS}; also convert {others}")
    taken, amended = (_cached(processors[n]) if n in processors else _as_read for n in _CONVERTED_LAB_COLUMNS)
    return rows, taken, amended


@dataclass(frozen=True)
class WrittenLabs:
    """Lab results one transaction inserted in bulk, as columns, with the ids the database gave
    them (``first_id``, then one more per row, in column order): what ``load_records`` would read
    back for a patient whose every stored result is among them (``monitoring.store.write_batch``
    makes these for the patients an import created; ``monitoring.episodes`` uses them only while
    nothing else can have been committed since)."""

    first_id: int
    patient_id: Sequence[int]  # per row: the patient's id (``columns.mrn`` resolved)
    columns: LabColumns

    def points(self, dialect: Any, patients: set[int]) -> dict[int, list[LabPoint]]:
        """The results of ``patients`` as ``load_records`` reads them on ``dialect``: each stored
        value as the column type reads it back (times through the type's own bind and result
        processors, numbers as floats), ``<x`` results with their bound apart, in (taken_at, id)
        order per patient. Built at C speed, without a query."""
        n = len(self.patient_id)
        c = self.columns
        lt = table_of(LabResult)
        taken: Sequence[Any] = c.taken_at
        bind = lt.c.taken_at.type.dialect_impl(dialect).bind_processor(dialect)
        read = lt.c.taken_at.type.dialect_impl(dialect).result_processor(dialect, None)
        if bind is not None or read is not None:
            as_read = {v: _round_trip(v, bind, read) for v in set(taken)}
            taken = list(map(as_read.__getitem__, taken))
        value, low, high = (_floats(column) for column in (c.value, c.ref_low, c.ref_high))
        censored: Iterable[float | None] = repeat(None, n)
        comparator: Iterable[str | None] = repeat(None, n)
        if c.comparator is not None:
            comparator = [x or None for x in c.comparator]
            below = [c in ("<", "<=") for c in comparator]
            censored = [v if b else None for v, b in zip(value, below, strict=True)]
            value = [None if b else v for v, b in zip(value, below, strict=True)]
        rows = zip(
            range(self.first_id, self.first_id + n), c.test, taken, value, c.unit, c.value_text,
            c.original_value, c.original_unit, low, high, c.loinc, repeat(c.source), repeat(False),
            repeat(None), comparator, repeat("final"), censored,
        )
        out: dict[int, list[LabPoint]] = {}
        # One run per patient in the usual file (patient by patient): each run is taken at C speed.
        for pid, run in groupby(zip(self.patient_id, map(_new_tuple, repeat(LabPoint), rows), strict=True), key=_FIRST):
            if pid in patients:
                out.setdefault(pid, []).extend(map(_SECOND, run))
        for bucket in out.values():
            bucket.sort(key=_TAKEN_AT)  # stable: equal times stay in id order
        return out


_new_tuple = tuple.__new__
# ``WrittenLabs.points`` and ``load_records`` build LabPoints as plain tuples, by position, in this
# order: a field added or moved in LabPoint must be added or moved there too.
_LAB_POINT_ORDER = (
    "id", "test", "taken_at", "value", "unit", "value_text", "original_value", "original_unit", "ref_low", "ref_high",
    "loinc", "source", "amended", "abnormal_flags", "comparator", "status", "censored_value",
)
if LabPoint._fields != _LAB_POINT_ORDER:  # pragma: no cover - a developer's error, caught on import
    raise RuntimeError(f"records: LabPoint's fields {LabPoint._fields} are not the order its builders write")
_TAKEN_AT = attrgetter("taken_at")
_FIRST, _SECOND = itemgetter(0), itemgetter(1)


def _round_trip(value: Any, bind: Callable[[Any], Any] | None, read: Callable[[Any], Any] | None) -> Any:
    if value is None:
        return None
    stored = bind(value) if bind is not None else value
    return read(stored) if read is not None else stored


def _floats(column: Sequence[float | None]) -> Sequence[float | None]:
    """A Float column as read back: a REAL comes back a float, whatever number was written."""
    if set(map(type, column)) <= {float, type(None)}:
        return column
    return [None if v is None else float(v) for v in column]


def merge_points(written: Sequence[WrittenLabs], dialect: Any, patients: set[int]) -> dict[int, tuple[LabPoint, ...]]:
    """``WrittenLabs.points`` of several bulk inserts of one transaction, merged per patient."""
    merged: dict[int, list[LabPoint]] = {}
    for w in written:
        for pid, points in w.points(dialect, patients).items():
            if pid in merged:
                merged[pid].extend(points)
                merged[pid].sort(key=lambda p: (p.taken_at, p.id))
            else:
                merged[pid] = points
    return {pid: tuple(points) for pid, points in merged.items()}


def _read_patients_meds_findings(
    session: Session,
    patient_stmt: Select,
    med_stmt: Select,
    f_stmt: Select,
    params: dict[str, object],
    infos: dict[int, PatientInfo],
    meds: dict[int, list[DoseRow]],
    findings: dict[int, dict[str, str]],
) -> None:
    """Three of ``load_records``' four queries: the patients, their medications, their findings."""
    for row in session.execute(patient_stmt, params):
        info = _patient_info(tuple(row))
        infos[info.id] = info
    for pid, mid, drug, start, dose, route, dose_in, unit_in, source, drug_in in session.execute(med_stmt, params):
        meds.setdefault(pid, []).append(DoseRow(mid, drug, start, float(dose), route, dose_in, unit_in, source, drug_in or drug))
    for pid, item, value in session.execute(f_stmt, params):
        findings.setdefault(pid, {})[item] = value


def load_records(
    session: Session,
    patient_ids: list[int] | None = None,
    *,
    active_only: bool = True,
    known_labs: Mapping[int, tuple[LabPoint, ...]] | None = None,
) -> list[PatientRecord]:
    """Records of the given patients (all patients when None), ordered by MRN.

    Four queries whatever the number of patients (per 10 000 explicit ids): patients, labs,
    medications, findings. ``active_only`` drops inactive patients. ``known_labs``: patients whose
    stored results the caller holds exactly as this function would read them (``WrittenLabs``):
    their results are not read again (only with ``patient_ids``).
    """
    if known_labs and patient_ids is not None:
        return _with_known_labs(session, patient_ids, active_only, known_labs)
    id_groups: list[Sequence[int] | None] = [None] if patient_ids is None else list(_chunks(sorted(set(patient_ids))))
    infos: dict[int, PatientInfo] = {}
    labs: dict[int, list[LabPoint]] = {}
    meds: dict[int, list[DoseRow]] = {}
    findings: dict[int, dict[str, str]] = {}
    for ids in id_groups:
        patient_stmt, lab_stmt, med_stmt, f_stmt = _statements(active_only, ids is not None)
        params: dict[str, object] = {} if ids is None else {"ids": list(ids)}
        _read_patients_meds_findings(session, patient_stmt, med_stmt, f_stmt, params, infos, meds, findings)
        current_pid = None
        bucket: list[LabPoint] = []
        lab_rows, taken, _ = _lab_rows(session, lab_stmt, params)  # amended_at: only whether it is set
        for (pid, lid, test, taken_at, value, unit, vtext, oval, ounit, rlow, rhigh, loinc, source, amended_at, lab_flags,
             cmp, status) in lab_rows:
            bound = None
            if cmp in ("<", "<="):
                # A censored "<x" (PRODUCT.md §4) has no value to compute with: its bound is kept
                # apart (censored_value), judged only by monitoring.limits with its comparator, and
                # shown as received ("<0.03"). ">x" keeps x (it exceeds what x exceeds).
                value, bound = None, value
            if pid != current_pid:
                bucket = labs.setdefault(pid, [])
                current_pid = pid
            bucket.append(_new_tuple(LabPoint, (  # the fields in LabPoint's order, built at C speed
                lid, test, taken(taken_at), value, unit, vtext, oval, ounit or "", rlow, rhigh, loinc, source,
                amended_at is not None, lab_flags, cmp or None, status or "final", bound,
            )))

    records = [
        PatientRecord(
            patient=info,
            labs=tuple(labs.get(pid, ())),
            meds=tuple(meds.get(pid, ())),
            findings=findings.get(pid, {}),
        )
        for pid, info in infos.items()
    ]
    records.sort(key=lambda r: r.patient.mrn)
    return records


def _with_known_labs(
    session: Session, patient_ids: list[int], active_only: bool, known_labs: Mapping[int, tuple[LabPoint, ...]]
) -> list[PatientRecord]:
    """``load_records`` of ``patient_ids`` where the results of some are known: the others are
    read as usual, and the known ones are read without their results, which are put in."""
    wanted = set(patient_ids)
    known = wanted & set(known_labs)
    records = load_records(session, sorted(wanted - known), active_only=active_only) if wanted - known else []
    bare = _load_without_labs(session, sorted(known), active_only)
    records += [
        PatientRecord(patient=r.patient, labs=known_labs[r.patient.id], meds=r.meds, findings=r.findings) for r in bare
    ]
    records.sort(key=lambda r: r.patient.mrn)
    return records


def _load_without_labs(session: Session, patient_ids: list[int], active_only: bool) -> list[PatientRecord]:
    """Records of these patients with their medications and findings, and no results."""
    infos: dict[int, PatientInfo] = {}
    meds: dict[int, list[DoseRow]] = {}
    findings: dict[int, dict[str, str]] = {}
    for ids in _chunks(patient_ids):
        patient_stmt, _, med_stmt, f_stmt = _statements(active_only, True)
        params: dict[str, object] = {"ids": list(ids)}
        _read_patients_meds_findings(session, patient_stmt, med_stmt, f_stmt, params, infos, meds, findings)
    return [
        PatientRecord(patient=info, labs=(), meds=tuple(meds.get(pid, ())), findings=findings.get(pid, {}))
        for pid, info in infos.items()
    ]


def load_record(session: Session, mrn: str) -> PatientRecord:
    """The record of one patient, active or not; LookupError for an unknown MRN."""
    pt = table_of(Patient)
    pid = session.execute(select(pt.c.id).where(pt.c.mrn == mrn)).scalar_one_or_none()
    if pid is None:
        raise LookupError(f"unknown MRN {mrn!r}: no such patient")
    records = load_records(session, [int(pid)], active_only=False)
    return records[0]
