"""FHIR corrections, preliminary results, withdrawn results and UTC offsets (PRODUCT.md §6
edition 2, "Corrections"): a result re-sent with the same resource id and status corrected/amended
is an audited amendment (the earlier value kept), a preliminary result is stored marked so and
replaced by its final, entered-in-error removes the stored result, cancelled is skipped."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlmodel import Session

from monitoring.importers import import_files
from monitoring.importers.fhir import import_bundle
from monitoring.models import AuditEntry, LabResult
from monitoring.records import load_record
from monitoring.rules import evaluate
from tests.monitoring.test_fhir_import import TODAY, _bundle, _obs, _patient, _write

WHEN = dt.datetime(2026, 3, 5, 8, 30)


def _send(session: Session, tmp_path: Path, *resources: dict[str, Any], name: str = "feed.json") -> Any:
    path = tmp_path / name
    _write(tmp_path, _bundle(_patient(), *resources), name)
    report = import_files(session, [path], username="lab-interface", as_of=TODAY)
    return report


def _rows(session: Session) -> list[tuple[Any, ...]]:
    session.expire_all()
    rows = session.execute(select(LabResult).order_by(LabResult.id)).scalars()
    return [(r.test, r.value, r.status, r.hidden, r.amended_at is not None) for r in rows]


def _audit(session: Session, action: str) -> list[AuditEntry]:
    return list(session.execute(select(AuditEntry).where(AuditEntry.action == action, AuditEntry.entity == "lab_result")).scalars())


def test_a_preliminary_result_is_stored_marked_preliminary_and_its_final_replaces_it(session: Session, tmp_path: Path) -> None:
    first = _send(session, tmp_path, _obs("alt-7", "1742-6", 180, "U/L", status="preliminary"))
    assert first.ok, first.problem_lines()
    assert _rows(session) == [("alt", 180.0, "preliminary", False, False)]
    record = load_record(session, "MRN-1")
    assert [p.status for p in record.labs] == ["preliminary"]

    final = _send(session, tmp_path, _obs("alt-7", "1742-6", 210, "U/L", status="final"), name="feed2.json")
    assert final.ok, final.problem_lines()
    assert final.result is not None and (final.result.labs_inserted, final.result.labs_amended) == (0, 1)
    assert _rows(session) == [("alt", 210.0, "final", False, True)]  # one row, amended, no longer preliminary
    [entry] = _audit(session, "amend")
    assert entry.before is not None and entry.after is not None
    assert (entry.before["value"], entry.before["status"]) == (180.0, "preliminary")
    assert (entry.after["value"], entry.after["status"]) == (210.0, "final")
    assert entry.username == "lab-interface" and "final result replaces the preliminary one" in (entry.reason or "")
    assert "1 amended" in "\n".join(final.summary_lines())


def test_a_final_of_the_same_value_clears_the_preliminary_mark(session: Session, tmp_path: Path) -> None:
    _send(session, tmp_path, _obs("alt-7", "1742-6", 180, "U/L", status="preliminary"))
    again = _send(session, tmp_path, _obs("alt-7", "1742-6", 180, "U/L"), name="feed2.json")
    assert again.ok, again.problem_lines()
    assert _rows(session) == [("alt", 180.0, "final", False, True)]


def test_a_corrected_result_amends_the_stored_value_and_the_alerts_follow(session: Session, tmp_path: Path) -> None:
    # ALT 480 U/L against the lab's ULN 40 (12 x ULN) is corrected by the laboratory to 48 U/L.
    high = _obs("alt-9", "1742-6", 480, "U/L", referenceRange=[{"high": {"value": 40, "unit": "U/L", "system": "http://unitsofmeasure.org", "code": "U/L"}}])
    assert _send(session, tmp_path, high).ok
    record = load_record(session, "MRN-1")
    assert [p.value for p in record.labs] == [480.0]
    corrected = {**high, "status": "corrected", "valueQuantity": {**high["valueQuantity"], "value": 48}}
    report = _send(session, tmp_path, corrected, name="correction.json")
    assert report.ok, report.problem_lines()
    assert _rows(session) == [("alt", 48.0, "amended", False, True)]
    [entry] = _audit(session, "amend")
    assert entry.before is not None and entry.before["value"] == 480.0 and "corrected by its sender" in (entry.reason or "")
    record = load_record(session, "MRN-1")
    assert [p.value for p in record.labs] == [48.0]
    # The same correction again changes nothing.
    again = _send(session, tmp_path, corrected, name="correction2.json")
    assert again.ok and again.result is not None and (again.result.labs_amended, again.result.labs_inserted) == (0, 0)
    assert len(_audit(session, "amend")) == 1


def test_a_final_resent_with_another_value_and_no_correction_status_is_refused(session: Session, tmp_path: Path) -> None:
    assert _send(session, tmp_path, _obs("alt-9", "1742-6", 480, "U/L")).ok
    report = _send(session, tmp_path, _obs("alt-9", "1742-6", 48, "U/L"), name="resent.json")
    assert not report.ok
    assert any("alt-9" in p.where and "a correction is sent with status corrected or amended" in p.reason for p in report.problems)
    assert _rows(session) == [("alt", 480.0, "final", False, False)]
    assert _audit(session, "amend") == []


def test_a_preliminary_sent_after_its_final_changes_nothing_and_is_refused(session: Session, tmp_path: Path) -> None:
    assert _send(session, tmp_path, _obs("alt-9", "1742-6", 480, "U/L")).ok
    report = _send(session, tmp_path, _obs("alt-9", "1742-6", 300, "U/L", status="preliminary"), name="late.json")
    assert not report.ok and any("alt-9" in p.where for p in report.problems)
    assert _rows(session) == [("alt", 480.0, "final", False, False)]


def test_entered_in_error_removes_the_stored_result_with_its_reason(session: Session, tmp_path: Path) -> None:
    # Creatinine 4.1 mg/dL (a wrong patient's sample) then withdrawn by the laboratory.
    wrong = _obs("cr-1", "2160-0", 4.1, "mg/dL")
    assert _send(session, tmp_path, wrong).ok
    report = _send(session, tmp_path, {**wrong, "status": "entered-in-error"}, name="withdrawn.json")
    assert report.ok, report.problem_lines()
    assert report.result is not None and report.result.labs_removed == 1
    assert _rows(session) == [("creatinine", 4.1, "final", True, False)]  # kept, hidden
    row = session.execute(select(LabResult)).scalar_one()
    assert row.hidden_reason is not None and "entered-in-error" in row.hidden_reason and "Observation/cr-1" in row.hidden_reason
    [entry] = _audit(session, "hide")
    assert entry.username == "lab-interface"
    assert load_record(session, "MRN-1").labs == ()  # the engine no longer sees it
    assert "1 removed (entered-in-error" in "\n".join(report.summary_lines())


def test_entered_in_error_of_a_result_never_stored_and_cancelled_are_skipped(session: Session, tmp_path: Path) -> None:
    report = _send(session, tmp_path, _obs("x1", "1742-6", 90, "U/L", status="entered-in-error"),
                   _obs("x2", "1742-6", 95, "U/L", status="cancelled"))
    assert report.ok, report.problem_lines()
    assert _rows(session) == []
    lines = "\n".join(report.summary_lines())
    assert "skipped: Observation: status entered-in-error (1)" in lines
    assert "skipped: Observation: status cancelled (1)" in lines


def test_a_preliminary_critical_result_still_raises_its_alert(session: Session, tmp_path: Path) -> None:
    # Preliminary is a mark, not a filter: a preliminary troponin of 0.5 ng/mL is cardiac involvement.
    report = _send(session, tmp_path, _obs("trop-1", "10839-9", 0.5, "ng/mL", status="preliminary"))
    assert report.ok, report.problem_lines()
    record = load_record(session, "MRN-1")
    assert [p.status for p in record.labs] == ["preliminary"]
    assert "CARDIAC_INVOLVEMENT" in {a.code for a in evaluate(record, WHEN.date())}


def test_a_utc_offset_is_kept_beside_the_recorded_time(session: Session, tmp_path: Path) -> None:
    report = _send(session, tmp_path, _obs("alt-1", "1742-6", 61, "U/L", when="2024-03-01T08:00:00+01:00"),
                   _obs("alt-2", "1742-6", 62, "U/L", when="2024-03-02T08:00:00Z"),
                   _obs("alt-3", "1742-6", 63, "U/L", when="2024-03-03T08:00:00-05:30"),
                   _obs("alt-4", "1742-6", 64, "U/L", when="2024-03-04"))
    assert report.ok, report.problem_lines()
    rows = session.execute(select(LabResult).order_by(LabResult.taken_at)).scalars()
    assert [(r.taken_at, r.taken_at_offset_minutes) for r in rows] == [
        (dt.datetime(2024, 3, 1, 8, 0), 60),
        (dt.datetime(2024, 3, 2, 8, 0), 0),
        (dt.datetime(2024, 3, 3, 8, 0), -330),
        (dt.datetime(2024, 3, 4, 0, 0), None),
    ]


def test_import_bundle_applies_corrections_too(session: Session, tmp_path: Path) -> None:
    path = _write(tmp_path, _bundle(_patient(), _obs("alt-7", "1742-6", 180, "U/L", status="preliminary")))
    import_bundle(session, path, username="tester", as_of=TODAY)
    path2 = tmp_path / "final.json"
    _write(tmp_path, _bundle(_patient(), _obs("alt-7", "1742-6", 210, "U/L")), "final.json")
    result = import_bundle(session, path2, username="tester", as_of=TODAY)
    assert (result.labs_inserted, result.labs_amended) == (0, 1)
    assert _rows(session) == [("alt", 210.0, "final", False, True)]


def test_export_carries_the_preliminary_status_and_the_recorded_offset(session: Session, tmp_path: Path) -> None:
    from monitoring.fhir_export import export_patient_bundle

    report = _send(session, tmp_path, _obs("alt-1", "1742-6", 61, "U/L", when="2024-03-01T08:00:00-05:00", status="preliminary"))
    assert report.ok, report.problem_lines()
    bundle = export_patient_bundle(session, "MRN-1")
    [obs] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert (obs["status"], obs["effectiveDateTime"]) == ("preliminary", "2024-03-01T08:00:00-05:00")


# --- the same Observation twice in one bundle, and business identifiers across imports ----------
# PRODUCT.md §6 edition 2 "Corrections": a preliminary is replaced by its final; a result re-sent
# with the same identity is an amendment, never a second reading. Observation.identifier (the
# laboratory's business identifier) names the same result when another server or export gives it
# a new resource id.

LAB_ID = {"system": "urn:oid:2.16.840.1.113883.19.5.1", "value": "ACC-4471-ALT"}


@pytest.mark.parametrize("final_first", [False, True])
def test_preliminary_and_final_of_one_observation_in_one_bundle_give_one_reading_the_final(
    session: Session, tmp_path: Path, final_first: bool
) -> None:
    prelim = _obs("fer-1", "2276-4", 900, "ng/mL", status="preliminary")
    final = _obs("fer-1", "2276-4", 1250, "ng/mL", status="final")
    report = _send(session, tmp_path, *((final, prelim) if final_first else (prelim, final)))
    assert report.ok, report.problem_lines()
    assert _rows(session) == [("ferritin", 1250.0, "final", False, False)]
    lines = "\n".join(report.summary_lines())
    assert "the preliminary result is replaced by its final in the same bundle" in lines and "Observation/fer-1" in lines
    again = _send(session, tmp_path, *((final, prelim) if final_first else (prelim, final)), name="again.json")
    assert again.ok, again.problem_lines()  # the same bundle again changes nothing
    assert _rows(session) == [("ferritin", 1250.0, "final", False, False)]


def test_two_finals_of_one_observation_with_different_values_in_one_bundle_are_still_refused(session: Session, tmp_path: Path) -> None:
    report = _send(session, tmp_path, _obs("fer-2", "2276-4", 900, "ng/mL"), _obs("fer-2", "2276-4", 1250, "ng/mL"))
    assert not report.ok and "with a different result" in "\n".join(report.problem_lines())
    assert _rows(session) == []


def test_a_correction_with_a_new_resource_id_and_the_same_identifier_is_an_amendment(session: Session, tmp_path: Path) -> None:
    first = _obs("srv1-obs-17", "1742-6", 250, "U/L", identifier=[LAB_ID])
    assert _send(session, tmp_path, first).ok
    # The same result from another server (or a re-export): a new resource id, the laboratory's identifier.
    corrected = _obs("srv2-9f3a", "1742-6", 125, "U/L", status="corrected", identifier=[LAB_ID])
    report = _send(session, tmp_path, corrected, name="corrected.json")
    assert report.ok, report.problem_lines()
    assert report.result is not None and (report.result.labs_inserted, report.result.labs_amended) == (0, 1)
    assert _rows(session) == [("alt", 125.0, "amended", False, True)]  # one reading, amended
    [entry] = _audit(session, "amend")
    assert entry.before is not None and entry.before["value"] == 250.0
    assert "corrected by its sender" in (entry.reason or "") and "Observation/srv2-9f3a" in (entry.reason or "")
    # Sent again under a third id, unchanged: nothing more.
    third = _send(session, tmp_path, {**corrected, "id": "srv3-1"}, name="third.json")
    assert third.ok and third.result is not None and (third.result.labs_inserted, third.result.labs_amended) == (0, 0)
    assert len(_rows(session)) == 1


def test_a_final_with_the_same_identifier_replaces_the_preliminary_across_imports(session: Session, tmp_path: Path) -> None:
    assert _send(session, tmp_path, _obs("p-1", "1742-6", 180, "U/L", status="preliminary", identifier=[LAB_ID])).ok
    report = _send(session, tmp_path, _obs("f-1", "1742-6", 210, "U/L", identifier=[LAB_ID]), name="final.json")
    assert report.ok, report.problem_lines()
    assert _rows(session) == [("alt", 210.0, "final", False, True)]
    [entry] = _audit(session, "amend")
    assert entry.before is not None and (entry.before["value"], entry.before["status"]) == (180.0, "preliminary")


def test_a_final_with_the_same_identifier_and_another_value_is_refused_not_a_second_reading(session: Session, tmp_path: Path) -> None:
    assert _send(session, tmp_path, _obs("srv1-obs-17", "1742-6", 250, "U/L", identifier=[LAB_ID])).ok
    report = _send(session, tmp_path, _obs("srv2-9f3a", "1742-6", 90, "U/L", identifier=[LAB_ID]), name="other.json")
    assert not report.ok
    assert "stored with a different value or time; a correction is sent with status corrected or amended" in "\n".join(report.problem_lines())
    assert _rows(session) == [("alt", 250.0, "final", False, False)]


def test_the_same_identifier_on_another_test_or_patient_is_another_result(session: Session, tmp_path: Path) -> None:
    # An identifier some laboratories give the whole order (accession): only the same test is the same result.
    assert _send(session, tmp_path, _obs("a", "1742-6", 250, "U/L", identifier=[LAB_ID])).ok
    report = _send(session, tmp_path, _obs("b", "1920-8", 90, "U/L", identifier=[LAB_ID]), name="ast.json")
    assert report.ok, report.problem_lines()
    assert sorted(r[0] for r in _rows(session)) == ["alt", "ast"]


def test_the_business_identifier_survives_export_and_import_so_a_later_correction_finds_it(session: Session, tmp_path: Path) -> None:
    from sqlmodel import SQLModel

    from monitoring.db import create_db_engine
    from monitoring.fhir_export import export_patient_bundle

    assert _send(session, tmp_path, _obs("srv1-obs-17", "1742-6", 250, "U/L", identifier=[LAB_ID])).ok
    bundle = export_patient_bundle(session, "MRN-1")
    [obs] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert LAB_ID in obs["identifier"]
    other = create_db_engine("sqlite://")  # another hospital's database, filled from the export
    SQLModel.metadata.create_all(other)
    with Session(other, expire_on_commit=False) as s2:
        assert import_files(s2, [_write(tmp_path, bundle, "export.json")], username="lab", as_of=TODAY).ok
        corrected = _send(s2, tmp_path, _obs("srv2-9f3a", "1742-6", 125, "U/L", status="corrected", identifier=[LAB_ID]), name="c.json")
        assert corrected.ok, corrected.problem_lines()
        assert _rows(s2) == [("alt", 125.0, "amended", False, True)]
    other.dispose()


def test_entered_in_error_under_a_new_resource_id_with_the_same_identifier_removes_the_stored_result(
    session: Session, tmp_path: Path
) -> None:
    assert _send(session, tmp_path, _obs("srv1-obs-17", "1742-6", 250, "U/L", identifier=[LAB_ID])).ok
    withdrawn = _obs("srv2-9f3a", "1742-6", 250, "U/L", status="entered-in-error", identifier=[LAB_ID])
    report = _send(session, tmp_path, withdrawn, name="withdrawn.json")
    assert report.ok, report.problem_lines()
    assert report.result is not None and report.result.labs_removed == 1
    assert _rows(session) == [("alt", 250.0, "final", True, False)]
    [entry] = _audit(session, "hide")
    assert "Observation/srv2-9f3a" in (entry.reason or "")
    # Another test under the same identifier is another result: not removed by it.
    other = _send(session, tmp_path, {**withdrawn, "id": "srv2-x", "code": {"coding": [{"system": "http://loinc.org", "code": "1920-8"}]}},
                  name="other.json")
    assert other.ok and other.result is not None and other.result.labs_removed == 0


def test_serial_results_under_one_order_identifier_are_each_kept(session: Session, tmp_path: Path) -> None:
    # Some laboratories give the whole order (accession) as the identifier: troponin I at 0 h and
    # 3 h of one order are two results, in one bundle and across imports; a correction finds its own.
    order = {"system": "urn:oid:2.16.840.1.113883.19.5.1", "value": "ACC-9001"}
    first = _obs("t0", "10839-9", 0.02, "ng/mL", when="2026-03-05T08:00:00+01:00", identifier=[order])
    second = _obs("t3", "10839-9", 0.09, "ng/mL", when="2026-03-05T11:00:00+01:00", identifier=[order])
    assert _send(session, tmp_path, first, second).ok
    third = _obs("t6", "10839-9", 0.15, "ng/mL", when="2026-03-05T14:00:00+01:00", identifier=[order])
    report = _send(session, tmp_path, third, name="later.json")
    assert report.ok, report.problem_lines()
    assert [r[1] for r in _rows(session)] == [pytest.approx(20.0), pytest.approx(90.0), pytest.approx(150.0)]
    fixed = _obs("t3-fixed", "10839-9", 0.08, "ng/mL", when="2026-03-05T11:00:00+01:00", status="corrected", identifier=[order])
    assert _send(session, tmp_path, fixed, name="fixed.json").ok
    assert [(r[1], r[2]) for r in _rows(session)] == [
        (pytest.approx(20.0), "final"), (pytest.approx(80.0), "amended"), (pytest.approx(150.0), "final")]


def test_the_same_result_under_two_ids_in_one_bundle_is_one_reading_and_said_so(session: Session, tmp_path: Path) -> None:
    report = _send(session, tmp_path, _obs("srv1-a", "1742-6", 250, "U/L", identifier=[LAB_ID]),
                   _obs("srv2-b", "1742-6", 250, "U/L", identifier=[LAB_ID]))
    assert report.ok, report.problem_lines()
    assert _rows(session) == [("alt", 250.0, "final", False, False)]
    assert "Observation/srv2-b (entry[2]): the same result as" in "\n".join(report.summary_lines())
