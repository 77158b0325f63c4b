"""The Entry page as a clinician uses it (AppTest on a temporary SQLite file): the reference range
of the patient's last result is pre-filled (issue 18 point 1), the profile's default ULN is named
when none is given, censored results keep their comparator in the table, and a patient with text
PCR results loads without pyarrow conversion tracebacks (issue 18 point 14)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from monitoring import auth, services
from monitoring.guideline import load_profile
from monitoring.records import load_record
from monitoring.rules import evaluate
from monitoring.schema import open_database
from tests.dashboard.apptest import open_app

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
TODAY = dt.date.today()
USER = "dr.entry"
TIMEOUT = 60


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """LIV-1: two earlier ALTs with the laboratory's ULN 35 U/L (no alert); PCR-1: HHV-6 PCR
    'detected' and a numeric load, a troponin I '<0.03 ng/mL' and a ferritin '>1000'."""
    url = f"sqlite:///{tmp_path / 'entry.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    with Session(open_database(url)) as s:
        auth.create_user(s, actor="test", username=USER, role=auth.CLINICIAN, password=None)
        d = lambda n: dt.datetime.combine(TODAY - dt.timedelta(days=n), dt.time(6, 0))  # noqa: E731
        services.add_patient(s, username=USER, mrn="LIV-1", name="Liv Liver", sex="female", birth_date="1970-01-01",
                             weight_kg=60, onset_date=TODAY - dt.timedelta(days=12), culprit_drugs="allopurinol")
        for days, alt in ((6, 30), (3, 32)):
            services.add_lab_result(s, username=USER, mrn="LIV-1", test="alt", taken_at=d(days), value=alt, unit="U/L",
                                    ref_high=35)
        services.add_patient(s, username=USER, mrn="PCR-1", name="Pat Pcr", sex="male", birth_date="1965-01-01",
                             weight_kg=80, onset_date=TODAY - dt.timedelta(days=20), culprit_drugs="carbamazepine")
        for days, test, value, unit in (
            (5, "hhv6_pcr", "detected", "copies/mL"),
            (3, "hhv6_pcr", "1200", "copies/mL"),
            (2, "ebv_pcr", "not detected", "copies/mL"),
            (2, "troponin_i", "<0.03", "ng/mL"),
            (2, "ferritin", ">1000", "ng/mL"),
            (1, "alt", "45", "U/L"),
        ):
            services.add_lab_result(s, username=USER, mrn="PCR-1", test=test, taken_at=d(days), value=value, unit=unit)
        s.commit()
    yield url


def _entry(mrn: str) -> AppTest:
    at = open_app(USER, page="views/entry.py")
    at.selectbox(key="entry_patient").set_value(mrn)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _ref_high(at: AppTest, mrn: str, test: str, unit: str) -> str:
    return at.text_input(key=f"entry_lab_ref_high_{mrn}_{test}_{unit}").value


def test_alt_75_gets_the_patients_uln_35_prefilled_and_raises_hepatic_involvement(db_url: str) -> None:
    """Against the profile's default ULN 40, ALT 75 is below 2 x ULN (80); against this
    laboratory's 35 it is above 70: the pre-filled range decides the alert."""
    at = _entry("LIV-1")
    at.selectbox(key="entry_lab_test").set_value("alt").run()
    assert _ref_high(at, "LIV-1", "alt", "U/L") == "35"
    assert not [i.value for i in at.info if "default ULN" in i.value]  # a ULN is given: no fallback note
    at.time_input(key="entry_lab_time").set_value(dt.time(0, 0))
    at.text_input(key="entry_lab_value").input("75")
    at.button(key="entry_lab_save").click().run()
    assert not at.error, [e.value for e in at.error]
    assert any("Stored ALT 75" in s.value for s in at.success)
    engine = open_database(db_url)
    with Session(engine) as s:
        record = load_record(s, "LIV-1")
    codes = {a.code for a in evaluate(record, TODAY, load_profile())}
    assert "HEPATIC_INVOLVEMENT" in codes
    latest = max((p for p in record.labs if p.test == "alt"), key=lambda p: p.taken_at)
    assert (latest.value, latest.ref_high) == (75.0, 35.0)


