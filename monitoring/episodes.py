"""Alerts as work (PRODUCT.md §10): alert episodes, acknowledgement and snooze.

An alert that holds is an *episode*: it opens on the first evaluation where it holds, stays open
while it holds and closes when it stops holding. Its evidence is the set of result and dose rows
behind it (``evidence_rows``: the ``row_id`` of every row the alert quotes); a row the episode had
not seen before is *new evidence* and puts an acknowledged or snoozed episode back to open.

Keeping episodes current is one function, ``update_episodes``: evaluate the given patients as of
today and reconcile their stored episodes. Every write path reaches it without knowing it:
``monitoring.store.write_batch`` and ``touch_patient`` (which every service, import, the photo and
taper writers and the lab feed go through) call ``patients_written``, and the patients so marked
are brought up to date right after the write's transaction commits, in one of their own (the write
never waits for its bookkeeping; should that step fail, the next evaluation catches up). A
long-running writer may hand its patients to a thread of its own instead (``defer_reconciliation``:
the lab feed's ``monitoring.episodes_follow.EpisodeFollower``). Readers that evaluate anyway (the
ward, the notifier) call ``sync_evaluated`` with the alerts they computed: nothing is written
unless an episode must change.

No duplicate: a patient has at most one episode per code that is not closed (the partial unique
index ``ux_episode_open``), the insert gives way on conflict (ON CONFLICT DO NOTHING on SQLite and
PostgreSQL), and the evaluation runs after the patients' rows are locked (an UPDATE of their
patient rows that changes nothing), so two processes reconciling one patient take turns and the
second sees the first's episodes.

Acknowledging and snoozing are clinical actions: signed, allowed to roles that may write
(monitoring.auth), audited, refused with a clear reason otherwise. Codes whose danger does not
wait (``NEVER_SNOOZE``) can be acknowledged but never snoozed; the snooze horizon and the
escalation delay of the notifier are design choices in the guideline profile.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, col

from monitoring import audit
from monitoring.db import table_of
from monitoring.models import AlertEpisode, Patient, utcnow

if TYPE_CHECKING:
    from monitoring.guideline import GuidelineProfile
    from monitoring.records import LabPoint, PatientRecord, WrittenLabs
    from monitoring.rules import Alert

log = logging.getLogger(__name__)

OPEN = "open"
ACKNOWLEDGED = "acknowledged"
SNOOZED = "snoozed"
CLOSED = "closed"
STATES: tuple[str, ...] = (OPEN, ACKNOWLEDGED, SNOOZED, CLOSED)

# Audit actions of this module.
ACKNOWLEDGE = "acknowledge"
SNOOZE = "snooze"
REOPEN = "reopen"
ENTITY = "alert_episode"

# The coded reasons of an acknowledgement (PRODUCT.md §10). ``not_relevant`` needs a text saying why.
ACK_REASONS: dict[str, str] = {
    "ivig_ordered": "IVIG ordered",
    "discussed_with_consultant": "discussed with consultant",
    "not_relevant": "not relevant: …",
}
REASONS_NEEDING_TEXT = frozenset({"not_relevant"})
MAX_ACK_TEXT = 500  # AlertEpisode.ack_text column width

# PRODUCT.md §10: these can be acknowledged but never snoozed (a culprit given again or never
# withdrawn, ICU criteria, the heart: none of them may wait for a date).
NEVER_SNOOZE = frozenset({"RECHALLENGE", "CULPRIT_NOT_STOPPED", "ICU_CRITERIA", "CARDIAC_INVOLVEMENT"})

_WRITTEN = "dress_episodes_patients_written"  # Session.info key: patients to reconcile at commit
_BUSY = "dress_episodes_busy"
_KNOWN = "dress_episodes_known_labs"  # Session.info key: results written for patients it created (_KnownLabs)
_DEFER = "dress_episodes_defer"  # Session.info key: where the patients written go instead (defer_reconciliation)


class EpisodeActionRefused(ValueError):
    """An acknowledgement or snooze that cannot be done; the message says why."""


# --- evidence -----------------------------------------------------------------------------------


def evidence_rows(alert: Alert) -> list[str]:
    """The rows behind an alert as ``table:id`` strings, sorted: every result or dose row its
    evidence quotes (nested evidence included, e.g. ICU criteria quoting the organ alerts)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            row_id, table = node.get("row_id"), node.get("table")
            if row_id is not None and isinstance(table, str):
                found.add(f"{table}:{row_id}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list | tuple):
            for value in node:
                walk(value)

    walk(alert.evidence)
    return sorted(found, key=lambda s: (s.partition(":")[0], int(s.partition(":")[2]) if s.partition(":")[2].isdigit() else 0, s))


def effective_state(ep: AlertEpisode, as_of: dt.date) -> str:
    """The state an episode is shown in on ``as_of``: a snooze ends on its date."""
    if ep.state == SNOOZED and (ep.snoozed_until is None or ep.snoozed_until <= as_of):
        return OPEN
    return ep.state


def attention_rank(ep: AlertEpisode, as_of: dt.date) -> int:
    """Within one severity: unacknowledged first (0), then acknowledged or snoozed (1)."""
    return 0 if effective_state(ep, as_of) == OPEN else 1


# --- marking the patients a write touched --------------------------------------------------------


def patients_written(
    session: Session,
    patient_ids: Iterable[int | None],
    *,
    labs: Sequence[WrittenLabs] = (),
    labs_complete_for: Iterable[int] = (),
) -> None:
    """Mark patients whose data this session wrote: their episodes are brought up to date right
    after the session commits (``_reconcile_after_commit``).

    ``labs``, ``labs_complete_for``: the results this write inserted in bulk, and the patients
    whose every stored result is among them (patients this transaction created:
    ``monitoring.store.write_batch``). Their results are then not read back after the commit, as
    long as this is the only mention of them in the transaction and nothing else was committed
    in between (``_KnownLabs``): a million results of an import are not read again to evaluate
    the patients it created."""
    ids = {int(p) for p in patient_ids if p is not None and int(p) > 0}
    if not ids:
        return
    written: set[int] = session.info.setdefault(_WRITTEN, set())
    known: list[_KnownLabs] = session.info.setdefault(_KNOWN, [])
    again = ids & written
    if again:
        for k in known:  # written again in this transaction: what was known of them may not be all
            k.patients.difference_update(again)
    complete = (set(labs_complete_for) & ids) - written
    written.update(ids)
    if complete:
        version = read_version(session)
        if version is not None:
            known.append(_KnownLabs(session.connection().connection.dbapi_connection, version, list(labs), complete))


@dataclass
class _KnownLabs:
    """Results a transaction wrote for patients it created (``patients_written``), with the
    writer's DBAPI connection and its ``PRAGMA data_version`` read after the writes. While that
    connection still reads the same version, no other connection has committed anything since
    (sqlite.org/pragma.html#pragma_data_version), so the stored results of these patients are
    exactly the ones written."""

    connection: Any
    version: int
    labs: list[WrittenLabs]
    patients: set[int]

    def unchanged(self) -> bool:
        try:
            return bool(self.connection.execute("PRAGMA data_version").fetchone()[0] == self.version)
        except Exception:  # noqa: BLE001 - a closed or foreign connection proves nothing: read the results back
            return False


def _known_labs(session: Session, version: int | None, known: Sequence[_KnownLabs], wanted: set[int]) -> dict[int, tuple[LabPoint, ...]]:
    """The results of ``wanted`` patients that ``known`` holds, when they are still what is stored.

    Called after ``version`` was read in ``session`` (``reconcile_patients``): if the writer's
    connection still reads its version now, nothing was committed between the write and that
    read, so what ``session`` reads from ``version`` on (what ``update_episodes`` checks under the
    lock) includes these results and nothing newer for these patients."""
    from monitoring.records import merge_points

    if version is None or not known:
        return {}
    dialect = session.connection().dialect
    out: dict[int, tuple[LabPoint, ...]] = {}
    for k in known:
        patients = k.patients & wanted
        if not patients or not k.unchanged():
            continue
        points = merge_points(k.labs, dialect, patients)
        out.update({pid: points.get(pid, ()) for pid in patients})
    return out


@event.listens_for(Session, "after_commit")
def _reconcile_after_commit(session: Session) -> None:
    """Right after a write commits, in a transaction of its own: the clinical write never waits
    for (or is lost to) its bookkeeping, and concurrent writers never queue behind an evaluation.
    Evaluated without a lock; written (under the patients' locks) only when an episode changes,
    and read and evaluated once unless another write committed in between (``read_version``)."""
    ids = session.info.pop(_WRITTEN, None)
    known = session.info.pop(_KNOWN, None) or []
    if not ids or session.info.get(_BUSY):
        return
    sink = session.info.get(_DEFER)
    if sink is not None:
        # A long-running writer (the lab feed) evaluates in a thread of its own (EpisodeFollower).
        sink(ids)
        return
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    try:
        reconcile_patients(engine, ids, known=known)
    except Exception:  # noqa: BLE001 - the write is committed; its bookkeeping must not turn it into an error
        # The next evaluation (the ward, the notifier, the next write) brings the episodes up to date.
        log.exception("alert episodes not updated after commit; the next evaluation will")


def reconcile_patients(
    engine: Engine, patient_ids: Iterable[int], *, give_way: bool = True, known: Sequence[_KnownLabs] = ()
) -> list[EpisodeChange]:
    """Evaluate these patients as of today and bring their episodes up to date, in a session (and
    transaction) of its own: what runs after a write commits. ``give_way``: as ``sync_evaluated``.
    ``known``: results the committed write holds (``patients_written``), used when still valid."""
    from monitoring.guideline import load_profile
    from monitoring.records import load_records
    from monitoring.rules import evaluate

    with Session(engine, expire_on_commit=False) as own:
        own.info[_BUSY] = True
        day, prof = _today(), load_profile()
        version = read_version(own)
        wanted = set(patient_ids)
        records = load_records(own, sorted(wanted), active_only=True, known_labs=_known_labs(own, version, known, wanted))
        alerts = {r.patient.id: evaluate(r, day, prof) for r in records if r.patient.id is not None}
        return sync_evaluated(own, records, alerts, as_of=day, profile=prof, read_at=version, give_way=give_way)


def defer_reconciliation(session: Session, sink: Callable[[set[int]], None]) -> None:
    """After each commit of this session, hand the patients it wrote to ``sink`` instead of
    evaluating them there and then (``EpisodeFollower.submit``: the lab feed answers its sender
    without waiting for the evaluation)."""
    session.info[_DEFER] = sink


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop(_WRITTEN, None)
    session.info.pop(_KNOWN, None)


# --- reconciling ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpisodeChange:
    """One change made to the episodes: opened, closed, reopened (new evidence), updated."""

    patient_id: int
    code: str
    change: str
    episode_id: int | None = None


def _lock_patients(session: Session, patient_ids: Sequence[int]) -> None:
    """Take the patients' row locks (PostgreSQL) or the write lock (SQLite) before reading, so that
    two processes reconciling the same patient take turns.

    PostgreSQL: FOR NO KEY UPDATE in id order (two reconcilers never lock in opposite orders, and a
    write inserting results, which holds KEY SHARE through its foreign key, is not blocked).
    SQLite: an UPDATE that changes no value takes the database's write lock."""
    pt = table_of(Patient)
    ids = sorted(patient_ids)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(pt.c.id).where(pt.c.id.in_(ids)).order_by(pt.c.id).with_for_update(key_share=True))
    else:
        session.execute(update(pt).where(pt.c.id.in_(ids)).values(updated_at=pt.c.updated_at))


