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
