"""RECHALLENGE and CULPRIT_NOT_STOPPED from the clinic's side (issue 14): EHR medication strings
arrive in CSV and FHIR files (MedicationRequest, MedicationStatement, MedicationAdministration; by
code only and by text only) and the alerts a clinician must see are raised, and not others."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from sqlmodel import Session

from monitoring.importers import import_files
from monitoring.records import load_record
from monitoring.rules import evaluate

TODAY = dt.date(2026, 11, 24)
ONSET = "2026-10-01"
AS_OF = dt.date(2026, 10, 20)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
MR = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}


def _codes(session: Session, mrn: str, as_of: dt.date = AS_OF) -> dict[str, Any]:
    return {a.code: a for a in evaluate(load_record(session, mrn), as_of)}


def _import(session: Session, *paths: Path) -> list[str]:
    report = import_files(session, list(paths), username="tester", as_of=TODAY)
    assert report.ok, report.problem_lines()
    return report.summary_lines()


def _csv(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_csv_ehr_strings_raise_rechallenge_and_culprit_not_stopped(session: Session, tmp_path: Path) -> None:
    patients = _csv(tmp_path, "patients.csv", (
        "mrn,name,onset_date,culprit_drug,weight_kg\n"
        f"C1,Bactrim patient,{ONSET},Bactrim,70\n"
        f"C2,Carbamazepine patient,{ONSET},carbamazepine,70\n"
        f"C3,Never stopped,{ONSET},Tegretol,70\n"
        f"C4,Other drugs only,{ONSET},carbamazepine,70\n"
    ))
    meds = _csv(tmp_path, "meds.csv", (
        "mrn,start_date,drug,daily_dose,unit\n"
        "C1,2026-10-10,Sulfamethoxazole 800 MG / Trimethoprim 160 MG Oral Tablet,1600,mg\n"
        "C2,2026-09-01,carbamazepine,400,mg\n"
        "C2,2026-10-01,carbamazepine,0,mg\n"
        "C2,2026-10-15,Tegretol XR,200,mg\n"
        "C3,2026-09-01,carbamazepine (Tegretol) 200 mg tablet,400,mg\n"
        "C4,2026-09-01,Acetaminophen 325 MG Oral Tablet,1950,mg\n"
        "C4,2026-10-05,levetiracetam 500 MG Oral Tablet,1000,mg\n"
    ))
    lines = _import(session, patients, meds)
    assert any("unresolved drug name" in line and "'Acetaminophen 325 MG Oral Tablet' (1)" in line for line in lines)
    assert not any("Sulfamethoxazole 800 MG" in line for line in lines if "unresolved" in line)

    c1 = _codes(session, "C1")
    assert "RECHALLENGE" in c1 and "CULPRIT_NOT_STOPPED" not in c1
    assert "Sulfamethoxazole 800 MG / Trimethoprim 160 MG Oral Tablet" in c1["RECHALLENGE"].message
    c2 = _codes(session, "C2")
    assert "RECHALLENGE" in c2 and "Tegretol XR" in c2["RECHALLENGE"].message
    assert "CULPRIT_NOT_STOPPED" not in c2  # the exposure before onset was stopped on the onset day
    c3 = _codes(session, "C3")
    assert "CULPRIT_NOT_STOPPED" in c3 and "RECHALLENGE" not in c3
    assert c3["CULPRIT_NOT_STOPPED"].severity == "critical"
    assert "first step of management" in c3["CULPRIT_NOT_STOPPED"].message
    c4 = _codes(session, "C4")
    assert not {"RECHALLENGE", "CULPRIT_NOT_STOPPED"} & set(c4)


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def _patient(pid: str, mrn: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "identifier": [{"type": MR, "value": mrn}],
            "name": [{"family": "Patient", "given": [mrn]}], "gender": "female", "birthDate": "1970-01-02"}


def _dress(pid: str, culprit: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"resourceType": "Condition", "id": f"c-{pid}", "subject": {"reference": f"Patient/{pid}"},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "D72.12"}]}, "onsetDateTime": ONSET},
        {"resourceType": "AllergyIntolerance", "id": f"a-{pid}", "patient": {"reference": f"Patient/{pid}"},
         "category": ["medication"], "code": culprit, "reaction": [{"manifestation": [{"text": "DRESS"}]}]},
    ]


def _dose(value: float) -> dict[str, Any]:
    return {"doseAndRate": [{"doseQuantity": {"value": value, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}],
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}


def test_fhir_medication_resources_by_text_only_and_by_code_only(session: Session, tmp_path: Path) -> None:
    doc = _bundle(
        # F1: culprit vancomycin (text); given again as the HL7 example's contained Medication (text only)
        _patient("f1", "F1"), *_dress("f1", {"text": "Vancomycin"}),
        {"resourceType": "MedicationAdministration", "id": "ma1", "status": "completed", "subject": {"reference": "Patient/f1"},
         "contained": [{"resourceType": "Medication", "id": "med0301", "code": {"text": "Vancomycin Hydrochloride (VANCOMYCIN HYDROCHLORIDE)"}}],
         "medicationReference": {"reference": "#med0301"}, "effectiveDateTime": "2026-10-12T10:00:00Z",
         "dosage": {"dose": {"value": 1000, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}},
        # F2: culprit trimethoprim-sulfamethoxazole by RxNorm code only; ordered again by clinical-drug code only
        _patient("f2", "F2"), *_dress("f2", {"coding": [{"system": RXNORM, "code": "10831"}]}),
        {"resourceType": "MedicationRequest", "id": "mr1", "status": "active", "intent": "order", "subject": {"reference": "Patient/f2"},
         "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": "198335"}]}, "authoredOn": "2026-10-14",
         "dosageInstruction": [{**_dose(800), "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d",
                                                                    "boundsPeriod": {"start": "2026-10-14"}}}}]},
        # F3: culprit Tegretol, taken since before onset as "Tegretol XR" (statement, text only), never stopped
        _patient("f3", "F3"), *_dress("f3", {"text": "Tegretol"}),
        {"resourceType": "MedicationStatement", "id": "ms1", "status": "active", "subject": {"reference": "Patient/f3"},
         "medicationCodeableConcept": {"text": "Tegretol XR"}, "effectivePeriod": {"start": "2026-08-15"}, "dosage": [_dose(400)]},
    )
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    _import(session, path)

    f1 = _codes(session, "F1")
    assert "RECHALLENGE" in f1 and "VANCOMYCIN HYDROCHLORIDE" in f1["RECHALLENGE"].message
    f2 = _codes(session, "F2")
    assert load_record(session, "F2").patient.culprit_drugs == ("trimethoprim-sulfamethoxazole",)
    assert "RECHALLENGE" in f2 and f2["RECHALLENGE"].evidence["rows"][0]["drug"] == "trimethoprim-sulfamethoxazole"
    f3 = _codes(session, "F3")
    assert "CULPRIT_NOT_STOPPED" in f3 and "RECHALLENGE" not in f3
    assert f3["CULPRIT_NOT_STOPPED"].evidence["rows"][0]["drug_as_entered"] == "Tegretol XR"


SPEC = Path(__file__).resolve().parents[1] / "fixtures" / "fhir"


def _spec_order_for(tmp_path: Path, culprit: str) -> Path:
    """The R4 specification's vancomycin order (medicationrequest0318.json, tests/fixtures/fhir/
    README.md) for its patient pat1, whose DRESS (onset 2015-01-10) names ``culprit``."""
    order = json.loads((SPEC / "medicationrequest0318.json").read_text(encoding="utf-8"))
    condition, allergy = _dress("pat1", {"text": culprit})
    doc = _bundle(_patient("pat1", "SPEC-pat1"), {**condition, "onsetDateTime": "2015-01-10"}, allergy, order)
    path = tmp_path / f"spec-{culprit}.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_the_specs_vancomycin_order_is_a_rechallenge_of_a_vancomycin_dress(session: Session, tmp_path: Path) -> None:
    # medrx0318: contained Medication by NDC 0069-2587-10 ("Vancomycin Hydrochloride
    # (VANCOMYCIN HYDROCHLORIDE)"), 500 mg IV every 6 h from 2015-01-15, status active.
    report = import_files(session, [_spec_order_for(tmp_path, "Vancomycin")], username="tester", as_of=dt.date(2015, 1, 20))
    assert report.ok, report.problem_lines()
    [row] = load_record(session, "SPEC-pat1").meds
    assert (row.drug, row.start_date, row.daily_dose_mg, row.route) == ("vancomycin", dt.date(2015, 1, 15), 2000.0, "intravenous")
    assert (row.drug_as_entered, row.dose_as_entered) == ("Vancomycin Hydrochloride (VANCOMYCIN HYDROCHLORIDE)", "500 mg x 4/day")
    found = _codes(session, "SPEC-pat1", dt.date(2015, 1, 16))
    assert "RECHALLENGE" in found and "VANCOMYCIN HYDROCHLORIDE" in found["RECHALLENGE"].message


def test_the_specs_vancomycin_order_is_no_rechallenge_of_another_culprit(session: Session, tmp_path: Path) -> None:
    report = import_files(session, [_spec_order_for(tmp_path, "allopurinol")], username="tester", as_of=dt.date(2015, 1, 20))
    assert report.ok, report.problem_lines()
    assert "RECHALLENGE" not in _codes(session, "SPEC-pat1", dt.date(2015, 1, 16))


def test_a_carbamazepine_culprit_given_again_as_tegretol_xr_bid_is_a_rechallenge_by_csv(session: Session, tmp_path: Path) -> None:
    # issue 14, second review: "-XR" and "BID" hid the culprit, and RECHALLENGE was not raised
    patients = _csv(tmp_path, "patients.csv", (
        "mrn,name,onset_date,culprit_drug,weight_kg\n"
        f"X1,Tegretol-XR again,{ONSET},carbamazepine,70\n"
        f"X2,Culprit as Tegretol-XR,{ONSET},Tegretol-XR,70\n"
        f"X3,Another drug BID,{ONSET},carbamazepine,70\n"
    ))
    meds = _csv(tmp_path, "meds.csv", (
        "mrn,start_date,drug,daily_dose,unit\n"
        "X1,2026-10-12,Tegretol-XR 200 mg BID,400,mg\n"
        "X2,2026-10-12,carbamazepine 200 mg BID,400,mg\n"
        "X3,2026-10-12,levetiracetam 500 mg BID,1000,mg\n"
    ))
    lines = _import(session, patients, meds)
    assert not any("Tegretol-XR" in line or "carbamazepine 200 mg BID" in line for line in lines if "unresolved" in line)
    x1 = _codes(session, "X1")
    assert "RECHALLENGE" in x1 and "Tegretol-XR 200 mg BID" in x1["RECHALLENGE"].message
    assert load_record(session, "X1").meds[0].drug == "carbamazepine"
    assert "RECHALLENGE" in _codes(session, "X2")
    assert load_record(session, "X2").patient.culprit_drugs == ("carbamazepine",)
    assert "RECHALLENGE" not in _codes(session, "X3")


def test_a_carbamazepine_culprit_given_again_as_tegretol_xr_bid_is_a_rechallenge_by_fhir(session: Session, tmp_path: Path) -> None:
    doc = _bundle(
        _patient("x4", "X4"), *_dress("x4", {"text": "carbamazepine"}),
        {"resourceType": "MedicationRequest", "id": "mr-x4", "status": "active", "intent": "order", "subject": {"reference": "Patient/x4"},
         "medicationCodeableConcept": {"text": "Tegretol-XR 200 mg BID"}, "authoredOn": "2026-10-12",
         "dosageInstruction": [{**_dose(200), "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d",
                                                                    "boundsPeriod": {"start": "2026-10-12"}}}}]},
        _patient("x5", "X5"), *_dress("x5", {"text": "Tegretol-XR"}),
        {"resourceType": "MedicationAdministration", "id": "ma-x5", "status": "completed", "subject": {"reference": "Patient/x5"},
         "medicationCodeableConcept": {"text": "carbamazepine 200 mg PO BID"}, "effectiveDateTime": "2026-10-12T08:00:00Z",
         "dosage": {"dose": {"value": 200, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}},
    )
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    _import(session, path)
    x4 = _codes(session, "X4")
    assert "RECHALLENGE" in x4 and "Tegretol-XR 200 mg BID" in x4["RECHALLENGE"].message
    [row] = load_record(session, "X4").meds
    assert (row.drug, row.drug_as_entered) == ("carbamazepine", "Tegretol-XR 200 mg BID")
    assert load_record(session, "X5").patient.culprit_drugs == ("carbamazepine",)
    assert "RECHALLENGE" in _codes(session, "X5")
