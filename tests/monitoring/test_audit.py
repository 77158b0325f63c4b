"""The audit trail: append-only from the application and from raw SQL; filters; CSV export."""

from __future__ import annotations

import ast
import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.exc import DatabaseError
from sqlmodel import Session

from monitoring import audit, auth, services
from monitoring.db import create_db_engine
from monitoring.models import AuditEntry, LabResult
from tests.conftest import PROJECT_ROOT


def _entries(session: Session) -> list[tuple]:
    return [(e.id, e.action, e.username, e.before, e.after) for e in session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars()]


@pytest.fixture
def trail(session: Session) -> Session:
    audit.record(session, username="alice", action=audit.CREATE, entity="lab_result", entity_id=7, after={"value": 90.0})
    audit.record(session, username="bob", action=audit.AMEND, entity="lab_result", entity_id=7, before={"value": 90.0}, after={"value": 9.0}, reason="typo")
    session.commit()
    return session


def test_orm_refuses_to_change_or_delete_an_entry(trail: Session) -> None:
    before = _entries(trail)
    entry = trail.execute(select(AuditEntry).where(AuditEntry.username == "bob")).scalar_one()
    entry.reason = "rewritten"
    with pytest.raises(audit.AuditTrailIsAppendOnly):
        trail.commit()
    trail.rollback()
    trail.delete(trail.execute(select(AuditEntry).where(AuditEntry.username == "alice")).scalar_one())
    with pytest.raises(audit.AuditTrailIsAppendOnly):
        trail.commit()
    trail.rollback()
    trail.expire_all()
    assert _entries(trail) == before


@pytest.mark.parametrize(
    "statement",
    [
        update(AuditEntry).values(reason="rewritten"),
        delete(AuditEntry),
        text("UPDATE audit_entry SET username = 'mallory'"),
        text("DELETE FROM audit_entry WHERE id = 1"),
    ],
    ids=["orm-update", "orm-delete", "sql-update", "sql-delete"],
)
def test_database_refuses_bulk_and_raw_sql_changes(trail: Session, statement) -> None:  # type: ignore[no-untyped-def]
    before = _entries(trail)
    with pytest.raises(DatabaseError, match="append-only"):
        trail.execute(statement)
    trail.rollback()
    assert _entries(trail) == before


def test_migrated_database_refuses_raw_sql_changes(db_url: str) -> None:
    """The guard comes with the Alembic migration too, not only with create_all."""
    eng = create_db_engine(db_url)
    try:
        with eng.begin() as conn:
            conn.exec_driver_sql("INSERT INTO audit_entry (at, action, entity) VALUES ('2026-01-01 00:00:00', 'create', 'x')")
        for sql in ("UPDATE audit_entry SET action = 'y'", "DELETE FROM audit_entry"):
            with pytest.raises(DatabaseError, match="append-only"), eng.begin() as conn:
                conn.exec_driver_sql(sql)
        with eng.connect() as conn:
            assert conn.exec_driver_sql("SELECT action FROM audit_entry").scalars().all() == ["create"]
    finally:
        eng.dispose()


def test_no_code_path_updates_or_deletes_audit_entries() -> None:
    """Read the source: nothing in the application issues update()/delete() on AuditEntry or SQL
    UPDATE/DELETE on audit_entry (the migration that installs the guard is the only mention)."""
    offenders = []
    for path in [*(PROJECT_ROOT / "monitoring").rglob("*.py"), *(PROJECT_ROOT / "dashboard").rglob("*.py")]:
        if "migrations" in path.parts:
            continue
        source = path.read_text(encoding="utf-8")
        lowered = source.lower()
        for needle in ("update audit_entry", "delete from audit_entry", "truncate audit_entry"):
            if needle in lowered and path.name != "models.py":
                offenders.append(f"{path.name}: {needle}")
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in {"update", "delete"}
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id == "AuditEntry"
            ):
                offenders.append(f"{path.name}:{node.lineno}: {node.func.id}(AuditEntry)")
    assert offenders == []


def test_every_audit_entry_is_built_by_the_one_helper() -> None:
    """One audit-entry helper (monitoring.audit.record / record_separately): no other module builds
    an ``AuditEntry`` row itself, so every entry gets the same clipping of names and the same JSON
    form of its before and after values (episodes, review, services' amendments, imports, photos)."""
    offenders = []
    for path in [*(PROJECT_ROOT / "monitoring").rglob("*.py"), *(PROJECT_ROOT / "dashboard").rglob("*.py")]:
        if "migrations" in path.parts or path.name in ("audit.py", "models.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "AuditEntry":
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}")
    assert offenders == []


def test_record_separately_survives_the_callers_rollback(tmp_path: Path) -> None:
    from sqlmodel import SQLModel

    eng = create_db_engine(f"sqlite:///{tmp_path / 'a.db'}")
    SQLModel.metadata.create_all(eng)
    try:
        with Session(eng) as s:
            audit.record_separately(eng, username="v", action=audit.WRITE_REFUSED, entity="lab_result")
            audit.record(s, username="v", action=audit.CREATE, entity="lab_result")
            s.rollback()
        with Session(eng) as s:
            assert [e.action for e in s.execute(select(AuditEntry)).scalars()] == ["write_refused"]
    finally:
        eng.dispose()


