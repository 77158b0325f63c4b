"""The HL7 FHIR R4 specification's own examples committed in tests/fixtures/fhir/ (README there:
origin, licence CC0) through the importer: the statuses of PRODUCT.md §6 edition 2 as the spec
writes them (entered-in-error, preliminary, cancelled) and an administration of a culprit drug.
Single resources are wrapped in a collection Bundle with a Patient of the id they reference."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import Session

from monitoring.importers import import_files
from monitoring.models import AuditEntry, LabResult, MedicationRow
from monitoring.records import load_record
from monitoring.rules import evaluate

SPEC = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"
MR = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


def _example(name: str) -> dict[str, Any]:
    return json.loads((SPEC / name).read_text(encoding="utf-8"))


def _wrapped(tmp_path: Path, resources: list[dict[str, Any]], patient: str, out: str, **patient_extra: Any) -> Path:
    entries = [{"resource": {"resourceType": "Patient", "id": patient, "identifier": [{"type": MR, "value": f"SPEC-{patient}"}],
                             "name": [{"text": f"Synthetic {patient}"}], **patient_extra}}]
    entries += [{"resource": r} for r in resources]
    path = tmp_path / out
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}), encoding="utf-8")
    return path


def test_the_specs_entered_in_error_temperature_removes_the_stored_one(session: Session, tmp_path: Path) -> None:
    withdrawn = _example("observation-example-f202-temperature.json")
    assert withdrawn["status"] == "entered-in-error"
    # First sent as final (the same resource before it was withdrawn): 39 °C for patient f201.
    first = import_files(session, [_wrapped(tmp_path, [{**withdrawn, "status": "final"}], "f201", "first.json")], username="lab")
    assert first.ok, first.problem_lines()
    row = session.execute(select(LabResult)).scalar_one()
    assert (row.test, row.value, row.source_id, row.hidden) == ("temperature", 39.0, "f202", False)
    assert row.ref_high == 38.2  # its reference range written "degrees C", the value's own unit text
    # Then the specification's resource, entered-in-error: the stored result is removed, kept, audited.
    second = import_files(session, [_wrapped(tmp_path, [withdrawn], "f201", "second.json")], username="lab")
    assert second.ok, second.problem_lines()
    assert second.result is not None and second.result.labs_removed == 1
    session.expire_all()
    row = session.execute(select(LabResult)).scalar_one()
    assert row.hidden and row.hidden_reason is not None and "Observation/f202" in row.hidden_reason
    assert session.execute(select(AuditEntry).where(AuditEntry.action == "hide", AuditEntry.entity == "lab_result")).scalar_one()
    assert load_record(session, "SPEC-f201").labs == ()


def test_the_specs_entered_in_error_temperature_alone_stores_nothing(session: Session, tmp_path: Path) -> None:
    report = import_files(session, [_wrapped(tmp_path, [_example("observation-example-f202-temperature.json")], "f201", "b.json")])
    assert report.ok, report.problem_lines()
    assert session.execute(select(LabResult)).first() is None
    assert "skipped: Observation: status entered-in-error (1)" in "\n".join(report.summary_lines())


def test_the_specs_preliminary_culture_and_cancelled_blood_pressure_are_skipped_not_refused(session: Session, tmp_path: Path) -> None:
    oyster = _example("observation-example-vp-oyster.json")  # preliminary Vibrio culture: not a catalogue test
    cancel = _example("observation-example-bloodpressure-cancel.json")  # cancelled blood pressure
    assert (oyster["status"], cancel["status"]) == ("preliminary", "cancelled")
    report = import_files(session, [_wrapped(tmp_path, [oyster, cancel], "example", "b.json")])
    assert report.ok, report.problem_lines()
    assert session.execute(select(LabResult)).first() is None
    lines = "\n".join(report.summary_lines())
    assert "skipped: Observation: status cancelled (1)" in lines
    assert "skipped: Observation: code not in the catalogue of tests (1)" in lines


def test_the_specs_vancomycin_administration_to_a_patient_whose_dress_culprit_is_vancomycin(session: Session, tmp_path: Path) -> None:
    given = _example("medicationadministration0301.json")  # 500 mg IV, contained Medication by NDC + display only
    dress = {"resourceType": "AllergyIntolerance", "id": "a1", "category": ["medication"], "code": {"text": "vancomycin"},
             "patient": {"reference": "Patient/pat1"},
             "reaction": [{"manifestation": [{"text": "DRESS (drug reaction with eosinophilia and systemic symptoms)"}]}]}
    report = import_files(session, [_wrapped(tmp_path, [dress, given], "pat1", "b.json")], as_of=dt.date(2015, 1, 20))
    assert report.ok, report.problem_lines()
    rows = session.execute(select(MedicationRow).where(MedicationRow.daily_dose_mg > 0)).scalars().all()
    assert [(m.drug, m.start_date, m.daily_dose_mg) for m in rows] == [("vancomycin", dt.date(2015, 1, 15), 500.0)]
    alerts = {a.code for a in evaluate(load_record(session, "SPEC-pat1"), dt.date(2015, 1, 15))}
    assert "RECHALLENGE" in alerts


# --- the R4 specification's glucose and US Core's laboratory examples (tests/fixtures/fhir/README.md)


def test_the_specs_glucose_in_mmol_per_litre_with_its_offset_and_range(session: Session, tmp_path: Path) -> None:
    glucose = _example("observation-example-f001-glucose.json")  # 6.3 mmol/l, effectivePeriod.start with +01:00
    report = import_files(session, [_wrapped(tmp_path, [glucose], "f001", "b.json")], username="lab")
    assert report.ok, report.problem_lines()
    row = session.execute(select(LabResult)).scalar_one()
    assert (row.test, row.loinc, row.status, row.comparator, row.source_id) == ("glucose", "15074-8", "final", None, "f001")
    assert (row.original_value, row.original_unit, row.unit) == ("6.3", "mmol/L", "mg/dL")
    assert row.value == pytest.approx(6.3 * 18.016)
    assert (row.ref_low, row.ref_high) == (pytest.approx(3.1 * 18.016), pytest.approx(6.2 * 18.016))
    # The time as recorded (wall clock of the laboratory) and its UTC offset beside it.
    assert (row.taken_at, row.taken_at_offset_minutes) == (dt.datetime(2013, 4, 2, 9, 30, 10), 60)
    again = import_files(session, [_wrapped(tmp_path, [glucose], "f001", "b.json")], username="lab")
    assert again.ok and again.result is not None and again.result.labs_skipped == 1  # its id: nothing twice


US_CORE_LABS = ["diagnosticreport-cbc.json", "observation-cbc-leukocytes.json", "observation-cbc-hemoglobin.json",
                "observation-serum-creatinine.json", "observation-serum-glucose.json"]


def test_us_core_lab_examples_import_their_catalogue_results_and_name_the_rest(session: Session, tmp_path: Path) -> None:
    # US Core 9.0.0 examples for the patient "example" (Amy Shaw): a CBC DiagnosticReport that
    # references eight results (two of them in this bundle), and three serum chemistry results.
    resources = [_example(f"us-core/{name}") for name in US_CORE_LABS]
    report = import_files(session, [_wrapped(tmp_path, resources, "example", "b.json")], username="lab")
    assert report.ok, report.problem_lines()
    rows = {r.test: r for r in session.execute(select(LabResult)).scalars()}
    assert sorted(rows) == ["creatinine", "glucose", "wbc"]
    got = {t: (r.value, r.unit, r.original_value, r.original_unit, r.ref_low, r.ref_high, r.source_id) for t, r in rows.items()}
    assert got == {
        "wbc": (10.0, "10^9/L", "10", "10*3/uL", 4.5, 11.0, "cbc-leukocytes"),  # 10*3/uL is 10^9/L
        "creatinine": (1.0, "mg/dL", "1", "mg/dL", 0.2, 0.6, "serum-creatinine"),
        "glucose": (76.0, "mg/dL", "76", "mg/dL", 40.0, 109.0, "serum-glucose"),
    }
    # A date without a time: the day, at midnight as recorded, no offset; exact values, final.
    assert {(r.taken_at, r.taken_at_offset_minutes, r.comparator, r.status) for r in rows.values()} == {
        (dt.datetime(2005, 7, 5), None, None, "final")
    }
    lines = "\n".join(report.summary_lines())
    assert "skipped: Observation: code not in the catalogue of tests (1)" in lines  # haemoglobin 718-7
    assert "note: DiagnosticReport: a result it references is not in this bundle (not imported) (6)" in lines
