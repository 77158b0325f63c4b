"""FHIR R4 export of one patient (PRODUCT.md §6, issue 9).

``export_patient_bundle(session, mrn)`` returns a ``collection`` Bundle (a JSON-ready dict) holding
everything needed to rebuild the patient with this product's importer
(``monitoring.importers.fhir``): Patient (identifier typed MR), Condition (DRESS, ICD-10-CM
D72.12, onset and abatement), one AllergyIntolerance per culprit drug (reaction DRESS) and per other
drug allergy (no DRESS reaction: read back as an allergy, not a culprit), one Observation per result
(LOINC, or this product's code system for tests without one; UCUM canonical unit; the value and
unit as received in an extension; reference range), one Observation per hand-entered RegiSCAR
finding, one MedicationStatement per schedule row (start date, dose in mg/day, route; plan rows
included as ``intended``), and Media with each photograph's metadata (no image bytes).

Times: a result's time is stored as the local clock time recorded; FHIR R4 requires an offset on a
date-time, so the export writes the server's UTC offset for that date (the importer drops offsets
and keeps the clock time, so a round trip restores the time exactly). Bookkeeping times (finding
recorded_at) are UTC and exported with +00:00.

Hidden rows are exported with status entered-in-error (the receiving system learns the row is
void; this product's importer skips them).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from monitoring import catalogue
from monitoring.db import table_of
from monitoring.importers.fhir.codes import (
    ACT_REASON,
    EXT,
    ICD10CM,
    LOCAL_FINDING_SYSTEM,
    LOCAL_TEST_SYSTEM,
    LOINC,
    ROUTES,
    RXNORM,
    RXNORM_INGREDIENTS,
    SNOMED,
    SOURCE_ID_SYSTEM,
    UCUM,
    V2_0203,
    deterministic_uuid,
)
from monitoring.models import ClinicalFinding, LabResult, MedicationRow, Patient, Photo, utcnow

__all__ = ["export_patient_bundle", "export_patient_json", "write_patient_bundle"]

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RXNORM_BY_DRUG = {drug: code for code, drug in RXNORM_INGREDIENTS.items()}
_ROUTE_CODES = {word: code for code, word in ROUTES.items()}
_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_VITAL_SIGNS = frozenset({"temperature", "weight"})


def _ucum(unit: str) -> str:
    """The UCUM code of a canonical unit (the catalogue writes 10^9/L for display)."""
    return unit.replace("^", "*")


def _local_datetime(value: dt.datetime, offset_minutes: int | None = None) -> str:
    """A naive clock time as recorded, with the UTC offset it was recorded with, else the server's
    offset for that date (FHIR needs one)."""
    spec = "microseconds" if value.microsecond else "seconds"
    if value.tzinfo is not None:
        return value.isoformat(timespec=spec)
    if offset_minutes is not None:
        return value.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset_minutes))).isoformat(timespec=spec)
    # The offset in force at that time, attached to the clock time unchanged: a time in the
    # spring-forward gap (02:30 that never happened) must stay 02:30, not become 03:30.
    offset = value.astimezone().utcoffset() or dt.timedelta(0)
    return value.replace(tzinfo=dt.timezone(offset)).isoformat(timespec=spec)


def _utc_datetime(value: dt.datetime) -> str:
    spec = "microseconds" if value.microsecond else "seconds"
    return value.replace(tzinfo=dt.UTC).isoformat(timespec=spec)


def _sub(url: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "url": url,
        "extension": [{"url": k, "valueString": str(v)} for k, v in values.items() if v not in (None, "")],
    }


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": _number(value), "unit": unit, "system": UCUM, "code": _ucum(unit)}


def _source_identifier(source_id: str | None) -> list[dict[str, Any]]:
    return [{"system": SOURCE_ID_SYSTEM, "value": source_id}] if source_id else []


def export_patient_bundle(session: Session, mrn: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The patient as a FHIR R4 collection Bundle (a JSON-ready dict). LookupError for an unknown MRN."""
    patient = session.execute(select(Patient).where(col(Patient.mrn) == mrn)).scalar_one_or_none()
    if patient is None:
        raise LookupError(f"unknown MRN {mrn!r}")
    pid = patient.id
    stamp = now or utcnow()
    today = dt.date.today()
    patient_url = deterministic_uuid("patient", mrn)
    subject = {"reference": patient_url, "display": patient.name}
    entries: list[dict[str, Any]] = [{"fullUrl": patient_url, "resource": _patient(patient)}]

    entries.append({"fullUrl": deterministic_uuid("condition", mrn), "resource": _condition(patient, subject)})
    for drug in patient.culprit_drugs or []:
        entries.append({"fullUrl": deterministic_uuid("allergy", mrn, drug), "resource": _allergy(drug, subject, culprit=True)})
    for drug in patient.drug_allergies or []:
        # A drug allergy that is not a DRESS culprit (migration 0007): no DRESS reaction, so the
        # importer reads it back as an allergy, never as a culprit (PRODUCT.md §6 edition 2).
        entries.append({"fullUrl": deterministic_uuid("drug-allergy", mrn, drug), "resource": _allergy(drug, subject, culprit=False)})

    labs = session.execute(
        select(LabResult).where(col(LabResult.patient_id) == pid).order_by(col(LabResult.taken_at), col(LabResult.id))
    ).scalars()
    for row in labs:
        entries.append({"fullUrl": deterministic_uuid("lab", mrn, row.id), "resource": _observation(row, subject)})

    findings = session.execute(
        select(ClinicalFinding)
        .where(col(ClinicalFinding.patient_id) == pid)
        .order_by(col(ClinicalFinding.recorded_at), col(ClinicalFinding.id))
    ).scalars()
    for f in findings:
        entries.append({"fullUrl": deterministic_uuid("finding", mrn, f.id), "resource": _finding(f, subject)})

    meds = session.execute(
        select(MedicationRow)
        .where(col(MedicationRow.patient_id) == pid)
        .order_by(col(MedicationRow.start_date), col(MedicationRow.id))
    ).scalars()
    for m in meds:
        entries.append({"fullUrl": deterministic_uuid("med", mrn, m.id), "resource": _statement(m, subject, today)})

    pt = table_of(Photo)
    photo_cols = [pt.c[c] for c in ("id", "taken_on", "body_site", "bsa_pct", "note", "width", "height", "content_type",
                                     "size_bytes", "pixel_sha256", "hidden", "hidden_reason")]
    for photo in session.execute(select(*photo_cols).where(pt.c.patient_id == pid).order_by(pt.c.taken_on, pt.c.id)).mappings():
        entries.append({"fullUrl": deterministic_uuid("photo", mrn, photo["id"]), "resource": _media(photo, subject)})

    return {
        "resourceType": "Bundle",
        "meta": {"lastUpdated": _utc_datetime(stamp.replace(microsecond=0))},
        "type": "collection",
        "timestamp": _utc_datetime(stamp.replace(microsecond=0)),
        "entry": entries,
    }


