"""The same reading typed in the Entry form (``services.add_lab_result``, what the page calls) and
sent in a CSV file (``importers.import_uploads``) is stored as the same record, or refused for the
same reason with the same field named (issue 13: five implementations once disagreed six ways on
these very inputs; now ``monitoring.intake`` is the one path, and this table keeps it so)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from monitoring import auth, catalogue, services
from monitoring.db import create_db_engine
from monitoring.importers import import_uploads
from monitoring.models import LabResult
from monitoring.store import BatchRejected

USER = "dr.agree"
MRN = "AGREE-1"
# The fields a clinician could tell apart in what is stored (ids, source and audit aside).
STORED = (
    "test",
    "taken_at",
    "value",
    "unit",
    "original_value",
    "original_unit",
    "loinc",
    "value_text",
    "ref_low",
    "ref_high",
    "comparator",
    "taken_at_offset_minutes",
    "status",
)

Outcome = tuple[str, Any]  # ("stored", {field: value}) or ("refused", sorted [(column, reason)])


def _later_today() -> str:
    """Two hours from now: later today for most of the day, in the future at any hour."""
    return (dt.datetime.now() + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")


# (what it is, test, taken_at, value, unit, ref_low, ref_high, expected: "stored" or the refused column)
TABLE: list[tuple[str, str, str, str, str, str, str, str]] = [
    ("plain ALT", "alt", "2026-01-12T08:00", "75", "U/L", "", "35", "stored"),
    ("decimal comma", "creatinine", "2026-01-12T08:00", "1,5", "mg/dL", "", "", "value"),
    ("numeric PCR text", "hhv6_pcr", "2026-01-12T08:00", "1200", "copies/mL", "", "", "stored"),
    ("PCR detected", "hhv6_pcr", "2026-01-12T08:00", "detected", "copies/mL", "", "", "stored"),
    ("PCR not detected", "ebv_pcr", "2026-01-12T08:00", "Not detected", "copies/mL", "", "", "stored"),
    ("a time later today", "alt", "LATER_TODAY", "40", "U/L", "", "", "taken_at"),
    ("a UTC offset", "alt", "2026-01-12T08:00+01:00", "40", "U/L", "", "", "stored"),
    ("a Z offset", "alt", "2026-01-12T08:00:00Z", "40", "U/L", "", "", "stored"),
    ("ref_low -5", "alt", "2026-01-12T08:00", "40", "U/L", "-5", "35", "ref_low"),
    ("reference range upside down", "alt", "2026-01-12T08:00", "40", "U/L", "50", "35", "ref_low"),
    ("weight 600 kg", "weight", "2026-01-12T08:00", "600", "kg", "", "", "value"),
    ("weight in lb", "weight", "2026-01-12T08:00", "154", "[lb_av]", "", "", "stored"),
    ("censored below", "troponin_i", "2026-01-12T08:00", "<0.03", "ng/mL", "", "", "stored"),
    ("censored below ALT", "alt", "2026-01-12T08:00", "<0.01", "U/L", "", "", "stored"),
    ("censored above", "ferritin", "2026-01-12T08:00", ">1000", "ng/mL", "", "", "stored"),
    ("censored with a space and <=", "crp", "2026-01-12T08:00", "<= 5", "mg/L", "", "", "stored"),
    ("censored in words", "ferritin", "2026-01-12T08:00", "greater than 2000", "ug/L", "", "", "stored"),
    ("creatinine in mmol/L", "creatinine", "2026-01-12T08:00", "0.15", "mmol/L", "", "", "stored"),
    ("creatinine in umol/L with reference", "creatinine", "2026-01-12T08:00", "130", "µmol/L", "53", "106", "stored"),
    ("eosinophils cells/uL", "eosinophils", "2026-01-12T08:00", "1500", "cells/uL", "", "", "stored"),
    ("eosinophils #/uL", "eosinophils", "2026-01-12T08:00", "1500", "#/uL", "", "", "stored"),
    ("by LOINC code", "1742-6", "2026-01-12T08:00", "150", "U/L", "", "40", "stored"),
    ("temperature in F", "temperature", "2026-01-12T08:00", "101.3", "[degF]", "", "", "stored"),
    ("temperature 27 C", "temperature", "2026-01-12T08:00", "27", "Cel", "", "", "value"),
    ("empty value", "alt", "2026-01-12T08:00", "", "U/L", "", "", "value"),
    ("white space value", "alt", "2026-01-12T08:00", "   ", "U/L", "", "", "value"),
    ("negative value", "alt", "2026-01-12T08:00", "-5", "U/L", "", "", "value"),
    ("NaN", "alt", "2026-01-12T08:00", "NaN", "U/L", "", "", "value"),
    ("inf", "alt", "2026-01-12T08:00", "inf", "U/L", "", "", "value"),
    ("thousands with space", "alt", "2026-01-12T08:00", "1 000", "U/L", "", "", "value"),
    ("value with its unit", "alt", "2026-01-12T08:00", "40 U/L", "U/L", "", "", "value"),
    ("201-char value", "alt", "2026-01-12T08:00", "4" * 201, "U/L", "", "", "value"),
    ("201-char unit", "alt", "2026-01-12T08:00", "40", "U" * 201, "", "", "unit"),
    ("text for a number", "alt", "2026-01-12T08:00", "high", "U/L", "", "", "value"),
    ("unknown unit", "alt", "2026-01-12T08:00", "40", "mg/dL", "", "", "unit"),
    ("missing unit", "alt", "2026-01-12T08:00", "40", "", "", "", "unit"),
    ("unknown test", "lipase", "2026-01-12T08:00", "40", "U/L", "", "", "test"),
    ("not a date", "alt", "12/01/2026", "40", "U/L", "", "", "taken_at"),
    ("impossible date", "alt", "2026-02-30", "40", "U/L", "", "", "taken_at"),
    ("date only", "alt", "2026-01-12", "40", "U/L", "", "", "stored"),
    ("seconds and fraction", "alt", "2026-01-12T08:00:30.5", "40", "U/L", "", "", "stored"),
    ("leading and trailing spaces", "alt", " 2026-01-12T08:00 ", " 40 ", " U/L ", "", " 35 ", "stored"),
    ("control character in value", "alt", "2026-01-12T08:00", "4\x0b0", "U/L", "", "", "value"),
    ("non-ASCII digits", "alt", "2026-01-12T08:00", "\u0664\u0660", "U/L", "", "", "value"),
    ("exponent", "alt", "2026-01-12T08:00", "4e1", "U/L", "", "", "stored"),
    ("ALT in ukat/L with a reference", "alt", "2026-01-12T08:00", "3.2", "ukat/L", "", "0.7", "stored"),
    ("ref_high text", "alt", "2026-01-12T08:00", "40", "U/L", "", "normal", "ref_high"),
    ("comparator on a reference", "alt", "2026-01-12T08:00", "40", "U/L", "", "<35", "ref_high"),
]


@pytest.fixture(scope="module")
def agree_engine() -> Iterator[Engine]:
    """One in-memory database for the module: each reading is written and rolled back."""
    eng = create_db_engine("sqlite://")
    SQLModel.metadata.create_all(eng)
    with Session(eng, expire_on_commit=False) as s:
        auth.create_user(s, actor="test", username=USER, role=auth.CLINICIAN, password=None)
        services.add_patient(s, username=USER, mrn=MRN, name="Agree Example", sex="female", birth_date="1970-03-01",
                             weight_kg=60, onset_date="2026-01-10", culprit_drugs="allopurinol")
        s.commit()
    yield eng
    eng.dispose()


def _stored(session: Session) -> dict[str, Any]:
    rows = session.execute(select(LabResult)).scalars().all()
    assert len(rows) == 1, f"{len(rows)} rows stored for one reading"
    return {f: getattr(rows[0], f) for f in STORED}


def through_form(engine: Engine, test: str, taken_at: str, value: str, unit: str, low: str, high: str) -> Outcome:
    """What the Entry page's result form does with the reading (every field as typed text)."""
    with Session(engine, expire_on_commit=False) as s:
        try:
            services.add_lab_result(s, username=USER, mrn=MRN, test=test, taken_at=taken_at, value=value, unit=unit,
                                    ref_low=low or None, ref_high=high or None)
        except BatchRejected as exc:
            s.rollback()
            return "refused", sorted((p.column, p.reason) for p in exc.problems)
        out = _stored(s)
        s.rollback()
    return "stored", out


