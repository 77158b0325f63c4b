"""Accounts, roles, slowed sign-in failures, and the users command (issue 7)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitoring import auth, services
from monitoring.models import AuditEntry, LabResult, User, utcnow
from tests.conftest import PROJECT_ROOT

PASSWORD = "correct horse battery"


def _audit(session: Session, action: str) -> list[AuditEntry]:
    return list(session.execute(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)).scalars())


def test_password_is_stored_as_an_argon2_hash_never_in_clear(session: Session) -> None:
    user = auth.create_user(session, actor="admin1", username="alice", role=auth.CLINICIAN, password=PASSWORD)
    session.commit()
    assert user.password_hash is not None and user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    entry = _audit(session, "account_create")[0]
    assert entry.username == "admin1" and entry.after == {
        "username": "alice", "display_name": None, "role": "clinician", "disabled": False, "oidc_only": False
    }
    assert PASSWORD not in str(entry.after) and user.password_hash not in str(entry.after)


def test_sign_in_with_right_password_is_audited(engine: Engine, session: Session) -> None:
    auth.create_user(session, actor="setup", username="alice", role=auth.VIEWER, password=PASSWORD)
    session.commit()
    who = auth.sign_in(engine, "alice", PASSWORD)
    assert (who.username, who.role) == ("alice", "viewer")
    assert [e.username for e in _audit(session, "sign_in")] == ["alice"]


@pytest.mark.parametrize("username", ["alice", "nobody"])
def test_wrong_password_and_unknown_user_get_the_same_message_and_are_audited(engine: Engine, session: Session, username: str) -> None:
    auth.create_user(session, actor="setup", username="alice", role=auth.VIEWER, password=PASSWORD)
    session.commit()
    with pytest.raises(auth.SignInRefused) as exc:
        auth.sign_in(engine, username, "wrong password!")
    assert str(exc.value) == auth.GENERIC_FAILURE
    failed = _audit(session, "sign_in_failed")
    assert [e.username for e in failed] == [username]


def test_disabled_account_cannot_sign_in_even_with_its_password(engine: Engine, session: Session) -> None:
    auth.create_user(session, actor="setup", username="alice", role=auth.CLINICIAN, password=PASSWORD)
    auth.disable_user(session, actor="admin1", username="alice", reason="left the unit")
    session.commit()
    with pytest.raises(auth.SignInRefused):
        auth.sign_in(engine, "alice", PASSWORD)
    change = _audit(session, "account_change")[0]
    assert change.before == {"disabled": False} and change.after == {"disabled": True} and change.reason == "left the unit"


def test_oidc_only_account_has_no_password_to_guess(engine: Engine, session: Session) -> None:
    auth.create_user(session, actor="setup", username="a.b@hospital.org", role=auth.CLINICIAN, password=None)
    session.commit()
    with pytest.raises(auth.SignInRefused):
        auth.sign_in(engine, "a.b@hospital.org", "")
    assert auth.sign_in_external(engine, "a.b@hospital.org").role == "clinician"
    with pytest.raises(auth.SignInRefused, match="no access"):
        auth.sign_in_external(engine, "stranger@hospital.org")


def test_delay_grows_exponentially_after_the_free_attempts_and_is_capped() -> None:
    delays = [auth.throttle_delay_s(n) for n in range(0, 30)]
    assert delays[: auth.FREE_ATTEMPTS] == [0.0] * auth.FREE_ATTEMPTS
    assert delays[auth.FREE_ATTEMPTS] == auth.BASE_DELAY_S
    assert delays[auth.FREE_ATTEMPTS + 3] == auth.BASE_DELAY_S * 8
    assert max(delays) == auth.MAX_DELAY_S
    assert delays == sorted(delays)


def test_repeated_failures_lock_the_account_for_the_window_even_with_the_right_password(engine: Engine, session: Session) -> None:
    auth.create_user(session, actor="setup", username="alice", role=auth.CLINICIAN, password=PASSWORD)
    session.commit()
    failures = auth.FREE_ATTEMPTS + 2
    t = utcnow()
    for i in range(failures):
        # Each guess waits out the window left by the previous one, so each is really checked.
        t += dt.timedelta(seconds=auth.throttle_delay_s(i))
        with pytest.raises(auth.SignInRefused, match="not recognised"):
            auth.sign_in(engine, "alice", f"guess number {i}", now=t)
    session.expire_all()
    assert auth.get_user(session, "alice").failed_attempts == failures  # type: ignore[union-attr]
    # Within the window: refused without looking at the password, and the refusal is audited.
    wait = auth.throttle_delay_s(failures)
    assert wait > 0
    with pytest.raises(auth.SignInRefused) as exc:
        auth.sign_in(engine, "alice", PASSWORD, now=t + dt.timedelta(seconds=wait / 2))
    assert "try again in" in str(exc.value) and exc.value.retry_after_s == pytest.approx(wait / 2, abs=0.01)
    assert len(_audit(session, "sign_in_throttled")) == 1
    # Once the window has passed the right password works and the counter starts again.
    who = auth.sign_in(engine, "alice", PASSWORD, now=t + dt.timedelta(seconds=wait + 0.1))
    assert who.username == "alice"
    session.expire_all()
    user = auth.get_user(session, "alice")
    assert user is not None and user.failed_attempts == 0 and user.last_failed_at is None


def test_admin_password_reset_lifts_the_slow_down(engine: Engine, session: Session) -> None:
    auth.create_user(session, actor="setup", username="alice", role=auth.CLINICIAN, password=PASSWORD)
    session.commit()
    for _ in range(auth.FREE_ATTEMPTS + 5):
        with pytest.raises(auth.SignInRefused):
            auth.sign_in(engine, "alice", "not the password")
    session.expire_all()
    auth.set_password(session, actor="admin1", username="alice", password="a brand new secret")
    session.commit()
    assert auth.sign_in(engine, "alice", "a brand new secret").username == "alice"


@pytest.mark.parametrize(
    ("password", "message"),
    [("short", "too short"), (" padded password ", "white space"), ("alice.smith", "user name"), ("x" * 2000, "too long")],
)
def test_weak_passwords_are_refused_with_the_reason(session: Session, password: str, message: str) -> None:
    with pytest.raises(auth.AccountError, match=message):
        auth.create_user(session, actor="setup", username="alice.smith", role=auth.VIEWER, password=password)


@pytest.mark.parametrize("username", ["", "has space", "-starts-with-dash", "x" * 65, "semi;colon"])
def test_bad_user_names_are_refused(session: Session, username: str) -> None:
    with pytest.raises(auth.AccountError, match="not allowed"):
        auth.create_user(session, actor="setup", username=username, role=auth.VIEWER, password=None)


def test_unknown_role_and_duplicate_account_are_refused(session: Session) -> None:
    with pytest.raises(auth.AccountError, match="role"):
        auth.create_user(session, actor="setup", username="bob", role="superuser", password=None)
    auth.create_user(session, actor="setup", username="bob", role=auth.VIEWER, password=None)
    with pytest.raises(auth.AccountError, match="exists already"):
        auth.create_user(session, actor="setup", username="bob", role=auth.ADMIN, password=None)


def test_roles_grant_what_the_issue_says() -> None:
    assert auth.has(auth.READ, "viewer") and not auth.has(auth.WRITE, "viewer")
    assert auth.has(auth.WRITE, "clinician") and not auth.has(auth.MANAGE_ACCOUNTS, "clinician")
    assert auth.has(auth.MANAGE_ACCOUNTS, "admin") and auth.has(auth.VIEW_AUDIT, "admin")
    assert auth.has("clinician", "admin") and not auth.has("admin", "clinician") and not auth.has("clinician", "viewer")
    assert not auth.has(auth.READ, "no-such-role") and not auth.has(auth.READ, None)
    auth.require("viewer", auth.SignedIn(1, "v", "viewer"))
    with pytest.raises(auth.PermissionDenied):
        auth.require(auth.WRITE, auth.SignedIn(1, "v", "viewer"))
    disabled = User(username="x", role="admin", disabled=True)
    assert not auth.has(auth.READ, disabled)


def test_viewer_write_through_the_services_is_refused_and_the_refusal_audited(session: Session) -> None:
    auth.create_user(session, actor="setup", username="doc", role=auth.CLINICIAN, password=None)
    auth.create_user(session, actor="setup", username="watcher", role=auth.VIEWER, password=None)
    services.add_patient(session, username="doc", mrn="M1", name="Ada Example")
    session.commit()
    with pytest.raises(auth.PermissionDenied):
        services.add_lab_result(session, username="watcher", mrn="M1", test="alt", taken_at="2026-01-12", value=90, unit="U/L")
    session.rollback()
    assert session.execute(select(LabResult)).first() is None
    refused = _audit(session, "write_refused")
    assert len(refused) == 1
    assert refused[0].username == "watcher" and refused[0].entity == "lab_result"
    assert refused[0].after == {"attempted": "create", "mrn": "M1", "test": "alt"} and "read-only" in (refused[0].reason or "")
    # The same for an account that does not exist and one that was disabled.
    auth.disable_user(session, actor="admin1", username="doc")
    session.commit()
    for name in ("doc", "ghost"):
        with pytest.raises(auth.PermissionDenied):
            services.add_dose_change(session, username=name, mrn="M1", drug="prednisone", start_date="2026-01-12", dose=60)
        session.rollback()
    assert [e.reason for e in _audit(session, "write_refused")[1:]] == ["account disabled", "unknown account"]


def test_clinician_write_is_signed_and_audited(session: Session) -> None:
    auth.create_user(session, actor="setup", username="doc", role=auth.CLINICIAN, password=None)
    services.add_patient(session, username="doc", mrn="M1", name="Ada Example")
    lab_id = services.add_lab_result(session, username="doc", mrn="M1", test="alt", taken_at="2026-01-12", value=90, unit="U/L")
    session.commit()
    entry = session.execute(select(AuditEntry).where(AuditEntry.entity == "lab_result", AuditEntry.action == "create")).scalar_one()
    assert entry.username == "doc" and entry.entity_id == str(lab_id) and entry.after and entry.after["value"] == 90


def test_role_change_and_disable_take_effect_on_the_running_session(engine: Engine, session: Session) -> None:
    user = auth.create_user(session, actor="setup", username="alice", role=auth.CLINICIAN, password=None)
    session.commit()
    assert user.id is not None
    signed = auth.SignedIn(user.id, "alice", "clinician")
    auth.set_role(session, actor="admin1", username="alice", role=auth.VIEWER)
    session.commit()
    now = auth.current(engine, signed)
    assert now is not None and now.role == "viewer"
    auth.disable_user(session, actor="admin1", username="alice")
    session.commit()
    assert auth.current(engine, signed) is None


def test_demo_accounts_only_on_an_empty_database_with_random_passwords(engine: Engine, session: Session) -> None:
    created = auth.ensure_demo_accounts(session)
    session.commit()
    assert {name: role for name, (role, _pw) in created.items()} == {"demo": "clinician", "admin": "admin"}
    passwords = [pw for _role, pw in created.values()]
    assert len(set(passwords)) == 2 and all(len(pw) >= auth.MIN_PASSWORD_LENGTH for pw in passwords)
    assert auth.sign_in(engine, "demo", created["demo"][1]).role == "clinician"
    assert auth.ensure_demo_accounts(session) == {}
    # Another empty database gets other passwords: nothing has a default password.
    from sqlmodel import SQLModel

    from monitoring.db import create_db_engine

    other = create_db_engine("sqlite://")
    SQLModel.metadata.create_all(other)
    with Session(other) as s:
        again = auth.ensure_demo_accounts(s)
    other.dispose()
    assert again["demo"][1] != created["demo"][1] and again["admin"][1] != created["admin"][1]


def _cli(db: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitoring", "--db", str(db), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )


def test_users_command_reads_the_password_from_stdin_never_from_arguments(db_path: Path) -> None:
    added = _cli(db_path, "users", "add", "alice", "--role", "clinician", "--password-stdin", stdin="a long enough secret\n")
    assert added.returncode == 0, added.stderr
    assert "account alice created, role clinician" in added.stdout
    # There is no option that takes a password as an argument.
    refused = _cli(db_path, "users", "add", "bob", "--role", "viewer", "--password", "a long enough secret")
    assert refused.returncode == 2
    weak = _cli(db_path, "users", "add", "carol", "--role", "viewer", stdin="short\n")
    assert weak.returncode == 2 and "users add: password too short" in weak.stderr
    dup = _cli(db_path, "users", "add", "alice", "--role", "viewer", "--oidc")
    assert dup.returncode == 2 and "exists already" in dup.stderr
    assert _cli(db_path, "users", "set-role", "alice", "admin").returncode == 0
    assert _cli(db_path, "users", "disable", "alice", "--reason", "left").returncode == 0
    missing = _cli(db_path, "users", "disable", "nobody")
    assert missing.returncode == 2 and "no account named 'nobody'" in missing.stderr
    listed = _cli(db_path, "users", "list", "--json")
    assert listed.returncode == 0
    import json

    rows = json.loads(listed.stdout)
    assert [(r["username"], r["role"], r["disabled"], r["sign_in"]) for r in rows] == [("alice", "admin", True, "password")]
    changed = _cli(db_path, "users", "set-password", "alice", stdin="another long secret\n")
    assert changed.returncode == 0, changed.stderr
    from monitoring.db import create_db_engine

    eng = create_db_engine(f"sqlite:///{db_path}")
    try:
        with Session(eng) as s:
            actions = [e.action for e in s.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars()]
            assert actions == ["account_create", "account_change", "account_change", "account_change"]
            assert all(e.username and e.username.startswith("cli") for e in s.execute(select(AuditEntry)).scalars())
    finally:
        eng.dispose()


def test_display_name_names_the_person_and_is_checked_like_stored_text(session: Session) -> None:
    """Issue 18 point 10: an account may carry how reports name the person; the user name stays
    beside it (it signs the audit trail)."""
    user = auth.create_user(
        session, actor="admin1", username="amensah", role=auth.CLINICIAN, password=None,
        display_name="  Dr A. Mensah, dermatology registrar ",
    )
    session.commit()
    assert user.display_name == "Dr A. Mensah, dermatology registrar"  # trimmed
    assert _audit(session, "account_create")[0].after["display_name"] == "Dr A. Mensah, dermatology registrar"
    assert auth.signed_in_as(user).label == "Dr A. Mensah, dermatology registrar (amensah)"
    assert auth.person_label("bob", None) == "bob"
    with pytest.raises(auth.AccountError, match=r"display name 'Dr\\u202eX': contains the control character U\+202E"):
        auth.set_display_name(session, actor="admin1", username="amensah", display_name="Dr\u202eX")
    with pytest.raises(auth.AccountError, match="display name .*: 121 characters: at most 120 can be stored"):
        auth.set_display_name(session, actor="admin1", username="amensah", display_name="x" * 121)
    with pytest.raises(auth.AccountError, match=r"display name 'a\\nb': contains the control character U\+000A"):
        auth.create_user(session, actor="admin1", username="bob", role=auth.VIEWER, password=None, display_name="a\nb")
    assert auth.get_user(session, "bob") is None  # nothing half-written
    auth.set_display_name(session, actor="admin1", username="amensah", display_name="Dr A. Mensah", reason="new post")
    session.commit()
    change = _audit(session, "account_change")[-1]
    assert (change.before, change.after, change.reason) == (
        {"display_name": "Dr A. Mensah, dermatology registrar"}, {"display_name": "Dr A. Mensah"}, "new post"
    )
    auth.set_display_name(session, actor="admin1", username="amensah", display_name="   ")  # blank clears it
    session.commit()
    assert user.display_name is None and auth.signed_in_as(user).label == "amensah"


def test_a_changed_display_name_reaches_the_signed_in_session(engine: Engine, session: Session) -> None:
    user = auth.create_user(session, actor="setup", username="alice", role=auth.CLINICIAN, password=PASSWORD)
    session.commit()
    who = auth.sign_in(engine, "alice", PASSWORD)
    assert who.label == "alice"
    auth.set_display_name(session, actor="admin1", username="alice", display_name="Dr Alice Okafor")
    session.commit()
    now = auth.current(engine, who)
    assert now is not None and now.label == "Dr Alice Okafor (alice)" and now.user_id == user.id


def test_users_command_sets_shows_and_audits_display_names(db_path: Path) -> None:
    added = _cli(db_path, "users", "add", "amensah", "--role", "clinician", "--oidc",
                 "--display-name", "Dr A. Mensah, dermatology registrar")
    assert added.returncode == 0, added.stderr
    assert "account amensah created, role clinician, shown as 'Dr A. Mensah, dermatology registrar'" in added.stdout
    assert _cli(db_path, "users", "add", "viewer1", "--role", "viewer", "--oidc").returncode == 0
    listed = _cli(db_path, "users", "list")
    assert listed.returncode == 0
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("amensah") and lines[0].endswith("  Dr A. Mensah, dermatology registrar")
    assert lines[1].startswith("viewer1") and lines[1].endswith("identity provider")
    renamed = _cli(db_path, "users", "set-name", "viewer1", "Nurse B. Osei", "--reason", "asked")
    assert renamed.returncode == 0, renamed.stderr
    assert "account viewer1 shown as 'Nurse B. Osei (viewer1)'" in renamed.stdout
    too_long = _cli(db_path, "users", "set-name", "viewer1", "y" * 121)
    assert too_long.returncode == 2 and "users set-name: display name" in too_long.stderr
    assert "121 characters: at most 120 can be stored" in too_long.stderr
    bad = _cli(db_path, "users", "add", "carol", "--role", "viewer", "--oidc", "--display-name", "Dr\u202eX")
    assert bad.returncode == 2 and "U+202E" in bad.stderr
    missing = _cli(db_path, "users", "set-name", "nobody", "Dr X")
    assert missing.returncode == 2 and "no account named 'nobody'" in missing.stderr
    cleared = _cli(db_path, "users", "set-name", "amensah", "")
    assert cleared.returncode == 0 and "account amensah has no display name: shown as amensah" in cleared.stdout
    import json

    rows = json.loads(_cli(db_path, "users", "list", "--json").stdout)
    assert [(r["username"], r["display_name"]) for r in rows] == [("amensah", None), ("viewer1", "Nurse B. Osei")]
    from monitoring.db import create_db_engine

    eng = create_db_engine(f"sqlite:///{db_path}")
    try:
        with Session(eng) as s:
            changes = [(e.before, e.after, e.reason) for e in s.execute(
                select(AuditEntry).where(AuditEntry.action == "account_change").order_by(AuditEntry.id)).scalars()]
    finally:
        eng.dispose()
    assert changes == [
        ({"display_name": None}, {"display_name": "Nurse B. Osei"}, "asked"),
        ({"display_name": "Dr A. Mensah, dermatology registrar"}, {"display_name": None}, None),
    ]