def export_patient_json(session: Session, mrn: str) -> bytes:
    """The export as UTF-8 JSON bytes (the dashboard's download button). LookupError for an unknown MRN."""
    return (json.dumps(export_patient_bundle(session, mrn), indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def write_patient_bundle(session: Session, mrn: str, path: str | Path) -> int:
    """Write the export to ``path`` atomically, readable by the owner only (patient data).

    Returns the number of resources written."""
    data = export_patient_json(session, mrn)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(json.loads(data)["entry"])


# --- resources -------------------------------------------------------------------------------


def _patient(p: Patient) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [
            {
                "use": "usual",
                "type": {"coding": [{"system": V2_0203, "code": "MR", "display": "Medical record number"}], "text": "MRN"},
                "value": p.mrn,
            }
        ],
        "active": bool(p.active),
        "name": [{"use": "official", "text": p.name}],
    }
    if p.synthetic:
        res["meta"] = {"tag": [{"system": ACT_REASON, "code": "HTEST", "display": "test health data (synthetic patient)"}]}
    if p.sex in ("male", "female", "other", "unknown"):
        res["gender"] = p.sex
    if p.birth_date:
        res["birthDate"] = p.birth_date.isoformat()
    ext: list[dict[str, Any]] = []
    if p.weight_kg is not None:
        ext.append({"url": EXT.WEIGHT, "valueQuantity": _quantity(p.weight_kg, "kg")})
    if p.baseline_creatinine_mg_dl is not None:
        ext.append({"url": EXT.BASELINE_CREATININE, "valueQuantity": _quantity(p.baseline_creatinine_mg_dl, "mg/dL")})
    if p.setting:
        ext.append({"url": EXT.SETTING, "valueCode": p.setting})
    if ext:
        res["extension"] = ext
    return res


def _condition(p: Patient, subject: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "resolved" if p.resolved_date else "active",
                }
            ]
        },
        "verificationStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
        },
        "code": {
            "coding": [
                {"system": ICD10CM, "code": "D72.12", "display": "Drug rash with eosinophilia and systemic symptoms syndrome"}
            ],
            "text": "DRESS (drug reaction with eosinophilia and systemic symptoms)",
        },
        "subject": subject,
    }
    if p.onset_date:
        res["onsetDateTime"] = p.onset_date.isoformat()
    if p.resolved_date:
        res["abatementDateTime"] = p.resolved_date.isoformat()
    return res


