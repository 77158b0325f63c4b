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

from sqlalchemy import Float, Table, bindparam, insert, select, update
from sqlmodel import Session, col

from monitoring import audit
from monitoring.audit import jsonable
from monitoring.db import table_of
from monitoring.episodes import patients_written
from monitoring.models import LabResult, MedicationRow, Patient, utcnow
from monitoring.records import WrittenLabs

# Values per IN list: far below SQLite's variable limit (32 766) and psycopg's 65 535 parameters.
IN_CHUNK = 5000

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


# Columns of a lab row as _check_labs builds it (created_at and entered_by are added per batch).
LAB_INSERT_COLUMNS = (
    "patient_id",
    "test",
    "loinc",
    "taken_at",
    "value",
    "unit",
    "value_text",
    "original_value",
    "original_unit",
    "ref_low",
    "ref_high",
    "source",
    "source_id",
    "hidden",
    "abnormal_flags",
    "comparator",
    "taken_at_offset_minutes",
    "status",
    "source_identifier",
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, precise enough to find and fix it."""

    where: str  # "labs.csv: row 5" or "bundle.json: Observation/abc (entry[3])", or "entry" (a form)
    column: str | None
    value: Any
    reason: str
    subject: str | None = None  # what the value is about (the test: "ALT"), named by a form's message

    def __str__(self) -> str:
        if self.subject is not None and self.where.split(":")[0] == "entry":
            # A form has no file or row: "ALT value '-5': negative values are impossible".
            label = FIELD_LABELS.get(self.column or "", self.column or "")
            return f"{self.subject} {label} {_show(self.value)}: {self.reason}"
        parts = [self.where]
        if self.column is not None:
            parts.append(f"column {self.column}")
        if self.value is not None:
            parts.append(f"value {_show(self.value)}")
        parts.append(self.reason)
        return ": ".join(parts)


FIELD_LABELS = {"taken_at": "time taken", "ref_low": "reference low", "ref_high": "reference high",
                "daily_dose": "daily dose", "start_date": "start date"}


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


@dataclass(slots=True)
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
    abnormal_flags: str | None = None  # HL7 OBX-8 as sent ("H", "H~A")
    comparator: str | None = None  # "<", "<=", ">", ">=": a censored result (PRODUCT.md §4)
    taken_at_offset_minutes: int | None = None  # the UTC offset the time was recorded with
    status: str = "final"  # intake.RESULT_STATUSES
    source_identifier: str | None = None  # FHIR Observation.identifier as "system|value" (models.LabResult)


@dataclass
class LabColumns:
    """Many lab results of one CSV file as columns: the fields of ``LabIn``, one list per field.

    The bulk CSV import builds this instead of a million ``LabIn`` objects. Results are identified
    by (patient, test, time) (no ``source_id``). ``records()`` gives the same rows as ``LabIn``.
    """

    file: str
    rownums: Sequence[int]
    mrn: list[str]
    test: list[str]
    loinc: list[str | None]
    taken_at: list[dt.datetime]
    value: list[float | None]
    unit: list[str]
    value_text: list[str | None]
    original_value: list[str]
    original_unit: list[str]
    ref_low: list[float | None]
    ref_high: list[float | None]
    source: str = "csv"
    # None: no row of the file has one (the usual file), else one entry per row.
    comparator: list[str | None] | None = None
    taken_at_offset_minutes: list[int | None] | None = None

    def __len__(self) -> int:
        return len(self.mrn)

    def where(self, i: int) -> str:
        return f"{self.file}: row {self.rownums[i]}"

    def records(self) -> list[LabIn]:
        """As ``LabIn`` records in file order, for the row-by-row checks."""
        order = sorted(range(len(self)), key=self.rownums.__getitem__)
        comparators = self.comparator or [None] * len(self)
        offsets = self.taken_at_offset_minutes or [None] * len(self)
        return [
            LabIn(
                self.mrn[i],
                self.test[i],
                self.taken_at[i],
                self.value[i],
                self.unit[i],
                self.original_value[i],
                self.original_unit[i],
                self.loinc[i],
                self.value_text[i],
                self.ref_low[i],
                self.ref_high[i],
                self.source,
                None,
                self.where(i),
                comparator=comparators[i],
                taken_at_offset_minutes=offsets[i],
            )
            for i in order
        ]


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
    # Stored results a source re-sent as a correction / the final of a preliminary, or withdrew
    # (FHIR entered-in-error): amended or hidden through monitoring.services, audited.
    labs_amended: int = 0
    labs_removed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _same_value(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def unknown_mrn(where: str, mrn: str) -> Problem:
    """The problem of a record naming a patient that is neither stored nor in the import."""
    return Problem(where, "mrn", mrn, "unknown MRN: not in the database and not in this import")


def unknown_mrns(session: Session, rows: Sequence[tuple[str, str]], importing: Iterable[str]) -> list[Problem]:
    """For records refused for other reasons (``(where, MRN)``): the unknown-MRN problem of each
    whose patient is neither stored nor in ``importing``, so a row's report names all it has."""
    wanted = sorted({mrn for _, mrn in rows} - set(importing))
    stored: set[str] = set()
    for i in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[i : i + IN_CHUNK]
        stored.update(session.execute(select(col(Patient.mrn)).where(col(Patient.mrn).in_(chunk))).scalars())
    missing = set(wanted) - stored
    return [unknown_mrn(where, mrn) for where, mrn in rows if mrn in missing]


# Statements of every batch, built once (a feed message is a batch: building a statement cost
# more than running it).
_PATIENTS_BY_MRN = select(Patient).where(col(Patient.mrn).in_(bindparam("mrns", expanding=True)))
_LT = table_of(LabResult)
_RESULTS_BY_SOURCE_ID = select(
    _LT.c.patient_id, _LT.c.test, _LT.c.taken_at, _LT.c.value, _LT.c.value_text, _LT.c.source_id, _LT.c.comparator
).where(_LT.c.patient_id.in_(bindparam("source_patients", expanding=True)), _LT.c.source_id.in_(bindparam("source_ids", expanding=True)))


def write_batch(
    session: Session,
    *,
    patients: Sequence[PatientIn] = (),
    labs: Sequence[LabIn] = (),
    meds: Sequence[MedIn] = (),
    username: str | None = None,
    source: str = "import",
    description: str | None = None,
    check_only: bool = False,
    lab_columns: Sequence[LabColumns] = (),
) -> BatchResult:
    """Check and write one batch inside the caller's transaction. Raises BatchRejected.

    Every problem is collected before raising: a record refused for one reason (unknown MRN, a
    mg/kg dose without a weight) is left out of the later checks, the others are still checked for
    conflicts. On BatchRejected the caller must roll back (patients may have been flushed).
    ``check_only`` runs every check and writes nothing (an importer that already found problems in
    its files uses it to report the database's problems too). ``lab_columns`` are lab results in
    columns (bulk CSV import): checked set-wise, and row by row only when a row may be refused or
    skipped, with the same rules as ``labs``.
    """
    problems: list[Problem] = []
    result = BatchResult()

    # --- patients: upsert by MRN -------------------------------------------------------------
    mrns_needed = {p.mrn for p in patients} | {lab.mrn for lab in labs} | {m.mrn for m in meds}
    for cols in lab_columns:
        mrns_needed.update(cols.mrn)
    existing: dict[str, Patient] = {}
    wanted = sorted(mrns_needed)
    for i in range(0, len(wanted), IN_CHUNK):
        # Chunked: one IN list of 2.56 M MRNs is "too many SQL variables" (SQLite) or parameters (psycopg).
        chunk_mrns = wanted[i : i + IN_CHUNK]
        for row in session.execute(_PATIENTS_BY_MRN, {"mrns": chunk_mrns}).scalars():
            existing[row.mrn] = row
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

    for mrn, p in list(merged.items()):
        if mrn not in existing and not p.name:
            problems.append(Problem(p.where, "name", None, f"new patient {mrn} needs a name"))
            del merged[mrn]
    known = set(existing) | set(merged)
    if any(not known.issuperset(cols.mrn) for cols in lab_columns):
        # Some rows name unknown patients: those rows are reported one by one.
        labs = [*labs, *(lab for cols in lab_columns for lab in cols.records())]
        lab_columns = ()
    if any(lab.mrn not in known for lab in labs):
        for lab in labs:
            if lab.mrn not in known:
                problems.append(unknown_mrn(lab.where, lab.mrn))
        labs = [lab for lab in labs if lab.mrn in known]
    good_meds: list[MedIn] = []
    for m in meds:
        if m.mrn not in known:
            problems.append(unknown_mrn(m.where, m.mrn))
            continue
        if m.dose_per_kg is not None:
            w = weights.get(m.mrn)
            if not w:
                problems.append(
                    Problem(m.where, "unit", m.unit_as_entered, f"a mg/kg dose needs the weight of patient {m.mrn}, which is not recorded")
                )
                continue
            m.daily_dose_mg = m.dose_per_kg * w
        good_meds.append(m)
    meds = good_meds

    now = utcnow()
    if check_only:
        # Nothing is written: new patients get placeholder ids for the in-batch conflict checks.
        ids: dict[str, int | None] = {mrn: row.id for mrn, row in existing.items()}
        for k, mrn in enumerate(m for m in merged if m not in existing):
            ids[mrn] = -1 - k
        if lab_columns:
            labs = [*labs, *(lab for cols in lab_columns for lab in cols.records())]
        _check_labs(session, labs, ids, problems, result)
        _check_meds(session, meds, ids, problems, result)
        if problems:
            raise BatchRejected(problems)
        return result
    created: list[str] = []  # MRNs of the patients this batch creates
    for mrn, p in merged.items():
        row = existing.get(mrn)
        if row is None:
            row = Patient(mrn=mrn, name=p.name or mrn, **p.values)
            session.add(row)
            existing[mrn] = row
            created.append(mrn)
            result.patients_created += 1
        else:
            changes: dict[str, Any] = {k: v for k, v in p.values.items() if getattr(row, k) != v}
            if p.name and p.name != row.name:
                changes["name"] = p.name
            if changes:
                before = {k: jsonable(getattr(row, k)) for k in changes}
                for name, value in changes.items():
                    setattr(row, name, value)
                row.updated_at = now
                audit.record(
                    session,
                    username=username,
                    action="amend",
                    entity="patient",
                    entity_id=str(row.id),
                    patient_id=row.id,
                    before=before,
                    after={k: jsonable(v) for k, v in changes.items()},
                    reason=description or f"{source} upsert",
                )
                result.patients_updated += 1
    session.flush()
    ids = {mrn: row.id for mrn, row in existing.items()}

    # --- labs -------------------------------------------------------------------------------
    if lab_columns and not _all_new(session, labs, lab_columns, ids):
        labs = [*labs, *(lab for cols in lab_columns for lab in cols.records())]
        lab_columns = ()
    lab_rows = _check_labs(session, labs, ids, problems, result)
    med_rows = _check_meds(session, meds, ids, problems, result)
    if problems:
        raise BatchRejected(problems)
    lab_constants = {"created_at": now, "entered_by": username}
    if lab_rows:
        _bulk_insert(session, table_of(LabResult), LAB_INSERT_COLUMNS, list(zip(*lab_rows, strict=True)), lab_constants)
        result.labs_inserted = len(lab_rows)
    lab_rows_written = bool(lab_rows)
    # The results inserted in bulk, with their ids, for the patients this batch creates: their
    # episodes are evaluated after the commit without reading them back (episodes.patients_written).
    written: list[WrittenLabs] = []
    all_known = session.connection().dialect.name == "sqlite"
    flushed = {mrn: int(pid) for mrn, pid in ids.items() if pid is not None}  # every patient has its id now
    for cols in lab_columns:
        n = len(cols)
        if not n:
            continue
        pids = list(map(flushed.__getitem__, cols.mrn))
        id_before = _max_lab_id(session) if all_known else 0
        columns: list[Sequence[Any]] = [
            pids,
            cols.test,
            cols.loinc,
            cols.taken_at,
            cols.value,
            cols.unit,
            cols.value_text,
            cols.original_value,
            cols.original_unit,
            cols.ref_low,
            cols.ref_high,
            cols.comparator or [None] * n,
            cols.taken_at_offset_minutes or [None] * n,
        ]
        _bulk_insert(
            session,
            table_of(LabResult),
            (*LAB_INSERT_COLUMNS[:11], "comparator", "taken_at_offset_minutes"),
            columns,
            {**lab_constants, "source": cols.source, "source_id": None, "hidden": False, "status": "final"},
        )
        result.labs_inserted += n
        lab_rows_written = True
        if all_known and _max_lab_id(session) - id_before == n:
            # n new ids, each above the previous maximum, none above it by more than n: the rows got
            # id_before + 1 ... id_before + n in the order given (this transaction holds the write lock).
            written.append(WrittenLabs(id_before + 1, pids, cols))
        else:
            all_known = False
    if med_rows:
        for r in med_rows:
            r["created_at"] = now
            r["entered_by"] = username
        session.execute(insert(table_of(MedicationRow)), med_rows)
        result.meds_inserted = len(med_rows)
    if result.patients_created or lab_rows_written or med_rows or result.patients_updated:
        audit.append(
            session,
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
    session.flush()
    # Their alert episodes are reconciled when this transaction commits (monitoring.episodes).
    if result.patients_created or lab_rows_written or med_rows or result.patients_updated:
        complete = {flushed[mrn] for mrn in created} - {r[0] for r in lab_rows} if all_known else set()
        patients_written(session, ids.values(), labs=written, labs_complete_for=complete)
    return result


def _max_lab_id(session: Session) -> int:
    """The highest lab_result id (0 when none): a lookup at the end of the primary key."""
    return int(session.connection().exec_driver_sql("SELECT max(id) FROM lab_result").scalar() or 0)


def _bulk_insert(
    session: Session,
    table: Table,
    names: Sequence[str],
    columns: Sequence[Sequence[Any]],
    constants: dict[str, Any],
) -> None:
    """Insert many rows, given as columns in the order of ``names`` plus ``constants`` for every
    row, at once in the session's transaction.

    On SQLite the rows go straight to the DBAPI cursor's ``executemany``: SQLAlchemy's per-row
    parameter processing costs more than the insert itself at a million rows (measured with
    bench/bench_import.py). Values are converted by the column types' own bind processors, so the
    stored text (dates, times, booleans) is exactly what the ORM writes and reads back; each
    distinct value is converted once (a panel of results shares its time). Other databases get a
    Core insert.
    """
    n = len(columns[0])
    all_names = [*names, *constants]
    cols: list[Sequence[Any]] = [*columns, *([v] * n for v in constants.values())]
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "sqlite":
        session.execute(insert(table), [dict(zip(all_names, row, strict=True)) for row in zip(*cols, strict=True)])
        return
    # A column that is NULL on every row and has no default is left out of the statement: it is
    # NULL anyway, and binding a million NULLs costs about a third of the insert (measured).
    keep = [
        k
        for k, name in enumerate(all_names)
        if not (
            cols[k].count(None) == n
            and table.c[name].nullable
            and table.c[name].default is None
            and table.c[name].server_default is None
        )
    ]
    all_names = [all_names[k] for k in keep]
    cols = [cols[k] for k in keep]
    literals: dict[str, str] = {}
    for k, name in enumerate(all_names):
        process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if name in constants:
            # The same value on every row is written into the statement once (bound per row it
            # would cost a quarter of the insert), as the bind processor makes it.
            value = constants[name]
            literal = _sqlite_literal(process(value) if process is not None and value is not None else value)
            if literal is not None:
                literals[name] = literal
                continue
        if process is None:
            continue
        if isinstance(table.c[name].type, Float) and set(map(type, cols[k])) <= {float, type(None)}:
            continue  # the Float processor turns Decimals into floats: nothing to do for floats
        converted = {v: process(v) for v in set(cols[k]) if v is not None}
        converted[None] = None
        cols[k] = list(map(converted.__getitem__, cols[k]))
    bound = [k for k, name in enumerate(all_names) if name not in literals]
    values = ", ".join(literals.get(name, "?") for name in all_names)
    sql = f"INSERT INTO {table.name} ({', '.join(all_names)}) VALUES ({values})"
    connection.exec_driver_sql(sql, list(zip(*(cols[k] for k in bound), strict=True)))


def _sqlite_literal(value: Any) -> str | None:
    """``value`` as an SQLite literal, or None when it is not one of the plain types below."""
    if value is None:
        return "NULL"
    if type(value) is bool:
        return "1" if value else "0"
    if type(value) is int:
        return str(value)
    if type(value) is float and math.isfinite(value):
        return repr(value)
    if type(value) is str and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"  # SQL string literal: a quote is doubled
    return None


def _all_new(session: Session, labs: Sequence[LabIn], lab_columns: Sequence[LabColumns], ids: dict[str, int | None]) -> bool:
    """True when every result identified by (patient, test, time) is new: none repeats within the
    batch and none is stored. Then the row-by-row checks would insert every row, so they are skipped."""
    keys: set[tuple[Any, ...]] = set()
    count = 0
    tests: set[str] = set()
    for lab in labs:
        if lab.source_id is None:
            keys.add((ids[lab.mrn], lab.test, lab.taken_at))
            count += 1
            tests.add(lab.test)
    for cols in lab_columns:
        keys.update(zip(map(ids.__getitem__, cols.mrn), cols.test, cols.taken_at, strict=True))
        count += len(cols)
        tests.update(cols.test)
    if len(keys) != count:
        return False
    lt = table_of(LabResult)
    patient_ids = sorted({k[0] for k in keys})
    for i in range(0, len(patient_ids), 500):
        stmt = select(lt.c.patient_id, lt.c.test, lt.c.taken_at).where(
            lt.c.patient_id.in_(patient_ids[i : i + 500]), lt.c.test.in_(tests)
        )
        if not keys.isdisjoint(tuple(r) for r in session.execute(stmt)):
            return False
    return True



def _check_labs(
    session: Session,
    labs: Sequence[LabIn],
    ids: dict[str, int | None],
    problems: list[Problem],
    result: BatchResult,
) -> list[tuple[Any, ...]]:
    if not labs:
        return []
    patient_ids = {pid for lab in labs if (pid := ids[lab.mrn]) is not None}
    # Results identified by (patient, test, time) (no source id: CSV, forms) meet the stored results
    # of their patients and tests around their times: one query, compared in memory. The time window
    # is a day wider on each side than the batch's, so a stored time written in another text form
    # still meets its key; a feed message (every result has a source id) needs no such query.
    keyed = [lab for lab in labs if lab.source_id is None]
    tests = {lab.test for lab in keyed}
    by_key: dict[tuple[int, str, dt.datetime], list[tuple[float | None, str | None, str | None, str | None]]] = defaultdict(list)
    by_source: dict[tuple[int, str], tuple[str, dt.datetime, float | None, str | None, str | None]] = {}
    lt = table_of(LabResult)
    chunk = sorted({pid for lab in keyed if (pid := ids[lab.mrn]) is not None})
    if keyed:
        earliest = min(lab.taken_at for lab in keyed) - dt.timedelta(days=1)
        latest = max(lab.taken_at for lab in keyed) + dt.timedelta(days=1)
    for i in range(0, len(chunk), 500):
        stmt = select(lt.c.patient_id, lt.c.test, lt.c.taken_at, lt.c.value, lt.c.value_text, lt.c.source_id, lt.c.comparator).where(
            lt.c.patient_id.in_(chunk[i : i + 500]), lt.c.test.in_(tests), lt.c.taken_at.between(earliest, latest)
        )
        for pid, test, taken_at, value, value_text, source_id, comparator in session.execute(stmt):
            by_key[(pid, test, taken_at)].append((value, value_text, source_id, comparator))
    # A FHIR resource id (an HL7 result's identity) is one result whatever its test: a resent
    # Observation whose code changed must meet its stored self here, or the unique index refuses
    # the insert with a traceback. This is the only lookup by source id.
    # Asked by patient too: the index is (patient_id, source_id), and by source id alone SQLite
    # read the whole table for every message (seconds a message on a hospital's millions of rows).
    source_ids = sorted({lab.source_id for lab in labs if lab.source_id is not None})
    source_patients = sorted({pid for lab in labs if lab.source_id is not None and (pid := ids[lab.mrn]) is not None})
    for i in range(0, len(source_ids), 500):
        for pid, test, taken_at, value, value_text, source_id, comparator in session.execute(
            _RESULTS_BY_SOURCE_ID, {"source_patients": source_patients, "source_ids": source_ids[i : i + 500]}
        ):
            if pid in patient_ids:
                by_source[(pid, source_id)] = (test, taken_at, value, value_text, comparator)
    rows: list[tuple[Any, ...]] = []
    seen: dict[tuple[int, str, dt.datetime], LabIn] = {}
    seen_source: dict[tuple[int, str], LabIn] = {}
    for lab in labs:
        pid = ids[lab.mrn]
        assert pid is not None
        key = (pid, lab.test, lab.taken_at)
        if lab.source_id is not None:
            # FHIR: identity is the resource id.
            sk = (pid, lab.source_id)
            first = seen_source.get(sk)
            if first is not None:
                if (first.test, first.taken_at, first.value_text, first.comparator) == (
                    lab.test, lab.taken_at, lab.value_text, lab.comparator
                ) and _same_value(first.value, lab.value):
                    result.labs_skipped += 1
                else:  # never a silent drop: the caller's batch holds two results of one identity
                    problems.append(
                        Problem(lab.where, "value", lab.original_value,
                                f"the same result ({lab.source_id}) as {first.where} with a different value or time")
                    )
                continue
            stored = by_source.get(sk)
            if stored is not None:
                if (
                    stored[0] == lab.test
                    and stored[1] == lab.taken_at
                    and _same_value(stored[2], lab.value)
                    and stored[3] == lab.value_text
                    and stored[4] == lab.comparator
                ):
                    result.labs_skipped += 1
                    continue
                problems.append(
                    Problem(
                        lab.where,
                        "value",
                        lab.original_value,
                        f"resource {lab.source_id} is stored with a different value or time; a correction is sent with status "
                        "corrected or amended, or made in the dashboard",
                    )
                )
                continue
            seen_source[sk] = lab
        else:
            stored_values = by_key.get(key)
            if stored_values is not None and any(
                _same_value(v, lab.value) and vt == lab.value_text and c == lab.comparator for v, vt, _, c in stored_values
            ):
                result.labs_skipped += 1
                continue
            if stored_values:
                v, vt, _, c = stored_values[0]
                problems.append(
                    Problem(
                        lab.where,
                        "value",
                        lab.original_value,
                        f"conflicts with the stored {lab.test} of {lab.taken_at.isoformat(sep=' ')} "
                        f"({c or ''}{v if v is not None else vt} {lab.unit}); corrections are amendments made in the dashboard",
                    )
                )
                continue
            prev = seen.get(key)
            if prev is not None:
                if _same_value(prev.value, lab.value) and prev.value_text == lab.value_text and prev.comparator == lab.comparator:
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
            (
                pid,
                lab.test,
                lab.loinc,
                lab.taken_at,
                lab.value,
                lab.unit,
                lab.value_text,
                lab.original_value,
                lab.original_unit,
                lab.ref_low,
                lab.ref_high,
                lab.source,
                lab.source_id,
                False,
                lab.abnormal_flags,
                lab.comparator,
                lab.taken_at_offset_minutes,
                lab.status,
                lab.source_identifier,
            )
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
    patient_ids = sorted({pid for m in meds if (pid := ids[m.mrn]) is not None})
    mt = table_of(MedicationRow)
    stored: dict[tuple[int, str, dt.date], float] = {}
    for i in range(0, len(patient_ids), IN_CHUNK):
        for pid, drug, start, dose in session.execute(
            select(mt.c.patient_id, mt.c.drug, mt.c.start_date, mt.c.daily_dose_mg).where(
                mt.c.patient_id.in_(patient_ids[i : i + IN_CHUNK])
            )
        ):
            stored[(pid, drug, start)] = dose
    rows: list[dict[str, Any]] = []
    seen: dict[tuple[int, str, dt.date], MedIn] = {}
    from monitoring.intake import text_limit  # intake imports this module: read at call time

    drug_limit = text_limit("medication_row", "drug")  # the column's length, as intake.drug_name reads it
    for m in meds:
        pid = ids[m.mrn]
        assert pid is not None
        if len(m.drug) > drug_limit:
            # Every path's names pass intake.drug_name; this guards one that did not: refused, never cut.
            problems.append(Problem(m.where, "drug", m.drug_as_entered,
                                    f"the drug name is {len(m.drug)} characters long: at most {drug_limit} can be stored (never cut)"))
            continue
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
    pt = table_of(Patient)
    out: dict[str, int] = {}
    for i in range(0, len(wanted), IN_CHUNK):
        out.update(
            {mrn: pid for pid, mrn in session.execute(select(pt.c.id, pt.c.mrn).where(pt.c.mrn.in_(wanted[i : i + IN_CHUNK])))}
        )
    return out


def touch_patient(session: Session, patient_id: int) -> None:
    """Mark a patient as changed (used by caches keyed on updated_at). A Core UPDATE built once:
    nothing reads ``updated_at`` back from a Patient object of the writing session (readers
    read it in their own: records, the pages' cache keys)."""
    session.execute(_TOUCH, {"b_id": patient_id, "b_at": utcnow()})
    patients_written(session, [patient_id])


_PT = table_of(Patient)
_TOUCH = update(_PT).where(_PT.c.id == bindparam("b_id")).values(updated_at=bindparam("b_at"))
