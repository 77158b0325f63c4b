"""Write services: what a clinician notices when entering or correcting data by hand."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlmodel import Session

from monitoring import auth, services
from monitoring.models import AuditEntry, ClinicalFinding, LabResult, MedicationRow, Patient, Photo
from monitoring.store import BatchRejected

USER = "dr.test"


@pytest.fixture(autouse=True)
def clinician_accounts(session: Session) -> None:
    """Writes are signed by an account whose role may write (issue 7: viewers are refused)."""
    for name in (USER, "dr.two"):
        auth.create_user(session, actor="test", username=name, role=auth.CLINICIAN, password=None)
    session.commit()


@pytest.fixture
def patient(session: Session) -> Patient:
    services.add_patient(
        session,
        username=USER,
        mrn="M1",
        name="Ada Example",
        sex="female",
        birth_date="1970-03-01",
        weight_kg=60,
        onset_date="2026-01-10",
        culprit_drugs="Tegretol",
    )
    session.commit()
    return session.execute(select(Patient).where(Patient.mrn == "M1")).scalar_one()


def _count(session: Session, model: type) -> int:
    return session.execute(select(func.count()).select_from(model)).scalar_one()


def _problem(exc: pytest.ExceptionInfo[BatchRejected]) -> tuple[str | None, str]:
    p = exc.value.problems[0]
    return p.column, str(p)


def test_new_patient_culprit_brand_name_is_stored_as_generic(patient: Patient) -> None:
    assert patient.culprit_drugs == ["carbamazepine"]
    assert patient.weight_kg == 60
    assert patient.birth_date == dt.date(1970, 3, 1)


def test_lab_in_si_unit_is_stored_canonical_with_original_kept(session: Session, patient: Patient) -> None:
    lab_id = services.add_lab_result(
        session, username=USER, mrn="M1", test="creatinine", taken_at="2026-01-12 08:00", value="176.8", unit="µmol/L"
    )
    session.commit()
    row = session.get(LabResult, lab_id)
    assert row is not None
    assert row.value == pytest.approx(2.0)
    assert row.unit == "mg/dL"
    assert (row.original_value, row.original_unit) == ("176.8", "µmol/L")
    assert row.source == "manual" and row.entered_by == USER
    audit = session.execute(
        select(AuditEntry).where(AuditEntry.entity == "lab_result", AuditEntry.entity_id == str(lab_id))
    ).scalar_one()
    assert audit.username == USER and audit.action == "create"


def test_lab_reference_range_converted_to_canonical(session: Session, patient: Patient) -> None:
    lab_id = services.add_lab_result(
        session, username=USER, mrn="M1", test="alt", taken_at="2026-01-12", value=1.0, unit="ukat/L", ref_high=0.5
    )
    row = session.get(LabResult, lab_id)
    assert row is not None and row.value == pytest.approx(60.0) and row.ref_high == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("kwargs", "column", "fragment"),
    [
        ({"unit": "mg/L"}, "unit", "mg/L"),
        ({"value": "12,5x"}, "value", "not a number"),
        ({"value": "45", "unit": "mg/dL"}, "value", "physiological bound"),  # µmol/L typed as mg/dL
        ({"value": "-1"}, "value", "negative"),
        ({"test": "sodium"}, "test", "sodium"),
        ({"taken_at": "12/01/2026"}, "taken_at", "ISO"),
        ({"taken_at": "2999-01-01"}, "taken_at", "future"),
        ({"mrn": "NOPE"}, "mrn", "unknown MRN"),
        ({"value": ""}, "value", "required"),
    ],
)
def test_bad_lab_entry_names_field_and_value_and_stores_nothing(
    session: Session, patient: Patient, kwargs: dict[str, str], column: str, fragment: str
) -> None:
    args = {"mrn": "M1", "test": "creatinine", "taken_at": "2026-01-12 08:00", "value": "1.1", "unit": "mg/dL"}
    args.update(kwargs)
    before = _count(session, LabResult), _count(session, AuditEntry)
    with pytest.raises(BatchRejected) as exc:
        services.add_lab_result(session, username=USER, **args)
    col, text = _problem(exc)
    assert col == column
    assert fragment in text
    session.rollback()
    assert (_count(session, LabResult), _count(session, AuditEntry)) == before


def test_same_time_different_value_is_a_conflict_not_an_overwrite(session: Session, patient: Patient) -> None:
    services.add_lab_result(session, username=USER, mrn="M1", test="alt", taken_at="2026-01-12 08:00", value=100, unit="U/L")
    session.commit()
    with pytest.raises(BatchRejected) as exc:
        services.add_lab_result(session, username=USER, mrn="M1", test="alt", taken_at="2026-01-12 08:00", value=120, unit="U/L")
    assert "amendment" in str(exc.value)
    session.rollback()
    assert [r.value for r in session.execute(select(LabResult)).scalars()] == [100.0]


def test_same_result_twice_changes_nothing(session: Session, patient: Patient) -> None:
    a = services.add_lab_result(session, username=USER, mrn="M1", test="alt", taken_at="2026-01-12", value=100, unit="U/L")
    b = services.add_lab_result(session, username=USER, mrn="M1", test="alt", taken_at="2026-01-12", value="100", unit="IU/L")
    assert a == b and _count(session, LabResult) == 1


def test_pcr_text_result(session: Session, patient: Patient) -> None:
    lab_id = services.add_lab_result(
        session, username=USER, mrn="M1", test="hhv6_pcr", taken_at="2026-01-20", value="Positive", unit="copies/mL"
    )
    row = session.get(LabResult, lab_id)
    assert row is not None and row.value is None and row.value_text == "detected"


def test_amendment_keeps_the_earlier_value_and_requires_a_reason(session: Session, patient: Patient) -> None:
    lab_id = services.add_lab_result(session, username=USER, mrn="M1", test="alt", taken_at="2026-01-12", value=400, unit="U/L")
    session.commit()
    with pytest.raises(BatchRejected) as exc:
        services.amend_lab_result(session, username=USER, lab_id=lab_id, value=40, unit="U/L", reason="  ")
    assert exc.value.problems[0].column == "reason"
    session.rollback()
    assert session.get(LabResult, lab_id).value == 400  # type: ignore[union-attr]

    services.amend_lab_result(session, username="dr.two", lab_id=lab_id, value=40, unit="U/L", reason="transcription error")
    session.commit()
    row = session.get(LabResult, lab_id)
    assert row is not None and row.value == 40 and row.amended_at is not None
    audit = session.execute(select(AuditEntry).where(AuditEntry.action == "amend", AuditEntry.entity == "lab_result")).scalar_one()
    assert audit.before["value"] == 400 and audit.after["value"] == 40  # type: ignore[index]
    assert audit.username == "dr.two" and audit.reason == "transcription error"


def test_amendment_with_bad_unit_changes_nothing(session: Session, patient: Patient) -> None:
    lab_id = services.add_lab_result(session, username=USER, mrn="M1", test="alt", taken_at="2026-01-12", value=400, unit="U/L")
    session.commit()
    with pytest.raises(BatchRejected) as exc:
        services.amend_lab_result(session, username=USER, lab_id=lab_id, value=40, unit="mg/dL", reason="typo")
    assert exc.value.problems[0].column == "unit"
    session.rollback()
    row = session.get(LabResult, lab_id)
    assert row is not None and row.value == 400 and row.amended_at is None


def test_hide_keeps_row_with_reason(session: Session, patient: Patient) -> None:
    lab_id = services.add_lab_result(session, username=USER, mrn="M1", test="alt", taken_at="2026-01-12", value=400, unit="U/L")
    with pytest.raises(BatchRejected):
        services.hide_record(session, username=USER, entity="lab_result", record_id=lab_id, reason="")
    services.hide_record(session, username=USER, entity="lab_result", record_id=lab_id, reason="wrong patient")
    session.commit()
    row = session.get(LabResult, lab_id)
    assert row is not None and row.hidden and row.hidden_reason == "wrong patient"
    with pytest.raises(BatchRejected):
        services.hide_record(session, username=USER, entity="patient", record_id=patient.id or 0, reason="x")


def test_hide_photo_hides_its_bsa_observation_too(session: Session, patient: Patient) -> None:
    """Issue 6: hiding a photograph from the entry services takes the BSA % entered with it along
    (the same path as the Photos page), so a wrong-patient photograph's BSA stops counting."""
    import io

    from PIL import Image

    from monitoring import photos

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 120, 100)).save(buf, "JPEG")
    stored = photos.store_photos(
        session, "M1", [photos.PhotoIn("arm.jpg", buf.getvalue(), "arms", bsa_pct=55.0, taken_on=dt.date(2026, 1, 12))],
        username=USER, today=dt.date(2026, 1, 20),
    )
    session.commit()
    photo_id = stored[0].id
    bsa = session.execute(select(LabResult).where(LabResult.source_id == photos.photo_source_id(photo_id))).scalar_one()
    assert not bsa.hidden and bsa.value == pytest.approx(55.0)

    services.hide_record(session, username=USER, entity="photo", record_id=photo_id, reason="wrong patient")
    session.commit()
    session.expire_all()
    photo = session.get(Photo, photo_id)
    assert photo is not None and photo.hidden and photo.hidden_reason == "wrong patient"
    bsa = session.get(LabResult, bsa.id)
    assert bsa is not None and bsa.hidden and "wrong patient" in (bsa.hidden_reason or "")
    audited = session.execute(
        select(AuditEntry.entity).where(AuditEntry.action == "hide", AuditEntry.patient_id == patient.id)
    ).scalars().all()
    assert sorted(audited) == ["lab_result", "photo"]  # one entry each, not a duplicate photo entry
    with pytest.raises(BatchRejected):  # already hidden: named, not silently repeated
        services.hide_record(session, username=USER, entity="photo", record_id=photo_id, reason="again")


