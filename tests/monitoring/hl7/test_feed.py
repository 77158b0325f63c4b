"""One HL7 v2 message into the database (monitoring/hl7/feed.py), on SQLite and PostgreSQL.

Each test is what a clinician (or the interface engine's log) would notice: this result is on the
patient's record in these units, this one waits in the review list with the OBX named, a
correction keeps the earlier value, a cancelled result is hidden with the laboratory's reason, the
same message twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from monitoring.hl7.codes import CodeMap, load_code_map
from monitoring.hl7.feed import Outcome, store_message
from monitoring.models import AuditEntry, Hl7Message, LabResult, Patient, ReviewItem
from tests.monitoring.hl7.messages import TS, adt, fixture, obx, oru

CODES = load_code_map()


def send(session: Session, message: str | bytes, codes: CodeMap = CODES) -> Outcome:
    raw = message.encode() if isinstance(message, str) else message
    outcome = store_message(session, raw, codes=codes)
    session.commit()
    return outcome


def labs(session: Session, mrn: str = "HL7-001", *, hidden: bool | None = False) -> list[LabResult]:
    stmt = select(LabResult).join(Patient, Patient.id == LabResult.patient_id).where(Patient.mrn == mrn)
    if hidden is not None:
        stmt = stmt.where(LabResult.hidden == hidden)
    return list(session.execute(stmt.order_by(LabResult.id)).scalars())


def review(session: Session) -> list[ReviewItem]:
    return list(session.execute(select(ReviewItem).order_by(ReviewItem.id)).scalars())


@pytest.fixture
def admitted(session: Session) -> Session:
    out = send(session, adt())
    assert out.code == "AA", out
    return session


# --- patients (ADT) ------------------------------------------------------------------------------


def test_adt_a01_creates_the_patient_from_pid_and_a08_updates_it(session: Session) -> None:
    assert send(session, adt("A01")).code == "AA"
    p = session.execute(select(Patient).where(Patient.mrn == "HL7-001")).scalar_one()
    assert (p.name, p.sex, p.birth_date) == ("SYNTHETIC, ALPHA", "female", dt.date(1970, 1, 1))
    # The SSN in PID-3 (type SS) is never taken for the MRN.
    assert session.execute(select(Patient).where(Patient.mrn == "123-45-6789")).first() is None
    out = send(session, adt("A08", control_id="ADT-2", name="SYNTHETIC^ALPHA-BETA", birth="19700102"))
    assert out.code == "AA"
    session.refresh(p)
    assert (p.name, p.birth_date) == ("SYNTHETIC, ALPHA-BETA", dt.date(1970, 1, 2))
    change = session.execute(
        select(AuditEntry).where(AuditEntry.entity == "patient", AuditEntry.action == "amend")
    ).scalar_one()
    assert change.before == {"name": "SYNTHETIC, ALPHA", "birth_date": "1970-01-01"}
    assert change.username == "hl7:ADT^HOSP"


def test_adt_with_a_future_birth_date_keeps_the_rest_and_sends_the_field_to_review(session: Session) -> None:
    future = (dt.date.today() + dt.timedelta(days=30)).strftime("%Y%m%d")
    out = send(session, adt(birth=future))
    assert out.code == "AE"
    assert out.errors[0].location.startswith("PID^1")
    p = session.execute(select(Patient).where(Patient.mrn == "HL7-001")).scalar_one()
    assert p.birth_date is None and p.sex == "female"
    item = review(session)[0]
    assert (item.field, item.kind, item.mrn) == ("PID-7", "patient", "HL7-001")


# --- results (ORU) -------------------------------------------------------------------------------


def test_oru_results_are_stored_converted_with_range_flags_and_time(admitted: Session) -> None:
    out = send(
        admitted,
        oru(
            [
                obx(1, "1742-6^ALT^LN", "3.1", "ukat/L", ref="0.1-0.68", flags="H", time=f"{TS}0730+0100"),
                obx(2, "KREA^Kreatinin^L", "141", "umol/L", ref="45-90", flags="H~A", time=""),
                obx(3, "2951-2^Sodium^LN", "140", "mmol/L"),
            ]
        ),
    )
    assert (out.code, out.stored, out.not_used) == ("AA", 2, 1)
    assert out.text == "stored 2; 1 OBX not followed"
    alt, crea = labs(admitted)
    assert (alt.test, alt.value, alt.unit, alt.original_value, alt.original_unit) == ("alt", pytest.approx(186.0), "U/L", "3.1", "ukat/L")
    assert alt.ref_high == pytest.approx(40.8) and alt.ref_low == pytest.approx(6.0)
    assert alt.loinc == "1742-6" and alt.source == "hl7" and alt.abnormal_flags == "H"
    # Time as recorded (wall clock of the laboratory): OBX-14 with its offset.
    assert alt.taken_at == dt.datetime.combine(dt.date.today() - dt.timedelta(days=1), dt.time(7, 30))
    # OBX-14 empty: OBR-7 is the time; the local code KREA maps to creatinine (lab_codes.toml).
    assert crea.test == "creatinine" and crea.taken_at.time() == dt.time(7, 0)
    assert crea.value == pytest.approx(141 / 88.4) and crea.abnormal_flags == "H~A"
    stored = admitted.execute(select(Hl7Message).where(Hl7Message.control_id == "MSG-1")).scalar_one()
    assert (stored.control_id, stored.sender, stored.ack_code, stored.results_stored) == ("MSG-1", "LIS^MAINLAB", "AA", 2)


def test_a_refused_obx_goes_to_the_review_list_and_the_rest_is_stored(admitted: Session) -> None:
    future = (dt.date.today() + dt.timedelta(days=2)).strftime("%Y%m%d")
    out = send(
        admitted,
        oru(
            [
                obx(1, "1742-6^ALT^LN", "80", "U/L"),
                obx(2, "711-2^Eos^LN", "2.1", "mmol/L"),  # not a unit of eosinophils
                obx(3, "2160-0^Creat^LN", "150", "mg/dL"),  # beyond physiological bounds: a unit slip
                obx(4, "1988-5^CRP^LN", "12", "mg/L", time=future + "0800"),  # in the future
                obx(5, "2276-4^Ferritin^LN", "high", "ng/mL"),  # not a number
            ]
        ),
    )
    assert out.code == "AE" and out.stored == 1
    assert [e.location for e in out.errors] == ["OBX^2^6", "OBX^3^5", "OBX^4^14", "OBX^5^5"]
    assert "unknown unit for eosinophils" in out.errors[0].reason
    assert "physiological bound" in out.errors[1].reason
    assert "future" in out.errors[2].reason
    assert [lab.test for lab in labs(admitted)] == ["alt"]
    items = review(admitted)
    assert [(i.location.split(" ")[1], i.field, i.value) for i in items] == [
        ("2", "OBX-6", "mmol/L"),
        ("3", "OBX-5", "150"),
        ("4", "OBX-14", items[2].value),
        ("5", "OBX-5", "high"),
    ]
    assert all(i.kind == "lab" and i.mrn == "HL7-001" and i.status == "open" for i in items)
    assert items[0].record is not None and items[0].record["OBX-5"] == "2.1"
    assert "MSH-10 MSG-1" in items[0].source


def test_censored_sn_result_is_never_stored_as_the_bare_number(admitted: Session) -> None:
    # PRODUCT.md §4: an SN value <^0.01 and an ST value "<0.03" are stored with their comparator
    # (the number is the assay's bound, converted like any value), acknowledged AA, never bare.
    out = send(
        admitted,
        oru(
            [
                obx(1, "10839-9^Troponin I^LN", "<^0.01", "ng/mL", vt="SN"),
                obx(2, "10839-9^Troponin I^LN", "<0.03", "ng/mL", vt="ST", sub_id="2"),
                obx(3, "1988-5^CRP^LN", ">^200", "mg/L", vt="SN"),
                obx(4, "1988-5^CRP^LN", "<=5", "mg/L", vt="ST", sub_id="2"),
            ]
        ),
    )
    assert (out.code, out.stored, out.errors) == ("AA", 4, [])
    assert review(admitted) == []
    stored = [(lab.test, lab.comparator, lab.value, lab.unit, lab.original_value, lab.original_unit) for lab in labs(admitted)]
    assert stored == [
        ("troponin_i", "<", pytest.approx(10.0), "ng/L", "<0.01", "ng/mL"),
        ("troponin_i", "<", pytest.approx(30.0), "ng/L", "<0.03", "ng/mL"),
        ("crp", ">", pytest.approx(200.0), "mg/L", ">200", "mg/L"),
        ("crp", "<=", pytest.approx(5.0), "mg/L", "<=5", "mg/L"),
    ]


def test_sn_without_comparator_is_the_number_and_a_range_is_refused(admitted: Session) -> None:
    out = send(admitted, oru([obx(1, "2345-7^Glucose^LN", "^182", "mg/dL", vt="SN"), obx(2, "1988-5^CRP^LN", "^1^-^5", "mg/L", vt="SN")]))
    assert out.code == "AE"
    assert [(lab.test, lab.value) for lab in labs(admitted)] == [("glucose", 182.0)]
    assert out.errors[0].location == "OBX^2^5"
    assert out.errors[0].reason == "OBX-5: a structured numeric range or ratio ('^1^-^5') is not a single result"


def test_a_value_the_feed_cannot_read_is_named_once_in_its_own_field(admitted: Session) -> None:
    out = send(
        admitted,
        oru([obx(1, "1988-5^CRP^LN", "<>^5", "mg/L", vt="SN"), obx(2, "1742-6^ALT^LN", "ABC", "U/L", vt="ED", sub_id="2")]),
    )
    assert (out.code, out.stored) == ("AE", 0)
    assert [(e.location, e.reason) for e in out.errors] == [
        ("OBX^1^5", "OBX-5: comparator '<>' (not equal) is not a result value"),
        ("OBX^2^2", "OBX-2: value type 'ED' is not read (NM, SN, ST, TX, FT, CE, CWE are)"),
    ]
    assert [(i.field, i.reason) for i in review(admitted)] == [
        ("OBX-5", "comparator '<>' (not equal) is not a result value"),
        ("OBX-2", "value type 'ED' is not read (NM, SN, ST, TX, FT, CE, CWE are)"),
    ]


def test_pcr_as_text_and_escape_sequences(admitted: Session) -> None:
    out = send(
        admitted,
        oru(
            [
                obx(1, "HHV6^HHV-6 PCR^L", "Detected", vt="ST"),
                obx(2, "EBVPCR^EBV\\T\\CMV^L", "Not\\X20\\detected", vt="ST"),  # \X20\ is a space
                obx(3, "CMVPCR^CMV^L", "Negative", vt="CWE"),
            ],
            name="O\\S\\NEIL^ANNE\\T\\MARIE",  # ^ and & sent escaped
        ),
    )
    assert out.code == "AA", out
    assert [(lab.test, lab.value_text) for lab in labs(admitted)] == [
        ("hhv6_pcr", "detected"),
        ("ebv_pcr", "not detected"),
        ("cmv_pcr", "not detected"),
    ]
    send(admitted, adt("A08", control_id="ADT-9", name="O\\S\\NEIL^ANNE\\T\\MARIE"))
    assert admitted.execute(select(Patient.name).where(Patient.mrn == "HL7-001")).scalar_one() == "O^NEIL, ANNE&MARIE"


# --- statuses ------------------------------------------------------------------------------------


def test_corrected_result_is_an_amendment_keeping_the_earlier_value(admitted: Session) -> None:
    send(admitted, oru([obx(1, "1742-6^ALT^LN", "250", "U/L", status="F")], control_id="M1"))
    out = send(admitted, oru([obx(1, "1742-6^ALT^LN", "125", "U/L", status="C")], control_id="M2"))
    assert (out.code, out.amended, out.stored) == ("AA", 1, 0)
    (row,) = labs(admitted)
    assert row.value == 125 and row.amended_at is not None
    amend = admitted.execute(select(AuditEntry).where(AuditEntry.action == "amend", AuditEntry.entity == "lab_result")).scalar_one()
    assert amend.before is not None and amend.before["value"] == 250
    assert amend.reason is not None and "corrected by the laboratory (OBX-11 C)" in amend.reason


def test_preliminary_then_final_leaves_one_result_the_final(admitted: Session) -> None:
    send(admitted, oru([obx(1, "2276-4^Ferritin^LN", "900", "ng/mL", status="P")], control_id="M1"))
    assert [lab.value for lab in labs(admitted)] == [900]
    out = send(admitted, oru([obx(1, "2276-4^Ferritin^LN", "1250", "ng/mL", status="F")], control_id="M2"))
    assert out.amended == 1
    (row,) = labs(admitted)
    assert row.value == 1250
    # The same final again (another control ID) changes nothing.
    out = send(admitted, oru([obx(1, "2276-4^Ferritin^LN", "1250", "ng/mL", status="F")], control_id="M3"))
    assert (out.code, out.unchanged, out.amended) == ("AA", 1, 0)


def test_preliminary_and_final_of_one_result_in_one_message_store_the_final(admitted: Session) -> None:
    # The same OBX identity (order, OBX-3, OBX-4) twice in one message: the later decides by the one
    # rule of re-sent results; nothing is silently dropped and the ACK counts what was stored.
    out = send(admitted, oru([obx(1, "2276-4^Ferritin^LN", "900", "ng/mL", status="P"), obx(2, "2276-4^Ferritin^LN", "1250", "ng/mL")]))
    assert (out.code, out.stored, out.text) == ("AA", 1, "stored 1")
    assert [(lab.value, lab.status) for lab in labs(admitted)] == [(1250, "final")]


def test_two_finals_of_one_result_with_other_values_in_one_message_send_the_second_to_review(admitted: Session) -> None:
    out = send(admitted, oru([obx(1, "1742-6^ALT^LN", "90", "U/L"), obx(2, "1742-6^ALT^LN", "250", "U/L"), obx(3, "1742-6^ALT^LN", "90", "U/L")]))
    assert (out.code, out.stored, out.unchanged) == ("AE", 1, 1)
    assert [e.location for e in out.errors] == ["OBX^2^11"]
    assert "the same result as OBX 1 of this message" in out.errors[0].reason
    assert [lab.value for lab in labs(admitted)] == [90]
    assert [(i.field, i.value) for i in review(admitted)] == [("OBX-11", "F")]


@pytest.mark.parametrize(("status", "words"), [("X", "could not obtain"), ("D", "deleted"), ("W", "wrong")])
def test_cancelled_or_deleted_result_is_hidden_with_the_reason(admitted: Session, status: str, words: str) -> None:
    send(admitted, oru([obx(1, "1742-6^ALT^LN", "250", "U/L")], control_id="M1"))
    out = send(admitted, oru([obx(1, "1742-6^ALT^LN", "", "", status=status)], control_id="M2"))
    assert (out.code, out.hidden) == ("AA", 1)
    assert labs(admitted) == []
    (row,) = labs(admitted, hidden=True)
    assert row.hidden_reason is not None and words in row.hidden_reason and "MSH-10 M2" in row.hidden_reason
    assert admitted.execute(select(AuditEntry).where(AuditEntry.action == "hide")).scalar_one().entity_id == str(row.id)


def test_pending_status_stores_nothing(admitted: Session) -> None:
    out = send(admitted, oru([obx(1, "1742-6^ALT^LN", "", "", status="I")]))
    assert out.code == "AA" and labs(admitted) == []


# --- idempotence and identity --------------------------------------------------------------------


def test_same_message_twice_changes_nothing_and_gets_the_same_ack(admitted: Session) -> None:
    msg = oru([obx(1, "1742-6^ALT^LN", "80", "U/L"), obx(2, "711-2^Eos^LN", "2.1", "mmol/L")])
    first = send(admitted, msg)
    second = send(admitted, msg)
    assert (second.code, second.text, second.duplicate) == (first.code, first.text, True)
    assert [e.reason for e in second.errors] == [e.reason for e in first.errors]
    assert len(labs(admitted)) == 1 and len(review(admitted)) == 1


def test_same_control_id_with_other_content_is_refused(admitted: Session) -> None:
    send(admitted, oru([obx(1, "1742-6^ALT^LN", "80", "U/L")]))
    out = send(admitted, oru([obx(1, "1742-6^ALT^LN", "95", "U/L")]))
    assert out.code == "AR" and "already received" in out.text
    assert [lab.value for lab in labs(admitted)] == [80]


def test_unknown_patient_stores_nothing_and_waits_in_review(session: Session) -> None:
    out = send(session, oru([obx(1, "1742-6^ALT^LN", "80", "U/L"), obx(2, "2951-2^Na^LN", "140", "mmol/L")], mrn="NOBODY"))
    assert out.code == "AE" and "unknown MRN" in out.errors[0].reason
    assert session.execute(select(Patient)).first() is None
    assert [(i.mrn, i.field) for i in review(session)] == [("NOBODY", "PID-3")]


def test_no_identifier_of_type_mr_is_named(admitted: Session) -> None:
    out = send(admitted, oru([obx(1, "1742-6^ALT^LN", "80", "U/L")], pid3="HL7-001^^^HOSP^PI~555^^^SSA^SS"))
    assert out.code == "AE" and "PID-3 has no identifier of type MR" in out.errors[0].reason
    assert labs(admitted) == []


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "does not begin with an MSH"),
        (oru([], mtype="ORM^O01").encode(), "ORM^O01 is not accepted"),
        (oru([], control_id="").encode(), "MSH-10"),
        (b"MSH|^~\\&|A|B\rOBX|1", "MSH-9"),
    ],
)
def test_unreadable_messages_are_rejected_and_store_nothing(session: Session, raw: bytes, words: str) -> None:
    out = send(session, raw)
    assert out.code == "AR" and words in out.text
    assert session.execute(select(Hl7Message)).first() is None


# --- real public messages (tests/fixtures/hl7/README.md) ------------------------------------------


def test_nist_lead_result_is_acknowledged_and_not_followed(session: Session) -> None:
    out = send(session, fixture("nist_oru_lead_final.hl7"))
    assert (out.code, out.not_used, out.stored) == ("AA", 1, 0)
    assert out.control_id == "NIST-100929110701660"
    assert session.execute(select(Patient)).first() is None  # a result message never creates a patient
    corrected = send(session, fixture("nist_oru_lead_corrected.hl7"))
    assert corrected.code == "AA" and corrected.not_used == 1


def test_python_hl7_sample_without_mr_identifier_is_held_for_review(session: Session, tmp_path: Path) -> None:
    # The HL7 normative-edition sample: glucose 1554-5 (fasting) mapped by a unit's own code map;
    # PID-3 carries a bare identifier (no type), so no MRN can be trusted.
    codes_file = tmp_path / "lab_codes.toml"
    codes_file.write_text('[codes]\n"1554-5" = "glucose"\n"1553-5" = "glucose"\n', encoding="utf-8")
    out = send(session, fixture("python_hl7_sample_oru.hl7"), codes=load_code_map(codes_file))
    assert out.code == "AE" and out.control_id == "CNTRL-3456"
    assert all("PID-3 has no identifier of type MR (received: 555-44-4444 of type (none))" in e.reason for e in out.errors)
    assert [e.location for e in out.errors] == ["OBX^1^3", "OBX^2^3"]
    assert session.execute(select(LabResult)).first() is None


def test_athena_message_finds_the_mr_among_other_identifiers(session: Session) -> None:
    send(session, adt(mrn="V001047", name="test^michael"))
    out = send(session, fixture("athena_oru_amylase.hl7"))
    assert out.code == "AA" and out.text == "stored 0"  # a report without results yet
    stored = session.execute(select(Hl7Message).where(Hl7Message.control_id == "20087.3")).scalar_one()
    assert stored.patient_id == session.execute(select(Patient.id).where(Patient.mrn == "V001047")).scalar_one()
