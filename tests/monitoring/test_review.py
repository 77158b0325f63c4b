"""The intake review list (PRODUCT.md §6 edition 2): ``import --skip-invalid`` stores the valid rest
and keeps each refused row or resource as received; a clinician stores a correction (through the
dashboard's entry service) or discards it with a reason; both audited; nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from monitoring import auth, review
from monitoring.cli import main
from monitoring.db import create_db_engine
from monitoring.importers import import_files
from monitoring.models import AuditEntry, LabResult, Patient, ReviewItem
from monitoring.store import BatchRejected

CLIN = "dr.review"
PATIENTS = "mrn,name,weight_kg\nR1,Synthetic Review,70\n"
LABS = (
    "mrn,taken_at,test,value,unit\n"
    "R1,2026-01-12T08:00,alt,88,U/L\n"
    "R1,2026-01-12T08:00,creatinine,130,parsecs\n"  # row 3: unknown unit for a decision test
    "R1,2026-01-13T08:00,alt,95,U/L\n"
    "R9,2026-01-13T08:00,alt,40,U/L\n"  # row 5: unknown patient (the database refuses it)
)


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    out = []
    for name, text in (("patients.csv", PATIENTS), ("labs.csv", LABS)):
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        out.append(p)
    return out


def _session(db_path: Path) -> Session:
    return Session(create_db_engine(f"sqlite:///{db_path}"), expire_on_commit=False)


def test_without_skip_invalid_the_import_is_refused_and_nothing_is_stored(db_path: Path, files: list[Path]) -> None:
    assert main(["--db", str(db_path), "import", *map(str, files)]) == 2
    with _session(db_path) as s:
        assert s.execute(select(Patient)).first() is None
        assert s.execute(select(ReviewItem)).first() is None


def test_skip_invalid_stores_the_rest_and_lists_each_refused_row_as_received(
    db_path: Path, files: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--db", str(db_path), "import", "--skip-invalid", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert "2 refused item(s) put in the intake review list" in out
    with _session(db_path) as s:
        stored = s.execute(select(LabResult.test, LabResult.value).order_by(LabResult.taken_at)).all()
        assert stored == [("alt", 88.0), ("alt", 95.0)]
        items = review.open_items(s)
        assert [(i.location, i.field, i.value, i.kind, i.mrn) for i in items] == [
            ("row 3", "unit", "parsecs", "lab", "R1"),
            ("row 5", "mrn", "R9", "lab", "R9"),
        ]
        assert all(i.source == str(files[1]) for i in items)
        assert "unit" in items[0].reason and "creatinine" in items[0].reason and "unknown MRN" in items[1].reason
        assert items[0].record == {"mrn": "R1", "taken_at": "2026-01-12T08:00", "test": "creatinine", "value": "130",
                                   "unit": "parsecs"}
        assert s.execute(select(AuditEntry).where(AuditEntry.action == "review_add")).all()


def test_a_correction_is_stored_through_the_entry_service_and_audited(db_path: Path, files: list[Path]) -> None:
    with _session(db_path) as s:
        auth.create_user(s, actor="test", username=CLIN, role=auth.CLINICIAN, password=None)
        s.commit()
        import_files(s, files, skip_invalid=True)
        item = review.open_items(s)[0]
        # A correction that is still wrong is refused with the service's reason; the item stays open.
        with pytest.raises(BatchRejected, match="furlongs"):
            review.store_lab_correction(s, username=CLIN, item_id=item.id or 0, mrn="R1", test="creatinine",
                                        taken_at="2026-01-12T08:00", value="130", unit="furlongs")
        s.rollback()
        lab_id = review.store_lab_correction(s, username=CLIN, item_id=item.id or 0, mrn="R1", test="creatinine",
                                             taken_at="2026-01-12T08:00", value="130", unit="umol/L")
        s.commit()
        row = s.get(LabResult, lab_id)
        assert row is not None and row.value == pytest.approx(130 / 88.4) and row.original_unit == "umol/L"
        done = s.get(ReviewItem, item.id)
        assert done is not None and (done.status, done.resolved_by, done.resolution) == ("stored", CLIN, f"lab_result {lab_id}")
        assert [i.location for i in review.open_items(s)] == ["row 5"]
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "review_store")).scalar_one()
        assert entry.username == CLIN and entry.after is not None and entry.after["value"] == "parsecs"


def test_discard_needs_a_reason_keeps_the_item_and_is_audited(db_path: Path, files: list[Path]) -> None:
    with _session(db_path) as s:
        auth.create_user(s, actor="test", username=CLIN, role=auth.CLINICIAN, password=None)
        s.commit()
        import_files(s, files, skip_invalid=True)
        item = review.open_items(s)[1]
        with pytest.raises(BatchRejected, match="a reason is required"):
            review.discard_item(s, username=CLIN, item_id=item.id or 0, reason="  ")
        review.discard_item(s, username=CLIN, item_id=item.id or 0, reason="patient of another hospital")
        s.commit()
        kept = s.get(ReviewItem, item.id)
        assert kept is not None and kept.status == "discarded" and kept.resolution == "patient of another hospital"
        assert kept.value == "R9"  # still there, as received
        with pytest.raises(BatchRejected, match="already resolved"):
            review.discard_item(s, username=CLIN, item_id=item.id or 0, reason="again")
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "review_discard")).scalar_one()
        assert entry.reason == "patient of another hospital" and entry.username == CLIN


def test_a_viewer_cannot_discard(db_path: Path, files: list[Path]) -> None:
    with _session(db_path) as s:
        auth.create_user(s, actor="test", username="viewer.v", role=auth.VIEWER, password=None)
        s.commit()
        import_files(s, files, skip_invalid=True)
        item = review.open_items(s)[0]
        with pytest.raises(auth.PermissionDenied):
            review.discard_item(s, username="viewer.v", item_id=item.id or 0, reason="no")
        s.rollback()
        assert review.open_count(s) == 2


def test_fhir_skip_invalid_keeps_the_refused_resource_as_received(db_path: Path, tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "name": [{"text": "Synthetic Fhir"}],
                          "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                                "code": "MR"}]}, "value": "F1"}]}},
            {"resource": {"resourceType": "Observation", "id": "ok", "status": "final",
                          "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
                          "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-01-12T08:00:00+01:00",
                          "valueQuantity": {"value": 88, "unit": "U/L", "system": "http://unitsofmeasure.org", "code": "U/L"}}},
            {"resource": {"resourceType": "Observation", "id": "bad", "status": "final",
                          "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
                          "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-01-12T08:00:00+01:00",
                          "valueQuantity": {"value": 1.1, "unit": "mg/furlong"}}},
        ],
    }
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    with _session(db_path) as s:
        report = import_files(s, [path], skip_invalid=True)
        assert report.ok and len(report.review_items) == 1
        assert s.execute(select(LabResult.source_id)).scalars().all() == ["ok"]
        item = review.open_items(s)[0]
        assert (item.location, item.field, item.value, item.kind, item.mrn) == (
            "Observation/bad (entry[2])", "valueQuantity.unit", "mg/furlong", "lab", "F1")
        assert item.record is not None and item.record["id"] == "bad" and item.record["valueQuantity"]["value"] == 1.1


def test_an_unreadable_file_is_kept_as_one_item_and_the_other_files_are_stored(db_path: Path, files: list[Path],
                                                                              tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [', encoding="utf-8")
    with _session(db_path) as s:
        report = import_files(s, [files[0], broken], skip_invalid=True)
        assert report.ok
        assert s.execute(select(Patient.mrn)).scalars().all() == ["R1"]
        (item,) = review.open_items(s)
        assert (item.source, item.location, item.kind) == (str(broken), "(whole file)", "file")
        assert "not valid JSON" in item.reason