def test_viewer_cannot_hide_photo(session: Session, patient: Patient) -> None:
    import io

    from PIL import Image

    from monitoring import photos

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (90, 120, 100)).save(buf, "JPEG")
    stored = photos.store_photos(session, "M1", [photos.PhotoIn("leg.jpg", buf.getvalue(), "legs")], username=USER,
                                 today=dt.date(2026, 1, 20))
    auth.create_user(session, actor="test", username="viewer.v", role=auth.VIEWER, password=None)
    session.commit()
    with pytest.raises(auth.PermissionDenied):
        services.hide_record(session, username="viewer.v", entity="photo", record_id=stored[0].id, reason="x")
    session.rollback()
    photo = session.get(Photo, stored[0].id)
    assert photo is not None and not photo.hidden


def test_dose_change_in_g_mg_and_mg_per_kg(session: Session, patient: Patient) -> None:
    a = services.add_dose_change(session, username=USER, mrn="M1", drug="Solu-Medrol", start_date="2026-01-12", dose=1, unit="mg/kg")
    b = services.add_dose_change(session, username=USER, mrn="M1", drug="IVIG", start_date="2026-01-19", dose=60, unit="g")
    session.commit()
    ma, mb = session.get(MedicationRow, a), session.get(MedicationRow, b)
    assert ma is not None and ma.drug == "methylprednisolone" and ma.daily_dose_mg == pytest.approx(60.0)
    assert mb is not None and mb.drug == "ivig" and mb.daily_dose_mg == pytest.approx(60000.0)


