"""Issue 12 point 5: an old row with a 20,005-character name (stored before the intake limits)
shows shortened on the ward, table and buttons, and whole on the timeline, as escaped text."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from dashboard import widgets
from monitoring.models import Patient
from monitoring.schema import open_database
from tests.dashboard.apptest import open_app
from tests.dashboard.cohort import USER, write_cohort

LONG_NAME = "Lena " + "Longname" * 2500  # 20,005 characters, no space after the first word


@pytest.fixture
def long_name_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'ward.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    with Session(open_database(url)) as s:
        write_cohort(s, dt.date.today())
        # Written as an old release could: past the intake path, which now refuses 201 characters.
        s.execute(update(Patient).where(Patient.mrn == "WARN-1").values(name=LONG_NAME))
        s.commit()
    assert len(LONG_NAME) == 20_005
    return url


def _app() -> AppTest:
    return open_app(USER)


def test_ward_shows_a_long_name_shortened_and_the_timeline_whole(long_name_url: str) -> None:
    at = _app()
    table = next(m.value for m in at.markdown if "dm-ward" in m.value)
    short = widgets.shorten(LONG_NAME)
    assert len(short) == widgets.WARD_TEXT_CHARS and short.endswith("…")
    assert short in table
    assert "Longname" * 10 not in table  # 80 characters of it: not shown
    assert "Cora Critical" in table and "Carl Calm" in table  # the other patients are untouched
    labels = at.pills(key="ward_open").options
    assert any(short in label for label in labels)
    assert all(len(label) < 100 for label in labels)
    at.pills(key="ward_open").set_value("WARN-1").run()
    assert not at.exception, [e.value for e in at.exception]
    heading = next(m.value for m in at.markdown if m.value.startswith("### Lena"))
    assert "Longname" * 2500 in heading  # whole, as text (no Markdown character in it to escape)
