"""Sign-in throttling (issue 12 point 3), on SQLite and PostgreSQL: unknown and known names get
the same throttle and the same work; an attacker's guesses slow down the attacker's address, not
the account's holder; the account, the address and the whole server have limits of their own;
parallel guesses get no more password checks than allowed; a burst of sign-ins computes at most
ARGON2_CONCURRENCY hashes at once; administrators see the counters."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitoring import auth, schema
from monitoring.db import create_db_engine
from monitoring.models import AuditEntry, utcnow

PASSWORD = "the right long password"
ATTACKER, WARD = "203.0.113.66", "10.20.30.40"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    """A real database file (or server) shared by threads, with the account ``alice``."""
    if request.param == "postgresql":
        eng = create_db_engine(request.getfixturevalue("pg_url"))
    else:
        eng = create_db_engine(f"sqlite:///{tmp_path / 'auth.db'}")
        schema.upgrade(eng)
    with Session(eng) as s:
        auth.create_user(s, actor="setup", username="alice", role=auth.CLINICIAN, password=PASSWORD)
        s.commit()
    yield eng
    eng.dispose()


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hashes checked, in order (the real Argon2 check still runs)."""
    seen: list[str] = []
    real = auth.verify_password

    def counting(password_hash: str | None, password: str) -> bool:
        seen.append(password_hash or "")
        return real(password_hash, password)

    monkeypatch.setattr(auth, "verify_password", counting)
    return seen


def _refusal(engine: Engine, name: str, password: str, source: str, now: dt.datetime) -> str:
    with pytest.raises(auth.SignInRefused) as exc:
        auth.sign_in(engine, name, password, source=source, now=now)
    return str(exc.value)


def test_unknown_and_known_names_get_the_same_throttle_and_the_same_work(db: Engine, verifications: list[str]) -> None:
    now = utcnow()
    answers: dict[str, list[str]] = {}
    for name in ("alice", "nobody-here"):
        verifications.clear()
        answers[name] = [_refusal(db, name, "wrong guess", ATTACKER, now) for _ in range(auth.FREE_ATTEMPTS + 2)]
        assert len(verifications) == auth.FREE_ATTEMPTS  # as many Argon2 checks for either name
    assert answers["alice"] == answers["nobody-here"]
    assert answers["alice"][-1].startswith("too many failed attempts: try again in")


def test_an_attackers_guesses_do_not_lock_out_the_holder_at_another_workstation(db: Engine) -> None:
    t = utcnow()
    for _ in range(12):
        _refusal(db, "alice", "guess", ATTACKER, t)  # the attacker keeps guessing (and is throttled)
    assert "try again" in _refusal(db, "alice", PASSWORD, ATTACKER, t)  # even the right password, from there
    assert auth.sign_in(db, "alice", PASSWORD, source=WARD, now=t).username == "alice"


def test_guesses_from_many_addresses_slow_the_account_but_never_forever(db: Engine) -> None:
    policy = auth.THROTTLE["account"]
    t = utcnow()
    for i in range(policy.free + 1):
        _refusal(db, "alice", "guess", f"198.51.100.{i}", t)
    # Now the account itself waits, whichever address asks ...
    assert "try again" in _refusal(db, "alice", PASSWORD, WARD, t)
    # ... but at most the account's capped delay: after it the holder's right password works.
    later = t + dt.timedelta(seconds=policy.max_delay_s + 1)
    assert auth.sign_in(db, "alice", PASSWORD, source=WARD, now=later).username == "alice"


