"""Alerts as work on the pages (issue 17), run by Streamlit's AppTest on a temporary SQLite file:
acknowledging through the reason dialog, the snooze refused for a code that must not wait, viewers
without the buttons, a reason text shown as text, and the admins-only alert report."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from monitoring import auth, episodes
from monitoring.models import AlertEpisode, Patient
from monitoring.schema import open_database
from tests.dashboard.apptest import PAGES, app_test, open_app, sign_in
from tests.dashboard.cohort import USER, write_cohort

TODAY = dt.date.today()


@pytest.fixture
def cohort_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'ward.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    engine = open_database(url)
    with Session(engine) as s:
        write_cohort(s, TODAY)
        auth.create_user(s, actor="test", username="ward.viewer", role=auth.VIEWER, password=None)
        auth.create_user(s, actor="test", username="unit.admin", role=auth.ADMIN, password=None)
        s.commit()
    yield url


def _app(username: str = USER, page: str | None = "views/timeline.py") -> AppTest:
    return open_app(username, page=page, state={"patient_mrn": "CRIT-1"})


def _episode(code: str, mrn: str = "CRIT-1") -> AlertEpisode:
    with Session(open_database(os.environ["DATABASE_URL"])) as s:
        return s.execute(
            select(AlertEpisode).join(Patient, Patient.id == AlertEpisode.patient_id)  # type: ignore[arg-type]
            .where(Patient.mrn == mrn, AlertEpisode.code == code, AlertEpisode.closed_at.is_(None))  # type: ignore[union-attr]
        ).scalar_one()


def test_cardiac_involvement_offers_acknowledge_but_its_snooze_is_refused(cohort_url: str) -> None:
    at = _app()
    snooze = at.button(key="timeline_episode_CARDIAC_INVOLVEMENT_snooze")
    assert snooze.disabled and "never snoozed" in (snooze.help or "")
    assert any("never snoozed" in c.value for c in at.caption)
    assert not at.button(key="timeline_episode_CARDIAC_INVOLVEMENT_ack").disabled
    # A warning may be snoozed.
    assert not at.button(key="timeline_episode_HEPATIC_INVOLVEMENT_snooze").disabled


def test_acknowledge_through_the_reason_dialog(cohort_url: str) -> None:
    at = _app()
    at.button(key="timeline_episode_CARDIAC_INVOLVEMENT_ack").click().run()
    assert not at.exception, [e.value for e in at.exception]
    reason = at.radio(key="episode_ack_reason")
    assert reason.options == list(episodes.ACK_REASONS.values())
    # 'not relevant' without a text: refused, nothing stored, the dialog says why.
    reason.set_value("not_relevant")
    at.button(key="episode_ack_confirm").click().run()
    assert any("needs a text" in e.value for e in at.error)
    assert _episode("CARDIAC_INVOLVEMENT").state == episodes.OPEN
    at.text_input(key="episode_ack_text").input("**known** chronic troponin leak (CKD) <script>x</script>")
    at.button(key="episode_ack_confirm").click().run()
    assert not at.exception, [e.value for e in at.exception]
    ep = _episode("CARDIAC_INVOLVEMENT")
    assert ep.state == episodes.ACKNOWLEDGED and ep.acknowledged_by == USER and ep.ack_reason == "not_relevant"
    assert any("acknowledged" in s.value for s in at.success)
    # The reason text is stored data: shown as plain text, never rendered as Markdown or HTML.
    shown = [t.value for t in at.text if "known" in t.value]
    assert shown and "**known** chronic troponin leak (CKD) <script>x</script>" in shown[0]
    assert not any("<script>" in m.value for m in at.markdown)
    # Acknowledged: now below ICU criteria (unacknowledged, same severity) in the list.
    text = " ".join(m.value for m in at.markdown)
    assert text.index("CRITICAL · ICU criteria") < text.rindex("CRITICAL · Cardiac involvement")


def test_snooze_a_warning_through_its_dialog(cohort_url: str) -> None:
    at = _app()
    at.button(key="timeline_episode_HEPATIC_INVOLVEMENT_snooze").click().run()
    at.date_input(key="episode_snooze_until").set_value(TODAY + dt.timedelta(days=3))
    at.button(key="episode_snooze_confirm").click().run()
    assert not at.exception, [e.value for e in at.exception]
    ep = _episode("HEPATIC_INVOLVEMENT")
    assert ep.state == episodes.SNOOZED and ep.snoozed_until == TODAY + dt.timedelta(days=3)


def test_a_viewer_sees_the_alerts_but_no_acknowledge_or_snooze(cohort_url: str) -> None:
    at = _app("ward.viewer")
    keys = {b.key for b in at.button}
    assert not any(k and k.startswith("timeline_episode_") for k in keys)
    assert any("Holding since" in t.value for t in at.text)


def test_the_alert_report_is_for_admins_only(cohort_url: str) -> None:
    with Session(open_database(cohort_url)) as s:
        episodes.acknowledge(s, username=USER, episode_id=_episode("CARDIAC_INVOLVEMENT").id, reason="ivig_ordered")
        s.commit()
    # Not in a clinician's navigation, and run directly it says "admins only" and shows nothing.
    at = _app(USER, page=None)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("views/alert_report.py")
    direct = sign_in(app_test(str(PAGES / "alert_report.py")), USER).run()
    assert not direct.exception, [e.value for e in direct.exception]
    assert any("Admins only" in e.value for e in direct.error)
    assert not direct.dataframe and not direct.get("download_button")
    at = _app("unit.admin", page="views/alert_report.py")
    table = at.dataframe[0].value
    row = table[table["code"] == "CARDIAC_INVOLVEMENT"].iloc[0]
    assert row["fired"] == 1 and row["acknowledged"] == 1 and row["acknowledged by reason"] == "IVIG ordered: 1"
    assert at.get("download_button")
