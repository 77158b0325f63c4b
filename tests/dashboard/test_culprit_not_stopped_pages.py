"""CULPRIT_NOT_STOPPED on the pages (issue 14): a synthetic patient whose culprit, written as the
EHR writes it ("Tegretol XR 200 MG Extended Release Oral Tablet"), was started before the DRESS onset
and never stopped shows the critical badge on the ward and the alert on the timeline.

The pages evaluate as of ``store.today()``; the test fixes it to an explicit date D, so the result
does not depend on the day the suite runs, and writes the chart as it stands at three times of day
on D (00:30, 05:59, 12:00: results up to that minute, accepted by intake's future check at that
clock). ``faketime`` is not installed here; the as-of date is what the rule reads."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from dashboard import auth as dashboard_auth
from dashboard import store
from monitoring import auth, services
from monitoring.schema import open_database
from tests.dashboard.shown import shown, shown_html

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
D = dt.date(2026, 3, 10)  # the as-of date of the pages
USER = "dr.culprit"
MRN = "CNS-1"
NAME = "Cul Prit"


@pytest.fixture(params=[dt.time(0, 30), dt.time(5, 59), dt.time(12, 0)], ids=["00:30", "05:59", "12:00"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    clock = dt.datetime.combine(D, request.param)
    url = f"sqlite:///{tmp_path / 'culprit.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setattr(store, "today", lambda: D)
    with Session(open_database(url)) as s:
        auth.create_user(s, actor="test", username=USER, role=auth.CLINICIAN, password=None)
        services.add_patient(s, username=USER, mrn=MRN, name=NAME, sex="female", birth_date="1961-05-01",
                             weight_kg=64, onset_date=D - dt.timedelta(days=6), culprit_drugs="Tegretol XR",
                             synthetic=True)
        # Started 20 days before D, before the onset, and never stopped: no row with dose 0.
        services.add_dose_change(s, username=USER, mrn=MRN, drug="Tegretol XR 200 MG Extended Release Oral Tablet",
                                 start_date=D - dt.timedelta(days=20), dose="400", unit="mg", route="oral")
        # Results taken up to the clock on D: the chart as it stands at that time of day.
        for taken, test, value, unit in (
            (dt.datetime.combine(D - dt.timedelta(days=1), dt.time(6, 0)), "alt", "35", "U/L"),
            (clock - dt.timedelta(minutes=20), "temperature", "37.2", "Cel"),
        ):
            services.add_lab_result(s, username=USER, mrn=MRN, test=test, taken_at=taken, value=value, unit=unit,
                                    now=clock)
        s.commit()
    yield url


def _app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    with Session(open_database(os.environ["DATABASE_URL"])) as s:
        user = auth.get_user(s, USER)
        assert user is not None and user.id is not None
        signed = auth.SignedIn(user.id, user.username, user.role)
    for key, value in dashboard_auth.signed_in_state(signed).items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_ward_and_the_timeline_show_the_culprit_not_stopped(db_url: str) -> None:
    at = _app()
    ward = next(m.value for m in at.markdown if "dm-ward" in m.value)
    assert D.isoformat() in ward or any(D.isoformat() in m.value for m in at.markdown)  # evaluated as of D
    row = ward.split(f'data-mrn="{MRN}"')[1].split("</tr>")[0]
    assert 'class="dm-badge"' in row and "‼ CRITICAL · Culprit not stopped</span>" in row, row  # the ward's badge
    assert "(synthetic)" in row

    at.session_state["patient_mrn"] = MRN
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    text = shown(" ".join(m.value for m in at.markdown))
    assert "CRITICAL · Culprit drug not stopped" in text
    assert f"still given on {D.isoformat()}" in text and "carbamazepine" in text
    assert "immediate withdrawal" in text.lower()
    # The never-rechallenge banner names the culprit by its resolved name and as it was written.
    banner = shown_html(next(m.value for m in at.markdown if "NEVER RECHALLENGE" in m.value))
    assert "<b>carbamazepine</b> (as written: Tegretol XR) (and its group: aromatic anticonvulsants)" in banner, banner
