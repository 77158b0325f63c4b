"""The sign-in gate and roles through Streamlit's AppTest (issue 7).

Every page refuses an anonymous session; the sign-in form lets a user in and is audited; a viewer
sees data and no write controls; a write attempted by a viewer through the service layer is
refused and audited; a clinician's write produces its audit entry; the audit page is for admins.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from dashboard import auth as gate
from monitoring import audit, auth, services
from monitoring.db import create_db_engine, session_scope
from monitoring.models import AuditEntry, LabResult
from monitoring.store import MedIn, PatientIn, write_batch
from tests.dashboard.apptest import PAGES as VIEWS
from tests.dashboard.apptest import app_test, sign_in, signed

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PAGES = ("ward", "timeline", "entry", "photos", "taper", "followup", "report", "audit")
PASSWORD = "a proper long password"
MRN = "AUTH-T1"
TIMEOUT = 60


@pytest.fixture
def app_db(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """A migrated database with one synthetic patient and one account per role."""
    url = f"sqlite:///{db_path}"
    monkeypatch.setenv("DATABASE_URL", url)
    eng = create_db_engine(url)
    with session_scope(eng) as s:
        start = dt.date.today() - dt.timedelta(days=10)
        write_batch(
            s,
            patients=[PatientIn(MRN, "Synthetic Gatekeeper", {"synthetic": True, "weight_kg": 70.0, "onset_date": start})],
            meds=[MedIn(MRN, "prednisone", "prednisone", start, 60, "60", "mg")],
            username="test",
        )
        auth.create_user(s, actor="test", username="doc", role=auth.CLINICIAN, password=PASSWORD)
        auth.create_user(s, actor="test", username="watcher", role=auth.VIEWER, password=None)
        auth.create_user(s, actor="test", username="boss", role=auth.ADMIN, password=None)
    yield eng
    eng.dispose()


def _signed(eng: Engine, username: str) -> auth.SignedIn:
    return signed(username, eng)


def _app(eng: Engine | None = None, username: str | None = None) -> AppTest:
    at = app_test()
    return sign_in(at, username, eng) if eng is not None and username is not None else at


def _text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [t.value for t in at.title] + [e.value for e in at.error] + [i.value for i in at.info]
    return "\n".join(str(p) for p in parts)


def _is_sign_in(at: AppTest) -> bool:
    labels = [w.label for w in at.text_input]
    return labels == ["User name", "Password"]


def _page_file(name: str) -> str:
    return f"views/{name}.py"


def test_anonymous_session_sees_only_the_sign_in_form_on_every_page(app_db: Engine) -> None:
    at = _app()
    at.run()
    assert not at.exception
    assert _is_sign_in(at)
    assert "Synthetic Gatekeeper" not in _text(at)
    assert not at.dataframe and [b.label for b in at.button] == ["Sign in"]  # no page content, no other control
    # Every page address is recognised (so a link survives sign-in) but none is run: the sign-in
    # form stands in its place, with no patient data and no other control.
    for name in PAGES:
        at.switch_page(_page_file(name)).run()
        assert not at.exception, name
        assert _is_sign_in(at), name
        assert "Synthetic Gatekeeper" not in _text(at), name
        assert not at.dataframe and [b.label for b in at.button] == ["Sign in"], name


def test_sign_in_form_lets_the_right_password_in_and_audits_both_outcomes(app_db: Engine) -> None:
    at = _app()
    at.run()
    at.text_input(key="auth_username").input("doc")
    at.text_input(key="auth_password").input("not the password")
    at.button[0].click().run()
    assert _is_sign_in(at) and auth.GENERIC_FAILURE in _text(at)
    at.text_input(key="auth_password").input(PASSWORD)
    at.button[0].click().run()
    assert not at.exception
    assert not _is_sign_in(at)
    signed = at.session_state[gate.SIGNED_IN_KEY]
    assert (signed.username, signed.role) == ("doc", "clinician")
    assert at.session_state["username"] == "doc"  # what the pages sign writes with
    with Session(app_db) as s:
        actions = [e.action for e in s.execute(select(AuditEntry).where(AuditEntry.entity == "app_user").order_by(AuditEntry.id)).scalars()]
    assert actions[-2:] == ["sign_in_failed", "sign_in"]


def test_disabling_an_account_ends_its_session_at_the_next_rerun(app_db: Engine) -> None:
    at = _app(app_db, "doc")
    at.run()
    assert not _is_sign_in(at)
    with session_scope(app_db) as s:
        auth.disable_user(s, actor="boss", username="doc")
    at.run()
    assert not at.exception
    assert gate.SIGNED_IN_KEY not in at.session_state and "username" not in at.session_state
    assert any("disabled or removed" in w.value for w in at.warning)
    assert "Synthetic Gatekeeper" not in _text(at) and not at.dataframe


WRITE_CONTROLS = {"photos": "photos_store", "taper": "taper_save", "followup": "FormSubmitter:followup_regiscar_form-Record answers"}


def _write_buttons(at: AppTest) -> list[str]:
    """Buttons that change data: everything but signing out and navigation."""
    return [b.key or b.label for b in at.button if b.key != "auth_sign_out" and not (b.key or "").startswith(("photos_open_", "ward_open"))]


@pytest.mark.parametrize("username", ["doc", "watcher"])
def test_viewer_sees_data_and_no_write_controls(app_db: Engine, username: str) -> None:
    """The same pages for a clinician (who has the write controls: the check can fail) and a viewer."""
    with session_scope(app_db) as s:
        services.add_lab_result(s, username="doc", mrn=MRN, test="alt", taken_at=dt.date.today() - dt.timedelta(days=1), value=321, unit="U/L")
    at = _app(app_db, username)
    at.session_state["patient_mrn"] = MRN
    at.run()
    assert not at.exception
    assert not _is_sign_in(at)
    for name in ("ward", "timeline", "photos", "taper", "followup", "report"):
        at.switch_page(_page_file(name)).run()
        assert not at.exception, (name, [e.stack_trace for e in at.exception])
        assert "Synthetic Gatekeeper" in _text(at) or "Gatekeeper" in str([d.value for d in at.dataframe]), name  # sees data
        buttons = _write_buttons(at)
        if username == "watcher":
            assert buttons == [], (name, buttons)
            assert not at.get("file_uploader") and not at.get("camera_input"), name
        elif name in WRITE_CONTROLS:
            assert any(WRITE_CONTROLS[name] in b for b in buttons), (name, buttons)
    if username == "doc":
        return
    # The entry and audit pages are not in a viewer's navigation at all...
    fresh = _app(app_db, "watcher")
    fresh.run()
    for name in ("entry", "audit"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            fresh.switch_page(_page_file(name))
    # ...and refuse a viewer even when run directly.
    for name in ("entry", "audit"):
        direct = sign_in(app_test(str(VIEWS / f"{name}.py")), "watcher", app_db).run()
        assert not direct.exception and not _write_buttons(direct), name
        assert any("does not have access" in e.value for e in direct.error), name


def test_viewer_write_through_the_service_layer_is_refused_and_audited(app_db: Engine) -> None:
    with pytest.raises(auth.PermissionDenied), session_scope(app_db) as s:
        services.add_lab_result(s, username="watcher", mrn=MRN, test="alt", taken_at="2026-01-12 08:00", value=321, unit="U/L")
    with Session(app_db) as s:
        assert s.execute(select(LabResult)).first() is None
        refused = s.execute(select(AuditEntry).where(AuditEntry.action == audit.WRITE_REFUSED)).scalar_one()
    assert refused.username == "watcher" and refused.entity == "lab_result"


def test_clinician_write_on_the_entry_page_produces_its_audit_entry(app_db: Engine) -> None:
    at = _app(app_db, "doc")
    at.session_state["patient_mrn"] = MRN
    at.run()
    at.switch_page(_page_file("entry")).run()
    assert not at.exception
    at.text_input(key="entry_lab_value").input("250")
    at.button(key="entry_lab_save").click().run()
    assert not at.exception
    with Session(app_db) as s:
        row = s.execute(select(LabResult)).scalar_one()
        entry = s.execute(select(AuditEntry).where(AuditEntry.entity == "lab_result", AuditEntry.action == "create")).scalar_one()
    assert entry.username == "doc" and entry.entity_id == str(row.id)
    assert row.entered_by == "doc"


def test_audit_page_is_for_admins_with_filters_and_csv_export(app_db: Engine) -> None:
    with session_scope(app_db) as s:
        services.add_lab_result(s, username="doc", mrn=MRN, test="alt", taken_at="2026-01-12 08:00", value=321, unit="U/L")
    at = _app(app_db, "boss")
    at.run()
    at.switch_page(_page_file("audit")).run()
    assert not at.exception
    assert "Audit trail" in _text(at)
    frame = at.dataframe[0].value
    assert "doc" in set(frame["user"]) and "create" in set(frame["action"])
    at.selectbox(key="audit_user").select("doc").run()
    frame = at.dataframe[0].value
    assert set(frame["user"]) == {"doc"}
    at.text_input(key="audit_mrn").input(MRN).run()
    frame = at.dataframe[0].value
    assert len(frame) >= 1 and set(frame["patient"]) == {MRN}
    with Session(app_db) as s:
        rows = audit.query(s, audit.AuditFilter(username="doc"))
        exported = list(csv.reader(io.StringIO(audit.to_csv(rows))))
    assert tuple(exported[0]) == audit.CSV_COLUMNS and len(exported) == len(rows) + 1
    # A clinician's navigation has no audit page.
    other = _app(app_db, "doc")
    other.run()
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        other.switch_page(_page_file("audit"))


# --- hospital sign-in (OIDC) ----------------------------------------------------------------

OIDC_SECRETS = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32, "client_id": "c",
                "client_secret": "s", "server_metadata_url": "https://login.example.org/.well-known/openid-configuration"}


def _oidc_app(user: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.secrets["auth"] = OIDC_SECRETS
    at.user = user
    return at


def test_oidc_configured_replaces_the_password_form_with_the_hospital_sign_in(app_db: Engine) -> None:
    at = _oidc_app({"is_logged_in": False})
    at.run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in with the hospital account"]
    assert not at.text_input  # no password form


def test_oidc_identity_is_mapped_to_its_account_and_role(app_db: Engine) -> None:
    with session_scope(app_db) as s:
        auth.create_user(s, actor="boss", username="a.smith@hospital.org", role=auth.VIEWER, password=None)
    at = _oidc_app({"is_logged_in": True, "email": "a.smith@hospital.org"})
    at.run()
    assert not at.exception
    signed = at.session_state[gate.SIGNED_IN_KEY]
    assert (signed.username, signed.role) == ("a.smith@hospital.org", "viewer")
    with Session(app_db) as s:
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "sign_in")).scalar_one()
    assert entry.username == "a.smith@hospital.org" and entry.reason == "OIDC"


def test_oidc_identity_without_an_account_is_refused_and_audited(app_db: Engine) -> None:
    at = _oidc_app({"is_logged_in": True, "email": "stranger@elsewhere.org"})
    at.run()
    assert not at.exception
    assert gate.SIGNED_IN_KEY not in at.session_state
    assert any("no access" in e.value for e in at.error)
    with Session(app_db) as s:
        entry = s.execute(select(AuditEntry).where(AuditEntry.action == "sign_in_failed")).scalar_one()
    assert entry.username == "stranger@elsewhere.org"


# --- the real server ------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian chromium not installed (in CI this test must run)")
def test_fresh_server_refuses_an_anonymous_request_for_a_page_url(tmp_path: Path) -> None:
    """On a freshly started server, a first request for /ward, /entry or /audit must meet the
    sign-in gate (a folder named pages/ beside the entry file would have been run by Streamlit as a
    legacy multipage app without app.py: the page files live in dashboard/views/ for that reason,
    and each page's own guard refuses an anonymous run as well)."""
    from playwright.sync_api import sync_playwright

    from monitoring.demo import ensure_demo
    from monitoring.schema import open_database
    from tests.dashboard.browser import CHROMIUM_ARGS, running_server

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert ensure_demo(open_database(url))
    with running_server(url) as base, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for path in ("ward", "entry", "audit"):
                page = browser.new_page()
                page.goto(f"{base}/{path}", wait_until="domcontentloaded")
                # The gate of app.py (or, were a page ever run on its own, the page's guard).
                gate = page.get_by_label("Password").or_(page.get_by_text("Sign in first"))
                gate.first.wait_for(timeout=60_000)
                body = page.inner_text("body")
                assert "SYNTHETIC" not in body and "DEMO-0" not in body, (path, body[:500])
                page.close()
        finally:
            browser.close()


def test_safe_defaults_localhost_no_error_details_and_no_database_in_git() -> None:
    import subprocess
    import tomllib

    root = Path(APP).parent.parent
    config = tomllib.loads((root / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["server"]["address"] == "localhost"  # listens on this machine unless a deployment says otherwise
    assert config["client"]["showErrorDetails"] == "none"  # a traceback could carry patient data
    assert config["browser"]["gatherUsageStats"] is False
    ignored = subprocess.run(
        ["git", "check-ignore", "data/dress_monitor.db", "data/dress_monitor.db-wal", "data/backups/x-before-restore.db", "elsewhere/copy.db"],
        cwd=root, capture_output=True, text=True,
    )
    assert ignored.stdout.split() == ["data/dress_monitor.db", "data/dress_monitor.db-wal", "data/backups/x-before-restore.db", "elsewhere/copy.db"]


def test_timeline_table_marks_an_amended_result(app_db: Engine) -> None:
    from dashboard import timeline_model
    from monitoring.guideline import load_profile
    from monitoring.records import load_record

    with session_scope(app_db) as s:
        lab = services.add_lab_result(s, username="doc", mrn=MRN, test="alt", taken_at=dt.date.today() - dt.timedelta(days=2), value=400, unit="U/L")
        services.add_lab_result(s, username="doc", mrn=MRN, test="alt", taken_at=dt.date.today() - dt.timedelta(days=1), value=300, unit="U/L")
        services.amend_lab_result(s, username="doc", lab_id=lab, value=40, unit="U/L", reason="transcription error")
    with Session(app_db) as s:
        record = load_record(s, MRN)
    table = timeline_model.timeline_table(record, load_profile(), dt.date.today())
    alt = table[table["test"] == "ALT"].sort_values("taken_at")
    assert list(alt["value"]) == ["40", "300"]  # shown to the test's display precision (monitoring/display.py)
    assert list(alt["amended"]) == ["amended", ""]


def test_sign_out_in_one_tab_signs_out_every_tab_of_the_session(app_db: Engine) -> None:
    """Issue 12 point 4: two tabs of one session; after sign-out in the first, the second shows
    the sign-in form at its next click (no Entry page, no data) instead of saving a dose."""
    state = gate.signed_in_state(_signed(app_db, "doc"))
    tabs = [AppTest.from_file(APP, default_timeout=TIMEOUT) for _ in range(2)]
    for tab in tabs:
        for key, value in state.items():
            tab.session_state[key] = value
        tab.run()
        assert not _is_sign_in(tab)
    first, second = tabs
    first.button(key="auth_sign_out").click().run()
    assert _is_sign_in(first)
    second.switch_page(_page_file("entry")).run()
    assert not second.exception
    assert _is_sign_in(second) and gate.SIGNED_IN_KEY not in second.session_state
    assert any("signed out" in w.value for w in second.warning)
    assert "Synthetic Gatekeeper" not in _text(second)


def test_an_idle_session_ends_on_the_page(app_db: Engine) -> None:
    from monitoring.models import UserSession

    at = _app(app_db, "doc")
    at.run()
    assert not _is_sign_in(at)
    with session_scope(app_db) as s:
        row = s.get(UserSession, at.session_state[gate.SESSION_KEY])
        assert row is not None
        row.last_seen_at -= dt.timedelta(minutes=16)
    at.run()
    assert _is_sign_in(at) and any("without activity" in w.value for w in at.warning)


def test_the_sidebar_names_the_signed_in_person_by_display_name_as_text(app_db: Engine) -> None:
    """Issue 18 point 10: the sidebar names the person ("Display Name (username)"), escaped (it is
    stored text), and a name changed by an administrator shows at the next rerun."""
    from dashboard.safe import md
    from tests.dashboard.shown import shown

    at = _app(app_db, "doc")
    at.run()
    assert not at.exception
    signed_line = [m.value for m in at.sidebar.markdown if "Signed in as" in m.value]
    assert [shown(v) for v in signed_line] == ["Signed in as **doc** · clinician"]
    name = "Dr *A.* Mensah [registrar](javascript:alert(1)) :red[x]"
    with session_scope(app_db) as s:
        auth.set_display_name(s, actor="boss", username="doc", display_name=name)
    at.run()
    assert not at.exception
    signed_line = [m.value for m in at.sidebar.markdown if "Signed in as" in m.value]
    assert signed_line == [f"Signed in as **{md(name + ' (doc)')}** · clinician"]
    assert [shown(v) for v in signed_line] == [f"Signed in as **{name} (doc)** · clinician"]
