"""The one intake path (monitoring/intake.py): a reading, a dose, a patient's fields as received ->
the stored record, or a refusal naming the field, the value and the test."""

from __future__ import annotations

import datetime as dt

import pytest

from monitoring import intake

TODAY = dt.date(2026, 3, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-02-01", (dt.datetime(2026, 2, 1), None)),
        ("2026-02-01T08:30", (dt.datetime(2026, 2, 1, 8, 30), None)),
        ("2026-02-01 08:30:15", (dt.datetime(2026, 2, 1, 8, 30, 15), None)),
        ("2026-02-01T08:30:00Z", (dt.datetime(2026, 2, 1, 8, 30), 0)),
        (" 2026-02-01T08:30:00.250+01:00 ", (dt.datetime(2026, 2, 1, 8, 30, 0, 250000), 60)),
        ("2026-02-01T08:30-05:30", (dt.datetime(2026, 2, 1, 8, 30), -330)),
    ],
)
def test_parse_datetime_keeps_the_wall_clock_and_the_offset(text: str, expected: tuple[dt.datetime, int | None]) -> None:
    assert intake.parse_datetime(text) == expected


@pytest.mark.parametrize("text", ["", "01/02/2026", "2026-2-1", "20260201", "2026-02-30", "2026-02-01T25:00", "yesterday"])
def test_parse_datetime_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        intake.parse_datetime(text)


@pytest.mark.parametrize("text", ["2026-02-01T08:00", "2026-13-01", "1.2.2026", ""])
def test_parse_date_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        intake.parse_date(text)


@pytest.mark.parametrize(("text", "value"), [("5", 5.0), (" -1.5 ", -1.5), ("1e3", 1000.0), (".5", 0.5), ("+2.", 2.0)])
def test_parse_number(text: str, value: float) -> None:
    assert intake.parse_number(text) == value


@pytest.mark.parametrize("text", ["", "1,5", "1 000", "1_000", "NaN", "inf", "5 mg", "½", "١٢", "1e400"])
def test_parse_number_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        intake.parse_number(text)


def test_a_decimal_comma_is_refused_with_the_spelling_to_use() -> None:
    with pytest.raises(ValueError, match="decimal comma.*'1.5'"):
        intake.parse_number("1,5")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<0.01", ("<", 0.01)),
        ("<= 5", ("<=", 5.0)),
        (">2000", (">", 2000.0)),
        (">= 7", (">=", 7.0)),
        ("LESS THAN 0.01", ("<", 0.01)),
        ("GREATER THAN 2000", (">", 2000.0)),
        ("less than or equal to 3", ("<=", 3.0)),
        ("\u2264 5", ("<=", 5.0)),
        ("12.5", (None, 12.5)),
    ],
)
def test_censored_values_keep_their_comparator(text: str, expected: tuple[str | None, float]) -> None:
    assert intake.parse_value(text) == expected


def _reading(**kw: object) -> object:
    args: dict[str, object] = {
        "mrn": "P1", "test": "creatinine", "taken_at": "2026-02-01", "value": "1.0", "unit": "mg/dL", "as_of": TODAY, **kw,
    }
    return intake.reading(**args)  # type: ignore[arg-type]


def test_reading_converts_and_keeps_what_was_received() -> None:
    lab = intake.reading(
        mrn="P1", test="2160-0", taken_at="2026-02-01T08:00+01:00", value="176.8", unit="µmol/L", ref_high="106", as_of=TODAY
    )
    assert (lab.test, lab.loinc, lab.value, lab.unit, lab.original_unit) == ("creatinine", "2160-0", pytest.approx(2.0), "mg/dL", "µmol/L")
    assert lab.ref_high == pytest.approx(106 / 88.4)
    assert (lab.taken_at, lab.taken_at_offset_minutes) == (dt.datetime(2026, 2, 1, 8, 0), 60)
    assert (lab.comparator, lab.status) == (None, "final")