@dataclass(frozen=True)
class Evaluated:
    """What a reader read and evaluated in one session: the records, their alerts (as of the day
    and under the profile given with them), the ``read_version`` taken before the records were
    loaded, and the patients' open episodes read after them (None: not read)."""

    records: Sequence[PatientRecord]
    alerts: Mapping[int, Sequence[Alert]]
    version: int
    episodes: Sequence[AlertEpisode] | None = None


def read_version(session: Session) -> int | None:
    """A marker of the database's committed state, taken before a reader loads records in this
    session, so that ``update_episodes`` can tell, once it holds the lock, whether anything was
    committed since (then it reads again) or not (then what was read is still what is stored).

    SQLite file: ``PRAGMA data_version``, which changes on a connection whenever another
    connection has committed a change since it was last asked (sqlite.org/pragma.html#pragma_data_version);
    the session keeps its one connection until it commits or rolls back. Other databases (no such
    marker under READ COMMITTED) and in-memory SQLite (one connection shared by every session, so
    a commit by another session does not change the marker): None, and ``update_episodes`` always
    reads again."""
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    if engine.dialect.name != "sqlite" or isinstance(engine.pool, StaticPool) or engine.url.database in (None, "", ":memory:"):
        return None
    return int(session.connection().exec_driver_sql("PRAGMA data_version").scalar_one())


