"""The audit trail: who changed what, when, with the values before and after (PRODUCT.md §3, §8).

The trail is append-only. This module offers ways to add entries and to read them, and none to
change or remove one; the ORM refuses an update or delete of an ``AuditEntry`` (mapper events
below) and so does the database itself (triggers created by migration 0002 and by
``models.py`` for ``create_all``), so raw SQL cannot rewrite history either.

Entries are written in the caller's transaction (``record``), so an entry exists exactly when the
change it describes was committed. Events that must be kept even though the work they belong to is
refused or rolled back (a failed sign-in, a write refused for lack of permission) go through
``record_separately``, which commits on a connection of its own.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from monitoring.db import table_of
from monitoring.models import AuditEntry, Patient, utcnow

# Actions written by the product. Free text is allowed in the column, but every writer in the
# code base uses one of these so that the audit page can filter on them.
CREATE = "create"
AMEND = "amend"
HIDE = "hide"
UNHIDE = "unhide"
IMPORT = "import"
SIGN_IN = "sign_in"
SIGN_IN_FAILED = "sign_in_failed"
SIGN_IN_THROTTLED = "sign_in_throttled"
SIGN_OUT = "sign_out"
ACCOUNT_CREATE = "account_create"
ACCOUNT_CHANGE = "account_change"
WRITE_REFUSED = "write_refused"
BACKUP = "backup"
RESTORE = "restore"

MAX_USERNAME = 64  # AuditEntry.username column width
MAX_FIELD = 32  # AuditEntry.action / entity column width

CSV_COLUMNS = (
    "id",
    "at_utc",
    "username",
    "action",
    "entity",
    "entity_id",
    "patient_mrn",
    "before",
    "after",
    "reason",
)


class AuditTrailIsAppendOnly(RuntimeError):
    """An attempt to change or remove an audit entry."""


def _refuse(_mapper: Any, _connection: Any, target: AuditEntry) -> None:
    raise AuditTrailIsAppendOnly(f"audit entry {target.id} cannot be changed or deleted: the audit trail is append-only")


event.listen(AuditEntry, "before_update", _refuse)
event.listen(AuditEntry, "before_delete", _refuse)


def jsonable(value: Any) -> Any:
    """``value`` with dates and datetimes as ISO strings, tuples and sets as lists (JSON column)."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return value


def _clip(text: str | None, width: int) -> str | None:
    return None if text is None else text[:width]


