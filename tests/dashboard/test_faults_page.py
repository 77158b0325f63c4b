"""Database faults on the page (issue 12 point 5): a read-only database still shows the sign-in
form and the ward; a write refused because the database is read-only or locked shows "database
busy / read-only: nothing was stored, try again" on the page (never Streamlit's crash page, never
the SQL) after a bounded wait, and nothing is stored."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from monitoring import auth
from monitoring.db import FAULT_MESSAGE, create_db_engine
from monitoring.models import AuditEntry
from monitoring.schema import open_database
from tests.dashboard.apptest import app_test, sign_in
from tests.dashboard.cohort import USER, write_cohort
from tests.dashboard.shown import shown

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PASSWORD = "a proper long password"
TIMEOUT = 60


@pytest.fixture
def ward_db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ward.db"
    engine = open_database(f"sqlite:///{path}")
    with Session(engine) as s:
        write_cohort(s, dt.date.today())
        auth.create_user(s, actor="test", username="doc", role=auth.CLINICIAN, password=PASSWORD)
        s.commit()
    engine.dispose()
    yield path


def _seeded(url: str) -> AppTest:
    engine = create_db_engine(url)
    try:
        return sign_in(app_test(), USER, engine)
    finally:
        engine.dispose()


def _texts(at: AppTest) -> str:
    return shown("\n".join(str(x.value) for x in [*at.markdown, *at.error, *at.warning, *at.info]))


def test_read_only_database_shows_sign_in_and_ward_and_refuses_a_sign_in_cleanly(ward_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A clinician signed in before the database became read-only (their session is stored).
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{ward_db}")
    ward = _seeded(f"sqlite:///{ward_db}")
    url = f"sqlite:///file:{ward_db}?mode=ro&uri=true"
    monkeypatch.setenv("DATABASE_URL", url)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert [w.label for w in at.text_input] == ["User name", "Password"]
    # Signing in must write (the audit trail): refused with the fault message, no crash.
    at.text_input(key="auth_username").input("doc")
    at.text_input(key="auth_password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception
    assert FAULT_MESSAGE in _texts(at)
    assert "INSERT" not in _texts(at)

    ward.run()
    assert not ward.exception
    assert "Cora Critical" in _texts(ward)  # the ward reads fine


def test_locked_database_gives_the_fault_message_quickly_and_stores_nothing(ward_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{ward_db}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DRESS_DB_BUSY_TIMEOUT_S", "0.5")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    engine = create_db_engine(url)
    with Session(engine) as s:
        before = s.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
    holder = sqlite3.connect(ward_db)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        at.text_input(key="auth_username").input("doc")
        at.text_input(key="auth_password").input(PASSWORD)
        started = time.monotonic()
        at.button[0].click().run()
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert not at.exception
    assert FAULT_MESSAGE in _texts(at)
    assert waited < 20  # bounded (the former wait was 30 s before the crash page)
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(AuditEntry)).scalar_one() == before
    engine.dispose()