def open_episodes(session: Session, patient_ids: Sequence[int] | None = None) -> list[AlertEpisode]:
    """Episodes not closed, of the given patients (all when None)."""
    stmt = select(AlertEpisode).where(col(AlertEpisode.closed_at).is_(None))
    if patient_ids is not None:
        if not patient_ids:
            return []
        stmt = stmt.where(col(AlertEpisode.patient_id).in_(list(patient_ids)))
    return list(session.execute(stmt.order_by(col(AlertEpisode.id))).scalars())


def _today() -> dt.date:
    return dt.date.today()


def update_episodes(
    session: Session,
    patient_ids: Sequence[int],
    *,
    as_of: dt.date | None = None,
    profile: GuidelineProfile | None = None,
    now: dt.datetime | None = None,
    evaluated: Evaluated | None = None,
) -> list[EpisodeChange]:
    """Evaluate these patients as of ``as_of`` (today) and bring their episodes up to date, in the
    caller's transaction. The one function every write path reaches (see the module docstring).

    ``evaluated``: what a reader has just read and evaluated in this session (``Evaluated``). Once
    the lock is held it is used as it is if nothing was committed since it was read (the same
    marker), instead of being read and evaluated a second time."""
    from monitoring.guideline import load_profile
    from monitoring.records import load_records
    from monitoring.rules import evaluate

    ids = sorted({int(p) for p in patient_ids})
    if not ids:
        return []
    day = as_of or _today()
    prof = profile or load_profile()
    session.info[_BUSY] = True
    try:
        _lock_patients(session, ids)
        wanted = set(ids)
        episodes: list[AlertEpisode] | None = None
        if evaluated is not None and read_version(session) == evaluated.version:
            records = [r for r in evaluated.records if r.patient.id in wanted]
            alerts = {pid: a for pid, a in evaluated.alerts.items() if pid in wanted}
            if evaluated.episodes is not None:
                episodes = [e for e in evaluated.episodes if e.patient_id in wanted]
        else:
            records = load_records(session, ids, active_only=True)
            alerts = {r.patient.id: evaluate(r, day, prof) for r in records if r.patient.id is not None}
        return _reconcile(session, records, alerts, day, prof, now or utcnow(), write=True, episodes=episodes)
    finally:
        session.info.pop(_BUSY, None)


