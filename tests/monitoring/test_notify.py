"""``python -m monitoring notify`` against a real local SMTP server (aiosmtpd) and a real local HTTP
server: a critical result written by an import is sent once by mail and once by webhook; a server
that is down gets it once it is up; an acknowledged warning is not escalated; new evidence after an
acknowledgement is news again; two notifiers never send one notification twice."""

from __future__ import annotations

import datetime as dt
import email
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitoring import auth, episodes, notify, services
from monitoring.importers import import_files
from monitoring.models import AlertEpisode, AlertNotification, AuditEntry

USER = "dr.test"
TODAY = dt.date.today()


def now() -> dt.datetime:
    """UTC now: notification times are UTC like every bookkeeping time."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MailSink:
    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


class Hooks:
    """A real HTTP server on 127.0.0.1 that records every JSON body POSTed to it."""

    def __init__(self, port: int) -> None:
        self.bodies: list[dict[str, Any]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's hook name
                length = int(self.headers.get("Content-Length", "0"))
                hooks.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mail() -> Iterator[tuple[MailSink, int]]:
    sink, port = MailSink(), free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    h = Hooks(free_port())
    yield h
    h.stop()


def settings_for(smtp_port: int | None, hook_port: int | None) -> notify.NotifySettings:
    return notify.NotifySettings(
        smtp_host="127.0.0.1" if smtp_port else None,
        smtp_port=smtp_port or 25,
        smtp_from="dress-monitor@hospital.test",
        smtp_to=("ward7@hospital.test",),
        webhook_url=f"http://127.0.0.1:{hook_port}/dress" if hook_port else None,
        dashboard_url="https://dress.hospital.test/",
        retry_base_s=60,
    )


@pytest.fixture(autouse=True)
def patient(session: Session) -> None:
    auth.create_user(session, actor="test", username=USER, role=auth.CLINICIAN, password=None)
    services.add_patient(session, username=USER, mrn="N 1/7", name="Synthetic Notified", weight_kg=70,
                         onset_date=TODAY - dt.timedelta(days=9), culprit_drugs="allopurinol")
    session.commit()


def import_labs(session: Session, tmp_path: Path, rows: str, name: str = "labs.csv") -> None:
    f = tmp_path / name
    f.write_text("mrn,taken_at,test,value,unit\n" + rows, encoding="utf-8")
    report = import_files(session, [f], username=USER)
    assert not report.problems, report.problems


def test_a_critical_result_imported_gives_exactly_one_mail_and_one_webhook(
    engine: Engine, session: Session, tmp_path: Path, mail: tuple[MailSink, int], hooks: Hooks
) -> None:
    sink, smtp_port = mail
    import_labs(session, tmp_path, f"N 1/7,{TODAY.isoformat()},ferritin,3500,ng/mL\n")  # critical: consider HLH
    settings = settings_for(smtp_port, hooks.server.server_port)
    report = notify.run_once(engine, settings)
    assert (report.sent, report.failed) == (2, 0)
    assert len(sink.messages) == 1 and len(hooks.bodies) == 1
    body = hooks.bodies[0]
    assert set(body) == {"mrn", "code", "severity", "message", "link"}  # nothing more
    assert body["mrn"] == "N 1/7" and body["code"] == "FERRITIN_HIGH" and body["severity"] == "critical"
    assert body["link"] == "https://dress.hospital.test/timeline?mrn=N%201%2F7"
    assert "3500" in body["message"]
    msg = sink.messages[0]
    assert msg["To"] == "ward7@hospital.test" and "FERRITIN_HIGH" in msg["Subject"] and "N 1/7" in msg["Subject"]
    assert "Synthetic Notified" not in msg.as_string()  # no name: the MRN only
    # Every later run sends nothing more.
    for _ in range(2):
        again = notify.run_once(engine, settings)
        assert again.sent == 0 and again.queued == 0
    assert len(sink.messages) == 1 and len(hooks.bodies) == 1
    sent = session.execute(select(AuditEntry).where(AuditEntry.action == notify.NOTIFY_SENT)).scalars().all()
    assert sorted(e.after["channel"] for e in sent if e.after) == ["email", "webhook"]
    assert all("3500" not in json.dumps(e.after) for e in sent)  # the audit trail names, it does not repeat


def test_a_server_that_is_down_gets_it_once_it_is_up(engine: Engine, session: Session, tmp_path: Path) -> None:
    import_labs(session, tmp_path, f"N 1/7,{TODAY.isoformat()},ferritin,3500,ng/mL\n")
    hook_port = free_port()  # nothing listens yet
    settings = settings_for(None, hook_port)
    t0 = now()
    first = notify.run_once(engine, settings, now=t0)
    assert (first.sent, first.failed) == (0, 1)
    (note,) = session.execute(select(AlertNotification)).scalars().all()
    assert note.status == notify.FAILED and note.attempts == 1 and note.next_attempt_at == t0 + dt.timedelta(seconds=60)
    hooks = Hooks(hook_port)
    try:
        early = notify.run_once(engine, settings, now=t0 + dt.timedelta(seconds=30))  # still backing off
        assert early.sent == 0 and hooks.bodies == []
        later = notify.run_once(engine, settings, now=t0 + dt.timedelta(seconds=61))
        assert later.sent == 1 and len(hooks.bodies) == 1
        assert notify.run_once(engine, settings, now=t0 + dt.timedelta(hours=2)).sent == 0
        assert len(hooks.bodies) == 1
    finally:
        hooks.stop()
    session.expire_all()
    (note,) = session.execute(select(AlertNotification)).scalars().all()
    assert note.status == notify.SENT and note.attempts == 2
    actions = [e.action for e in session.execute(select(AuditEntry).where(AuditEntry.entity == notify.ENTITY).order_by(AuditEntry.id)).scalars()]
    assert actions == [notify.NOTIFY_FAILED, notify.NOTIFY_SENT]


def test_the_back_off_doubles_up_to_its_cap() -> None:
    s = notify.NotifySettings(retry_base_s=60, retry_max_s=300)
    assert [s.backoff(n).total_seconds() for n in (1, 2, 3, 4, 5)] == [60, 120, 240, 300, 300]


def test_a_warning_is_escalated_after_the_profile_hours_unless_acknowledged(
    engine: Engine, session: Session, tmp_path: Path, hooks: Hooks
) -> None:
    import_labs(session, tmp_path, f"N 1/7,{TODAY.isoformat()},eosinophils,2.2,10^9/L\n")
    settings = settings_for(None, hooks.server.server_port)
    hours = 4  # the default profile's escalate_warning_after_hours
    opened = session.execute(select(AlertEpisode.opened_at).where(AlertEpisode.code == "EOSINOPHILIA")).scalar_one()
    assert notify.run_once(engine, settings, now=opened + dt.timedelta(hours=hours, minutes=-1)).sent == 0
    assert notify.run_once(engine, settings, now=opened + dt.timedelta(hours=hours, minutes=1)).sent == 1
    assert [b["code"] for b in hooks.bodies] == ["EOSINOPHILIA"] and hooks.bodies[0]["severity"] == "warning"


def test_an_acknowledged_warning_is_not_escalated_and_new_evidence_makes_it_news_again(
    engine: Engine, session: Session, tmp_path: Path, hooks: Hooks
) -> None:
    import_labs(session, tmp_path, f"N 1/7,{(TODAY - dt.timedelta(days=1)).isoformat()},eosinophils,2.2,10^9/L\n")
    ep = session.execute(select(AlertEpisode).where(AlertEpisode.code == "EOSINOPHILIA")).scalar_one()
    episodes.acknowledge(session, username=USER, episode_id=ep.id, reason="discussed_with_consultant")
    session.commit()
    settings = settings_for(None, hooks.server.server_port)
    assert notify.run_once(engine, settings, now=now() + dt.timedelta(hours=10)).sent == 0
    assert hooks.bodies == []
    # New evidence reopens it: unacknowledged again, escalated after the hours.
    import_labs(session, tmp_path, f"N 1/7,{TODAY.isoformat()},eosinophils,2.9,10^9/L\n", name="more.csv")
    session.expire_all()
    ep = session.get(AlertEpisode, ep.id)
    assert ep is not None and ep.state == episodes.OPEN and ep.reopen_count == 1
    assert notify.run_once(engine, settings, now=now() + dt.timedelta(hours=10)).sent == 1
    assert len(hooks.bodies) == 1 and "2.9" in hooks.bodies[0]["message"]


def test_a_notification_pending_when_its_episode_is_acknowledged_is_cancelled(
    engine: Engine, session: Session, tmp_path: Path
) -> None:
    import_labs(session, tmp_path, f"N 1/7,{TODAY.isoformat()},ferritin,3500,ng/mL\n")
    settings = settings_for(None, free_port())  # down: the notification waits for a retry
    assert notify.run_once(engine, settings, now=now()).failed == 1
    ep = session.execute(select(AlertEpisode).where(AlertEpisode.code == "FERRITIN_HIGH")).scalar_one()
    episodes.acknowledge(session, username=USER, episode_id=ep.id, reason="ivig_ordered")
    session.commit()
    later = notify.run_once(engine, settings, now=now() + dt.timedelta(hours=1))
    assert (later.sent, later.failed, later.cancelled) == (0, 0, 1)


def test_settings_come_from_the_environment_and_bad_ones_are_named() -> None:
    s = notify.NotifySettings.from_env({
        "DRESS_SMTP_HOST": "smtp.hospital.test", "DRESS_SMTP_STARTTLS": "true", "DRESS_SMTP_FROM": "a@h.test",
        "DRESS_SMTP_TO": "b@h.test, c@h.test", "DRESS_SMTP_USER": "u", "DRESS_SMTP_PASSWORD": "p",
        "DRESS_WEBHOOK_URL": "https://hooks.hospital.test/x",
    })
    assert s.smtp_port == 587 and s.smtp_starttls and s.smtp_to == ("b@h.test", "c@h.test")
    assert s.channels == ("email", "webhook")
    assert "smtp_password" not in repr(s)  # never in a log line
    with pytest.raises(notify.NotifyConfigError, match="DRESS_SMTP_TO"):
        notify.NotifySettings.from_env({"DRESS_SMTP_HOST": "h", "DRESS_SMTP_FROM": "a@h.test"})
    with pytest.raises(notify.NotifyConfigError, match="DRESS_SMTP_PORT"):
        notify.NotifySettings.from_env({"DRESS_SMTP_PORT": "twenty-five"})
    with pytest.raises(notify.NotifyConfigError, match="DRESS_WEBHOOK_URL"):
        notify.NotifySettings.from_env({"DRESS_WEBHOOK_URL": "file:///etc/passwd"})


def test_the_command_needs_a_channel_and_prints_one_line_per_round(
    db_url: str, monkeypatch: pytest.MonkeyPatch, hooks: Hooks, capsys: pytest.CaptureFixture[str]
) -> None:
    from monitoring.cli import main
    from monitoring.commands.notify import parse_duration

    for name in ("DRESS_SMTP_HOST", "DRESS_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--db", db_url, "notify"]) == 2
    assert "no channel configured" in capsys.readouterr().err
    assert main(["--db", db_url, "notify", "--every", "soon"]) == 2
    assert [parse_duration(t) for t in ("30s", "5m", "1h", "90")] == [30, 300, 3600, 90]
    monkeypatch.setenv("DRESS_WEBHOOK_URL", f"http://127.0.0.1:{hooks.server.server_port}/dress")
    assert main(["--db", db_url, "notify"]) == 0
    assert capsys.readouterr().out.startswith("notify: ")
