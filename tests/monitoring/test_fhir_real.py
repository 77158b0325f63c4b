"""The real published FHIR R4 examples of ../shared/fixtures/fhir-real/ (see its README) import with
the outcome that README states. Single resources are wrapped in a collection Bundle with a Patient of
the id they reference, as the README says."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import Session

from monitoring.importers import import_files
from monitoring.models import LabResult, MedicationRow, Patient
from tests.conftest import SHARED_DIR

REAL = SHARED_DIR / "fixtures" / "fhir-real"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"the shared real FHIR examples are not at {REAL}")


def _wrapped(tmp_path: Path, names: list[str], patients: list[str], out: str = "wrapped.json") -> Path:
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{k:012d}",
         "resource": {"resourceType": "Patient", "id": pid, "name": [{"text": f"Synthetic {pid}"}]}}
        for k, pid in enumerate(patients)]
    for name in names:
        entries.append({"resource": json.loads((REAL / name).read_text(encoding="utf-8"))})
    path = tmp_path / out
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}), encoding="utf-8")
    return path


def test_lipid_report_none_in_the_catalogue_counted_and_skipped(session: Session, tmp_path: Path) -> None:
    report = import_files(session, [_wrapped(tmp_path, ["hl7-r4/diagnosticreport-example-lipids.json"], ["pat2"])])
    assert report.ok, report.problem_lines()
    assert report.files[0].skipped_resources == {"DiagnosticReport": 1, "Observation": 4}
    assert session.execute(select(LabResult)).first() is None


def test_creatinine_with_a_local_code_and_a_snomed_unit_code(session: Session, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # The AUMC code 20005 is the laboratory's own: mapped in the laboratory code map (lab_codes.toml,
    # the HL7 feed's), the table named by the coding system.
    codes = tmp_path / "lab_codes.toml"
    codes.write_text('[codes]\n[codes."https://intranet.aumc.nl/labtestcodes"]\n20005 = "creatinine"\n', encoding="utf-8")
    monkeypatch.setenv("DRESS_LAB_CODES", str(codes))
    report = import_files(session, [_wrapped(tmp_path, ["hl7-r4/observation-example-f204-creatinine.json"], ["f201"])])
    assert report.ok, report.problem_lines()
    row = session.execute(select(LabResult)).scalar_one()
    assert (row.test, row.original_value, row.original_unit) == ("creatinine", "122", "umol/L")
    assert row.value == pytest.approx(122 / 88.4) and row.unit == "mg/dL"
    assert row.taken_at == dt.datetime(2013, 4, 4, 14, 34)


def test_penicillin_is_a_drug_allergy_not_a_culprit_and_cashew_is_not_a_drug_allergy(session: Session,
                                                                                    tmp_path: Path) -> None:
    path = _wrapped(tmp_path, ["hl7-r4/allergyintolerance-example.json", "hl7-r4/allergyintolerance-medication.json"],
                    ["example"])
    report = import_files(session, [path])
    assert report.ok, report.problem_lines()
    patient = session.execute(select(Patient)).scalar_one()
    assert patient.culprit_drugs == []
    assert patient.drug_allergies is not None and len(patient.drug_allergies) == 1
    assert "penicillin" in patient.drug_allergies[0]
    assert "AllergyIntolerance: not a drug allergy (1)" in "\n".join(report.summary_lines())


def test_patients_with_only_social_security_numbers_are_known_by_their_resource_id(session: Session,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRESS_MRN_SYSTEM", raising=False)
    path = REAL / "hl7-r4" / "patient-examples-general.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    ids = [e["resource"]["id"] for e in doc["entry"]]
    ssns = {i["value"] for e in doc["entry"] for i in e["resource"].get("identifier", [])}
    report = import_files(session, [path])
    assert report.ok, report.problem_lines()
    mrns = set(session.execute(select(Patient.mrn)).scalars())
    assert mrns == set(ids) and not mrns & ssns


def test_medication_examples_only_known_drugs_become_schedule_rows_never_a_refusal(session: Session,
                                                                                  tmp_path: Path) -> None:
    names = ["hl7-r4/medicationrequest0331.json", "hl7-r4/medicationadministration0305.json",
             "hl7-r4/medicationadministration0307.json", "hl7-r4/medicationstatementexample1.json",
             "hl7-r4/medicationstatementexample3.json"]
    refs = {m for n in names for m in __import__("re").findall(r'"Patient/([^"]+)"', (REAL / n).read_text())}
    report = import_files(session, [_wrapped(tmp_path, names, sorted(refs))])
    assert report.ok, report.problem_lines()
    # Drugs no decision reads are kept on the schedule as named (a culprit may be any drug: RECHALLENGE
    # must see it); what cannot be placed is counted and skipped with its reason.
    drugs = set(session.execute(select(MedicationRow.drug)).scalars())
    assert "warfarin" in drugs
    skipped = report.files[0].skipped_resources
    used = len({*session.execute(select(MedicationRow.source_id)).scalars()})
    assert used + sum(v for k, v in skipped.items() if k.startswith("Medication")) >= len(names)


@pytest.mark.parametrize("name", ["cerner_R4_OBSERVATION_BUNDLE.json", "cerner_R4_MEDICATION_ADMINISTRATION_BUNDLE.json",
                                  "cerner_R4_ALLERGY_INTOLERANCE_BUNDLE.json"])
def test_cerner_searchsets_import_with_their_patient(session: Session, tmp_path: Path, name: str) -> None:
    text = (REAL / "cerner" / name).read_text(encoding="utf-8")
    refs = sorted(set(__import__("re").findall(r'"Patient/([^"/]+)"', text)))
    patient = tmp_path / "patient.json"
    patient.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": pid, "name": [{"text": f"Synthetic {pid}"}]}} for pid in refs]}),
        encoding="utf-8")
    report = import_files(session, [REAL / "cerner" / name, patient])  # the Patient comes in another file
    if name == "cerner_R4_OBSERVATION_BUNDLE.json":
        # An axillary temperature of 27 Cel (a catalogue test: decision data) refuses the import; with
        # --skip-invalid the rest is stored and that result waits in the review list, as received.
        assert "27" in [str(p.value) for p in report.problems]
        report = import_files(session, [REAL / "cerner" / name, patient], skip_invalid=True)
        assert "27" in [str(p.value) for p in report.refused] and len(report.review_items) == len(report.refused)
        assert session.execute(select(Patient)).first() is not None
    assert report.ok, report.problem_lines()


def test_seventeen_nested_report_bundles_give_every_catalogue_result_with_the_reports_time(session: Session,
                                                                                         tmp_path: Path) -> None:
    name = "hl7-r4/diagnosticreport-examples-general.json"
    refs = sorted(set(__import__("re").findall(r'"Patient/([^"/]+)"', (REAL / name).read_text(encoding="utf-8"))))
    report = import_files(session, [_wrapped(tmp_path, [name], refs)])
    assert report.ok, report.problem_lines()[:5]
    rows = list(session.execute(select(LabResult)).scalars())
    assert len(rows) == 84 and {"alt", "bilirubin", "creatinine"} <= {r.test for r in rows}
    creat = next(r for r in rows if r.source_id == "o8-3")  # 0.09 mmol/L, time only on its report
    assert creat.original_unit == "mmol/L" and creat.value == pytest.approx(0.09 * 1000 / 88.4)