def _drug_concept(drug: str, text: str | None = None) -> dict[str, Any]:
    cc: dict[str, Any] = {"text": text or drug}
    code = _RXNORM_BY_DRUG.get(drug)
    if code:
        cc["coding"] = [{"system": RXNORM, "code": code, "display": drug}]
    return cc


def _allergy(drug: str, subject: dict[str, Any], *, culprit: bool) -> dict[str, Any]:
    """An AllergyIntolerance for a DRESS culprit (criticality high, the reaction named, never
    rechallenge) or for another recorded drug allergy (no reaction or criticality claimed)."""
    res: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]
        },
        "category": ["medication"],
        "code": _drug_concept(drug),
        "patient": subject,
    }
    if culprit:
        res["criticality"] = "high"
        res["reaction"] = [{"manifestation": [{"text": "DRESS (drug reaction with eosinophilia and systemic symptoms)"}]}]
        res["note"] = [{"text": "Culprit drug of DRESS: never rechallenge (nor drugs of its cross-reactivity group)."}]
    else:
        res["note"] = [{"text": "Drug allergy (not a DRESS culprit)."}]
    return res


def _observation(row: LabResult, subject: dict[str, Any]) -> dict[str, Any]:
    test = catalogue.lookup(row.test)
    codings = []
    loinc = row.loinc if row.loinc in test.loinc else test.primary_loinc
    if loinc:
        codings.append({"system": LOINC, "code": loinc, "display": test.label})
    codings.append({"system": LOCAL_TEST_SYSTEM, "code": test.key, "display": test.label})
    status = "entered-in-error" if row.hidden else (
        "preliminary" if row.status == "preliminary" else "amended" if row.amended_at else "final")
    res: dict[str, Any] = {"resourceType": "Observation"}
    if row.source_id and _FHIR_ID.fullmatch(row.source_id):
        res["id"] = row.source_id
    ident = _source_identifier(row.source_id)
    if row.source_identifier and not row.source_identifier.startswith("sha256:"):
        # The laboratory's business identifier as received (importers.fhir.results._business_identifier).
        system, _bar, value = row.source_identifier.partition("|")
        ident.append({"system": system, "value": value} if system else {"value": value})
    if ident:
        res["identifier"] = ident
    res.update(
        {
            "status": status,
            "category": [
                {"coding": [{"system": _CATEGORY, "code": "vital-signs" if test.key in _VITAL_SIGNS else "laboratory"}]}
            ],
            "code": {"coding": codings, "text": test.label},
            "subject": subject,
            "effectiveDateTime": _local_datetime(row.taken_at, row.taken_at_offset_minutes),
        }
    )
    if row.value is not None:
        res["valueQuantity"] = _quantity(row.value, test.canonical_unit)
    else:
        detected = row.value_text == "detected"
        res["valueCodeableConcept"] = {
            "coding": [
                {
                    "system": SNOMED,
                    "code": "260373001" if detected else "260415000",
                    "display": "Detected" if detected else "Not detected",
                }
            ],
            "text": row.value_text or ("detected" if detected else "not detected"),
        }
    if row.ref_low is not None or row.ref_high is not None:
        rr: dict[str, Any] = {}
        if row.ref_low is not None:
            rr["low"] = _quantity(row.ref_low, test.canonical_unit)
        if row.ref_high is not None:
            rr["high"] = _quantity(row.ref_high, test.canonical_unit)
        res["referenceRange"] = [rr]
    res["extension"] = [_sub(EXT.AS_RECEIVED, {"value": row.original_value, "unit": row.original_unit})]
    if row.hidden and row.hidden_reason:
        res["note"] = [{"text": f"hidden: {row.hidden_reason}"}]
    return res


