"""The shared write path (store.write_batch): set-wise checks, every problem before anything is
written, idempotence, FHIR identity by resource id, and the bulk column path storing exactly what
the row path stores."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from monitoring.models import AuditEntry, LabResult, MedicationRow, Patient
from monitoring.store import BatchRejected, LabColumns, LabIn, MedIn, PatientIn, Problem, write_batch

T0 = dt.datetime(2026, 2, 1, 8, 0)


def lab(mrn: str, test: str = "alt", value: float | None = 50.0, when: dt.datetime = T0, **kw: object) -> LabIn:
    return LabIn(mrn, test, when, value, "U/L", str(value), "U/L", where=f"t.csv: row {kw.pop('row', 2)}", **kw)  # type: ignore[arg-type]


def counts(session: Session) -> tuple[int, ...]:
    return tuple(
        session.execute(select(func.count()).select_from(t)).scalar_one() for t in (Patient, LabResult, MedicationRow, AuditEntry)
    )


@pytest.fixture
def s1(session: Session) -> Session:
    write_batch(session, patients=[PatientIn("S1", "Synthetic One", {"weight_kg": 60.0})], username="t")
    session.commit()
    return session


def test_problem_prints_file_row_column_value_reason() -> None:
    assert str(Problem("labs.csv: row 5", "unit", "mmol/L", "unknown unit")) == "labs.csv: row 5: column unit: value 'mmol/L': unknown unit"
    assert str(Problem("x.csv", None, None, "empty file")) == "x.csv: empty file"


def test_every_problem_is_collected_before_raising_and_nothing_is_written(s1: Session) -> None:
    before = counts(s1)
    write_batch(s1, labs=[lab("S1", value=50.0)], username="t")
    s1.commit()
    before = counts(s1)
    with pytest.raises(BatchRejected) as err:
        write_batch(
            s1,
            patients=[PatientIn("NEW", None, {}, where="p.csv: row 2")],
            labs=[lab("S1", value=51.0, row=3), lab("NOBODY", row=4)],
            meds=[MedIn("S1", "prednisone", "prednisone", dt.date(2026, 2, 1), 0.0, "1", "mg/kg", dose_per_kg=1.0, where="m.csv: row 2")],
            username="t",
        )
    s1.rollback()
    reasons = sorted(str(p) for p in err.value.problems)
    assert any("p.csv: row 2: column name" in r and "needs a name" in r for r in reasons)
    assert any("t.csv: row 3: column value" in r and "conflicts with the stored alt" in r for r in reasons)
    assert any("t.csv: row 4: column mrn: value 'NOBODY': unknown MRN" in r for r in reasons)
    assert counts(s1) == before


def test_mg_per_kg_is_resolved_with_the_stored_weight(s1: Session) -> None:
    med = MedIn("S1", "prednisone", "prednisone", dt.date(2026, 2, 1), 0.0, "1", "mg/kg", dose_per_kg=1.0)
    write_batch(s1, meds=[med], username="t")
    assert s1.execute(select(MedicationRow.daily_dose_mg)).scalar_one() == 60.0


def test_mg_per_kg_without_a_weight_is_refused(session: Session) -> None:
    with pytest.raises(BatchRejected, match="needs the weight of patient W1"):
        write_batch(
            session,
            patients=[PatientIn("W1", "Synthetic W")],
            meds=[MedIn("W1", "prednisone", "prednisone", dt.date(2026, 2, 1), 0.0, "1", "mg/kg", dose_per_kg=1.0)],
        )


def test_check_only_reports_but_writes_nothing(s1: Session) -> None:
    before = counts(s1)
    result = write_batch(s1, patients=[PatientIn("S2", "Synthetic Two")], labs=[lab("S2")], check_only=True)
    assert result.labs_inserted == 0
    assert counts(s1) == before
    with pytest.raises(BatchRejected, match="same patient, test and time"):
        write_batch(s1, labs=[lab("S1", value=1.0), lab("S1", value=2.0, row=3)], check_only=True)
    assert counts(s1) == before


def test_fhir_observations_are_identified_by_resource_id(s1: Session) -> None:
    a = lab("S1", value=10.0, source="fhir", source_id="obs-a")
    b = lab("S1", value=11.0, source="fhir", source_id="obs-b")  # same time, another resource: both kept
    result = write_batch(s1, labs=[a, b])
    assert result.labs_inserted == 2
    again = write_batch(s1, labs=[lab("S1", value=10.0, source="fhir", source_id="obs-a")])
    assert (again.labs_inserted, again.labs_skipped) == (0, 1)
    with pytest.raises(BatchRejected, match="resource obs-a is stored with a different value"):
        write_batch(s1, labs=[lab("S1", value=12.0, source="fhir", source_id="obs-a")])



def test_one_identity_twice_in_a_batch_is_skipped_when_the_same_and_refused_when_not(s1: Session) -> None:
    # A second result of one identity in a batch was skipped whatever its value (a silent loss).
    same = [lab("S1", value=10.0, source="hl7", source_id="hl7:x"), lab("S1", value=10.0, source="hl7", source_id="hl7:x")]
    result = write_batch(s1, labs=same)
    assert (result.labs_inserted, result.labs_skipped) == (1, 1)
    other = lab("S1", value=25.0, source="hl7", source_id="hl7:y", row=4)
    with pytest.raises(BatchRejected, match=r"the same result \(hl7:y\) as .* with a different value or time"):
        write_batch(s1, labs=[lab("S1", value=20.0, source="hl7", source_id="hl7:y"), other], check_only=True)


def test_medication_conflict_and_idempotence(s1: Session) -> None:
    med = MedIn("S1", "prednisone", "Prednisone", dt.date(2026, 2, 1), 60.0, "60", "mg")
    assert write_batch(s1, meds=[med]).meds_inserted == 1
    assert write_batch(s1, meds=[med]).meds_skipped == 1
    other = MedIn("S1", "prednisone", "prednisone", dt.date(2026, 2, 1), 40.0, "40", "mg", where="m.csv: row 9")
    with pytest.raises(BatchRejected, match="m.csv: row 9: column daily_dose: value '40': conflicts with the stored prednisone"):
        write_batch(s1, meds=[other])


def _columns(file: str, mrn: str, n: int, *, text_row: bool = True) -> LabColumns:
    times = [T0 + dt.timedelta(hours=k) for k in range(n)]
    values: list[float | None] = [float(k) for k in range(n)]
    texts: list[str | None] = [None] * n
    tests = ["alt"] * n
    if text_row:
        tests[-1], values[-1], texts[-1] = "hhv6_pcr", None, "detected"
    return LabColumns(
        file=file,
        rownums=list(range(2, n + 2)),
        mrn=[mrn] * n,
        test=tests,
        loinc=["1742-6"] * n,
        taken_at=times,
        value=values,
        unit=["U/L"] * n,
        value_text=texts,
        original_value=[str(v) if v is not None else "detected" for v in values],
        original_unit=["U/L"] * n,
        ref_low=[None] * n,
        ref_high=[40.0] + [None] * (n - 1),
    )


def test_bulk_columns_store_exactly_what_the_row_path_stores(session: Session) -> None:
    write_batch(session, patients=[PatientIn("ROWS", "Synthetic Rows"), PatientIn("COLS", "Synthetic Cols")])
    rows = _columns("r.csv", "ROWS", 6).records()
    write_batch(session, labs=rows, username="u")
    result = write_batch(session, lab_columns=[_columns("c.csv", "COLS", 6)], username="u")
    assert result.labs_inserted == 6
    session.commit()
    pids = {mrn: pid for mrn, pid in session.execute(select(Patient.mrn, Patient.id)).all()}
    fields = (
        "test", "loinc", "taken_at", "value", "unit", "value_text", "original_value", "original_unit",
        "ref_low", "ref_high", "source", "source_id", "entered_by", "hidden", "amended_at",
    )  # fmt: skip

    def stored(mrn: str) -> list[tuple[object, ...]]:
        labs = session.execute(select(LabResult).where(LabResult.patient_id == pids[mrn]).order_by(LabResult.id)).scalars()
        return [tuple(getattr(r, f) for f in fields) for r in labs]

    assert stored("COLS") == stored("ROWS")
    assert len(stored("COLS")) == 6
    if session.get_bind().dialect.name == "sqlite":
        # The same text in the file, not only the same values once read back.
        raw = session.connection().exec_driver_sql(
            "SELECT patient_id, taken_at, created_at, typeof(value), hidden FROM lab_result ORDER BY id"
        ).all()
        assert {(r[1].__class__, len(r[1]), len(r[2]), r[4]) for r in raw} == {(str, 26, 26, 0)}


def test_bulk_columns_with_duplicates_or_stored_rows_take_the_row_checks(s1: Session) -> None:
    write_batch(s1, labs=[lab("S1", value=0.0, when=T0)])  # the first row of the columns below, stored
    s1.commit()
    cols = _columns("c.csv", "S1", 4, text_row=False)
    cols.value[1], cols.original_value[1] = 99.0, "99.0"
    cols.taken_at[1] = T0  # conflicts with the stored result at T0 (value 0.0)
    result_or_error: object
    with pytest.raises(BatchRejected) as err:
        write_batch(s1, lab_columns=[cols])
    s1.rollback()
    result_or_error = [str(p) for p in err.value.problems]
    assert result_or_error == [
        "c.csv: row 3: column value: value '99.0': conflicts with the stored alt of 2026-02-01 08:00:00 (0.0 U/L); "
        "corrections are amendments made in the dashboard"
    ]
    cols.value[1], cols.original_value[1] = 0.0, "0.0"  # identical to the stored one: skipped
    result = write_batch(s1, lab_columns=[cols])
    assert (result.labs_inserted, result.labs_skipped) == (2, 2)  # rows 2 and 3 both equal the stored row


def test_bulk_columns_with_an_unknown_mrn_name_the_row(session: Session) -> None:
    with pytest.raises(BatchRejected, match="c.csv: row 2: column mrn: value 'GHOST': unknown MRN"):
        write_batch(session, lab_columns=[_columns("c.csv", "GHOST", 2)])


def test_an_import_is_audited_once_and_a_patient_change_keeps_the_earlier_value(s1: Session) -> None:
    write_batch(s1, patients=[PatientIn("S1", None, {"weight_kg": 65.0})], username="nurse", source="csv")
    entries = s1.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars().all()
    amend = [e for e in entries if e.action == "amend"][-1]
    assert (amend.username, amend.before, amend.after) == ("nurse", {"weight_kg": 60.0}, {"weight_kg": 65.0})
    assert entries[-1].action == "import" and entries[-1].after["patients_updated"] == 1  # type: ignore[index]
