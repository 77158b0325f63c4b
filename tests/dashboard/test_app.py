"""Every page of the dashboard run by Streamlit's AppTest on a temporary SQLite file holding a small
cohort (DATABASE_URL), asserting what a clinician would check."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from monitoring.models import LabResult
from monitoring.schema import open_database
from tests.dashboard.apptest import APP, TIMEOUT, open_app, sign_in
from tests.dashboard.cohort import USER, write_cohort
from tests.dashboard.shown import shown

TODAY = dt.date.today()


@pytest.fixture
def db_url_with_cohort(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'ward.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    engine = open_database(url)
    with Session(engine) as s:
        write_cohort(s, TODAY)
    yield url


def _signed_in(at: AppTest, username: str = USER) -> AppTest:
    """Seed the session as the sign-in page would (dashboard.auth); the account is in the cohort."""
    return sign_in(at, username)


def _app() -> AppTest:
    return open_app(USER)


def _ward_html(at: AppTest) -> str:
    found = [m.value for m in at.markdown if "dm-ward" in m.value]
    assert found, "the ward table is not on the page"
    return found[0]


def _frame(at: AppTest, column: str) -> pd.DataFrame:
    """The first table on the page with ``column`` (tables carry no key in AppTest)."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with column {column!r}")


def _labs(url: str) -> int:
    with Session(open_database(url)) as s:
        return s.execute(select(func.count()).select_from(LabResult)).scalar_one()


def test_ward_lists_patients_critical_first_with_badges(db_url_with_cohort: str) -> None:
    at = _app()
    html = _ward_html(at)
    order = re.findall(r'data-mrn="([^"]+)"', html)
    assert order == ["CRIT-1", "WARN-1", "CALM-1"]
    rows = html.split("<tr class=")[1:]  # patient rows only
    assert "‼ CRITICAL · Cardiac involvement, ICU criteria" in rows[0]
    assert "⚠ WARNING · Hepatic involvement" in rows[0]
    assert "⚠ WARNING · Eosinophilia" in rows[1] and "CRITICAL" not in rows[1]
    assert "no alerts" in rows[2]
    assert "Eosinophils ↑ above 1.5" in rows[1]  # new since yesterday
    assert "Alerts are decision support, not a diagnosis" in " ".join(m.value for m in at.markdown)


def test_ward_column_headers_take_label_and_unit_from_the_catalogue(db_url_with_cohort: str) -> None:
    """Issue 15: one place for a test's label and unit (monitoring.display over the catalogue)."""
    html = _ward_html(_app())
    headers = re.findall(r"<th [^>]*>([^<]*)</th>", html)
    assert headers[3:7] == ["ALT U/L", "Creatinine mg/dL", "Eosinophils ×10^9/L", "Ferritin ng/mL"]


def test_ward_says_the_course_day_with_its_first_dose(db_url_with_cohort: str) -> None:
    """Issue 18 point 7: 'day 8 of steroids (first dose ...)', the count the day-7 rule uses, on
    two unbroken lines of the Day cell."""
    rows = _ward_html(_app()).split("<tr class=")[1:]
    first = (TODAY - dt.timedelta(days=8)).isoformat()  # CRIT-1: methylprednisolone from 8 days ago
    text = re.sub(r"<[^>]+>", " ", rows[0])
    assert "day 8 of steroids" in text and f"(first dose {first})" in text
    assert re.search(r'white-space:nowrap">day 8 of steroids</span>', rows[0])
    assert "of steroids" not in rows[2]  # CALM-1: no steroid course


def test_ward_filters_by_setting_and_search(db_url_with_cohort: str) -> None:
    at = _app()
    at.segmented_control(key="ward_setting").set_value("clinic").run()
    assert re.findall(r'data-mrn="([^"]+)"', _ward_html(at)) == ["WARN-1", "CALM-1"]
    at.segmented_control(key="ward_setting").set_value("all")
    at.text_input(key="ward_search").input("cora").run()
    assert re.findall(r'data-mrn="([^"]+)"', _ward_html(at)) == ["CRIT-1"]


