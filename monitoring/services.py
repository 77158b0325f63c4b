"""Write services: the dashboard's (and later other pages') way to change clinical data.

Every function takes ``(session, *, username: str, ...)``, validates through the catalogue of
tests and the drug names exactly as an import would, writes inside the caller's transaction, and
appends an audit entry naming the user (``monitoring.audit.record``). Inserts go through ``monitoring.store.write_batch`` so
manual entries obey the same rules as CSV and FHIR imports (PRODUCT.md §6: a different value for a
stored patient, test and time is a conflict, not an overwrite).

Nothing clinical is overwritten silently or hard-deleted (PRODUCT.md §3): an amendment keeps the
earlier value in the audit entry's ``before`` and stamps ``amended_at``; hiding keeps the row with
its reason. Bad input raises ``BatchRejected`` whose problems name the field and the value, and
nothing is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import func, select
from sqlmodel import Session, col

from monitoring import audit, catalogue, intake
from monitoring.auth import authorise_write
from monitoring.intake import DOSE_UNITS, SETTINGS, SEXES, Refused
from monitoring.models import ClinicalFinding, LabResult, MedicationRow, Patient, Photo, utcnow
from monitoring.store import PATIENT_FIELDS, BatchRejected, MedIn, PatientIn, Problem, touch_patient, write_batch

__all__ = [
    "DOSE_UNITS",
    "SETTINGS",
    "SEXES",
    "add_dose_change",
    "add_lab_result",
    "add_patient",
    "amend_dose",
    "amend_from_source",
    "amend_lab_result",
    "finding_answers",
    "hide_record",
    "set_finding",
    "update_patient",
    "void_from_source",
]

WHERE = "entry"
_HIDEABLE: dict[str, type[LabResult | MedicationRow | Photo]] = {
    "lab_result": LabResult,
    "medication_row": MedicationRow,
    "photo": Photo,
}


def _reject(column: str, value: Any, reason: str, where: str = WHERE) -> BatchRejected:
    return BatchRejected([Problem(where, column, value, reason)])


def _require_user(session: Session, username: str, action: str, entity: str, **detail: Any) -> str:
    """The signed-in user's name, once their role allows writing (viewers are refused, and the
    refusal is audited: monitoring.auth.authorise_write)."""
    name = (username or "").strip()
    if not name:
        raise _reject("username", username, "every change is signed: a user name is required")
    authorise_write(session, username=name, action=action, entity=entity, detail={k: str(v) for k, v in detail.items()})
    return name


def _require_reason(reason: str | None) -> str:
    try:
        text = intake.free_text("reason", reason, required="a reason is required: corrections and removals are audited")
    except intake.FieldError as exc:
        raise _reject(exc.column, exc.value, exc.reason) from None
    assert text is not None
    return text


def _patient(session: Session, mrn: str) -> Patient:
    row = session.execute(select(Patient).where(col(Patient.mrn) == (mrn or "").strip())).scalar_one_or_none()
    if row is None:
        raise _reject("mrn", mrn, "unknown MRN")
    return row


def _refused(exc: Refused, where: str = WHERE) -> BatchRejected:
    """The intake's refusal as the form shows it: "ALT value '-5': negative values are impossible"."""
    return BatchRejected([Problem(where, e.column, e.value, e.reason, subject=e.subject) for e in exc.errors])


