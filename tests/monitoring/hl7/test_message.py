"""Reading HL7 v2 (monitoring/hl7/message.py, ack.py, codes.py) on real and hand-made messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def _escaped_and_deep() -> bytes:
    """A hand-made message with escapes, repetitions, components and subcomponents everywhere."""
    return oru(
        [
            obx(1, "1742-6^ALT \\T\\ co^LN~X1&sub&more^Local^L", "250", "U/L", flags="H~HH"),
            obx(2, "711-2^Eos^LN", "<^0.01", "10*9/L", vt="SN"),
            obx(3, "PCR^HHV-6^L", "Detected \\F\\ \\S\\ \\R\\ \\E\\ \\X41\\", "", vt="ST"),
        ],
        control_id="DEEP-1",
        order="ORD&A&B^LAB~ORD2",
    ).encode()


@pytest.mark.parametrize(
    "raw",
    [pytest.param(p.read_bytes(), id=p.name) for p in sorted((Path(__file__).parents[2] / "fixtures" / "hl7").glob("*.hl7"))]
    + [pytest.param(_escaped_and_deep(), id="escaped-and-deep")],
)
def test_the_fast_reader_gives_what_python_hl7_gives_at_every_position(raw: bytes) -> None:
    # message._get reads values without python-hl7's per-call wrappers; it must give exactly what
    # Segment.extract_field gives (or the same absence) at every position of every segment.
    import hl7

    from monitoring.hl7.message import _get, _split_segments

    def library(seg: Any, f: int, r: int, c: int, s: int) -> str:
        try:
            return str(seg.extract_field(1, f, r, c, s)).strip()
        except (IndexError, KeyError):
            return ""

    msg = hl7.parse(_split_segments(raw.decode("utf-8", errors="replace")))
    differ = [
        (str(seg[0]), f, r, c, s)
        for seg in msg
        for f in range(len(seg) + 2)
        for r in range(4)
        for c in range(7)
        for s in range(4)
        if _get(seg, f, r, c, s) != library(seg, f, r, c, s)
    ]
    assert differ == []
