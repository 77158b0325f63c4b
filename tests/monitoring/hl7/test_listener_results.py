"""Results over the real listener (``python -m monitoring listen``) on a real socket, read back as
the ward reads them: the stored rows, the patient record and the alert engine's list.

What a clinician would notice: a troponin I "<0.03 ng/mL" under a ULN of 0.04 is no cardiac
involvement; "<0.05" cannot be told against 0.04, so it is not counted and the table says so;
">0.04" is above it. A preliminary replaced by its final is one value on the chart, and a
laboratory's correction (OBX-11 C) is an amendment whose earlier value stays in the audit trail.

One listener serves the module (starting one costs seconds on a shared machine); each test uses its
own patient (MRN) and its own control IDs, so tests do not see each other's rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dashboard.timeline_model import flags
from dashboard.ward_model import latest_change
from monitoring import schema
from monitoring.db import create_db_engine
from monitoring.guideline import load_profile
from monitoring.hl7.ack import parse_ack
from monitoring.models import AuditEntry, LabResult, Patient
from monitoring.records import PatientRecord, load_record
from monitoring.rules import evaluate
from tests.monitoring.hl7.listener import Listener
from tests.monitoring.hl7.messages import TS, adt, obx, oru

TROPONIN_I = "10839-9^Troponin I^LN"
AS_OF = dt.date.today()  # the messages' results are taken yesterday (messages.D)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Engine]]:
    path = tmp_path_factory.mktemp("feed") / "listener.db"
    url = f"sqlite:///{path}"
    eng = create_db_engine(url)
    schema.upgrade(eng)
    eng.dispose()
    reader = create_engine(url)
    yield url, reader
    reader.dispose()


@pytest.fixture(scope="module")
def listener(db: tuple[str, Engine], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    lst = Listener(db[0], tmp_path_factory.mktemp("log") / "listener.log").start()
    yield lst
    lst.stop()


def send(listener: Listener, *messages: str) -> list[tuple[str, str, str, list[str]]]:
    with listener.connect() as c:
        return [parse_ack(c.send(m)) for m in messages]


def admit(listener: Listener, mrn: str) -> None:
    assert send(listener, adt(mrn=mrn, control_id=f"ADT-{mrn}"))[0][0] == "AA"


def result(listener: Listener, mrn: str, control_id: str, code: str, value: str, unit: str, status: str) -> tuple[str, str, str, list[str]]:
    """One OBX of order ORD-<mrn> for ``mrn``, its ACK. The patient is admitted by ADT first (the
    same ADT again is a duplicate MSH-10: acknowledged, nothing changed)."""
    admit(listener, mrn)
    msg = oru([obx(1, code, value, unit, status=status)], mrn=mrn, control_id=control_id, order=f"ORD-{mrn}^LAB")
    return send(listener, msg)[0]


def rows(engine: Engine, mrn: str, *, hidden: bool = False) -> list[LabResult]:
    with Session(engine) as s:
        stmt = select(LabResult).join(Patient, Patient.id == LabResult.patient_id)
        stmt = stmt.where(Patient.mrn == mrn, LabResult.hidden == hidden).order_by(LabResult.id)
        return list(s.execute(stmt).scalars())


def record(engine: Engine, mrn: str) -> PatientRecord:
    with Session(engine) as s:
        return load_record(s, mrn)


def amendments(engine: Engine, row_id: int) -> list[AuditEntry]:
    with Session(engine) as s:
        stmt = select(AuditEntry).where(
            AuditEntry.entity == "lab_result", AuditEntry.entity_id == str(row_id), AuditEntry.action == "amend"
        )
        return list(s.execute(stmt.order_by(AuditEntry.id)).scalars())


def alert_codes(engine: Engine, mrn: str) -> set[str]:
    return {a.code for a in evaluate(record(engine, mrn), AS_OF, load_profile())}


# --- censored troponin against its ULN (PRODUCT.md §4, CARDIAC_INVOLVEMENT §5) ------------------


@pytest.mark.parametrize(
    ("mrn", "value", "vt", "cardiac", "table_says"),
    [
        ("TN-LT03", "<0.03", "ST", False, ""),  # some value below 0.03: below the ULN 0.04, decided
        ("TN-LT03-SN", "<^0.03", "SN", False, ""),
        ("TN-LT05", "<0.05", "ST", False, "censored: cannot tell against ULN"),  # may or may not exceed 0.04
        ("TN-GT04", ">0.04", "ST", True, "> ULN"),  # strictly above 0.04: above the ULN
        ("TN-GT04-SN", ">^0.04", "SN", True, "> ULN"),
        ("TN-GT03", ">0.03", "ST", False, "censored: cannot tell against ULN"),  # above 0.03: maybe not above 0.04
    ],
)
def test_censored_troponin_over_the_socket_is_judged_by_its_comparator(
    listener: Listener, db: tuple[str, Engine], mrn: str, value: str, vt: str, cardiac: bool, table_says: str
) -> None:
    admit(listener, mrn)
    ((code, _cid, text, errors),) = send(
        listener, oru([obx(1, TROPONIN_I, value, "ng/mL", vt=vt, ref="<0.04")], mrn=mrn, control_id=f"TN-{mrn}")
    )
    assert (code, text, errors) == ("AA", "stored 1", [])
    (row,) = rows(db[1], mrn)
    comparator, bound = value.replace("^", "")[0], float(value.replace("^", "")[1:])
    assert (row.test, row.comparator, row.unit) == ("troponin_i", comparator, "ng/L")
    assert row.value == pytest.approx(bound * 1000) and row.ref_high == pytest.approx(40.0)
    found = alert_codes(db[1], mrn)
    assert ("CARDIAC_INVOLVEMENT" in found) is cardiac
    assert ("ICU_CRITERIA" in found) is cardiac  # cardiac involvement alone is an ICU criterion
    rec = record(db[1], mrn)
    (point,) = rec.results("troponin_i", AS_OF)
    assert flags("troponin_i", point, rec, load_profile(), AS_OF) == table_says


def test_latest_troponin_below_the_assay_range_ends_an_earlier_high_one(listener: Listener, db: tuple[str, Engine]) -> None:
    # The latest result decides: an older 0.09 ng/mL is not brought back by a newer "<0.03".
    mrn = "TN-LATEST"
    admit(listener, mrn)
    earlier = oru([obx(1, TROPONIN_I, "0.09", "ng/mL", ref="<0.04", time=f"{TS}0100")], mrn=mrn, control_id="TNL-1", order="ORD-TNL-1^LAB")
    assert send(listener, earlier)[0][0] == "AA"
    assert "CARDIAC_INVOLVEMENT" in alert_codes(db[1], mrn)
    later = oru([obx(1, TROPONIN_I, "<0.03", "ng/mL", ref="<0.04", time=f"{TS}0900")], mrn=mrn, control_id="TNL-2", order="ORD-TNL-2^LAB")
    assert send(listener, later)[0][0] == "AA"
    assert [r.comparator for r in rows(db[1], mrn)] == [None, "<"]
    assert "CARDIAC_INVOLVEMENT" not in alert_codes(db[1], mrn)
    # The ward's mark agrees: a decided fall below the ULN (90 ng/L, then some value under 30).
    change = latest_change("troponin_i", record(db[1], mrn), load_profile(), AS_OF)
    assert change is not None and (change.comparator, change.crossed) == ("<", "↓ below ULN")


def test_an_undecidable_troponin_after_a_high_one_crosses_no_line_on_the_ward(listener: Listener, db: tuple[str, Engine]) -> None:
    mrn = "TN-UNDECIDED"
    assert result(listener, mrn, "TNU-1", TROPONIN_I, "0.09", "ng/mL", "F")[0] == "AA"
    later = oru([obx(1, TROPONIN_I, "<0.05", "ng/mL", ref="<0.04", time=f"{TS}0900")], mrn=mrn, control_id="TNU-2", order="ORD-TNU-2^LAB")
    assert send(listener, later)[0][0] == "AA"
    assert "CARDIAC_INVOLVEMENT" not in alert_codes(db[1], mrn)  # the latest cannot be told against 0.04
    change = latest_change("troponin_i", record(db[1], mrn), load_profile(), AS_OF)
    assert change is not None and (change.comparator, change.crossed) == ("<", "")


# --- OBX-11 statuses over the socket (PRODUCT.md §9, §6 edition 2 "Corrections") ---------------


def test_preliminary_then_final_over_the_socket_is_one_result_the_final(listener: Listener, db: tuple[str, Engine]) -> None:
    mrn = "ST-PF"
    assert result(listener, mrn, "PF-1", "2276-4^Ferritin^LN", "900", "ng/mL", "P")[:3] == ("AA", "PF-1", "stored 1")
    (shown,) = record(db[1], mrn).results("ferritin", AS_OF)
    assert (shown.value, shown.status) == (900, "preliminary")
    assert result(listener, mrn, "PF-2", "2276-4^Ferritin^LN", "1250", "ng/mL", "F")[:3] == ("AA", "PF-2", "amended 1")
    (row,) = rows(db[1], mrn)  # replaced, not a second reading
    assert (row.value, row.status) == (1250, "final")
    assert rows(db[1], mrn, hidden=True) == []
    (shown,) = record(db[1], mrn).results("ferritin", AS_OF)  # one value on the chart: the final
    assert (shown.value, shown.status) == (1250, "final")
    (audit,) = amendments(db[1], row.id)
    assert audit.before is not None and audit.before["value"] == 900 and audit.before["status"] == "preliminary"
    assert audit.reason is not None and "final result replaces the preliminary one (OBX-11 F)" in audit.reason
    assert "MSH-10 PF-2" in audit.reason and audit.username == "hl7:LIS^MAINLAB"


def test_corrected_result_over_the_socket_is_an_amendment_with_its_audit_row(listener: Listener, db: tuple[str, Engine]) -> None:
    mrn = "ST-C"
    assert result(listener, mrn, "C-1", "1742-6^ALT^LN", "250", "U/L", "F")[:3] == ("AA", "C-1", "stored 1")
    assert result(listener, mrn, "C-2", "1742-6^ALT^LN", "125", "U/L", "C")[:3] == ("AA", "C-2", "amended 1")
    (row,) = rows(db[1], mrn)
    assert (row.value, row.status) == (125, "amended") and row.amended_at is not None
    (shown,) = record(db[1], mrn).results("alt", AS_OF)
    assert (shown.value, shown.amended) == (125, True)
    (audit,) = amendments(db[1], row.id)
    assert audit.before is not None and audit.before["value"] == 250
    assert audit.after is not None and audit.after["value"] == 125
    assert audit.reason is not None and "corrected by the laboratory (OBX-11 C)" in audit.reason and "MSH-10 C-2" in audit.reason
    # The same correction re-sent (another control ID) changes nothing more.
    assert result(listener, mrn, "C-3", "1742-6^ALT^LN", "125", "U/L", "C")[:3] == ("AA", "C-3", "unchanged 1")
    assert len(amendments(db[1], row.id)) == 1


def test_final_with_another_value_after_a_final_waits_for_a_person(listener: Listener, db: tuple[str, Engine]) -> None:
    # Only C corrects a final: a second F with another value is not silently taken (AE, review list).
    mrn = "ST-FF"
    assert result(listener, mrn, "FF-1", "1742-6^ALT^LN", "250", "U/L", "F")[0] == "AA"
    code, _cid, text, errors = result(listener, mrn, "FF-2", "1742-6^ALT^LN", "90", "U/L", "F")
    assert code == "AE" and text == "stored 0; 1 to review" and errors and errors[0].startswith("OBX-11:")
    assert [r.value for r in rows(db[1], mrn)] == [250]


def test_deleted_result_over_the_socket_is_hidden_with_the_reason_and_its_alert_goes(listener: Listener, db: tuple[str, Engine]) -> None:
    mrn = "ST-D"
    assert result(listener, mrn, "D-1", TROPONIN_I, "0.09", "ng/mL", "F")[:3] == ("AA", "D-1", "stored 1")
    assert "CARDIAC_INVOLVEMENT" in alert_codes(db[1], mrn)  # 90 ng/L against the default ULN 26
    assert result(listener, mrn, "D-2", TROPONIN_I, "", "", "D")[:3] == ("AA", "D-2", "cancelled 1")
    assert rows(db[1], mrn) == []
    (row,) = rows(db[1], mrn, hidden=True)
    assert row.hidden_reason is not None and "deleted the result (OBX-11 D)" in row.hidden_reason and "MSH-10 D-2" in row.hidden_reason
    assert "CARDIAC_INVOLVEMENT" not in alert_codes(db[1], mrn)
    with Session(db[1]) as s:
        (audit,) = s.execute(select(AuditEntry).where(AuditEntry.entity_id == str(row.id), AuditEntry.action == "hide")).scalars()
    assert audit.username == "hl7:LIS^MAINLAB"