def sync_evaluated(
    session: Session,
    records: Sequence[PatientRecord],
    alerts: Mapping[int, Sequence[Alert]],
    *,
    as_of: dt.date,
    profile: GuidelineProfile,
    commit: bool = True,
    read_at: int | None = None,
    give_way: bool = True,
) -> list[EpisodeChange]:
    """For a reader that has just evaluated these patients (the ward, the notifier): reconcile
    their episodes, writing only when one must change. The patients that need a change are then
    locked, read and evaluated again (``update_episodes``), so a write that landed meanwhile is
    not undone. ``read_at``: the ``read_version`` taken in this session before ``records`` were
    loaded; when nothing has been committed since, they are not read a second time. ``give_way``:
    when the database is busy, roll back and return nothing (a reader's bookkeeping gives way);
    False: roll back and raise, for a caller that tries again (``EpisodeFollower``)."""
    read = open_episodes(session, sorted({r.patient.id for r in records if r.patient.id is not None}))
    stale = _reconcile(session, records, alerts, as_of, profile, utcnow(), write=False, episodes=read)
    if not stale:
        return []
    try:
        changes = update_episodes(
            session,
            sorted({c.patient_id for c in stale}),
            as_of=as_of,
            profile=profile,
            evaluated=None if read_at is None else Evaluated(records, alerts, read_at, read),
        )
        if commit:
            session.commit()
    except DBAPIError:
        if not give_way:
            session.rollback()
            raise
        # Busy, or chosen as a deadlock victim: a reader's bookkeeping gives way; the next
        # evaluation (or the next write of these patients) reconciles them.
        session.rollback()
        log.warning("alert episodes not reconciled this time (database busy); the next evaluation will")
        return []
    return changes