@pytest.mark.parametrize(
    ("kwargs", "column"),
    [({"dose": -5}, "daily_dose"), ({"unit": "tablets"}, "unit"), ({"drug": " "}, "drug"), ({"start_date": "soon"}, "start_date")],
)
def test_bad_dose_names_field(session: Session, patient: Patient, kwargs: dict[str, object], column: str) -> None:
    args: dict[str, object] = {"mrn": "M1", "drug": "prednisone", "start_date": "2026-01-12", "dose": 40, "unit": "mg"}
    args.update(kwargs)
    with pytest.raises(BatchRejected) as exc:
        services.add_dose_change(session, username=USER, **args)  # type: ignore[arg-type]
    assert exc.value.problems[0].column == column
    session.rollback()
    assert _count(session, MedicationRow) == 0


def test_mg_per_kg_without_weight_is_refused(session: Session) -> None:
    services.add_patient(session, username=USER, mrn="M2", name="No Weight")
    with pytest.raises(BatchRejected) as exc:
        services.add_dose_change(session, username=USER, mrn="M2", drug="prednisone", start_date="2026-01-12", dose=1, unit="mg/kg")
    assert "weight" in str(exc.value)


def test_amend_dose_keeps_earlier(session: Session, patient: Patient) -> None:
    med_id = services.add_dose_change(session, username=USER, mrn="M1", drug="prednisone", start_date="2026-01-12", dose=60)
    services.amend_dose(session, username=USER, med_id=med_id, dose=40, unit="mg", reason="prescription was 40 mg")
    session.commit()
    row = session.get(MedicationRow, med_id)
    assert row is not None and row.daily_dose_mg == 40 and row.amended_at is not None
    audit = session.execute(select(AuditEntry).where(AuditEntry.entity == "medication_row", AuditEntry.action == "amend")).scalar_one()
    assert audit.before["daily_dose_mg"] == 60  # type: ignore[index]


