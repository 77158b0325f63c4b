"""The audit page shows administrators the live sign-in throttle counters (issue 12 point 3): per
user name at one address, per user name, per address and for the whole server, with the failures
counted and the time the key is locked until; a typed user name is shown as the characters typed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from dashboard import auth as gate
from monitoring import auth
from monitoring.db import create_db_engine, session_scope
from monitoring.models import User, utcnow

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
ATTACKER = "10.9.8.7"
TYPED = "[x](javascript:alert(1)) <b>eve</b>"


@pytest.fixture
def admin_db(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    url = f"sqlite:///{db_path}"
    monkeypatch.setenv("DATABASE_URL", url)
    eng = create_db_engine(url)
    with session_scope(eng) as s:
        auth.create_user(s, actor="test", username="boss", role=auth.ADMIN, password=None)
        auth.create_user(s, actor="test", username="alice", role=auth.CLINICIAN, password="alice's long password")
    yield eng
    eng.dispose()


def _audit_page(eng: Engine) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    with Session(eng) as s:
        user = s.execute(select(User).where(User.username == "boss")).scalar_one()
        assert user.id is not None
        signed = auth.SignedIn(user.id, user.username, user.role)
    for key, value in gate.signed_in_state(signed).items():
        at.session_state[key] = value
    at.run()
    at.switch_page("views/audit.py").run()
    assert not at.exception
    return at


def _fail(eng: Engine, name: str, times: int) -> None:
    """``times`` failed sign-ins of ``name``, spaced more than the longest wait apart so that each
    is counted, the last one 10 s ago."""
    now = utcnow()
    for i in range(times):
        at = now - dt.timedelta(seconds=10 + (times - 1 - i) * (auth.MAX_DELAY_S + 60))
        with pytest.raises(auth.SignInRefused):
            auth.sign_in(eng, name, "a wrong guess", source=ATTACKER, now=at)


def test_no_counter_says_nobody_is_slowed_down(admin_db: Engine) -> None:
    at = _audit_page(admin_db)
    assert any("nobody is slowed down" in c.value for c in at.caption)


def test_admins_see_each_counter_with_its_lock(admin_db: Engine) -> None:
    failures = auth.FREE_ATTEMPTS + 6  # the wait after the last: 2^6 s, 54 s still to go
    _fail(admin_db, "alice", failures)
    _fail(admin_db, TYPED, 1)
    before = utcnow()
    at = _audit_page(admin_db)
    tables = [d.value for d in at.dataframe if "locked until (UTC)" in d.value.columns]
    assert len(tables) == 1
    table = tables[0]
    rows = {(r["counts"], r["user name"], r["address"]): r for r in table.to_dict("records")}
    pair = rows[("name at one address", "alice", ATTACKER)]
    assert pair["failures"] == failures and pair["free"] == auth.FREE_ATTEMPTS
    locked = pd.Timestamp(pair["locked until (UTC)"]).to_pydatetime()
    assert before + dt.timedelta(seconds=40) < locked < before + dt.timedelta(seconds=60)  # 64 s after the last failure
    assert rows[("name, any address", "alice", "")]["failures"] == failures
    assert rows[("address, any name", "", ATTACKER)]["failures"] == failures + 1
    # the whole server's counter forgets after 10 minutes: only the last two failures are in it
    assert rows[("whole server", "", "")]["failures"] == 2
    typed = rows[("name at one address", TYPED, ATTACKER)]  # the name as typed: a table cell, text
    assert typed["failures"] == 1 and pd.isna(typed["locked until (UTC)"])  # one failure: not locked


def test_counters_past_their_window_are_not_shown(admin_db: Engine) -> None:
    _fail(admin_db, "alice", 2)
    with Session(admin_db) as s:
        status = auth.throttle_status(s, now=utcnow() + dt.timedelta(days=2))
    assert status == []  # every key forgotten after its window: the page shows "nobody"
    with Session(admin_db) as s:
        shown = {r["key"]: r for r in auth.throttle_status(s)}
    assert shown[f"pair:alice|{ATTACKER}"]["username"] == "alice" and shown[f"pair:alice|{ATTACKER}"]["source"] == ATTACKER
    assert shown[f"pair:alice|{ATTACKER}"]["locked_until"] is None  # 2 failures: still free