def through_csv(engine: Engine, test: str, taken_at: str, value: str, unit: str, low: str, high: str) -> Outcome:
    """The same reading as one row of a labs CSV file uploaded on the Entry page."""
    buf = io.StringIO()
    # RFC 4180's CRLF line ends: the writer then quotes a value holding a bare CR, as any
    # conforming writer does (with "\n" alone Python 3.11 leaves it bare, and a CSV reader ends the
    # record there: a malformed file, not the value the form was given).
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["mrn", "taken_at", "test", "value", "unit", "ref_low", "ref_high"])
    w.writerow([MRN, taken_at, test, value, unit, low, high])
    with Session(engine, expire_on_commit=False) as s:
        report = import_uploads(s, [("labs.csv", buf.getvalue().encode())], username=USER, commit=False)
        if not report.ok:
            s.rollback()
            assert all(p.where == "labs.csv: row 2" for p in report.problems), report.problem_lines()
            return "refused", sorted((p.column, p.reason) for p in report.problems)
        out = _stored(s)
        s.rollback()
    return "stored", out


def _same(form: Outcome, csv_: Outcome) -> None:
    assert form[0] == csv_[0], f"form {form} but CSV {csv_}"
    if form[0] == "refused":
        assert form[1] == csv_[1]
        return
    for f in STORED:
        a, b = form[1][f], csv_[1][f]
        if isinstance(a, float) and isinstance(b, float):
            assert a == pytest.approx(b, rel=1e-12), f
        else:
            assert a == b, f"{f}: form {a!r}, CSV {b!r}"