def _values(
    *,
    username: str | None,
    action: str,
    entity: str,
    entity_id: str | int | None = None,
    patient_id: int | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    return {
        "username": _clip(username, MAX_USERNAME),
        "action": _clip(action, MAX_FIELD) or action,
        "entity": _clip(entity, MAX_FIELD) or entity,
        "entity_id": None if entity_id is None else str(entity_id)[:64],
        "patient_id": patient_id,
        "before": None if before is None else jsonable(before),
        "after": None if after is None else jsonable(after),
        "reason": reason,
    }


def _entry(**fields: Any) -> AuditEntry:
    return AuditEntry(**_values(**fields))


def append(session: Session, **fields: Any) -> None:
    """``record`` (the same keyword arguments) as one INSERT, now, without an ORM object, for
    callers that never read the entry back: on write paths that run once per message or batch,
    building and flushing the object cost more than the insert (bench/bench_hl7.py). Same values
    (``_values``), same transaction."""
    session.execute(_APPEND, {**_values(**fields), "at": utcnow()})


_APPEND = table_of(AuditEntry).insert()


def record(
    session: Session,
    *,
    username: str | None,
    action: str,
    entity: str,
    entity_id: str | int | None = None,
    patient_id: int | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> AuditEntry:
    """Append an entry in the caller's transaction: it is kept exactly when the change is."""
    entry = _entry(
        username=username,
        action=action,
        entity=entity,
        entity_id=entity_id,
        patient_id=patient_id,
        before=before,
        after=after,
        reason=reason,
    )
    session.add(entry)
    return entry


def record_separately(
    engine: Engine,
    *,
    username: str | None,
    action: str,
    entity: str,
    entity_id: str | int | None = None,
    patient_id: int | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    """Append an entry in a transaction of its own, committed now.

    For events that must survive the refusal or rollback of the work they describe. Call it before
    the caller's session has written anything: on SQLite a session holding the write lock would
    make this wait for it.
    """
    entry = _entry(
        username=username,
        action=action,
        entity=entity,
        entity_id=entity_id,
        patient_id=patient_id,
        before=before,
        after=after,
        reason=reason,
    )
    with Session(engine) as own:
        own.add(entry)
        own.commit()


@dataclass(frozen=True)
class AuditFilter:
    """What the audit page asks for. ``until`` is exclusive; times are UTC like ``AuditEntry.at``."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    username: str | None = None
    action: str | None = None
    entity: str | None = None
    patient_id: int | None = None
    entity_id: str | None = None


def _where(stmt: Any, f: AuditFilter) -> Any:
    if f.since is not None:
        stmt = stmt.where(AuditEntry.at >= f.since)
    if f.until is not None:
        stmt = stmt.where(AuditEntry.at < f.until)
    if f.username:
        stmt = stmt.where(AuditEntry.username == f.username)
    if f.action:
        stmt = stmt.where(AuditEntry.action == f.action)
    if f.entity:
        stmt = stmt.where(AuditEntry.entity == f.entity)
    if f.patient_id is not None:
        stmt = stmt.where(AuditEntry.patient_id == f.patient_id)
    if f.entity_id is not None:
        stmt = stmt.where(AuditEntry.entity_id == f.entity_id)
    return stmt


def query(session: Session, flt: AuditFilter | None = None, *, limit: int | None = 1000, offset: int = 0) -> list[AuditEntry]:
    """Entries matching ``flt``, newest first (ties: the later-written first)."""
    stmt = _where(select(AuditEntry), flt or AuditFilter())
    stmt = stmt.order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc()).offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.execute(stmt).scalars())


def count(session: Session, flt: AuditFilter | None = None) -> int:
    stmt = _where(select(func.count()).select_from(AuditEntry), flt or AuditFilter())
    return int(session.execute(stmt).scalar_one())


def distinct_values(session: Session) -> dict[str, list[str]]:
    """The usernames, actions and entities present, for the filters of the audit page."""
    out: dict[str, list[str]] = {}
    for name, column in (("username", col(AuditEntry.username)), ("action", col(AuditEntry.action)), ("entity", col(AuditEntry.entity))):
        rows = session.execute(select(column).where(column.is_not(None)).distinct().order_by(column))
        out[name] = [r[0] for r in rows]
    return out


def history(session: Session, entity: str, entity_id: int | str) -> list[AuditEntry]:
    """Every entry about one record, oldest first: its earlier versions are the ``before`` values."""
    stmt = (
        select(AuditEntry)
        .where(col(AuditEntry.entity) == entity, col(AuditEntry.entity_id) == str(entity_id))
        .order_by(col(AuditEntry.at), col(AuditEntry.id))
    )
    return list(session.execute(stmt).scalars())


def mrns_for(session: Session, entries: Iterable[AuditEntry]) -> dict[int, str]:
    ids = sorted({e.patient_id for e in entries if e.patient_id is not None})
    if not ids:
        return {}
    rows = session.execute(select(col(Patient.id), col(Patient.mrn)).where(col(Patient.id).in_(ids)))
    return {pid: mrn for pid, mrn in rows}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False) if isinstance(value, dict | list) else str(value)
    from monitoring.spreadsheet import formula_safe

    return str(formula_safe(text))


def to_csv(entries: Sequence[AuditEntry], mrn_by_patient: Mapping[int, str] | None = None) -> str:
    """The entries as CSV with the header ``CSV_COLUMNS``; before/after as JSON text."""
    mrns = mrn_by_patient or {}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        writer.writerow(
            [
                e.id,
                e.at.isoformat(sep=" ", timespec="seconds") + "Z" if e.at else "",
                _cell(e.username),
                _cell(e.action),
                _cell(e.entity),
                _cell(e.entity_id),
                _cell(mrns.get(e.patient_id) if e.patient_id is not None else None),
                _cell(e.before),
                _cell(e.after),
                _cell(e.reason),
            ]
        )
    return buf.getvalue()