def test_no_red_badge_when_the_filter_leaves_no_critical_patient(db_url_with_cohort: str) -> None:
    """Issue 18 point 14: a filter without a critical patient shows no 'CRITICAL · 0 patient(s)'."""
    at = _app()
    header = " ".join(m.value for m in at.markdown if "active" in m.value and "patients" in m.value)
    assert "CRITICAL · 1 patient(s)" in header
    at.text_input(key="ward_search").input("carl").run()
    header = " ".join(m.value for m in at.markdown if "active" in m.value and "patients" in m.value)
    assert "CRITICAL" not in header and "WARNING" not in header and "1 of 3 active" in header


def test_opening_a_patient_from_the_ward_shows_the_timeline(db_url_with_cohort: str) -> None:
    at = _app()
    at.pills(key="ward_open").set_value("CRIT-1").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["patient_mrn"] == "CRIT-1"
    text = " ".join(m.value for m in at.markdown)
    assert "Cora Critical" in text
    assert "NEVER RECHALLENGE" in text and "carbamazepine" in text
    assert at.get("plotly_chart"), "no timeline figure"
    at.switch_page("views/ward.py").run()  # back on the ward: the choice does not open the patient again
    assert _ward_html(at) and at.pills(key="ward_open").value is None


def test_timeline_shows_alerts_with_source_and_the_data_as_a_table(db_url_with_cohort: str) -> None:
    at = _app()
    at.session_state["patient_mrn"] = "CRIT-1"
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(m.value for m in at.markdown)
    assert text.index("CRITICAL · Cardiac involvement") < text.index("WARNING · Hepatic involvement")
    assert "Recommendation:" in text
    # The course day counted from the first dose as day 0, said so (issue 18 point 7).
    first = (TODAY - dt.timedelta(days=8)).isoformat()
    assert f"Day 8 of steroids (first dose {first}): 100 mg/day prednisone-equivalent" in text
    assert any("Source:" in c.value for c in at.caption)
    assert any("decision support, not a diagnosis" in c.value for c in at.caption)
    table = _frame(at, "above")
    assert set(table["test"]) >= {"ALT", "Troponin T", "Creatinine"}
    assert "> 2×ULN" in set(table["above"])
    at.segmented_control(key="timeline_units").set_value("SI").run()
    assert not at.exception
    table = _frame(at, "above")
    # Units by their label, never their UCUM code (issue 18 point 9).
    assert "µkat/L" in set(table["unit"]) and "ukat/L" not in set(table["unit"])


def test_timeline_names_the_liver_injury_pattern_and_draws_the_new_panels(db_url_with_cohort: str) -> None:
    """Issue 18 point 15: with an ALP of the same draw as ALT 400 (ULN 35), the header names the
    R ratio and its pattern with the profile's cut points; the ×ULN and troponin panels are drawn."""
    from monitoring import services

    with Session(open_database(db_url_with_cohort)) as s:
        services.add_lab_result(s, username=USER, mrn="CRIT-1", test="alp", value=150, unit="U/L", ref_high=120,
                                taken_at=dt.datetime.combine(TODAY - dt.timedelta(days=1), dt.time(6, 0)))
        s.commit()
    at = _app()
    at.session_state["patient_mrn"] = "CRIT-1"
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    text = " ".join(shown(m.value) for m in at.markdown)  # as read: Markdown escapes removed
    day = (TODAY - dt.timedelta(days=1)).isoformat()
    # R = (400/35) / (150/120) = 9.1
    assert f"Liver-injury pattern: R 9.1, hepatocellular ({day}: ALT 400 / ULN 35 ÷ ALP 150 / ULN 120)" in text
    assert "R ≥ 5 hepatocellular, ≤ 2 cholestatic" in text
    import json

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    titles = [a.get("text") for a in spec["layout"]["annotations"]]
    assert "ALP (× ULN) · liver-injury pattern: R 9.1 hepatocellular (" + day + ")" in titles and "Troponin T (ng/L)" in titles