def _agree(engine: Engine, test: str, taken_at: str, value: str, unit: str, low: str, high: str) -> Outcome:
    """The reading through the form and through a CSV file: the same record or the same refusal.
    A NUL cannot be in a CSV text file: the file is refused whole, by name, as binary (as the form
    refuses the control character), so such a reading is not compared row for row."""
    form = through_form(engine, test, taken_at, value, unit, low, high)
    if "\x00" in value + unit + low + high:
        assert form[0] == "refused", form
        with Session(engine, expire_on_commit=False) as s:
            row = f"{MRN},{taken_at},{test},{value},{unit},{low},{high}".encode()
            report = import_uploads(s, [("labs.csv", b"mrn,taken_at,test,value,unit,ref_low,ref_high\r\n" + row)],
                                    username=USER, commit=False)
            s.rollback()
        assert report.problem_lines() == ["labs.csv: a binary file, not CSV text (save it as CSV, UTF-8)"]
        return form
    _same(form, through_csv(engine, test, taken_at, value, unit, low, high))
    return form


@pytest.mark.parametrize("case", TABLE, ids=[c[0] for c in TABLE])
def test_the_form_and_a_csv_file_store_the_same_record_or_refuse_for_the_same_reason(
    agree_engine: Engine, case: tuple[str, ...]
) -> None:
    _, test, taken_at, value, unit, low, high, expected = case
    if taken_at == "LATER_TODAY":
        taken_at = _later_today()
    form = _agree(agree_engine, test, taken_at, value, unit, low, high)
    if expected == "stored":
        assert form[0] == "stored", form
    else:
        assert form[0] == "refused" and expected in {column for column, _ in form[1]}, form


