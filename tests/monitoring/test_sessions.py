"""Server-side sessions (issue 12 point 4): found again by the browser's cookie after a refresh,
ended for every tab by sign-out, by the idle timeout, by the absolute lifetime and by disabling the
account; a read-only database still lets a valid session through."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitoring import auth, sessions
from monitoring.db import create_db_engine
from monitoring.models import utcnow

BROWSER = "x" * 43


@pytest.fixture
def doc(engine: Engine) -> auth.SignedIn:
    with Session(engine) as s:
        user = auth.create_user(s, actor="setup", username="doc", role=auth.CLINICIAN, password=None)
        s.commit()
        assert user.id is not None
        return auth.SignedIn(user.id, "doc", auth.CLINICIAN)


def test_a_refresh_finds_the_session_through_the_browser_cookie_and_sign_out_ends_it(engine: Engine, doc: auth.SignedIn) -> None:
    t = utcnow()
    sid = sessions.open_session(engine, doc, browser=BROWSER, source="10.0.0.5", now=t)
    assert sessions.resume(engine, session_id=sid, now=t).user == doc  # this tab
    refreshed = sessions.resume(engine, session_id=None, browser=BROWSER, now=t + dt.timedelta(minutes=1))
    assert refreshed.user == doc and refreshed.session_id == sid  # a refresh: the same session
    assert sessions.resume(engine, session_id=None, browser="another browser cookie value", now=t).user is None
    sessions.end_session(engine, sid, now=t + dt.timedelta(minutes=2))
    ended = sessions.resume(engine, session_id=sid, now=t + dt.timedelta(minutes=2))
    assert ended.user is None and ended.ended == sessions.SIGNED_OUT  # every tab of it
    assert sessions.resume(engine, session_id=None, browser=BROWSER, now=t).user is None  # and a refresh


def test_idle_timeout_and_absolute_lifetime(engine: Engine, doc: auth.SignedIn, monkeypatch: pytest.MonkeyPatch) -> None:
    t = utcnow()
    sid = sessions.open_session(engine, doc, now=t)
    # Activity keeps it alive, even past the idle timeout counted from the sign-in ...
    for minutes in (10, 20, 30):
        assert sessions.resume(engine, session_id=sid, now=t + dt.timedelta(minutes=minutes)).user == doc
    # ... 15 minutes without any is the end.
    idle = sessions.resume(engine, session_id=sid, now=t + dt.timedelta(minutes=30 + 15))
    assert idle.user is None and idle.ended == sessions.IDLE
    monkeypatch.setenv(sessions.IDLE_ENV, "600")
    sid = sessions.open_session(engine, doc, now=t)
    for hours in range(1, 12):
        assert sessions.resume(engine, session_id=sid, now=t + dt.timedelta(hours=hours)).user == doc
    lifetime = sessions.resume(engine, session_id=sid, now=t + dt.timedelta(hours=12))
    assert lifetime.user is None and lifetime.ended == sessions.LIFETIME


def test_disabling_the_account_ends_its_sessions_and_a_role_change_applies(engine: Engine, doc: auth.SignedIn) -> None:
    sid = sessions.open_session(engine, doc)
    with Session(engine) as s:
        auth.set_role(s, actor="admin", username="doc", role=auth.VIEWER)
        s.commit()
    found = sessions.resume(engine, session_id=sid)
    assert found.user is not None and found.user.role == auth.VIEWER
    with Session(engine) as s:
        auth.disable_user(s, actor="admin", username="doc")
        s.commit()
    assert sessions.resume(engine, session_id=sid).ended == sessions.ACCOUNT


def test_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sessions.idle_timeout_s() == 15 * 60 and sessions.lifetime_s() == 12 * 3600
    monkeypatch.setenv(sessions.IDLE_ENV, "soon")
    with pytest.raises(ValueError, match="DRESS_SESSION_IDLE_MINUTES: value 'soon'"):
        sessions.idle_timeout_s()


def test_a_read_only_database_keeps_a_valid_session(db_path: Path) -> None:
    rw = create_db_engine(f"sqlite:///{db_path}")
    with Session(rw) as s:
        user = auth.create_user(s, actor="setup", username="doc", role=auth.CLINICIAN, password=None)
        s.commit()
        assert user.id is not None
        signed = auth.SignedIn(user.id, "doc", auth.CLINICIAN)
    t = utcnow()
    sid = sessions.open_session(rw, signed, now=t)
    rw.dispose()
    ro = create_db_engine(f"sqlite:///file:{db_path}?mode=ro&uri=true")
    assert sessions.resume(ro, session_id=sid, now=t + dt.timedelta(minutes=5)).user == signed  # the touch fails quietly
    ro.dispose()


def test_browser_signed_in_only_for_an_open_valid_session_of_that_browser(engine: Engine, doc: auth.SignedIn) -> None:
    """What dashboard/server.py's Guard asks for every /media/ and metrics request: the browser's
    cookie belongs to an open, not idle, not expired session of an enabled account. It is a read:
    asking does not keep a session alive."""
    t = utcnow()
    assert not sessions.browser_signed_in(engine, None, now=t)
    assert not sessions.browser_signed_in(engine, BROWSER, now=t)  # no session yet
    sid = sessions.open_session(engine, doc, browser=BROWSER, now=t)
    assert sessions.browser_signed_in(engine, BROWSER, now=t + dt.timedelta(minutes=14))
    assert not sessions.browser_signed_in(engine, "another browser cookie value", now=t)
    assert not sessions.browser_signed_in(engine, BROWSER, now=t + dt.timedelta(minutes=15))  # idle: asking is no activity
    assert sessions.resume(engine, session_id=sid, now=t + dt.timedelta(minutes=10)).user == doc
    assert sessions.browser_signed_in(engine, BROWSER, now=t + dt.timedelta(minutes=20))  # a click at 10 min
    assert not sessions.browser_signed_in(engine, BROWSER, now=t + dt.timedelta(hours=12))  # lifetime
    sessions.end_session(engine, sid, now=t + dt.timedelta(minutes=21))
    assert not sessions.browser_signed_in(engine, BROWSER, now=t + dt.timedelta(minutes=22))  # signed out
    sessions.open_session(engine, doc, browser=BROWSER, now=t)
    assert sessions.browser_signed_in(engine, BROWSER, now=t + dt.timedelta(minutes=1))
    with Session(engine) as s:
        auth.disable_user(s, actor="admin", username="doc")
        s.commit()
    assert not sessions.browser_signed_in(engine, BROWSER, now=t + dt.timedelta(minutes=1))  # account disabled