def test_one_address_guessing_many_names_is_slowed(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(auth.THROTTLE, "source", dataclasses.replace(auth.THROTTLE["source"], free=4))
    t = utcnow()
    for i in range(4):
        assert "not recognised" in _refusal(db, f"name{i}", "guess", ATTACKER, t)
    assert "try again" in _refusal(db, "alice", PASSWORD, ATTACKER, t)  # a fifth name: the address waits
    assert auth.sign_in(db, "alice", PASSWORD, source=WARD, now=t).username == "alice"


def test_the_whole_server_has_a_limit(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(auth.THROTTLE, "global", dataclasses.replace(auth.THROTTLE["global"], free=3, max_delay_s=5.0))
    t = utcnow()
    for i in range(3):
        _refusal(db, f"name{i}", "guess", f"192.0.2.{i}", t)
    assert "try again" in _refusal(db, "alice", PASSWORD, WARD, t)
    assert auth.sign_in(db, "alice", PASSWORD, source=WARD, now=t + dt.timedelta(seconds=6)).username == "alice"


def test_forty_parallel_guesses_get_at_most_the_allowed_checks(db: Engine, verifications: list[str]) -> None:
    now = utcnow()
    barrier = threading.Barrier(40)

    def guess(i: int) -> str:
        barrier.wait()
        try:
            auth.sign_in(db, "alice", f"parallel guess {i}", source=ATTACKER, now=now)
        except auth.SignInRefused as exc:
            return str(exc)
        return "signed in"

    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(guess, range(40)))
    checked = [r for r in results if r == auth.GENERIC_FAILURE]
    assert len(checked) <= auth.FREE_ATTEMPTS, results
    assert len(verifications) == len(checked)
    assert all(r == auth.GENERIC_FAILURE or r.startswith("too many failed attempts") or r == auth.BUSY_FAILURE for r in results)


def test_a_burst_of_unknown_names_hashes_at_most_the_concurrency_limit(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    running = 0
    peak = 0
    lock = threading.Lock()
    real = auth._hasher.verify

    class Counting:
        def verify(self, h: str, p: str) -> bool:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            try:
                return real(h, p)
            finally:
                with lock:
                    running -= 1

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(auth.PasswordHasher(), name)

    monkeypatch.setattr(auth, "_hasher", Counting())
    now = utcnow()
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda i: _safe(db, f"stranger{i}", f"198.18.0.{i}", now), range(12)))
    assert all(r in (auth.GENERIC_FAILURE, auth.BUSY_FAILURE) for r in results)
    assert 1 <= peak <= auth.ARGON2_CONCURRENCY


def _safe(engine: Engine, name: str, source: str, now: dt.datetime) -> str:
    try:
        auth.sign_in(engine, name, "guess", source=source, now=now)
    except auth.SignInRefused as exc:
        return str(exc)
    return "signed in"


def test_administrators_see_the_counters_and_the_audited_attempts(db: Engine) -> None:
    t = utcnow()
    for _ in range(auth.FREE_ATTEMPTS + 1):
        _refusal(db, "alice", "guess", ATTACKER, t)
    with Session(db) as s:
        status = {row["key"]: row for row in auth.throttle_status(s, now=t)}
        assert status[f"pair:alice|{ATTACKER}"]["failures"] == auth.FREE_ATTEMPTS
        assert status[f"pair:alice|{ATTACKER}"]["retry_after_s"] > 0
        entries = s.execute(select(AuditEntry).where(AuditEntry.username == "alice").order_by(AuditEntry.id)).scalars().all()
    assert [e.action for e in entries][-2:] == ["sign_in_failed", "sign_in_throttled"]
    assert entries[-1].after == {"throttled_by": "pair", "source": ATTACKER, "retry_after_s": pytest.approx(1.0, abs=0.1)}
    assert entries[-2].after == {"source": ATTACKER}


def test_an_admin_password_reset_lifts_every_slow_down_of_that_name(db: Engine) -> None:
    t = utcnow()
    for _ in range(8):
        _refusal(db, "alice", "guess", WARD, t)
    with Session(db) as s:
        auth.set_password(s, actor="admin", username="alice", password="a brand new secret")
        s.commit()
    assert auth.sign_in(db, "alice", "a brand new secret", source=WARD, now=t).username == "alice"
