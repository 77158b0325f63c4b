"""A DRESS_TRUSTED_PROXY that is not a list of addresses is named on the sign-in page (no crash
page, no sign-in with a wrong source address)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from monitoring import auth
from monitoring.db import create_db_engine, session_scope

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def test_a_wrong_trusted_proxy_setting_is_named_and_sign_in_waits_for_it(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{db_path}"
    monkeypatch.setenv("DATABASE_URL", url)
    eng = create_db_engine(url)
    with session_scope(eng) as s:
        auth.create_user(s, actor="test", username="doc", role=auth.CLINICIAN, password="a proper long password")
    eng.dispose()
    monkeypatch.setenv(auth.TRUSTED_PROXY_ENV, "proxy.hospital.org")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    assert any("DRESS\\_TRUSTED\\_PROXY" in e.value or "DRESS_TRUSTED_PROXY" in e.value for e in at.error)
    assert not at.text_input  # no form: signing in would count attempts under a wrong address
    monkeypatch.setenv(auth.TRUSTED_PROXY_ENV, "10.0.0.2")
    at.run()
    assert not at.exception and not at.error
    assert [w.label for w in at.text_input] == ["User name", "Password"]
