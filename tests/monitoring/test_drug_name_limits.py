"""A drug name too long to store (PRODUCT.md §6: the stored generic name has 80 characters) is
refused with its file, row and column named, never cut: a cut name could match another drug, or
hide the one it names. Through the CSV import (schedule rows and culprits) and the one intake path
the Entry page uses (services.add_dose_change)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from monitoring import auth, drugs, services
from monitoring.importers import import_files
from monitoring.models import MedicationRow, Patient
from monitoring.store import BatchRejected

TODAY = dt.date(2026, 3, 1)
LONG = "Zyxwvut" * 11 + "abcd"  # 81 characters, one word the table does not know: kept as written
EXACT = LONG[:80]


def _import(session: Session, tmp_path: Path, name: str, content: str) -> list[str]:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    report = import_files(session, [path], username="tester", as_of=TODAY)
    return [] if report.ok else report.problem_lines()


def _count(session: Session, model: type) -> int:
    return session.execute(select(func.count()).select_from(model)).scalar_one()


def test_the_resolver_never_cuts_a_name() -> None:
    assert len(LONG) == 81
    assert drugs.normalise_drug(LONG) == LONG.lower()  # whole: the intake path decides what is stored


def test_a_schedule_row_with_a_name_over_80_characters_is_refused_by_row_and_column(session: Session, tmp_path: Path) -> None:
    assert _import(session, tmp_path, "p.csv", "mrn,name,weight_kg\nL1,Synthetic Long,70\n") == []
    lines = _import(session, tmp_path, "m.csv", f"mrn,start_date,drug,daily_dose,unit\nL1,2026-02-01,{LONG},10,mg\n")
    prefix = f"{tmp_path / 'm.csv'}: row 2: column drug"
    assert any(line.startswith(prefix) and "81 characters long: at most 80 can be stored (never cut)" in line for line in lines), lines
    assert _count(session, MedicationRow) == 0  # nothing stored, nothing cut
    # 80 characters are stored whole.
    assert _import(session, tmp_path, "m.csv", f"mrn,start_date,drug,daily_dose,unit\nL1,2026-02-01,{EXACT},10,mg\n") == []
    row = session.execute(select(MedicationRow)).scalar_one()
    assert row.drug == EXACT.lower() and row.drug_as_entered == EXACT


def test_a_culprit_over_80_characters_is_refused_by_row_and_column(session: Session, tmp_path: Path) -> None:
    content = f"mrn,name,onset_date,culprit_drug\nL2,Synthetic Culprit,2026-02-01,allopurinol;{LONG}\n"
    lines = _import(session, tmp_path, "p.csv", content)
    prefix = f"{tmp_path / 'p.csv'}: row 2: column culprit_drug"
    assert any(line.startswith(prefix) and "81 characters long" in line and "never cut" in line for line in lines), lines
    assert _count(session, Patient) == 0


@pytest.fixture
def doctor(session: Session) -> Session:
    auth.create_user(session, actor="setup", username="doc", role=auth.CLINICIAN, password=None)
    services.add_patient(session, username="doc", mrn="E1", name="Entry Example", weight_kg=70)
    session.commit()
    return session


def test_the_entry_form_refuses_a_name_over_80_characters_naming_the_drug_field(doctor: Session) -> None:
    with pytest.raises(BatchRejected) as refused:
        services.add_dose_change(doctor, username="doc", mrn="E1", drug=LONG, start_date=TODAY, dose="10", unit="mg")
    [problem] = refused.value.problems
    assert problem.column == "drug" and problem.value == LONG and "never cut" in problem.reason
    doctor.rollback()
    assert _count(doctor, MedicationRow) == 0
    services.add_dose_change(doctor, username="doc", mrn="E1", drug=EXACT, start_date=TODAY, dose="10", unit="mg")
    assert doctor.execute(select(MedicationRow.drug)).scalar_one() == EXACT.lower()


# --- a culprit is kept as written beside what it resolved to (issue 14) -----------------------


def test_a_csv_culprit_is_stored_as_written_beside_its_resolved_ingredients(session: Session, tmp_path: Path) -> None:
    from monitoring.records import load_record

    content = "mrn,name,onset_date,culprit_drug\nW1,Synthetic Written,2026-02-01,Bactrim DS; Tegretol XR;carbamazepine\n"
    assert _import(session, tmp_path, "p.csv", content) == []
    patient = session.execute(select(Patient).where(Patient.mrn == "W1")).scalar_one()
    # What the rules match: the resolved names, once each.
    assert patient.culprit_drugs == ["trimethoprim-sulfamethoxazole", "carbamazepine"]
    # What was written, each as written, beside the name and ingredients it resolved to.
    assert patient.culprits_as_entered == [
        {"as_entered": "Bactrim DS", "drug": "trimethoprim-sulfamethoxazole", "ingredients": ["sulfamethoxazole", "trimethoprim"]},
        {"as_entered": "Tegretol XR", "drug": "carbamazepine", "ingredients": ["carbamazepine"]},
        {"as_entered": "carbamazepine", "drug": "carbamazepine", "ingredients": ["carbamazepine"]},
    ]
    # Kept for display (the record the pages read) ...
    info = load_record(session, "W1").patient
    assert info.culprit_as_written("trimethoprim-sulfamethoxazole") == "Bactrim DS"
    assert info.culprit_as_written("carbamazepine") == "Tegretol XR"  # 'carbamazepine' as written adds nothing


def test_a_culprit_entered_on_the_form_is_audited_as_written(doctor: Session) -> None:
    from monitoring import audit

    services.add_patient(doctor, username="doc", mrn="W3", name="Synthetic Form", culprit_drugs="Septra DS")
    doctor.commit()
    [created] = [e for e in audit.query(doctor, audit.AuditFilter(entity="patient")) if e.after and e.after.get("mrn") == "W3"]
    assert created.after is not None and created.after["culprit_drugs"] == ["trimethoprim-sulfamethoxazole"]
    assert created.after["culprits_as_entered"][0]["as_entered"] == "Septra DS"


def test_an_unresolved_culprit_is_kept_as_written_with_no_ingredients(session: Session, tmp_path: Path) -> None:
    content = "mrn,name,onset_date,culprit_drug\nW2,Synthetic Unknown,2026-02-01,Zonisamide 100 MG Oral Capsule\n"
    assert _import(session, tmp_path, "p.csv", content) == []
    patient = session.execute(select(Patient).where(Patient.mrn == "W2")).scalar_one()
    assert patient.culprits_as_entered == [
        {"as_entered": "Zonisamide 100 MG Oral Capsule", "drug": patient.culprit_drugs[0], "ingredients": []}
    ]
