"""One set-up for the page tests run by Streamlit's AppTest: the app (or one page), a session
seeded as the sign-in gate seeds it (dashboard.auth.signed_in_state; the gate still checks the
account against the database on every run), optional session state, a first run without an
exception."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from dashboard import auth as dashboard_auth
from monitoring import auth
from monitoring.db import create_db_engine
from monitoring.models import User

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
PAGES = ROOT / "dashboard" / "views"
TIMEOUT = 60


def signed(username: str, engine: Engine | None = None) -> auth.SignedIn:
    """The account as the sign-in page hands it on, read from ``engine`` (default: DATABASE_URL)."""
    eng = engine if engine is not None else create_db_engine(os.environ["DATABASE_URL"])
    try:
        with Session(eng) as s:
            return auth.signed_in_as(s.execute(select(User).where(User.username == username)).scalar_one())
    finally:
        if engine is None:
            eng.dispose()


def sign_in(at: AppTest, username: str, engine: Engine | None = None) -> AppTest:
    """Seed ``at``'s session as the sign-in gate does for ``username``."""
    for key, value in dashboard_auth.signed_in_state(signed(username, engine)).items():
        at.session_state[key] = value
    return at


def app_test(script: str = APP, *, timeout: float = TIMEOUT) -> AppTest:
    """A fresh AppTest of ``script`` (the whole app by default), not run, nobody signed in."""
    return AppTest.from_file(script, default_timeout=timeout)


def open_app(
    username: str,
    *,
    page: str | None = None,
    state: dict[str, Any] | None = None,
    engine: Engine | None = None,
    script: str = APP,
) -> AppTest:
    """The app signed in as ``username``, run once (then switched to ``page``, e.g.
    ``"views/entry.py"``), asserting no exception on the way."""
    at = sign_in(app_test(script), username, engine)
    for key, value in (state or {}).items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page:
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
    return at