def test_update_patient_audits_before_and_after(session: Session, patient: Patient) -> None:
    assert services.update_patient(session, username=USER, mrn="M1", weight_kg="62.5", reason="weighed today")
    session.commit()
    audit = session.execute(select(AuditEntry).where(AuditEntry.entity == "patient", AuditEntry.action == "amend")).scalar_one()
    assert audit.before == {"weight_kg": 60.0} and audit.after == {"weight_kg": 62.5}
    assert audit.username == USER and audit.reason == "weighed today"
    assert not services.update_patient(session, username=USER, mrn="M1", weight_kg=62.5)


@pytest.mark.parametrize(
    ("fields", "column"),
    [({"weight_kg": 0}, "weight_kg"), ({"sex": "x"}, "sex"), ({"onset_date": "2999-01-01"}, "onset_date"),
     ({"baseline_creatinine_mg_dl": 90}, "baseline_creatinine_mg_dl"), ({"setting": "icu"}, "setting")],
)
def test_bad_patient_details_refused(session: Session, patient: Patient, fields: dict[str, object], column: str) -> None:
    with pytest.raises(BatchRejected) as exc:
        services.update_patient(session, username=USER, mrn="M1", **fields)
    assert exc.value.problems[0].column == column
    session.rollback()
    assert session.get(Patient, patient.id).weight_kg == 60  # type: ignore[union-attr]


def test_duplicate_mrn_refused(session: Session, patient: Patient) -> None:
    with pytest.raises(BatchRejected) as exc:
        services.add_patient(session, username=USER, mrn="M1", name="Someone Else")
    assert exc.value.problems[0].column == "mrn"


def test_unsigned_change_refused(session: Session, patient: Patient) -> None:
    with pytest.raises(BatchRejected) as exc:
        services.add_lab_result(session, username="", mrn="M1", test="alt", taken_at="2026-01-12", value=1, unit="U/L")
    assert exc.value.problems[0].column == "username"


def test_finding_latest_in_force_and_history_kept(session: Session, patient: Patient) -> None:
    items = services.finding_answers()
    item = next(iter(items))
    answers = items[item]
    services.set_finding(session, username=USER, mrn="M1", item=item, value=answers[0], recorded_at=dt.datetime(2026, 1, 12))
    services.set_finding(session, username=USER, mrn="M1", item=item, value=answers[-1], recorded_at=dt.datetime(2026, 1, 13))
    session.commit()
    rows = session.execute(select(ClinicalFinding).order_by(ClinicalFinding.recorded_at)).scalars().all()
    assert [r.value for r in rows] == [answers[0].lower(), answers[-1].lower()]
    with pytest.raises(BatchRejected) as exc:
        services.set_finding(session, username=USER, mrn="M1", item=item, value="maybe-ish")
    assert exc.value.problems[0].column == "value"
    with pytest.raises(BatchRejected) as exc:
        services.set_finding(session, username=USER, mrn="M1", item="not_an_item", value="yes")
    assert exc.value.problems[0].column == "item"


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=0, max_value=300, allow_nan=False), st.sampled_from(["U/L", "IU/L", "ukat/L"]))
def test_any_valid_alt_round_trips(value: float, unit: str) -> None:
    """Whatever unit an ALT arrives in, the stored canonical value converts back to what was typed."""
    from sqlmodel import SQLModel

    from monitoring.catalogue import from_canonical
    from monitoring.db import create_db_engine

    eng = create_db_engine("sqlite://")
    SQLModel.metadata.create_all(eng)
    with Session(eng) as s:
        auth.create_user(s, actor="test", username=USER, role=auth.CLINICIAN, password=None)
        services.add_patient(s, username=USER, mrn="P", name="P")
        lab_id = services.add_lab_result(s, username=USER, mrn="P", test="alt", taken_at="2026-01-01", value=value, unit=unit)
        row = s.get(LabResult, lab_id)
        assert row is not None
        assert from_canonical("alt", row.value or 0.0, unit) == pytest.approx(value, rel=1e-9, abs=1e-9)
    eng.dispose()
