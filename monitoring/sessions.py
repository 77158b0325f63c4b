"""Server-side sessions (issue 12 point 4; table ``user_session``).

A sign-in opens a session row; the dashboard tab keeps its id in Streamlit's session state (held
on the server: a browser cannot set it) and, where the browser has the ``dress_browser`` cookie (an
HttpOnly cookie set by dashboard/server.py), the row also remembers a digest of that cookie, so a
browser refresh (a new Streamlit session) finds it again and the user stays signed in. Only a
SHA-256 digest of the cookie is stored.

A session ends, for every tab of it at their next click, by
- signing out (in any tab),
- the idle timeout: no click for ``idle_timeout_s()`` (env DRESS_SESSION_IDLE_MINUTES, default 15
  minutes: a design choice for shared ward workstations),
- its absolute lifetime ``lifetime_s()`` (env DRESS_SESSION_MAX_HOURS, default 12 hours: one shift),
- the account being disabled or removed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.expression import Executable
from sqlmodel import Session, col

from monitoring.auth import SignedIn, signed_in_as
from monitoring.models import User, UserSession, utcnow

IDLE_ENV = "DRESS_SESSION_IDLE_MINUTES"
LIFETIME_ENV = "DRESS_SESSION_MAX_HOURS"
DEFAULT_IDLE_MINUTES = 15.0
DEFAULT_LIFETIME_HOURS = 12.0
TOUCH_EVERY_S = 30.0  # last_seen_at is written at most this often: not a write per click

SIGNED_OUT = "sign-out"
IDLE = "idle"
LIFETIME = "lifetime"
ACCOUNT = "account"
REASONS = {
    SIGNED_OUT: "You were signed out (in this or another tab): sign in again.",
    IDLE: "You were signed out after a time without activity: sign in again.",
    LIFETIME: "Your session reached its maximum length: sign in again.",
    ACCOUNT: "Your account was disabled or removed: sign in again.",
}


def _setting(env: str, default: float) -> float:
    raw = os.environ.get(env)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{env}: value {raw!r}: not a number") from None
    if value <= 0:
        raise ValueError(f"{env}: value {raw!r}: must be more than 0")
    return value


def idle_timeout_s() -> float:
    return _setting(IDLE_ENV, DEFAULT_IDLE_MINUTES) * 60.0


def lifetime_s() -> float:
    return _setting(LIFETIME_ENV, DEFAULT_LIFETIME_HOURS) * 3600.0


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Resumed:
    """The outcome of looking a session up: the user and the session's id, or why there is none."""

    user: SignedIn | None
    session_id: int | None
    ended: str | None = None  # the reason, when a session was found and has ended


def open_session(engine: Engine, user: SignedIn, *, browser: str | None = None, source: str | None = None, now: dt.datetime | None = None) -> int:
    """A new session for ``user`` (just signed in); returns its id for the tab. A session this
    browser still had is ended: one browser, one signed-in user."""
    moment = now or utcnow()
    with Session(engine) as session:
        if browser:
            session.execute(
                update(UserSession)
                .where(col(UserSession.browser_hash) == _digest(browser), col(UserSession.ended_at).is_(None))
                .values(ended_at=moment, end_reason=SIGNED_OUT)
            )
        row = UserSession(
            token_hash=_digest(secrets.token_urlsafe(32)),
            browser_hash=_digest(browser) if browser else None,
            user_id=user.user_id,
            source=(source or None) and source[:64],
            created_at=moment,
            last_seen_at=moment,
        )
        session.add(row)
        session.commit()
        assert row.id is not None
        return row.id


def resume(engine: Engine, *, session_id: int | None, browser: str | None = None, now: dt.datetime | None = None) -> Resumed:
    """The session of this tab (its id) or, after a refresh, of this browser (its cookie),
    checked against the idle timeout, the lifetime and the account, and marked as seen. A
    read-only or busy database still lets a valid session through (reads keep working)."""
    moment = now or utcnow()
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(UserSession, session_id) if session_id else None
        if row is None and browser:
            row = _open_for_browser(session, browser)
        if row is None:
            return Resumed(None, None)
        if row.ended_at is not None:
            return Resumed(None, None, row.end_reason or SIGNED_OUT)
        user = session.get(User, row.user_id)
        reason = _end_reason(row, user, moment)
        if reason is not None:
            _write(session, update(UserSession).where(col(UserSession.id) == row.id).values(ended_at=moment, end_reason=reason))
            return Resumed(None, None, reason)
        assert user is not None and user.id is not None
        if (moment - row.last_seen_at).total_seconds() >= TOUCH_EVERY_S:
            _write(session, update(UserSession).where(col(UserSession.id) == row.id).values(last_seen_at=moment))
        return Resumed(signed_in_as(user), row.id)


def _end_reason(row: UserSession, user: User | None, moment: dt.datetime) -> str | None:
    """Why an open session has ended by ``moment`` (account, lifetime, idle), or None: it is valid."""
    if user is None or user.disabled:
        return ACCOUNT
    if (moment - row.created_at).total_seconds() >= lifetime_s():
        return LIFETIME
    if (moment - row.last_seen_at).total_seconds() >= idle_timeout_s():
        return IDLE
    return None


def _open_for_browser(session: Session, browser: str) -> UserSession | None:
    """The newest session of this browser (its ``dress_browser`` cookie) that was not ended."""
    return session.execute(
        select(UserSession)
        .where(col(UserSession.browser_hash) == _digest(browser), col(UserSession.ended_at).is_(None))
        .order_by(col(UserSession.id).desc())
        .limit(1)
    ).scalar_one_or_none()


def browser_signed_in(engine: Engine, browser: str | None, *, now: dt.datetime | None = None) -> bool:
    """Whether the browser with this ``dress_browser`` cookie has a valid signed-in session now:
    open, not idle, within its lifetime, account enabled (the checks of ``resume``). Read only:
    dashboard/server.py asks this for every ``/media/`` and metrics request, which must not count
    as activity."""
    if not browser:
        return False
    with Session(engine) as session:
        row = _open_for_browser(session, browser)
        if row is None:
            return False
        return _end_reason(row, session.get(User, row.user_id), now or utcnow()) is None


def _write(session: Session, statement: Executable) -> bool:
    try:
        session.execute(statement)
        session.commit()
        return True
    except OperationalError:  # read-only or busy: the session check itself must not fail
        session.rollback()
        return False


def end_session(engine: Engine, session_id: int | None, *, reason: str = SIGNED_OUT, now: dt.datetime | None = None) -> None:
    """End the session: every tab and refreshed page of it is signed out at its next click."""
    if not session_id:
        return
    with Session(engine) as session:
        session.execute(
            update(UserSession)
            .where(col(UserSession.id) == session_id, col(UserSession.ended_at).is_(None))
            .values(ended_at=now or utcnow(), end_reason=reason)
        )
        session.commit()