def _as_date(column: str, value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return intake.parse_date(str(value))
    except ValueError as exc:
        raise _reject(column, value, str(exc)) from None


def _lab_snapshot(row: LabResult) -> dict[str, Any]:
    return {
        "test": row.test,
        "taken_at": row.taken_at.isoformat(sep=" "),
        "value": row.value,
        "unit": row.unit,
        "value_text": row.value_text,
        "original_value": row.original_value,
        "original_unit": row.original_unit,
        "ref_low": row.ref_low,
        "ref_high": row.ref_high,
        "comparator": row.comparator,
        "taken_at_offset_minutes": row.taken_at_offset_minutes,
        "status": row.status,
    }


def _med_snapshot(row: MedicationRow) -> dict[str, Any]:
    return {
        "drug": row.drug,
        "start_date": row.start_date.isoformat(),
        "daily_dose_mg": row.daily_dose_mg,
        "dose_as_entered": row.dose_as_entered,
        "unit_as_entered": row.unit_as_entered,
        "route": row.route,
    }


def add_lab_result(
    session: Session,
    *,
    username: str,
    mrn: str,
    test: str,
    taken_at: dt.datetime | dt.date | str,
    value: float | str,
    unit: str,
    ref_low: float | str | None = None,
    ref_high: float | str | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Store one result entered by hand; returns its id. The same result again changes nothing."""
    user = _require_user(session, username, "create", "lab_result", mrn=mrn, test=test)
    try:
        lab = intake.reading(
            mrn=mrn,
            test=test,
            taken_at=taken_at,
            value=value,
            unit=unit,
            ref_low=ref_low,
            ref_high=ref_high,
            source="manual",
            now=now,
        )
    except Refused as exc:
        raise _refused(exc) from None
    patient = _patient(session, lab.mrn)
    test_def = catalogue.CATALOGUE[lab.test]
    when = lab.taken_at
    lab.where = f"{WHERE}: {test_def.label} {when.isoformat(sep=' ')}"
    result = write_batch(session, labs=[lab], username=user, source="manual", description="entered in the dashboard")
    row = session.execute(
        select(LabResult)
        .where(
            col(LabResult.patient_id) == patient.id,
            col(LabResult.test) == test_def.key,
            col(LabResult.taken_at) == when,
            col(LabResult.hidden) == False,  # noqa: E712
        )
        .order_by(col(LabResult.id).desc())
    ).scalars().first()
    assert row is not None and row.id is not None
    if result.labs_inserted:
        audit.record(
            session,
            username=user,
            action="create",
            entity="lab_result",
            entity_id=str(row.id),
            patient_id=patient.id,
            after=_lab_snapshot(row),
        )
        touch_patient(session, patient.id or 0)
    session.flush()
    return row.id


def amend_lab_result(
    session: Session,
    *,
    username: str,
    lab_id: int,
    value: float | str,
    unit: str,
    reason: str,
    ref_low: float | str | None = None,
    ref_high: float | str | None = None,
) -> LabResult:
    """Correct a stored result. The earlier value stays in the audit entry; ``amended_at`` is set."""
    user = _require_user(session, username, "amend", "lab_result", id=lab_id)
    why = _require_reason(reason)
    row = session.get(LabResult, lab_id)
    if row is None or row.hidden:
        raise _reject("lab_id", lab_id, "no such result (or it was removed)")
    patient = session.get(Patient, row.patient_id)
    assert patient is not None
    try:
        lab = intake.reading(
            mrn=patient.mrn,
            test=row.test,
            taken_at=row.taken_at,
            value=value,
            unit=unit,
            ref_low=ref_low,
            ref_high=ref_high,
            now=dt.datetime.max - intake.FUTURE_TOLERANCE,  # a stored result's time was checked when stored
        )
    except Refused as exc:
        raise _refused(exc) from None
    low = lab.ref_low if ref_low is not None else row.ref_low
    high = lab.ref_high if ref_high is not None else row.ref_high
    if not intake.reference_ranges_ordered(low, high):
        raise _reject("ref_low", ref_low, intake.REFERENCE_ORDER_REASON)
    before = _lab_snapshot(row)
    row.value = lab.value
    row.value_text = lab.value_text
    row.comparator = lab.comparator
    row.original_value = lab.original_value
    row.original_unit = lab.original_unit
    row.ref_low = low
    row.ref_high = high
    if _lab_snapshot(row) == before:
        raise _reject("value", value, "the correction is the same as the stored result")
    _record_amendment(session, row, entity="lab_result", user=user, before=before, after=_lab_snapshot(row), why=why)
    return row



def _record_amendment(
    session: Session,
    row: LabResult | MedicationRow,
    *,
    entity: str,
    user: str,
    before: dict[str, Any],
    after: dict[str, Any],
    why: str,
) -> None:
    """Mark ``row`` amended and keep its earlier values in the audit trail (never overwritten silently)."""
    row.amended_at = utcnow()
    session.add(row)
    audit.record(
        session,
        username=user,
        action="amend",
        entity=entity,
        entity_id=str(row.id),
        patient_id=row.patient_id,
        before=before,
        after=after,
        reason=why,
    )
    touch_patient(session, row.patient_id)
    session.flush()

# What a re-sent result may change in the stored one (the identity, test and source stay).
_RESENT_FIELDS = (
    "taken_at", "taken_at_offset_minutes", "value", "comparator", "unit", "value_text", "original_value",
    "original_unit", "ref_low", "ref_high", "loinc", "status",
)


def amend_from_source(session: Session, row: LabResult, lab: Any, *, user: str, why: str) -> None:
    """A stored result re-sent by its source (a FHIR Observation corrected/amended, the final of a
    preliminary, HL7 OBX-11 C): the stored row takes the values of ``lab`` (a ``store.LabIn`` that
    went through ``intake.reading``), the earlier values kept in the audit trail as for an amendment
    in the dashboard (PRODUCT.md §6 edition 2, "Corrections"). One path for FHIR and HL7."""
    before = _lab_snapshot(row)
    for name in _RESENT_FIELDS:
        setattr(row, name, getattr(lab, name))
    _record_amendment(session, row, entity="lab_result", user=user[:64], before=before, after=_lab_snapshot(row), why=why)


def void_from_source(session: Session, row: LabResult, *, user: str, reason: str) -> None:
    """A stored result its source withdraws (FHIR entered-in-error, HL7 OBX-11 D/W/X): hidden with
    the reason, kept, and audited (PRODUCT.md §6 edition 2). One path for FHIR and HL7."""
    _hide_row(session, row, entity="lab_result", user=user[:64], reason=reason)


def _hide_row(session: Session, row: LabResult | MedicationRow, *, entity: str, user: str, reason: str) -> None:
    """Hide one row with its reason and audit it: the one hide write for the dashboard's removal
    and a source's withdrawal."""
    row.hidden = True
    row.hidden_reason = reason
    session.add(row)
    audit.record(
        session,
        username=user,
        action="hide",
        entity=entity,
        entity_id=str(row.id),
        patient_id=row.patient_id,
        before={"hidden": False},
        after={"hidden": True},
        reason=reason,
    )
    touch_patient(session, row.patient_id)
    session.flush()


def hide_record(session: Session, *, username: str, entity: str, record_id: int, reason: str) -> None:
    """Remove a result, dose row or photograph from view; the row and its reason are kept."""
    user = _require_user(session, username, "hide", entity, id=record_id)
    why = _require_reason(reason)
    model = _HIDEABLE.get(entity)
    if model is None:
        raise _reject("entity", entity, f"cannot hide {entity!r}: one of {', '.join(_HIDEABLE)}")
    row = cast("LabResult | MedicationRow | Photo | None", session.get(model, record_id))  # get() of a union of models is typed SQLModel
    if row is None or row.hidden:
        raise _reject("id", record_id, f"no such {entity} (or it was already removed)")
    if entity == "photo":
        # One path for hiding a photograph: monitoring.photos also hides the BSA % entered with it
        # (a photograph hidden as "wrong patient" must not leave its BSA feeding the ICU criteria).
        from monitoring.photos import hide_photo

        hide_photo(session, record_id, reason=why, username=user, check_account=True)
        return
    _hide_row(session, cast("LabResult | MedicationRow", row), entity=entity, user=user, reason=why)


def _dose_in(mrn: str, drug: str, start_date: dt.date, dose: Any, unit: str, route: str | None) -> MedIn:
    try:
        med = intake.dose(mrn=mrn, drug=drug, start_date=start_date, daily_dose=dose, unit=unit, route=route, source="manual")
    except Refused as exc:
        raise _refused(exc) from None
    med.where = f"{WHERE}: {med.drug_as_entered} from {med.start_date.isoformat()}"
    return med


def add_dose_change(
    session: Session,
    *,
    username: str,
    mrn: str,
    drug: str,
    start_date: dt.date | str,
    dose: float | str,
    unit: str = "mg",
    route: str | None = None,
) -> int:
    """From ``start_date`` the drug is given at ``dose`` per day (0 = stopped; future = plan)."""
    user = _require_user(session, username, "create", "medication_row", mrn=mrn, drug=drug)
    patient = _patient(session, mrn)
    start = _as_date("start_date", start_date)
    med = _dose_in(patient.mrn, drug, start, dose, unit, route)
    result = write_batch(session, meds=[med], username=user, source="manual", description="entered in the dashboard")
    row = session.execute(
        select(MedicationRow).where(
            col(MedicationRow.patient_id) == patient.id, col(MedicationRow.drug) == med.drug, col(MedicationRow.start_date) == start
        )
    ).scalar_one()
    if result.meds_inserted:
        audit.record(
            session,
            username=user,
            action="create",
            entity="medication_row",
            entity_id=str(row.id),
            patient_id=patient.id,
            after=_med_snapshot(row),
        )
        touch_patient(session, patient.id or 0)
    session.flush()
    assert row.id is not None
    return row.id


def amend_dose(
    session: Session, *, username: str, med_id: int, dose: float | str, unit: str, reason: str
) -> MedicationRow:
    """Correct a stored dose row; the earlier dose stays in the audit entry."""
    user = _require_user(session, username, "amend", "medication_row", id=med_id)
    why = _require_reason(reason)
    row = session.get(MedicationRow, med_id)
    if row is None or row.hidden:
        raise _reject("med_id", med_id, "no such dose row (or it was removed)")
    patient = session.get(Patient, row.patient_id)
    assert patient is not None
    med = _dose_in(patient.mrn, row.drug_as_entered, row.start_date, dose, unit, row.route)
    if med.dose_per_kg is not None:
        if not patient.weight_kg:
            raise _reject("unit", unit, f"a mg/kg dose needs the weight of patient {patient.mrn}, which is not recorded")
        med.daily_dose_mg = med.dose_per_kg * patient.weight_kg
    before = _med_snapshot(row)
    row.daily_dose_mg = med.daily_dose_mg
    row.dose_as_entered = med.dose_as_entered
    row.unit_as_entered = med.unit_as_entered
    if _med_snapshot(row) == before:
        raise _reject("daily_dose", dose, "the correction is the same as the stored dose")
    _record_amendment(session, row, entity="medication_row", user=user, before=before, after=_med_snapshot(row), why=why)
    return row


def finding_answers() -> dict[str, tuple[str, ...]]:
    """Hand-entered RegiSCAR items and their allowed answers, from ``monitoring.regiscar``."""
    from monitoring.regiscar import REGISCAR_ITEMS

    items: Any = REGISCAR_ITEMS
    out: dict[str, tuple[str, ...]] = {}
    if isinstance(items, Mapping):
        for key, spec in items.items():
            out[str(key)] = _answers_of(spec)
    else:
        for spec in items:
            key = getattr(spec, "key", None) or (spec[0] if isinstance(spec, Sequence) else None)
            out[str(key)] = _answers_of(spec)
    return out


def _answers_of(spec: Any) -> tuple[str, ...]:
    for attr in ("answers", "allowed", "choices", "values"):
        got = getattr(spec, attr, None)
        if got is not None and not callable(got):
            return tuple(str(a) for a in got)
    if isinstance(spec, Mapping):
        for attr in ("answers", "allowed", "choices", "values"):
            if attr in spec:
                return tuple(str(a) for a in spec[attr])
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        if len(spec) >= 2 and isinstance(spec[-1], Sequence) and not isinstance(spec[-1], str):
            return tuple(str(a) for a in spec[-1])
        return tuple(str(a) for a in spec)
    raise TypeError(f"cannot read the allowed answers of RegiSCAR item {spec!r}")


def set_finding(
    session: Session,
    *,
    username: str,
    mrn: str,
    item: str,
    value: str,
    note: str | None = None,
    recorded_at: dt.datetime | None = None,
) -> int:
    """Record a hand-entered finding; the latest row per item is in force, earlier rows stay."""
    user = _require_user(session, username, "create", "clinical_finding", mrn=mrn, item=item)
    allowed = finding_answers()
    if item not in allowed:
        raise _reject("item", item, f"not a hand-entered RegiSCAR item (one of {', '.join(allowed)})")
    answer = (value or "").strip().lower()
    if answer not in {a.lower() for a in allowed[item]}:
        raise _reject("value", value, f"answer for {item} must be one of {', '.join(allowed[item])}")
    try:
        note_text = intake.free_text("note", note, limit=intake.text_limit("clinical_finding", "note"))
    except intake.FieldError as exc:
        raise _reject(exc.column, exc.value, exc.reason) from None
    patient = _patient(session, mrn)
    row = ClinicalFinding(
        patient_id=patient.id or 0,
        item=item,
        value=answer,
        note=note_text,
        recorded_at=recorded_at or utcnow(),
        recorded_by=user,
    )
    session.add(row)
    session.flush()
    previous = session.execute(
        select(col(ClinicalFinding.value))
        .where(col(ClinicalFinding.patient_id) == patient.id, col(ClinicalFinding.item) == item, col(ClinicalFinding.id) != row.id)
        .order_by(col(ClinicalFinding.recorded_at).desc(), col(ClinicalFinding.id).desc())
        .limit(1)
    ).scalar_one_or_none()
    audit.record(
        session,
        username=user,
        action="create" if previous is None else "amend",
        entity="clinical_finding",
        entity_id=str(row.id),
        patient_id=patient.id,
        before=None if previous is None else {"item": item, "value": previous},
        after={"item": item, "value": answer, "note": row.note},
    )
    touch_patient(session, patient.id or 0)
    session.flush()
    assert row.id is not None
    return row.id


def _patient_values(fields: Mapping[str, Any], known: Patient | None = None) -> dict[str, Any]:
    """Validated patient fields (only those given); BatchRejected naming every bad field."""
    unknown = [Problem(WHERE, k, v, "not a patient field") for k, v in fields.items() if k not in PATIENT_FIELDS]
    stored = {k: getattr(known, k) for k in ("birth_date", "onset_date", "resolved_date")} if known is not None else None
    try:
        got = intake.patient_fields({k: v for k, v in fields.items() if k in PATIENT_FIELDS}, known=stored)
    except Refused as exc:
        raise BatchRejected([*unknown, *_refused(exc).problems]) from None
    if unknown:
        raise BatchRejected(unknown)
    return got.values


def add_patient(session: Session, *, username: str, mrn: str, name: str, **fields: Any) -> int:
    """Register a new patient (an MRN already known is an error: use update_patient)."""
    user = _require_user(session, username, "create", "patient", mrn=mrn)
    try:
        key = intake.patient_fields({"mrn": mrn}).values["mrn"]
    except Refused as exc:
        raise _refused(exc) from None
    if session.execute(select(func.count()).select_from(Patient).where(Patient.mrn == key)).scalar_one():
        raise _reject("mrn", key, "this MRN is already registered: change the patient's details instead")
    values = _patient_values({"name": name, **fields})
    name = values.pop("name")
    write_batch(
        session,
        patients=[PatientIn(key, name, values, where=WHERE)],
        username=user,
        source="manual",
        description="registered in the dashboard",
    )
    row = _patient(session, key)
    audit.record(
        session,
        username=user,
        action="create",
        entity="patient",
        entity_id=str(row.id),
        patient_id=row.id,
        after={"mrn": key, "name": row.name, **{k: _plain(v) for k, v in values.items()}},
    )
    session.flush()
    assert row.id is not None
    return row.id


def _plain(v: Any) -> Any:
    return v.isoformat() if isinstance(v, dt.date) else v


def update_patient(session: Session, *, username: str, mrn: str, reason: str | None = None, **fields: Any) -> bool:
    """Change a patient's details; the earlier values go to the audit trail. True when changed."""
    user = _require_user(session, username, "amend", "patient", mrn=mrn)
    patient = _patient(session, mrn)
    values = _patient_values(fields, known=patient)
    name = values.pop("name", None)
    result = write_batch(
        session,
        patients=[PatientIn(patient.mrn, name, values, where=WHERE)],
        username=user,
        source="manual",
        description=(reason or "").strip() or "details changed in the dashboard",
    )
    session.flush()
    return bool(result.patients_updated)