def _reconcile(
    session: Session,
    records: Sequence[PatientRecord],
    alerts: Mapping[int, Sequence[Alert]],
    as_of: dt.date,
    prof: GuidelineProfile,
    now: dt.datetime,
    *,
    write: bool,
    episodes: Sequence[AlertEpisode] | None = None,
) -> list[EpisodeChange]:
    """``episodes``: the patients' open episodes, when the caller has just read them."""
    from monitoring.rules import evaluate

    by_id = {r.patient.id: r for r in records if r.patient.id is not None}
    if episodes is None:
        episodes = open_episodes(session, sorted(by_id))
    current: dict[tuple[int, str], AlertEpisode] = {(e.patient_id, e.code): e for e in episodes}
    changes: list[EpisodeChange] = []
    for pid, record in by_id.items():
        holding = {a.code: a for a in alerts.get(pid, ())}
        yesterday: set[str] | None = None
        for code, alert in holding.items():
            rows = evidence_rows(alert)
            ep = current.get((pid, code))
            if ep is None:
                if not write:
                    changes.append(EpisodeChange(pid, code, "opened"))
                    continue
                if yesterday is None:
                    # Seen for the first time: did it already hold on yesterday's data? Then it is
                    # not "new since yesterday" (an import of last week's results, the demo).
                    yesterday = {a.code for a in evaluate(record, as_of - dt.timedelta(days=1), prof)}
                onset = as_of - dt.timedelta(days=1) if code in yesterday else as_of
                new_id = _insert_open(session, pid, alert, rows, onset, now)
                changes.append(EpisodeChange(pid, code, "opened", new_id))
                continue
            fresh = sorted(set(rows) - set(ep.evidence_rows))
            differs = (
                rows != list(ep.evidence_rows)
                or alert.severity != ep.severity
                or alert.message != ep.message
                or alert.date != ep.alert_date
            )
            if not differs:
                continue
            reopen = bool(fresh) and ep.state in (ACKNOWLEDGED, SNOOZED)
            changes.append(EpisodeChange(pid, code, "reopened" if reopen else "updated", ep.id))
            if not write:
                continue
            before = {"state": ep.state, "severity": ep.severity, "evidence_rows": list(ep.evidence_rows)}
            if reopen:
                ep.state = OPEN
                ep.reopened_at = now
                ep.reopen_count = (ep.reopen_count or 0) + 1
                audit.record(
                    session,
                    username=None,
                    action=REOPEN,
                    entity=ENTITY,
                    entity_id=ep.id,
                    patient_id=pid,
                    before=before,
                    after={"state": OPEN, "code": code, "new_evidence": fresh},
                    reason="new evidence: " + ", ".join(fresh),
                )
            ep.evidence_rows = rows
            ep.severity = alert.severity
            ep.message = alert.message
            ep.alert_date = alert.date
            ep.updated_at = now
            session.add(ep)
        for (p, code), ep in current.items():
            if p != pid or code in holding:
                continue
            changes.append(EpisodeChange(pid, code, "closed", ep.id))
            if write:
                ep.state = CLOSED
                ep.closed_at = now
                ep.updated_at = now
                session.add(ep)
    if write:
        session.flush()
    return changes


def _insert_open(session: Session, pid: int, alert: Alert, rows: list[str], onset: dt.date, now: dt.datetime) -> int | None:
    """Insert the open episode unless another process just did (the partial unique index)."""
    values = {
        "patient_id": pid,
        "code": alert.code,
        "severity": alert.severity,
        "state": OPEN,
        "opened_at": now,
        "onset_date": onset,
        "alert_date": alert.date,
        "message": alert.message,
        "evidence_rows": rows,
        "reopen_count": 0,
        "updated_at": now,
    }
    stmt = _insert_open_statement(session.get_bind().dialect.name)
    return session.execute(stmt, values).scalar_one_or_none()