def test_without_an_earlier_range_the_page_names_the_default_uln(db_url: str) -> None:
    at = _entry("PCR-1")  # its ALT 45 came without a range
    at.selectbox(key="entry_lab_test").set_value("alt").run()
    assert _ref_high(at, "PCR-1", "alt", "U/L") == ""
    notes = [i.value for i in at.info if "default ULN" in i.value]
    assert notes and "ALT" in notes[0] and "40 U/L" in notes[0], [i.value for i in at.info]
    # A ULN typed in removes the note.
    at.text_input(key="entry_lab_ref_high_PCR-1_alt_U/L").input("33").run()
    assert not [i.value for i in at.info if "default ULN" in i.value]


def test_a_range_in_another_unit_is_not_prefilled_as_if_it_were_canonical(db_url: str) -> None:
    at = _entry("LIV-1")
    at.selectbox(key="entry_lab_test").set_value("alt").run()
    at.selectbox(key="entry_lab_unit_alt").set_value("ukat/L").run()
    assert _ref_high(at, "LIV-1", "alt", "ukat/L") == ""  # 35 U/L is not 35 ukat/L


def test_text_pcr_results_load_without_pyarrow_tracebacks_and_censored_values_keep_their_comparator(
    db_url: str,
) -> None:
    logger = logging.getLogger("streamlit.dataframe_util")  # Streamlit's loggers do not propagate
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]  # collect every record as it is
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        at = _entry("PCR-1")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert not [r.getMessage() for r in records if r.exc_info or "Arrow" in r.getMessage()]
    table = next(df.value for df in at.dataframe if "as received" in df.value.columns)
    values = dict(zip(table["test"] + " " + table["taken_at"], table["value"], strict=True))
    shown = set(values.values())
    assert {"detected", "not detected", "<30", ">1000"} <= shown, shown
    assert all(isinstance(v, str) for v in table["value"])  # one column type


def test_the_correction_picker_and_table_show_values_through_display(db_url: str) -> None:
    # 98.4 °F is stored as 36.888888888888886 Cel; the Entry page shows '36.9 °C' (monitoring.display:
    # one display precision per test, one label per unit), the value as received untouched.
    with Session(open_database(db_url)) as s:
        services.add_lab_result(s, username=USER, mrn="LIV-1", test="temperature",
                                taken_at=dt.datetime.combine(TODAY - dt.timedelta(days=1), dt.time(7, 0)),
                                value="98.4", unit="[degF]")
        services.add_lab_result(s, username=USER, mrn="LIV-1", test="creatinine",
                                taken_at=dt.datetime.combine(TODAY - dt.timedelta(days=1), dt.time(7, 0)),
                                value="65", unit="umol/L", ref_low="45", ref_high="90")
        s.commit()
    at = _entry("LIV-1")
    picker = at.selectbox(key="entry_amend_lab")
    labels = list(picker.options)  # as the clinician reads them (AppTest gives the formatted options)
    temp = next(o for o in labels if "Temperature" in o)
    assert "36.9 °C" in temp and "(received 98.4 °F)" in temp, temp
    assert not any("36.888" in o or "Cel" in o or "umol" in o for o in labels), labels
    creat = next(o for o in labels if "Creatinine" in o)
    assert "0.74 mg/dL" in creat and "(received 65 µmol/L)" in creat, creat
    table = next(df.value for df in at.dataframe if "as received" in df.value.columns)
    row = table[table["test"] == "Creatinine"].iloc[0]
    assert (row["value"], row["unit"], row["reference range"]) == ("0.74", "mg/dL", "0.51–1.02")
    # The unit pickers show labels ('°C', '°F') while the value stays the unit's code.
    at.selectbox(key="entry_lab_test").set_value("temperature").run()
    unit_picker = at.selectbox(key="entry_lab_unit_temperature")
    assert "°F" in unit_picker.options and "[degF]" not in unit_picker.options


def test_a_drug_name_over_80_characters_is_refused_on_the_form_never_cut(db_url: str) -> None:
    from sqlalchemy import func, select

    from monitoring.models import MedicationRow
    from tests.dashboard.shown import shown

    long_name = "Zyxwvut" * 11 + "abcd"  # 81 characters the drug table does not know
    with Session(open_database(db_url)) as s:
        before = s.execute(select(func.count()).select_from(MedicationRow)).scalar_one()
    at = _entry("LIV-1")
    at.text_input(key="entry_dose_drug").input(long_name)
    at.text_input(key="entry_dose_amount").input("10")
    at.button(key="entry_dose_save").click().run()
    assert at.error, "no error shown"
    message = shown(" ".join(e.value for e in at.error))
    assert "81 characters long: at most 80 can be stored (never cut)" in message, message
    with Session(open_database(db_url)) as s:
        assert s.execute(select(func.count()).select_from(MedicationRow)).scalar_one() == before
