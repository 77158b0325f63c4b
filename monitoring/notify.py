"""Notifications of alert episodes (PRODUCT.md §10): ``python -m monitoring notify``.

Each run evaluates every active patient (so the episodes are current even when nobody has the ward
open), then sends

- each open critical episode nobody has acknowledged (kind ``critical``), and
- each warning episode still unacknowledged ``escalate_warning_after_hours`` after it opened or
  was reopened (kind ``warning_unacknowledged``; the profile's design choice),

by e-mail (SMTP, STARTTLS where configured) and/or a webhook, configured in the environment
(``NotifySettings``). The webhook receives JSON with the MRN, code, severity, message and a link to
the patient's timeline, nothing more; the e-mail says the same.

Each notification is sent once: it is a stored row (``AlertNotification``) with a unique key
(episode, kind, reopening, channel), claimed by one notifier at a time with a conditional UPDATE,
so two notifiers on one database never both send it. A failed delivery is retried on later runs
with exponential back-off (``retry_base_s`` doubling up to ``retry_max_s``); a notification whose
episode was acknowledged, snoozed or closed before it could be delivered is cancelled. Every
delivery, failure and cancellation is recorded in the audit trail (without the message).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.engine import CursorResult, Engine
from sqlmodel import Session, col

from monitoring import audit, episodes
from monitoring.db import table_of
from monitoring.models import AlertEpisode, AlertNotification, Patient, utcnow

if TYPE_CHECKING:
    from monitoring.guideline import GuidelineProfile

CRITICAL = "critical"
WARNING_UNACKNOWLEDGED = "warning_unacknowledged"
EMAIL = "email"
WEBHOOK = "webhook"

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
CANCELLED = "cancelled"

NOTIFY_SENT = "notify_sent"
NOTIFY_FAILED = "notify_failed"
NOTIFY_CANCELLED = "notify_cancelled"
ENTITY = "alert_notification"

# A notifier killed between claiming and finishing a delivery leaves it "sending": after this long
# another run may take it over (a possible second copy is better than a critical alert never sent).
CLAIM_LEASE = dt.timedelta(minutes=10)
TIMEOUT_S = 15.0


class NotifyConfigError(ValueError):
    """The notification settings in the environment cannot be used; the message names the variable."""


def _flag(env: Mapping[str, str], name: str) -> bool:
    value = env.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise NotifyConfigError(f"{name}: value {value!r}: must be true or false")


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise NotifyConfigError(f"{name}: value {raw!r}: must be a whole number") from None
    if value <= 0:
        raise NotifyConfigError(f"{name}: value {raw!r}: must be positive")
    return value


@dataclass(frozen=True)
class NotifySettings:
    """Where notifications go, read from the environment (``from_env``):

    DRESS_SMTP_HOST, DRESS_SMTP_PORT (default 587 with STARTTLS, else 25), DRESS_SMTP_USER,
    DRESS_SMTP_PASSWORD, DRESS_SMTP_FROM, DRESS_SMTP_TO (comma-separated), DRESS_SMTP_STARTTLS
    (true/false); DRESS_WEBHOOK_URL; DRESS_DASHBOARD_URL (the link's base, default
    http://localhost:8501); DRESS_NOTIFY_RETRY_BASE_S (60) and DRESS_NOTIFY_RETRY_MAX_S (3600)."""

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    smtp_to: tuple[str, ...] = ()
    smtp_starttls: bool = False
    webhook_url: str | None = None
    dashboard_url: str = "http://localhost:8501"
    retry_base_s: int = 60
    retry_max_s: int = 3600

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NotifySettings:
        e = os.environ if env is None else env
        host = e.get("DRESS_SMTP_HOST", "").strip() or None
        starttls = _flag(e, "DRESS_SMTP_STARTTLS")
        to = tuple(a.strip() for a in e.get("DRESS_SMTP_TO", "").split(",") if a.strip())
        sender = e.get("DRESS_SMTP_FROM", "").strip() or None
        if host and not to:
            raise NotifyConfigError("DRESS_SMTP_TO: missing (who receives the e-mails, comma-separated)")
        if host and not sender:
            raise NotifyConfigError("DRESS_SMTP_FROM: missing (the sender address)")
        user = e.get("DRESS_SMTP_USER", "").strip() or None
        password = e.get("DRESS_SMTP_PASSWORD") or None
        if user and not password:
            raise NotifyConfigError("DRESS_SMTP_PASSWORD: missing (DRESS_SMTP_USER is set)")
        webhook = e.get("DRESS_WEBHOOK_URL", "").strip() or None
        if webhook and not webhook.lower().startswith(("http://", "https://")):
            raise NotifyConfigError(f"DRESS_WEBHOOK_URL: value {webhook!r}: must be an http:// or https:// URL")
        return cls(
            smtp_host=host,
            smtp_port=_int(e, "DRESS_SMTP_PORT", 587 if starttls else 25),
            smtp_user=user,
            smtp_password=password,
            smtp_from=sender,
            smtp_to=to,
            smtp_starttls=starttls,
            webhook_url=webhook,
            dashboard_url=e.get("DRESS_DASHBOARD_URL", "").strip() or "http://localhost:8501",
            retry_base_s=_int(e, "DRESS_NOTIFY_RETRY_BASE_S", 60),
            retry_max_s=_int(e, "DRESS_NOTIFY_RETRY_MAX_S", 3600),
        )

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c for c, on in ((EMAIL, bool(self.smtp_host)), (WEBHOOK, bool(self.webhook_url))) if on)

    def backoff(self, attempts: int) -> dt.timedelta:
        """The wait after the ``attempts``-th failure: base, 2 × base, 4 × base, … up to the cap."""
        return dt.timedelta(seconds=min(self.retry_max_s, self.retry_base_s * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class Payload:
    """Everything a notification says: never more patient data than this (PRODUCT.md §10)."""

    mrn: str
    code: str
    severity: str
    message: str
    link: str

    def as_json(self) -> dict[str, str]:
        return {"mrn": self.mrn, "code": self.code, "severity": self.severity, "message": self.message, "link": self.link}


@dataclass
class NotifyReport:
    evaluated: int = 0
    episode_changes: int = 0
    queued: int = 0
    sent: int = 0
    failed: int = 0
    cancelled: int = 0

    def line(self) -> str:
        return (
            f"notify: {self.evaluated} patient(s) evaluated, {self.episode_changes} episode change(s), "
            f"{self.queued} notification(s) queued, {self.sent} sent, {self.failed} failed (will retry), "
            f"{self.cancelled} cancelled"
        )


# --- one run ---------------------------------------------------------------------------------------


def run_once(
    engine: Engine,
    settings: NotifySettings,
    *,
    as_of: dt.date | None = None,
    now: dt.datetime | None = None,
    profile: GuidelineProfile | None = None,
) -> NotifyReport:
    from monitoring.guideline import load_profile

    prof = profile or load_profile()
    day = as_of or dt.date.today()
    report = NotifyReport()
    report.evaluated, report.episode_changes = _evaluate_all(engine, day, prof)
    when = now or utcnow()
    report.queued = _queue(engine, settings, day, when, prof)
    _deliver(engine, settings, day, when, report)
    return report


def _evaluate_all(engine: Engine, as_of: dt.date, prof: GuidelineProfile) -> tuple[int, int]:
    from monitoring.records import load_records
    from monitoring.rules import evaluate

    with Session(engine, expire_on_commit=False) as s:
        version = episodes.read_version(s)
        records = load_records(s, None, active_only=True)
        alerts = {r.patient.id: evaluate(r, as_of, prof) for r in records if r.patient.id is not None}
        changes = episodes.sync_evaluated(s, records, alerts, as_of=as_of, profile=prof, read_at=version)
    return len(records), len(changes)


def due(session: Session, as_of: dt.date, now: dt.datetime, prof: GuidelineProfile) -> list[tuple[AlertEpisode, str]]:
    """The episodes to notify now, with their kind: open critical ones, and warnings unacknowledged
    past the profile's hours. Acknowledged, snoozed (until their date) and closed ones never are."""
    pt = table_of(Patient)
    active = select(pt.c.id).where(pt.c.active.is_(True))
    rows = session.execute(
        select(AlertEpisode).where(
            col(AlertEpisode.closed_at).is_(None),
            col(AlertEpisode.severity).in_([CRITICAL, "warning"]),
            col(AlertEpisode.patient_id).in_(active),
        ).order_by(col(AlertEpisode.id))
    ).scalars()
    wait = dt.timedelta(hours=prof.days("escalate_warning_after_hours"))
    out: list[tuple[AlertEpisode, str]] = []
    for ep in rows:
        if episodes.effective_state(ep, as_of) != episodes.OPEN:
            continue
        if ep.severity == CRITICAL:
            out.append((ep, CRITICAL))
        elif (ep.reopened_at or ep.opened_at) <= now - wait:
            out.append((ep, WARNING_UNACKNOWLEDGED))
    return out


def notification_key(ep: AlertEpisode, kind: str, channel: str) -> str:
    # The reopening count is part of the key: new evidence after an acknowledgement is news again.
    return f"{ep.id}:{kind}:{ep.reopen_count or 0}:{channel}"


def _queue(engine: Engine, settings: NotifySettings, as_of: dt.date, now: dt.datetime, prof: GuidelineProfile) -> int:
    table = table_of(AlertNotification)
    queued = 0
    with Session(engine) as s:
        if s.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]  # SQLite's insert() beside PostgreSQL's: same call, each typed as its own Insert
        for ep, kind in due(s, as_of, now, prof):
            for channel in settings.channels:
                stmt = (
                    dialect_insert(table)
                    .values(
                        key=notification_key(ep, kind, channel),
                        episode_id=ep.id,
                        kind=kind,
                        channel=channel,
                        status=PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                    .on_conflict_do_nothing()
                    .returning(table.c.id)
                )
                queued += len(s.execute(stmt).scalars().all())
        s.commit()
    return queued


def _claimable(now: dt.datetime) -> ColumnElement[bool]:
    n = AlertNotification
    return or_(
        and_(col(n.status).in_([PENDING, FAILED]), col(n.next_attempt_at) <= now),
        and_(col(n.status) == SENDING, col(n.claimed_at) < now - CLAIM_LEASE),
    )


def _deliver(engine: Engine, settings: NotifySettings, as_of: dt.date, now: dt.datetime, report: NotifyReport) -> None:
    with Session(engine, expire_on_commit=False) as s:
        candidates = list(s.execute(select(col(AlertNotification.id)).where(_claimable(now)).order_by(col(AlertNotification.id))).scalars())
    for nid in candidates:
        with Session(engine, expire_on_commit=False) as s:
            # Claimed by exactly one notifier: the UPDATE succeeds only while the row is claimable.
            result = s.execute(
                update(AlertNotification)
                .where(col(AlertNotification.id) == nid, _claimable(now))
                .values(status=SENDING, claimed_at=now)
            )
            assert isinstance(result, CursorResult)  # an UPDATE's result is one (typed as Result)
            claimed = result.rowcount
            s.commit()
            if not claimed:
                continue
            note = s.get(AlertNotification, nid)
            assert note is not None
            ep = s.get(AlertEpisode, note.episode_id)
            assert ep is not None
            patient = s.get(Patient, ep.patient_id)
            assert patient is not None
            if ep.closed_at is not None or episodes.effective_state(ep, as_of) != episodes.OPEN:
                note.status = CANCELLED
                s.add(note)
                audit.record(
                    s,
                    username=None,
                    action=NOTIFY_CANCELLED,
                    entity=ENTITY,
                    entity_id=note.id,
                    patient_id=ep.patient_id,
                    after={"channel": note.channel, "kind": note.kind, "code": ep.code, "episode_id": ep.id},
                    reason=f"episode {ep.state} before delivery",
                )
                s.commit()
                report.cancelled += 1
                continue
            payload = Payload(
                mrn=patient.mrn,
                code=ep.code,
                severity=ep.severity,
                message=ep.message,
                link=timeline_link(settings, patient.mrn),
            )
            error: str | None = None
            try:
                send(settings, note.channel, payload, kind=note.kind)
            except (OSError, smtplib.SMTPException, urllib.error.URLError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            note.attempts = (note.attempts or 0) + 1
            if error is None:
                note.status = SENT
                note.sent_at = utcnow()
                note.last_error = None
                report.sent += 1
            else:
                note.status = FAILED
                note.next_attempt_at = now + settings.backoff(note.attempts)
                note.last_error = error
                report.failed += 1
            s.add(note)
            audit.record(
                s,
                username=None,
                action=NOTIFY_SENT if error is None else NOTIFY_FAILED,
                entity=ENTITY,
                entity_id=note.id,
                patient_id=ep.patient_id,
                after={
                    "channel": note.channel,
                    "kind": note.kind,
                    "code": ep.code,
                    "severity": ep.severity,
                    "episode_id": ep.id,
                    "attempt": note.attempts,
                },
                reason=error,
            )
            s.commit()


# --- channels --------------------------------------------------------------------------------------


def timeline_link(settings: NotifySettings, mrn: str) -> str:
    return f"{settings.dashboard_url.rstrip('/')}/timeline?mrn={quote(mrn, safe='')}"


def send(settings: NotifySettings, channel: str, payload: Payload, *, kind: str = CRITICAL) -> None:
    if channel == EMAIL:
        send_email(settings, payload, kind=kind)
    elif channel == WEBHOOK:
        send_webhook(settings, payload)
    else:
        raise ValueError(f"unknown channel {channel!r}")


def _subject(payload: Payload, kind: str) -> str:
    lead = "unacknowledged warning" if kind == WARNING_UNACKNOWLEDGED else payload.severity
    return f"DRESS monitor: {lead} {payload.code} for MRN {payload.mrn}"


def send_email(settings: NotifySettings, payload: Payload, *, kind: str = CRITICAL) -> None:
    if not settings.smtp_host or not settings.smtp_from or not settings.smtp_to:
        raise ValueError("e-mail is not configured (DRESS_SMTP_HOST, DRESS_SMTP_FROM, DRESS_SMTP_TO)")
    msg = EmailMessage()
    msg["Subject"] = _subject(payload, kind)
    msg["From"] = settings.smtp_from
    msg["To"] = ", ".join(settings.smtp_to)
    msg.set_content(
        f"MRN: {payload.mrn}\nAlert: {payload.code} ({payload.severity})\n\n{payload.message}\n\n"
        f"Timeline: {payload.link}\n"
    )
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT_S) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.send_message(msg)


def send_webhook(settings: NotifySettings, payload: Payload) -> None:
    if not settings.webhook_url:
        raise ValueError("the webhook is not configured (DRESS_WEBHOOK_URL)")
    body = json.dumps(payload.as_json()).encode("utf-8")
    request = urllib.request.Request(
        settings.webhook_url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 - URL from the operator's settings
        if not 200 <= response.status < 300:
            raise OSError(f"webhook answered HTTP {response.status}")