def _finding(f: ClinicalFinding, subject: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": _CATEGORY, "code": "exam"}]}],
        "code": {"coding": [{"system": LOCAL_FINDING_SYSTEM, "code": f.item}], "text": f"RegiSCAR item: {f.item}"},
        "subject": subject,
        "effectiveDateTime": _utc_datetime(f.recorded_at),
        "valueString": f.value,
    }
    if f.recorded_by:
        res["performer"] = [{"display": f.recorded_by}]
    if f.note:
        res["note"] = [{"text": f.note}]
    return res


def _statement(m: MedicationRow, subject: dict[str, Any], today: dt.date) -> dict[str, Any]:
    if m.hidden:
        status = "entered-in-error"
    elif m.daily_dose_mg == 0:
        status = "stopped"
    elif m.start_date > today:
        status = "intended"  # a plan row
    else:
        status = "active"
    dosage: dict[str, Any] = {
        "text": f"{m.daily_dose_mg:g} mg/day from {m.start_date.isoformat()}",
        "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": _quantity(m.daily_dose_mg, "mg")}],
    }
    if m.route:
        route: dict[str, Any] = {"text": m.route}
        code = _ROUTE_CODES.get(m.route.strip().lower())
        if code:
            route["coding"] = [{"system": SNOMED, "code": code, "display": m.route}]
        dosage["route"] = route
    res: dict[str, Any] = {"resourceType": "MedicationStatement"}
    ident = _source_identifier(m.source_id)
    if ident:
        res["identifier"] = ident
    res.update(
        {
            "status": status,
            "medicationCodeableConcept": _drug_concept(m.drug),
            "subject": subject,
            # Open-ended on purpose: the schedule row holds until the next row of the same drug.
            "effectivePeriod": {"start": m.start_date.isoformat()},
            "dosage": [dosage],
            "extension": [
                _sub(EXT.AS_ENTERED, {"drug": m.drug_as_entered, "dose": m.dose_as_entered, "unit": m.unit_as_entered})
            ],
        }
    )
    if m.hidden and m.hidden_reason:
        res["note"] = [{"text": f"hidden: {m.hidden_reason}"}]
    return res


def _media(photo: Any, subject: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Media",
        "identifier": [{"system": "urn:dress-monitor:photo-sha256", "value": photo["pixel_sha256"]}],
        "status": "entered-in-error" if photo["hidden"] else "completed",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/media-type", "code": "image", "display": "Image"}]
        },
        "subject": subject,
        "createdDateTime": photo["taken_on"].isoformat(),
        "bodySite": {"text": photo["body_site"]},
        "content": {
            "contentType": photo["content_type"],
            "title": f"{photo['body_site']} {photo['taken_on'].isoformat()} (image not included)",
        },
    }
    if photo["size_bytes"]:
        res["content"]["size"] = int(photo["size_bytes"])
    if photo["width"]:
        res["width"] = int(photo["width"])
    if photo["height"]:
        res["height"] = int(photo["height"])
    if photo["bsa_pct"] is not None:
        res["extension"] = [{"url": EXT.BSA, "valueDecimal": _number(photo["bsa_pct"])}]
    notes = [photo["note"]] if photo["note"] else []
    if photo["hidden"] and photo["hidden_reason"]:
        notes.append(f"hidden: {photo['hidden_reason']}")
    if notes:
        res["note"] = [{"text": n} for n in notes]
    return res
