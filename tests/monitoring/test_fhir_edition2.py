"""FHIR as EHRs send it (PRODUCT.md §6 edition 2): reports, nested and document Bundles, panels,
identity, a Patient in another file of the same import. Hand-made bundles; the real published
examples are in test_fhir_real.py."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import Session

from monitoring.importers import import_files
from monitoring.importers.fhir import parse_bundle
from monitoring.models import LabResult, MedicationRow, Patient
from tests.monitoring.test_fhir_import import TODAY, _bundle, _cc, _dosage, _obs, _order, _patient, _write

LOINC = "http://loinc.org"


def _labs(session: Session) -> list[tuple[str, dt.datetime, float | None, str | None]]:
    rows = session.execute(select(LabResult).order_by(LabResult.taken_at, LabResult.test)).scalars()
    return [(r.test, r.taken_at, r.value, r.source_id) for r in rows]


def _timeless(oid: str, loinc: str, value: Any, unit: str) -> dict[str, Any]:
    obs = _obs(oid, loinc, value, unit)
    del obs["effectiveDateTime"]
    return obs


def _report(rid: str, results: list[str], when: str = "2026-03-04T07:15:00+01:00", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": "final",
        "code": {"text": "Liver panel"},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
        "result": [{"reference": r} for r in results],
        **extra,
    }


def test_a_reports_results_without_a_time_take_the_reports_time(session: Session, tmp_path: Path) -> None:
    doc = _bundle(_patient(), _report("r1", ["Observation/alt1"]), _timeless("alt1", "1742-6", 88, "U/L"))
    report = import_files(session, [_write(tmp_path, doc)], as_of=TODAY)
    assert report.ok, report.problem_lines()
    assert _labs(session) == [("alt", dt.datetime(2026, 3, 4, 7, 15), 88.0, "alt1")]


def test_an_observation_without_a_time_and_no_report_is_still_refused(tmp_path: Path) -> None:
    parsed = parse_bundle(_write(tmp_path, _bundle(_patient(), _timeless("alt1", "1742-6", 88, "U/L"))), as_of=TODAY)
    assert [p.reason for p in parsed.problems] == [
        "no time: effectiveDateTime, effectivePeriod.start or effectiveInstant is required"]


def test_observations_contained_in_a_report_are_imported(session: Session, tmp_path: Path) -> None:
    contained = [_timeless("c1", "1742-6", 120, "U/L"), {**_timeless("c2", "1920-8", 95, "U/L")}]
    for c in contained:
        del c["subject"]  # contained results often name no subject: the report's
    rep = _report("r9", ["#c1", "#c2"], contained=contained)
    report = import_files(session, [_write(tmp_path, _bundle(_patient(), rep))], as_of=TODAY)
    assert report.ok, report.problem_lines()
    when = dt.datetime(2026, 3, 4, 7, 15)
    assert _labs(session) == [("alt", when, 120.0, "r9.c1"), ("ast", when, 95.0, "r9.c2")]
    # The same file again changes nothing (contained results are identified by report and id).
    again = import_files(session, [_write(tmp_path, _bundle(_patient(), rep))], as_of=TODAY)
    assert again.ok and again.result is not None and again.result.labs_inserted == 0


def test_bundles_nested_in_entries_are_walked_and_document_bundles_accepted(session: Session, tmp_path: Path) -> None:
    inner = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": _report("r1", ["Observation/alt1"])}, {"resource": _timeless("alt1", "1742-6", 61, "U/L")}]}
    composition = {"resourceType": "Composition", "id": "comp", "status": "final", "type": {"text": "Discharge"},
                   "date": "2026-03-06", "author": [{"display": "Dr"}], "title": "Discharge letter"}
    doc = {"resourceType": "Bundle", "type": "document", "identifier": {"system": "urn:x", "value": "d1"},
           "timestamp": "2026-03-06T10:00:00+01:00",
           "entry": [{"resource": composition}, {"resource": _patient()}, {"resource": inner}]}
    report = import_files(session, [_write(tmp_path, doc)], as_of=TODAY)
    assert report.ok, report.problem_lines()
    assert _labs(session) == [("alt", dt.datetime(2026, 3, 4, 7, 15), 61.0, "alt1")]
    assert report.files[0].skipped_resources == {"Composition": 1}
    # A problem inside the nested Bundle names its place in both Bundles.
    inner["entry"][1]["resource"]["valueQuantity"]["unit"] = "U/furlong"
    inner["entry"][1]["resource"]["valueQuantity"].pop("code", None)
    lines = [str(p) for p in parse_bundle(_write(tmp_path, doc), as_of=TODAY).problems]
    assert len(lines) == 1 and "Observation/alt1 (entry[2].entry[1])" in lines[0]


def test_panel_components_and_members_with_catalogue_codes_yield_their_results(session: Session, tmp_path: Path) -> None:
    panel = {
        "resourceType": "Observation", "id": "cbc", "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "58410-2", "display": "CBC panel"}]},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-03-05T06:00:00+01:00",
        "component": [
            {"code": {"coding": [{"system": LOINC, "code": "6690-2"}]},
             "valueQuantity": {"value": 11.2, "unit": "10*3/uL", "system": "http://unitsofmeasure.org", "code": "10*3/uL"}},
            {"code": {"coding": [{"system": LOINC, "code": "711-2"}]},
             "valueQuantity": {"value": 2100, "unit": "/uL"},
             "referenceRange": [{"high": {"value": 500, "unit": "/uL"}}]},
            {"code": {"coding": [{"system": LOINC, "code": "718-7", "display": "Hemoglobin"}]},
             "valueQuantity": {"value": 13, "unit": "g/dL"}},
        ],
    }
    liver = {"resourceType": "Observation", "id": "lft", "status": "final", "code": {"text": "Liver function"},
             "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-03-05T06:30:00+01:00",
             "hasMember": [{"reference": "Observation/alt7"}]}
    doc = _bundle(_patient(), panel, liver, _timeless("alt7", "1742-6", 210, "U/L"))
    report = import_files(session, [_write(tmp_path, doc)], as_of=TODAY)
    assert report.ok, report.problem_lines()
    rows = {r.test: r for r in session.execute(select(LabResult)).scalars()}
    assert set(rows) == {"wbc", "eosinophils", "alt"}
    assert rows["eosinophils"].value == 2.1 and rows["eosinophils"].ref_high == 0.5
    assert rows["eosinophils"].source_id == "cbc.component1"
    assert rows["wbc"].taken_at == dt.datetime(2026, 3, 5, 6, 0)
    assert rows["alt"].taken_at == dt.datetime(2026, 3, 5, 6, 30)  # the panel's time


@pytest.mark.parametrize("placeholder", ["1000-01-01", "1800-01-01", "1900-01-01"])
def test_a_placeholder_birth_date_is_dropped_with_a_note_naming_the_resource(
    session: Session, tmp_path: Path, placeholder: str
) -> None:
    report = import_files(session, [_write(tmp_path, _bundle(_patient(birthDate=placeholder)))], as_of=TODAY)
    assert report.ok, report.problem_lines()
    patient = session.execute(select(Patient)).scalar_one()
    assert patient.birth_date is None and patient.name == "Ada Lovelace" and patient.sex == "female"  # the rest stored
    lines = "\n".join(report.summary_lines())
    assert f"note: {tmp_path / 'bundle.json'}: Patient/p1 (entry[0]): birthDate '{placeholder}': a placeholder birth date" in lines


def test_a_real_birth_date_of_1900_is_kept(session: Session, tmp_path: Path) -> None:
    report = import_files(session, [_write(tmp_path, _bundle(_patient(birthDate="1900-01-02")))], as_of=TODAY)
    assert report.ok, report.problem_lines()
    assert session.execute(select(Patient.birth_date)).scalar_one() == dt.date(1900, 1, 2)


@pytest.mark.parametrize(
    ("extra", "column", "reason"),
    [
        ({"name": [{"text": "N" * 201}]}, "name", "201 characters: at most 200"),
        ({"name": [{"given": ["Ann\u202e"], "family": "Evil"}]}, "name", "control character U+202E"),
        ({"birthDate": "2027-05-01"}, "birthDate", "in the future"),
        ({"gender": "female", "birthDate": "2026-12-01"}, "birthDate", "in the future"),
    ],
)
def test_a_patients_fields_go_through_the_intake_path(tmp_path: Path, extra: dict[str, Any], column: str, reason: str) -> None:
    parsed = parse_bundle(_write(tmp_path, _bundle(_patient(**extra))), as_of=TODAY)
    assert [(p.where.endswith("Patient/p1 (entry[0])"), p.column) for p in parsed.problems] == [(True, column)]
    assert reason in parsed.problems[0].reason
    assert parsed.patients == []


def test_a_patient_in_another_file_of_the_same_import_links_its_resources(session: Session, tmp_path: Path) -> None:
    patients = _write(tmp_path, _bundle(_patient(pid="p1", mrn="MRN-77")), "patients.json")
    labs = _write(tmp_path, _bundle(_obs("a1", "1742-6", 70, "U/L")), "labs.json")
    alone = import_files(session, [labs], as_of=TODAY)
    assert not alone.ok and "refers to a patient that is not in this bundle" in alone.problem_lines()[0]
    report = import_files(session, [labs, patients], as_of=TODAY)
    assert report.ok, report.problem_lines()
    row = session.execute(select(LabResult)).scalar_one()
    assert session.get(Patient, row.patient_id).mrn == "MRN-77"  # type: ignore[union-attr]


def test_ssn_only_patients_are_known_by_resource_id_or_the_hospital_system(tmp_path: Path, monkeypatch: Any) -> None:
    ssn = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
           "system": "http://hl7.org/fhir/sid/us-ssn", "value": "444-22-2222"}
    local = {"system": "https://hospital.example/mrn", "value": "H-123"}
    res = {"resourceType": "Patient", "id": "pat-9", "identifier": [ssn, local], "name": [{"text": "Synthetic Ssn"}]}
    path = _write(tmp_path, json.loads(json.dumps(_bundle(res))))
    monkeypatch.delenv("DRESS_MRN_SYSTEM", raising=False)
    assert [p.mrn for p in parse_bundle(path, as_of=TODAY).patients] == ["pat-9"]
    monkeypatch.setenv("DRESS_MRN_SYSTEM", "https://hospital.example/mrn")
    assert [p.mrn for p in parse_bundle(path, as_of=TODAY).patients] == ["H-123"]


# --- dosage as EHRs write it ------------------------------------------------------------------



def _schedule(session: Session) -> list[tuple[str, dt.date, float]]:
    rows = session.execute(select(MedicationRow).order_by(MedicationRow.drug, MedicationRow.start_date)).scalars()
    return [(m.drug, m.start_date, round(m.daily_dose_mg, 6)) for m in rows]


def _step(seq: int, mg: float, **repeat: Any) -> dict[str, Any]:
    d = _dosage(mg, "mg", **repeat)
    d["sequence"] = seq
    return d


def test_every_dosage_step_of_a_written_taper_becomes_schedule_rows(session: Session, tmp_path: Path) -> None:
    days7 = {"boundsDuration": {"value": 7, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}}
    order = _order("MedicationRequest", "taper", _cc("prednisone"), dosageInstruction=[
        _step(3, 5, **days7),  # written out of order on purpose: the sequence number orders them
        _step(1, 20, boundsPeriod={"start": "2026-03-01", "end": "2026-03-07"}),
        _step(2, 10, **days7),
    ])
    report = import_files(session, [_write(tmp_path, _bundle(_patient(), order))], as_of=TODAY)
    assert report.ok, report.problem_lines()
    assert _schedule(session) == [
        ("prednisone", dt.date(2026, 3, 1), 20.0),
        ("prednisone", dt.date(2026, 3, 8), 10.0),
        ("prednisone", dt.date(2026, 3, 15), 5.0),
        ("prednisone", dt.date(2026, 3, 22), 0.0),
    ]


def test_frequency_times_dose_is_the_daily_dose(session: Session, tmp_path: Path) -> None:
    q6h = _dosage(500, "mg", boundsPeriod={"start": "2026-03-01", "end": "2026-03-03"})
    q6h["timing"]["repeat"].update({"frequency": 1, "period": 6, "periodUnit": "h"})
    order = _order("MedicationRequest", "mp", _cc("Methylprednisolone"), dosageInstruction=[q6h])
    report = import_files(session, [_write(tmp_path, _bundle(_patient(), order))], as_of=TODAY)
    assert report.ok, report.problem_lines()
    assert _schedule(session) == [("methylprednisolone", dt.date(2026, 3, 1), 2000.0),
                                  ("methylprednisolone", dt.date(2026, 3, 4), 0.0)]


def _administration(aid: str, drug: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "MedicationAdministration", "id": aid, "status": "completed",
            "medicationCodeableConcept": {"text": drug}, "subject": {"reference": "Patient/p1"}, **fields}


def test_an_administration_over_several_days_gives_a_dose_on_each_day(session: Session, tmp_path: Path) -> None:
    ivig = _administration("ivig", "Immune Globulin (Human) 10% IV",
                           effectivePeriod={"start": "2026-03-01T00:00:00+01:00", "end": "2026-03-06T00:00:00+01:00"},
                           dosage={"dose": {"value": 140, "unit": "g", "system": "http://unitsofmeasure.org", "code": "g"}})
    infusion = _administration("mp", "Methylprednisolone", effectivePeriod={
        "start": "2026-03-01T12:00:00+01:00", "end": "2026-03-02T12:00:00+01:00"},
        dosage={"rateQuantity": {"value": 10, "unit": "mg/h", "system": "http://unitsofmeasure.org", "code": "mg/h"}})
    report = import_files(session, [_write(tmp_path, _bundle(_patient(), ivig, infusion))], as_of=TODAY)
    assert report.ok, report.problem_lines()
    schedule = _schedule(session)
    assert [(d, mg) for drug, d, mg in schedule if drug == "ivig"] == [
        (dt.date(2026, 3, day), 28000.0) for day in range(1, 6)] + [(dt.date(2026, 3, 6), 0.0)]
    assert [(d, mg) for drug, d, mg in schedule if drug == "methylprednisolone"] == [
        (dt.date(2026, 3, 1), 120.0), (dt.date(2026, 3, 2), 120.0), (dt.date(2026, 3, 3), 0.0)]


def test_problems_of_drugs_no_decision_reads_are_listed_never_a_refusal(session: Session, tmp_path: Path) -> None:
    orders = [
        # a mg/kg dose of an unrelated drug, and the patient has no weight
        _order("MedicationRequest", "para", _cc("Paracetamol"), dosageInstruction=[
            _dosage(15, "mg/kg", boundsPeriod={"start": "2026-03-01"})]),
        # a Medication referenced but absent from the bundle
        _order("MedicationRequest", "ghost", {"medicationReference": {"reference": "Medication/nowhere"}},
               authoredOn="2026-03-01", dosageInstruction=[_dosage(1, "mg")]),
        # an unrelated drug with a negative dose
        _order("MedicationRequest", "neg", _cc("Metoprolol"), dosageInstruction=[
            _dosage(-5, "mg", boundsPeriod={"start": "2026-03-01"})]),
        # and the decision data beside them
        _order("MedicationRequest", "pred", _cc("prednisone"), dosageInstruction=[
            _dosage(40, "mg", boundsPeriod={"start": "2026-03-01"})]),
    ]
    report = import_files(session, [_write(tmp_path, _bundle(_patient(), *orders))], as_of=TODAY)
    assert report.ok, report.problem_lines()
    assert _schedule(session) == [("prednisone", dt.date(2026, 3, 1), 40.0)]
    summary = "\n".join(report.summary_lines())
    assert "paracetamol: a mg/kg dose and no weight recorded: not placed on the schedule" in summary
    assert "refers to a Medication that is not in this bundle or has no code" in summary
    assert "a dose cannot be negative" in summary


def test_a_problem_in_a_steroid_dose_still_refuses_the_import(session: Session, tmp_path: Path) -> None:
    order = _order("MedicationRequest", "pred", _cc("prednisone"), dosageInstruction=[
        _dosage(-40, "mg", boundsPeriod={"start": "2026-03-01"})])
    report = import_files(session, [_write(tmp_path, _bundle(_patient(), order))], as_of=TODAY)
    assert not report.ok and "a dose cannot be negative" in report.problem_lines()[0]
    assert session.execute(select(MedicationRow)).first() is None


# --- allergies ----------------------------------------------------------------------------------


def _allergy(aid: str, text: str, category: list[str] | None = None, reaction: str | None = None,
             code: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "AllergyIntolerance", "id": aid, "patient": {"reference": "Patient/p1"},
                           "code": {"text": text}}
    if category:
        res["category"] = category
    if reaction or code:
        manifestation: dict[str, Any] = {"text": reaction or "reaction"}
        if code:
            manifestation["coding"] = [{"system": "http://snomed.info/sct", "code": code}]
        res["reaction"] = [{"manifestation": [manifestation]}]
    return res


def test_only_drug_allergies_whose_reaction_names_dress_are_culprits(session: Session, tmp_path: Path) -> None:
    doc = _bundle(
        _patient(),
        _allergy("a1", "Grapefruit", ["food"]),
        _allergy("a2", "Cashew nuts", ["food"], reaction="Anaphylaxis"),
        _allergy("a3", "Penicillin G", ["medication"], reaction="Hives"),
        _allergy("a4", "Carbamazepine", ["medication"], reaction="DRESS"),
        _allergy("a5", "Allopurinol", ["medication"], code="702809001"),  # SNOMED CT: DRESS (disorder)
    )
    report = import_files(session, [_write(tmp_path, doc)], as_of=TODAY)
    assert report.ok, report.problem_lines()
    p = session.execute(select(Patient)).scalar_one()
    assert p.culprit_drugs == ["carbamazepine", "allopurinol"]
    assert p.drug_allergies == ["penicillin g"]


def test_a_drug_allergy_named_by_the_dress_condition_is_a_culprit(session: Session, tmp_path: Path) -> None:
    condition = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
                 "code": {"text": "DRESS due to lamotrigine"}, "onsetDateTime": "2026-03-01"}
    doc = _bundle(_patient(), _allergy("a1", "Lamotrigine", ["medication"], reaction="Rash"),
                  _allergy("a2", "Amoxicillin", ["medication"], reaction="Urticaria"), condition)
    assert import_files(session, [_write(tmp_path, doc)], as_of=TODAY).ok
    p = session.execute(select(Patient)).scalar_one()
    assert p.culprit_drugs == ["lamotrigine"] and p.drug_allergies == ["amoxicillin"]