@lru_cache(maxsize=2)
def _insert_open_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id, built once per dialect (an import opens
    hundreds of episodes: building the statement for each cost more than running it)."""
    table = table_of(AlertEpisode)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]  # SQLite's insert() beside PostgreSQL's: same call, each typed as its own Insert
    return dialect_insert(table).on_conflict_do_nothing().returning(table.c.id)


# --- reading -------------------------------------------------------------------------------------


def episodes_of(session: Session, patient_id: int) -> list[AlertEpisode]:
    """Every episode of a patient, oldest first (the timeline's onset marks, closed ones included)."""
    stmt = select(AlertEpisode).where(col(AlertEpisode.patient_id) == patient_id).order_by(col(AlertEpisode.opened_at), col(AlertEpisode.id))
    return list(session.execute(stmt).scalars())


def is_new(ep: AlertEpisode, as_of: dt.date) -> bool:
    """New since yesterday: it started holding today, or new evidence reopened it since yesterday."""
    if ep.onset_date >= as_of:
        return True
    return ep.reopened_at is not None and ep.reopened_at.date() >= as_of - dt.timedelta(days=1)


# --- acknowledge and snooze ----------------------------------------------------------------------


def _episode_for_action(session: Session, episode_id: int, username: str, action: str) -> tuple[AlertEpisode, str]:
    from monitoring.auth import authorise_write

    name = (username or "").strip()
    if not name:
        raise EpisodeActionRefused("every acknowledgement is signed: a user name is required")
    ep = session.get(AlertEpisode, episode_id)
    authorise_write(
        session,
        username=name,
        action=action,
        entity=ENTITY,
        patient_id=ep.patient_id if ep is not None else None,
        detail={"episode_id": str(episode_id)},
    )
    if ep is None:
        raise EpisodeActionRefused(f"alert episode {episode_id} does not exist")
    if ep.closed_at is not None:
        raise EpisodeActionRefused(f"alert episode {episode_id} ({ep.code}) is closed: the alert no longer holds")
    return ep, name


def acknowledge(
    session: Session,
    *,
    username: str,
    episode_id: int,
    reason: str,
    text: str | None = None,
    now: dt.datetime | None = None,
) -> AlertEpisode:
    """Acknowledge an open episode with a coded reason (``ACK_REASONS``) and, for ``not_relevant``,
    a text saying why. Audited; the caller commits."""
    ep, name = _episode_for_action(session, episode_id, username, ACKNOWLEDGE)
    if reason not in ACK_REASONS:
        raise EpisodeActionRefused(f"reason {reason!r}: must be one of {', '.join(ACK_REASONS)}")
    from monitoring.intake import FieldError, free_text  # intake -> store -> episodes: imported here

    try:
        note = free_text("reason text", text, limit=MAX_ACK_TEXT)
    except FieldError as exc:
        raise EpisodeActionRefused(exc.message) from None
    if reason in REASONS_NEEDING_TEXT and not note:
        raise EpisodeActionRefused(f"reason '{ACK_REASONS[reason]}' needs a text saying why")
    when = now or utcnow()
    before = {"state": ep.state, "ack_reason": ep.ack_reason, "snoozed_until": ep.snoozed_until}
    ep.state = ACKNOWLEDGED
    ep.acknowledged_at = when
    ep.acknowledged_by = name
    ep.ack_reason = reason
    ep.ack_text = note
    ep.snoozed_until = None
    ep.updated_at = when
    session.add(ep)
    audit.record(
        session,
        username=name,
        action=ACKNOWLEDGE,
        entity=ENTITY,
        entity_id=ep.id,
        patient_id=ep.patient_id,
        before=before,
        after={"state": ACKNOWLEDGED, "code": ep.code, "ack_reason": reason, "ack_text": note},
        reason=ACK_REASONS[reason] if note is None else f"{ACK_REASONS[reason]} {note}",
    )
    session.flush()
    return ep


def latest_snooze(profile: GuidelineProfile, today: dt.date) -> dt.date:
    return today + dt.timedelta(days=profile.days("snooze_max_days"))


def snooze(
    session: Session,
    *,
    username: str,
    episode_id: int,
    until: dt.date,
    today: dt.date | None = None,
    profile: GuidelineProfile | None = None,
    now: dt.datetime | None = None,
) -> AlertEpisode:
    """Snooze an open episode until ``until`` (after today, at most the profile's
    ``snooze_max_days`` ahead). Never for ``NEVER_SNOOZE`` codes. Audited; the caller commits."""
    from monitoring.guideline import load_profile

    ep, name = _episode_for_action(session, episode_id, username, SNOOZE)
    if ep.code in NEVER_SNOOZE:
        raise EpisodeActionRefused(f"{ep.code} can be acknowledged but never snoozed")
    day = today or _today()
    prof = profile or load_profile()
    latest = latest_snooze(prof, day)
    if until <= day:
        raise EpisodeActionRefused(f"snooze until {until.isoformat()}: must be after today ({day.isoformat()})")
    if until > latest:
        raise EpisodeActionRefused(
            f"snooze until {until.isoformat()}: at most {prof.days('snooze_max_days')} days ahead ({latest.isoformat()})"
        )
    when = now or utcnow()
    before = {"state": ep.state, "snoozed_until": ep.snoozed_until}
    ep.state = SNOOZED
    ep.snoozed_until = until
    ep.updated_at = when
    session.add(ep)
    audit.record(
        session,
        username=name,
        action=SNOOZE,
        entity=ENTITY,
        entity_id=ep.id,
        patient_id=ep.patient_id,
        before=before,
        after={"state": SNOOZED, "code": ep.code, "snoozed_until": until},
        reason=f"snoozed until {until.isoformat()}",
    )
    session.flush()
    return ep