def test_timeline_now_line_is_the_current_minute_on_the_page(db_url_with_cohort: str) -> None:
    """Issue 18 point 11, on the page: the figure's now line is the current time (not midnight), so
    every result of today is before it, and the dose given stops there."""
    import json

    before = dt.datetime.now().replace(second=0, microsecond=0)
    at = _app()
    at.session_state["patient_mrn"] = "WARN-1"
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    after = dt.datetime.now()
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    now_x = {dt.datetime.fromisoformat(s["x0"]) for s in spec["layout"]["shapes"] if s.get("name") == "now"}
    assert len(now_x) == 1
    (line,) = now_x
    if line.date() == TODAY:  # (a run across midnight draws the end of the as-of day)
        assert before <= line <= after
    eos = next(t for t in spec["data"] if t.get("name") == "Eosinophils")
    assert max(dt.datetime.fromisoformat(x) for x in eos["x"]) <= line  # today's result before the line


def test_timeline_now_line_holds_while_the_view_is_unchanged(db_url_with_cohort: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A rerun of the same view (a click on a photograph mark) a minute later draws the same figure,
    so Streamlit keeps the chart and its selection; a change of view moves the line on."""
    from dashboard import store

    first, later = (dt.datetime.combine(TODAY, dt.time(h, m)) for h, m in ((0, 1), (0, 2)))
    monkeypatch.setattr(store, "now_minute", lambda: first)
    at = _app()
    at.session_state["patient_mrn"] = "WARN-1"
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    spec = at.get("plotly_chart")[0].proto.spec
    monkeypatch.setattr(store, "now_minute", lambda: later)
    at.run()
    assert at.get("plotly_chart")[0].proto.spec == spec  # the same chart: a click's selection survives
    at.segmented_control(key="timeline_units").set_value("SI").run()
    assert not at.exception
    shapes = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["shapes"]
    assert {s["x0"] for s in shapes if s.get("name") == "now"} == {later.isoformat()}


def _entry(at: AppTest, mrn: str) -> AppTest:
    at.switch_page("views/entry.py").run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="entry_patient").set_value(mrn)
    return at.run()


def test_entering_a_result_stores_it_and_the_overview_shows_it(db_url_with_cohort: str) -> None:
    at = _entry(_app(), "CALM-1")
    before = _labs(db_url_with_cohort)
    at.selectbox(key="entry_lab_test").set_value("ferritin").run()
    at.time_input(key="entry_lab_time").set_value(dt.time(0, 0))
    at.text_input(key="entry_lab_value").input("950")
    at.button(key="entry_lab_save").click().run()
    assert not at.error, [e.value for e in at.error]
    assert any("Stored Ferritin 950" in s.value for s in at.success)
    assert _labs(db_url_with_cohort) == before + 1
    at.switch_page("views/ward.py").run()
    html = _ward_html(at)
    calm = html.split('data-mrn="CALM-1"')[1]
    assert "<b>950</b>" in calm and "High ferritin" in calm  # the new value and its alert, at once


def test_a_bad_entry_shows_an_error_naming_field_and_value_and_stores_nothing(db_url_with_cohort: str) -> None:
    at = _entry(_app(), "CALM-1")
    before = _labs(db_url_with_cohort)
    at.selectbox(key="entry_lab_test").set_value("creatinine").run()
    at.time_input(key="entry_lab_time").set_value(dt.time(0, 0))
    at.text_input(key="entry_lab_value").input("45")  # µmol/L typed with the default mg/dL
    at.button(key="entry_lab_save").click().run()
    assert at.error, "no error shown"
    message = shown(at.error[0].value)  # as the clinician reads it (escaped Markdown, dashboard/safe.py)
    # Issue 18 point 12: the form names the test and the value, not the CSV's "column value".
    assert "Creatinine value '45'" in message and "physiological bound" in message
    assert "column" not in message
    assert _labs(db_url_with_cohort) == before


def test_a_correction_needs_a_reason_and_keeps_the_earlier_value(db_url_with_cohort: str) -> None:
    at = _entry(_app(), "WARN-1")
    table = _frame(at, "as received")
    eos_id = int(table[table["test"] == "Eosinophils"]["id"].iloc[0])  # the label people read
    at.selectbox(key="entry_amend_lab").set_value(eos_id)
    at.text_input(key="entry_amend_value").input("1.7")
    at.button(key="entry_amend_save").click().run()
    assert at.error and "reason" in at.error[0].value
    at.text_input(key="entry_amend_reason").input("analyser re-run")
    at.button(key="entry_amend_save").click().run()
    assert not at.error, [e.value for e in at.error]
    with Session(open_database(db_url_with_cohort)) as s:
        row = s.get(LabResult, eos_id)
        assert row is not None and row.value == 1.7 and row.amended_at is not None


def test_without_sign_in_only_the_sign_in_page_is_shown(db_url_with_cohort: str) -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert not [m for m in at.markdown if "dm-ward" in m.value]  # no patient data before sign-in
    assert at.text_input(key="auth_username") is not None


def test_upload_with_a_bad_row_reports_it_and_writes_nothing(db_url_with_cohort: str) -> None:
    at = _entry(_app(), "CALM-1")
    before = _labs(db_url_with_cohort)
    content = (
        "mrn,taken_at,test,value,unit\n"
        f"CALM-1,{TODAY.isoformat()},alt,31,U/L\n"
        f"CALM-1,{TODAY.isoformat()},creatinine,abc,mg/dL\n"
    ).encode()
    uploader = at.file_uploader(key="entry_upload")
    uploader.upload("labs.csv", content, "text/csv").run()
    at.button(key="entry_import").click().run()
    assert at.error and "Nothing was imported" in at.error[0].value
    report = _frame(at, "problem")
    assert "labs.csv: row 3" in set(report["file"]) and "abc" in set(report["value"])
    assert _labs(db_url_with_cohort) == before


def test_the_upload_limit_is_the_import_cap(db_url_with_cohort: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The browser refuses a file over DRESS_MAX_IMPORT_BYTES before sending it (not Streamlit's
    200 MB held in memory first); a broken setting is named and no uploader is offered."""
    monkeypatch.setenv("DRESS_MAX_IMPORT_BYTES", str(5 * 1024 * 1024))
    at = _entry(_app(), "CALM-1")
    assert at.file_uploader(key="entry_upload").proto.max_upload_size_mb == 5
    monkeypatch.setenv("DRESS_MAX_IMPORT_BYTES", "lots")
    at.run()
    assert any("DRESS_MAX_IMPORT_BYTES: value 'lots'" in shown(e.value) for e in at.error)
    assert not at.get("file_uploader")


def test_an_unknown_mrn_in_the_link_shows_no_other_patient(db_url_with_cohort: str) -> None:
    at = _app()
    at.query_params["mrn"] = "NOPE-9"
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("No patient with MRN 'NOPE-9'" in w.value for w in at.warning)
    text = " ".join(m.value for m in at.markdown)
    assert "Cora Critical" not in text and "Walt Warning" not in text and "Carl Calm" not in text


def test_the_selected_patient_follows_the_user_between_pages(db_url_with_cohort: str) -> None:
    at = _app()
    at.pills(key="ward_open").set_value("WARN-1").run()
    assert "Walt Warning" in " ".join(m.value for m in at.markdown)
    at.switch_page("views/ward.py").run()
    at.pills(key="ward_open").set_value("CRIT-1").run()  # a second patient from the ward
    assert "Cora Critical" in " ".join(m.value for m in at.markdown)
    at.switch_page("views/entry.py").run()
    assert at.selectbox(key="entry_patient").value == "CRIT-1"


def test_a_dose_change_entered_on_the_page_reaches_the_overview(db_url_with_cohort: str) -> None:
    at = _entry(_app(), "WARN-1")
    at.text_input(key="entry_dose_drug").input("Deltasone")  # a brand name
    at.date_input(key="entry_dose_start").set_value(TODAY)
    at.text_input(key="entry_dose_amount").input("0.5")
    at.selectbox(key="entry_dose_unit").set_value("mg/kg")
    at.button(key="entry_dose_save").click().run()
    assert not at.error, [e.value for e in at.error]
    meds = _frame(at, "daily dose (mg)")
    assert list(meds["drug"]) == ["prednisone"] and list(meds["daily dose (mg)"]) == [40.0]  # 0.5 mg/kg x 80 kg
    at.switch_page("views/ward.py").run()
    warn = _ward_html(at).split('data-mrn="WARN-1"')[1].split("</tr>")[0]
    assert "40 mg/day" in warn and "0.50 mg/kg" in warn


def test_registering_a_patient_and_a_refused_registration(db_url_with_cohort: str) -> None:
    at = _entry(_app(), "CALM-1")
    at.text_input(key="entry_new_mrn").input("NEW-1")
    at.text_input(key="entry_new_name").input("Nina New")
    at.number_input(key="entry_new_weight").set_value(55.0)
    at.text_input(key="entry_new_culprits").input("Lamictal")
    at.button(key="FormSubmitter:entry_new_patient_form-Register patient").click().run()
    assert not at.error, [e.value for e in at.error]
    at.switch_page("views/ward.py").run()
    assert 'data-mrn="NEW-1"' in _ward_html(at)
    at = _entry(at, "NEW-1")
    at.text_input(key="entry_new_mrn").input("CALM-1")  # an MRN already registered
    at.text_input(key="entry_new_name").input("Someone Else")
    at.button(key="FormSubmitter:entry_new_patient_form-Register patient").click().run()
    assert at.error and "column mrn" in at.error[0].value and "already registered" in at.error[0].value


def test_fhir_bundle_download_is_offered_and_built_only_when_asked(
    db_url_with_cohort: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 4: the timeline offers the patient's FHIR bundle; the JSON is built on the download
    request (a deferred callable), not on every rerun. The callable is captured on its way to
    Streamlit's media manager (which still receives it) and run as the download would run it."""
    import json

    from streamlit.runtime.media_file_manager import MediaFileManager

    deferred: list[object] = []
    original = MediaFileManager.add_deferred

    def capture(self: MediaFileManager, data_callable: object, *args: object, **kw: object) -> str:
        deferred.append(data_callable)
        return original(self, data_callable, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(MediaFileManager, "add_deferred", capture)
    at = _app()
    deferred.clear()  # the ward page's own deferred download (the ward-round list)
    at.session_state["patient_mrn"] = "CRIT-1"
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    buttons = {b.proto.label: b.proto for b in at.get("download_button")}
    fhir = buttons["Download FHIR bundle (JSON)"]
    assert fhir.deferred_file_id and not fhir.url  # nothing built yet
    assert len(deferred) == 1 and callable(deferred[0])
    bundle = json.loads(deferred[0]())
    assert bundle["resourceType"] == "Bundle"
    kinds = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"Patient", "Observation"} <= kinds
    patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert "CRIT-1" in json.dumps(patient.get("identifier"))


def test_photograph_dates_are_links_to_that_days_photographs(db_url_with_cohort: str) -> None:
    """Issue 4 (timeline → photographs): besides a click on the figure's photo mark, every
    photograph date is a plain link to the Photos page with ?mrn= and ?photo_day=, and the Photos
    page opens that day from the link."""
    import io

    from PIL import Image

    from monitoring import photos

    day = TODAY - dt.timedelta(days=2)
    buf = io.BytesIO()
    Image.new("RGB", (48, 32), (180, 90, 80)).save(buf, "JPEG")
    with Session(open_database(db_url_with_cohort)) as s:
        photos.store_photos(s, "CRIT-1", [photos.PhotoIn("rash.jpg", buf.getvalue(), "chest", taken_on=day)],
                            username=USER, today=TODAY)
        s.commit()
    at = _app()
    at.session_state["patient_mrn"] = "CRIT-1"
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    links = [pl.proto for pl in at.get("page_link")]
    photo_links = [pl for pl in links if pl.label == f"Photographs of {day.isoformat()}"]
    assert photo_links, [pl.label for pl in links]
    assert "photo_day=" + day.isoformat() in photo_links[0].query_string
    assert "mrn=CRIT-1" in photo_links[0].query_string

    at.query_params["photo_day"] = day.isoformat()  # where the link (or a click on the mark) goes
    at.switch_page("views/photos.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(sh.value == f"Photographs of {day.isoformat()}" for sh in at.subheader)
