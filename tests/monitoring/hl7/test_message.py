"""Reading HL7 v2 (monitoring/hl7/message.py, ack.py, codes.py) on real and hand-made messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.hl7.ack import AckError, build_ack, parse_ack
from monitoring.hl7.codes import CodeMapError, load_code_map
from monitoring.hl7.message import Unreadable, hl7_datetime, parse_message, reference_range
from tests.monitoring.hl7.messages import fixture, obx, oru


def test_nist_hcv_message_fields() -> None:
    m = parse_message(fixture("nist_oru_hcv_rna.hl7"))
    assert (m.kind, m.control_id, m.sender) == ("ORU^R01", "NIST-100929110939497", "EHR Application^EHR Facility")
    assert m.patient is not None and (m.patient.mrn, m.patient.name, m.patient.sex) == ("686774009", "Takamura, Michael", "M")
    (o,) = m.observations
    assert (o.value_type, o.codes[0][:1], o.value, o.units, o.status) == ("NM", ("10676-5",), "850000", "iU/mL", "F")
    assert o.order_id == "7564832^Lab" and o.time == "201007281400"


def test_nist_stool_culture_has_three_text_results() -> None:
    m = parse_message(fixture("nist_oru_stool_culture.hl7"))
    assert [(o.value_type, o.value) for o in m.observations] == [("ST", "Isolated"), ("ST", "Isolated"), ("ST", "Not Isolated")]


def test_cerner_mr_with_assigning_facility() -> None:
    m = parse_message(fixture("cerner_oru_lead.hl7"))
    assert m.patient is not None and m.patient.mrn == "9339683996"
    assert m.observations[0].order_id == "2010273000015^EHR"


def test_timestamps_keep_the_offset_and_need_a_date() -> None:
    assert hl7_datetime("200808151030-0700", what="OBX-14") == "2008-08-15T10:30:00-07:00"
    assert hl7_datetime("20261201", what="OBX-14") == "2026-12-01"
    assert hl7_datetime("202612010730", what="OBX-14") == "2026-12-01T07:30:00"
    assert hl7_datetime("20261201073015.123+0100", what="OBX-14") == "2026-12-01T07:30:15+01:00"
    with pytest.raises(ValueError, match="OBX-14: '202612'"):
        hl7_datetime("202612", what="OBX-14")


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [("7-56", "7", "56"), ("3.5 - 5.0", "3.5", "5.0"), ("<50", None, "50"), ("<=0.68", None, "0.68"), (">60", "60", None), ("", None, None), ("^^10.000000", None, None), ("negative", None, None)],
)
def test_reference_ranges(text: str, low: str | None, high: str | None) -> None:
    assert reference_range(text) == (low, high)


def test_escape_sequences_are_undone() -> None:
    m = parse_message(oru([obx(1, "X^a\\F\\b\\S\\c\\R\\d\\E\\e\\X41\\^L", "1", "U/L")]))
    assert m.observations[0].codes[0][1] == "a|b^c~d\\eA"


def test_line_feeds_instead_of_carriage_returns_are_read() -> None:
    m = parse_message(oru([obx(1, "1742-6^ALT^LN", "80", "U/L")]).replace("\r", "\n").encode())
    assert len(m.observations) == 1


def test_two_patients_in_one_message_are_refused() -> None:
    text = oru([]) + "PID|2||OTHER^^^HOSP^MR||X^Y\r"
    with pytest.raises(Unreadable, match="more than one PID"):
        parse_message(text)


def test_ack_mirrors_the_sender_and_escapes_text() -> None:
    raw = oru([], control_id="C-9")
    ack = build_ack(raw, "AE", "stored 1 | 1 to review", [AckError("OBX^2^6", "unit 'mg^dl' unknown")])
    assert ack.startswith("MSH|^~\\&|DRESS_MONITOR||LIS|MAINLAB|")
    assert "|ACK^R01^ACK|" in ack
    assert parse_ack(ack) == ("AE", "C-9", "stored 1 | 1 to review", ["unit 'mg^dl' unknown"])
    assert parse_ack(build_ack(b"\x00\x01garbage", "AR", "not HL7"))[:2] == ("AR", "")


def test_code_map_loads_the_example_and_refuses_unknown_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    codes = load_code_map()
    assert codes.test_for((("KREA", "Kreatinin", "L"),)) is not None
    assert codes.test_for((("2160-0", "Creatinine", "LN"),)).key == "creatinine"  # type: ignore[union-attr]
    assert codes.test_for((("2951-2", "Sodium", "LN"),)) is None
    own = tmp_path / "ours.toml"
    own.write_text('[codes]\nALAT = "alt"\n[codes."NORTHLAB"]\nALAT = "ast"\n', encoding="utf-8")
    monkeypatch.setenv("DRESS_LAB_CODES", str(own))
    ours = load_code_map()
    assert ours.test_for((("alat", "", "L"),)).key == "alt"  # type: ignore[union-attr]
    assert ours.test_for((("ALAT", "", "L"),), facility="northlab").key == "ast"  # type: ignore[union-attr]
    own.write_text('[codes]\nALAT = "alt"\nFOO = "sodium"\nBAR = 3\n', encoding="utf-8")
    with pytest.raises(CodeMapError) as err:
        load_code_map()
    assert err.value.lines[0].startswith(f"{own}: [codes] code 'FOO': value 'sodium': unknown catalogue key (known: alp, alt,")
    assert err.value.lines[1] == f"{own}: [codes] code 'BAR': value 3: must be a catalogue key (text)"