def test_what_the_table_stores_is_what_a_clinician_expects(agree_engine: Engine) -> None:
    """A few rows of the table read as a clinician would: the agreement above is not agreement on
    a wrong record."""
    kind, trop = through_form(agree_engine, "troponin_i", "2026-01-12T08:00", "<0.03", "ng/mL", "", "")
    assert kind == "stored" and trop["comparator"] == "<" and trop["original_value"] == "<0.03"
    assert trop["value"] == pytest.approx(30.0)  # the limit in ng/L, kept with its comparator (PRODUCT.md §4)
    kind, ferritin = through_csv(agree_engine, "ferritin", "2026-01-12T08:00", ">1000", "ng/mL", "", "")
    assert kind == "stored" and (ferritin["comparator"], ferritin["value"]) == (">", 1000.0)
    kind, off = through_csv(agree_engine, "alt", "2026-01-12T08:00+01:00", "40", "U/L", "", "")
    assert kind == "stored" and off["taken_at"] == dt.datetime(2026, 1, 12, 8, 0) and off["taken_at_offset_minutes"] == 60
    kind, pcr = through_form(agree_engine, "hhv6_pcr", "2026-01-12T08:00", "1200", "copies/mL", "", "")
    assert kind == "stored" and (pcr["value"], pcr["value_text"]) == (1200.0, None)
    kind, creat = through_csv(agree_engine, "creatinine", "2026-01-12T08:00", "0.15", "mmol/L", "", "")
    assert kind == "stored" and creat["value"] == pytest.approx(0.15 * 1000 / 88.42, rel=1e-3)
    kind, reasons = through_form(agree_engine, "creatinine", "2026-01-12T08:00", "1,5", "mg/dL", "", "")
    assert kind == "refused" and "'1.5'" in reasons[0][1]


# --- the same property on random readings ------------------------------------------------------

_NUMBERS = st.one_of(
    st.integers(min_value=-50, max_value=30000).map(str),
    st.floats(min_value=-1, max_value=25000, allow_nan=False, allow_infinity=False).map(lambda x: f"{x:.3f}"),
    st.floats(min_value=0, max_value=100, allow_nan=False).map(lambda x: f"{x:.2f}".replace(".", ",")),
    st.sampled_from(["", " ", "NaN", "inf", "1e3", ".5", "5.", "detected", "not detected", "Positive", "1 000", "abc"]),
)
_VALUES = st.one_of(
    _NUMBERS,
    st.tuples(st.sampled_from(["<", "<=", ">", ">=", "\u2264", "\u2265", "< ", "less than ", "greater than "]), _NUMBERS)
    .map("".join),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12),
)
_UNITS = st.sampled_from(
    sorted({u for t in catalogue.CATALOGUE.values() for u in catalogue.accepted_units(t)} | {"", "U/l", " mg/dL ", "µmol/L"})
)
_TESTS = st.sampled_from(sorted(catalogue.CATALOGUE) + ["1742-6", "2160-0", "nonsense"])
_TIMES = st.one_of(
    st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2026, 11, 30)).map(
        lambda d: d.strftime("%Y-%m-%dT%H:%M")
    ),
    st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2026, 11, 30)).map(dt.date.isoformat),
    st.sampled_from(["2026-01-12T08:00+01:00", "2026-01-12T08:00-05:30", "2026-01-12T08:00Z", "2099-01-01", "x", ""]),
)
_REFS = st.one_of(st.just(""), st.integers(min_value=-10, max_value=200).map(str), st.just("1,5"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(test=_TESTS, taken_at=_TIMES, value=_VALUES, unit=_UNITS, low=_REFS, high=_REFS)
@example(test="alp", taken_at="2026-01-12T08:00+01:00", value="\x00", unit="", low="", high="")  # found by Hypothesis
def test_any_reading_gives_the_same_record_or_refusal_through_the_form_and_csv(
    agree_engine: Engine, test: str, taken_at: str, value: str, unit: str, low: str, high: str
) -> None:
    _agree(agree_engine, test, taken_at, value, unit, low, high)