def test_amendment_keeps_the_earlier_value_who_and_why(session: Session) -> None:
    auth.create_user(session, actor="setup", username="doc", role=auth.CLINICIAN, password=None)
    auth.create_user(session, actor="setup", username="doc2", role=auth.CLINICIAN, password=None)
    services.add_patient(session, username="doc", mrn="M1", name="Ada Example")
    lab_id = services.add_lab_result(session, username="doc", mrn="M1", test="alt", taken_at="2026-01-12 08:00", value=400, unit="U/L")
    services.amend_lab_result(session, username="doc2", lab_id=lab_id, value=40, unit="U/L", reason="transcription error")
    services.hide_record(session, username="doc2", entity="lab_result", record_id=lab_id, reason="wrong patient")
    session.commit()
    row = session.get(LabResult, lab_id)
    assert row is not None and row.value == 40 and row.amended_at is not None
    assert row.hidden and row.hidden_reason == "wrong patient"  # hidden, kept
    steps = audit.history(session, "lab_result", lab_id)
    assert [(e.action, e.username) for e in steps] == [("create", "doc"), ("amend", "doc2"), ("hide", "doc2")]
    assert steps[1].before and steps[1].before["value"] == 400 and steps[1].after and steps[1].after["value"] == 40
    assert steps[1].reason == "transcription error" and steps[2].reason == "wrong patient"


def test_filters_and_newest_first(session: Session) -> None:
    t0 = dt.datetime(2026, 1, 1, 12)
    for i, (user, action) in enumerate([("alice", "create"), ("bob", "amend"), ("alice", "sign_in"), ("bob", "sign_in_failed")]):
        session.add(AuditEntry(at=t0 + dt.timedelta(hours=i), username=user, action=action, entity="x", entity_id=str(i)))
    session.commit()
    assert [e.entity_id for e in audit.query(session)] == ["3", "2", "1", "0"]
    assert [e.entity_id for e in audit.query(session, audit.AuditFilter(username="alice"))] == ["2", "0"]
    assert [e.entity_id for e in audit.query(session, audit.AuditFilter(action="sign_in_failed"))] == ["3"]
    window = audit.AuditFilter(since=t0 + dt.timedelta(hours=1), until=t0 + dt.timedelta(hours=3))
    assert [e.entity_id for e in audit.query(session, window)] == ["2", "1"]
    assert audit.count(session, window) == 2
    assert audit.distinct_values(session) == {
        "username": ["alice", "bob"],
        "action": ["amend", "create", "sign_in", "sign_in_failed"],
        "entity": ["x"],
    }
    assert [e.entity_id for e in audit.query(session, limit=1, offset=1)] == ["2"]


def test_csv_export_has_the_header_json_values_and_defuses_formulas(session: Session) -> None:
    audit.record(session, username="=HYPERLINK(\"x\")", action=audit.AMEND, entity="lab_result", entity_id=3, before={"value": 1}, after={"value": 2}, reason="-typo")
    session.commit()
    rows = list(csv.reader(io.StringIO(audit.to_csv(audit.query(session)))))
    assert tuple(rows[0]) == audit.CSV_COLUMNS
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["username"].startswith("'=") and row["reason"] == "'-typo"
    assert row["before"] == '{"value": 1}' and row["after"] == '{"value": 2}'
    assert row["at_utc"].endswith("Z")


def test_jsonable_makes_dates_and_tuples_storable() -> None:
    value = audit.jsonable({"d": dt.date(2026, 1, 2), "t": (1, dt.datetime(2026, 1, 2, 3, 4)), 5: {"x"}})
    assert value == {"d": "2026-01-02", "t": [1, "2026-01-02T03:04:00"], "5": ["x"]}


def test_record_shows_the_current_value_marks_it_amended_and_leaves_hidden_rows_out(session: Session) -> None:
    from monitoring.records import load_record

    auth.create_user(session, actor="setup", username="doc", role=auth.CLINICIAN, password=None)
    services.add_patient(session, username="doc", mrn="M1", name="Ada Example")
    a = services.add_lab_result(session, username="doc", mrn="M1", test="alt", taken_at="2026-01-12 08:00", value=400, unit="U/L")
    b = services.add_lab_result(session, username="doc", mrn="M1", test="alt", taken_at="2026-01-13 08:00", value=300, unit="U/L")
    c = services.add_lab_result(session, username="doc", mrn="M1", test="alt", taken_at="2026-01-14 08:00", value=200, unit="U/L")
    services.amend_lab_result(session, username="doc", lab_id=a, value=40, unit="U/L", reason="transcription error")
    services.hide_record(session, username="doc", entity="lab_result", record_id=c, reason="wrong patient")
    session.commit()
    record = load_record(session, "M1")
    shown = {p.id: (p.value, p.amended) for p in record.labs}
    assert shown == {a: (40.0, True), b: (300.0, False)}
    assert session.get(LabResult, c) is not None  # hidden, not deleted
