"""A censored result (PRODUCT.md §4: '<0.03 ng/mL' troponin, '>1000' ferritin, '<5' ALT) is shown with
its comparator on the ward and on the timeline (hover, marker and table), run by AppTest on a
temporary SQLite file: never as a bare number a clinician would read as measured."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from monitoring import auth, services
from monitoring.schema import open_database
from tests.dashboard.apptest import open_app

TODAY = dt.date.today()
USER = "dr.censored"


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'censored.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    with Session(open_database(url)) as s:
        auth.create_user(s, actor="test", username=USER, role=auth.CLINICIAN, password=None)
        services.add_patient(s, username=USER, mrn="CEN-1", name="Cen Sored", sex="female", birth_date="1970-01-01",
                             weight_kg=60, onset_date=TODAY - dt.timedelta(days=12), culprit_drugs="allopurinol")
        d = lambda n: dt.datetime.combine(TODAY - dt.timedelta(days=n), dt.time(6, 0))  # noqa: E731
        for days, test, value, unit in (
            (4, "ferritin", "800", "ng/mL"),
            (1, "ferritin", ">1000", "ng/mL"),
            (4, "alt", "20", "U/L"),
            (1, "alt", "<5", "U/L"),
            (1, "troponin_i", "<0.03", "ng/mL"),
        ):
            services.add_lab_result(s, username=USER, mrn="CEN-1", test=test, taken_at=d(days), value=value, unit=unit)
        s.commit()
    yield url


def _app() -> AppTest:
    return open_app(USER)


def test_the_ward_shows_the_latest_censored_values_with_their_comparator(db_url: str) -> None:
    at = _app()
    html = next(m.value for m in at.markdown if "dm-ward" in m.value)
    row = html.split('data-mrn="CEN-1"')[1]
    assert "<b>&gt;1000</b>" in row  # ferritin '>1000', escaped as text
    assert "<b>&lt;5</b>" in row  # ALT '<5' is the latest ALT, not the older 20
    assert "<b>1000</b>" not in row and "<b>20</b>" not in row


def _figure(at: AppTest) -> dict[str, Any]:
    charts = at.get("plotly_chart")
    assert charts, "no timeline figure"
    return json.loads(charts[0].proto.spec)


def test_the_timeline_hover_marker_and_table_carry_the_comparator(db_url: str) -> None:
    at = _app()
    at.session_state["patient_mrn"] = "CEN-1"
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(df.value for df in at.dataframe if "canonical" in df.value.columns)
    by_test = {(t, v) for t, v in zip(table["test"], table["value"], strict=True)}
    assert {("Ferritin", ">1000"), ("ALT", "<5"), ("Troponin I", "<30"), ("Ferritin", "800")} <= by_test, by_test
    assert {">1000 ng/mL", "<5 U/L", "<30 ng/L"} <= set(table["canonical"])

    traces = _figure(at)["data"]
    ferritin = next(t for t in traces if t.get("name", "").startswith("Ferritin") and t.get("customdata"))
    alt = next(t for t in traces if t.get("name", "").startswith("ALT") and t.get("customdata"))
    assert [c[5] for c in ferritin["customdata"]] == ["", ">"]
    # The hover's value is monitoring.display's text, comparator included: '>1000', never a bare 1000.
    assert [c[6] for c in ferritin["customdata"]] == ["800", ">1000"]
    assert "%{customdata[6]} ng/mL" in ferritin["hovertemplate"] and "%{y" not in ferritin["hovertemplate"]
    assert ferritin["marker"]["symbol"] == ["circle", "triangle-up"]
    assert [c[2] for c in alt["customdata"]] == ["20 U/L", "<5 U/L"]  # canonical, with its comparator
    assert alt["marker"]["symbol"] == ["circle", "triangle-down"]  # drawn at its bound, pointing below


def test_the_timeline_evidence_names_a_censored_result_it_could_not_count(db_url: str) -> None:
    # '>2000' ferritin is above 500 (FERRITIN_HIGH, decided) but cannot tell against the HLH line of
    # 3000: the alert's evidence says so by name (PRODUCT.md §4), where the evidence is shown.
    with Session(open_database(db_url)) as s:
        services.add_patient(s, username=USER, mrn="CEN-2", name="Cen Two", onset_date=TODAY - dt.timedelta(days=3))
        services.add_lab_result(s, username=USER, mrn="CEN-2", test="ferritin",
                                taken_at=dt.datetime.combine(TODAY - dt.timedelta(days=1), dt.time(8, 5)), value=">2000", unit="ng/mL")
        s.commit()
    at = _app()
    at.session_state["patient_mrn"] = "CEN-2"
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [m.value.replace("\\", "").replace("\u2060", "") for m in at.markdown]  # safe.md's escapes undone
    note = f"Ferritin >2000 ng/mL on {(TODAY - dt.timedelta(days=1)).isoformat()} 08:05: undecidable against 3000 ng/mL, not counted"
    assert any(m.startswith("- **not counted**: ") and note in m for m in shown), [m for m in shown if "2000" in m]
    assert any(note in m and "Not counted:" in m for m in shown)  # in the finding too