def test_a_censored_troponin_is_stored_with_its_comparator_never_as_the_bare_number() -> None:
    lab = _reading(test="troponin_i", value="<0.03", unit="ng/mL")
    assert (lab.comparator, lab.value, lab.original_value) == ("<", pytest.approx(30.0), "<0.03")  # type: ignore[attr-defined]
    fhir_style = _reading(test="troponin_i", value=0.03, comparator="<", unit="ng/mL")
    assert (fhir_style.comparator, fhir_style.original_value) == ("<", "<0.03")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "column", "reason"),
    [
        ({"test": "nope"}, "test", "unknown test"),
        ({"unit": "mmol/h"}, "unit", "unknown unit for creatinine"),
        ({"value": "-3"}, "value", "negative values are impossible"),
        ({"value": "40"}, "value", "above the physiological bound"),
        ({"taken_at": "2026-03-05"}, "taken_at", "in the future"),
        ({"ref_high": "x"}, "ref_high", "not a number"),
        ({"ref_low": "-5"}, "ref_low", "negative values are impossible"),
        ({"ref_low": "2", "ref_high": "1"}, "ref_low", "lower limit is above its upper limit"),
        ({"value": "1,2"}, "value", "decimal comma"),
        ({"mrn": "P\x071"}, "mrn", "control character U+0007"),
        ({"mrn": "M" * 65}, "mrn", "at most 64 can be stored"),
    ],
)
def test_reading_refusals_name_the_field(kwargs: dict[str, object], column: str, reason: str) -> None:
    with pytest.raises(intake.Refused) as err:
        _reading(**kwargs)
    assert [e.column for e in err.value.errors] == [column]
    assert reason in err.value.errors[0].reason


def test_every_problem_of_a_reading_is_reported_and_the_form_message_names_the_test() -> None:
    with pytest.raises(intake.Refused) as err:
        _reading(test="alt", unit="U/L", value="-5", taken_at="2026-03-09")
    assert {e.column for e in err.value.errors} == {"value", "taken_at"}
    value = next(e for e in err.value.errors if e.column == "value")
    assert value.message == "ALT value '-5': negative values are impossible"


def test_a_time_later_today_is_in_the_future_and_the_offset_decides_the_instant() -> None:
    now = dt.datetime(2026, 3, 1, 10, 0)
    with pytest.raises(intake.Refused, match="in the future"):
        _reading(taken_at="2026-03-01T14:00", as_of=None, now=now)
    assert _reading(taken_at="2026-03-01T10:03", as_of=None, now=now).taken_at.hour == 10  # type: ignore[attr-defined]
    # 14:00 at UTC+14 is long past on any server clock at 10:00 local (offsets up to -12 h).
    far_east = _reading(taken_at="2026-03-01T14:00+14:00", as_of=None, now=now)
    assert far_east.taken_at_offset_minutes == 14 * 60  # type: ignore[attr-defined]


def test_pcr_text_and_numbers() -> None:
    text = _reading(test="hhv6_pcr", value="Detected", unit="")
    assert (text.value, text.value_text) == (None, "detected")  # type: ignore[attr-defined]
    number = _reading(test="hhv6_pcr", value="1200", unit="copies/mL")
    assert (number.value, number.value_text) == (1200.0, None)  # type: ignore[attr-defined]
    with pytest.raises(intake.Refused, match="unit is required"):
        _reading(test="hhv6_pcr", value="1200", unit="")


def test_dose_units_and_refusals() -> None:
    med = intake.dose(mrn="P1", drug="Decadron", start_date="2026-02-01", daily_dose="0.5", unit="g")
    assert (med.drug, med.drug_as_entered, med.daily_dose_mg, med.dose_per_kg) == ("dexamethasone", "Decadron", 500.0, None)
    per_kg = intake.dose(mrn="P1", drug="IVIG", start_date=dt.date(2026, 2, 1), daily_dose=2, unit="MG/KG")
    assert (per_kg.unit_as_entered, per_kg.dose_per_kg) == ("mg/kg", 2.0)
    for kwargs, column in (({"daily_dose": "-1"}, "daily_dose"), ({"unit": "ml"}, "unit"), ({"drug": " "}, "drug"), ({"start_date": "x"}, "start_date")):
        args = {"mrn": "P1", "drug": "prednisone", "start_date": "2026-02-01", "daily_dose": "10", "unit": "mg", **kwargs}
        with pytest.raises(intake.Refused) as err:
            intake.dose(**args)  # type: ignore[arg-type]
        assert [e.column for e in err.value.errors] == [column]
    with pytest.raises(intake.Refused) as err:
        intake.dose(mrn="P1", drug="prednisone", start_date="x", daily_dose="-1", unit="ml")
    assert {e.column for e in err.value.errors} == {"start_date", "daily_dose", "unit"}


def test_patient_fields() -> None:
    got = intake.patient_fields(
        {"mrn": " P1 ", "name": "Synthetic Ann", "sex": "F", "birth_date": "1000-01-01", "weight_kg": "70",
         "culprit_drugs": "Tegretol; allopurinol", "onset_date": "2026-01-10"},
        on=TODAY,
    )
    assert got.values == {
        "mrn": "P1", "name": "Synthetic Ann", "sex": "female", "weight_kg": 70.0,
        "culprit_drugs": ["carbamazepine", "allopurinol"], "onset_date": dt.date(2026, 1, 10),
        # Each culprit as written, beside what it resolved to (issue 14).
        "culprits_as_entered": [
            {"as_entered": "Tegretol", "drug": "carbamazepine", "ingredients": ["carbamazepine"]},
            {"as_entered": "allopurinol", "drug": "allopurinol", "ingredients": ["allopurinol"]},
        ],
    }
    assert [(n.column, "placeholder" in n.reason) for n in got.notes] == [("birth_date", True)]


@pytest.mark.parametrize(
    ("fields", "column", "reason"),
    [
        ({"weight_kg": "600"}, "weight_kg", "above 500 kg"),
        ({"weight_kg": "0"}, "weight_kg", "greater than 0"),
        ({"sex": "x"}, "sex", "unknown sex"),
        ({"name": "N" * 201}, "name", "201 characters: at most 200"),
        ({"name": "Ann\u202eevil"}, "name", "control character U+202E"),
        ({"onset_date": "2026-03-02"}, "onset_date", "in the future"),
        ({"baseline_creatinine_mg_dl": "88"}, "baseline_creatinine_mg_dl", "above the physiological bound"),
        ({"birth_date": "2000-01-01", "onset_date": "1999-01-01"}, "onset_date", "before the birth date"),
        ({"culprit_drugs": 5}, "culprit_drugs", "a list of drug names or a text"),
    ],
)
def test_patient_field_refusals(fields: dict[str, object], column: str, reason: str) -> None:
    with pytest.raises(intake.Refused) as err:
        intake.patient_fields({"mrn": "P1", "name": "Synthetic Ann", **fields}, on=TODAY)
    assert [e.column for e in err.value.errors] == [column]
    assert reason in err.value.errors[0].reason


def test_a_note_may_hold_line_breaks_but_a_name_may_not() -> None:
    assert intake.check_text("note", "line one\nline two", limit=100, multiline=True) == "line one\nline two"
    with pytest.raises(intake.FieldError, match="U\\+000A"):
        intake.check_text("name", "Ann\nBob", limit=100)


def test_a_troponin_below_the_assay_limit_raises_no_cardiac_alert() -> None:
    """Issue 13: '<0.03 ng/mL' was stored as 30 ng/L and raised CARDIAC_INVOLVEMENT and ICU_CRITERIA."""
    from sqlalchemy.pool import StaticPool
    from sqlmodel import Session, SQLModel, create_engine

    from monitoring.records import load_record
    from monitoring.rules import evaluate
    from monitoring.store import PatientIn, write_batch

    engine = create_engine("sqlite://", poolclass=StaticPool)
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        lab = _reading(mrn="T1", test="troponin_i", value="<0.03", unit="ng/mL", taken_at="2026-02-01T08:00")
        write_batch(session, patients=[PatientIn("T1", "Synthetic Tro", {})], labs=[lab])  # type: ignore[list-item]
        codes = {a.code for a in evaluate(load_record(session, "T1"), dt.date(2026, 2, 1))}
        assert not codes & {"CARDIAC_INVOLVEMENT", "ICU_CRITERIA"}
        exact = _reading(mrn="T1", test="troponin_i", value="0.03", unit="ng/mL", taken_at="2026-02-01T09:00")
        write_batch(session, labs=[exact])  # type: ignore[list-item]
        assert "CARDIAC_INVOLVEMENT" in {a.code for a in evaluate(load_record(session, "T1"), dt.date(2026, 2, 1))}
