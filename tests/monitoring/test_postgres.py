"""The same code and migrations on PostgreSQL (issue 7: DATABASE_URL=postgresql+psycopg://...).

The suite starts its own server (tests/pg_fixture.py). Here: the Alembic migrations on an empty
database, the append-only audit trail, the command line (init, import, users, alerts) through
DATABASE_URL, FHIR import, and the demo cohort's alerts and summaries equal on both backends.
The storage, import and engine test modules also run on PostgreSQL in full (tests/conftest.py,
BOTH_BACKENDS_MODULES).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, SQLModel

from monitoring import audit, schema
from monitoring.db import create_db_engine
from monitoring.models import AuditEntry, LabResult, Patient
from tests.conftest import FHIR_FIXTURES, PROJECT_ROOT
from tests.pg_fixture import PostgresServer, create_database, drop_database

TODAY = dt.date(2026, 3, 1)


def _cli(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "monitoring", *args], cwd=PROJECT_ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=300
    )


def test_migrations_build_the_whole_schema_on_an_empty_database(postgres_server: PostgresServer) -> None:
    url = create_database(postgres_server, empty=True)
    eng = create_db_engine(url)
    try:
        assert schema.current_revision(eng) is None
        schema.upgrade(eng)
        assert schema.is_current(eng)
        tables = set(inspect(eng).get_table_names())
        assert {t.name for t in SQLModel.metadata.sorted_tables} <= tables
        # Upgrading again is a no-op, and a downgrade to the first revision and back works.
        schema.ensure_schema(eng)
        from alembic import command

        cfg = schema.alembic_config(eng)
        with eng.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0001")
        schema.upgrade(eng)
        assert schema.is_current(eng)
    finally:
        eng.dispose()
        drop_database(postgres_server, url)


def test_audit_trail_is_append_only_on_postgresql(pg_engine: Engine) -> None:
    with Session(pg_engine) as s:
        audit.record(s, username="alice", action=audit.CREATE, entity="lab_result", entity_id=1, after={"value": 1.0})
        s.commit()
    for sql in ("UPDATE audit_entry SET username = 'mallory'", "DELETE FROM audit_entry", "TRUNCATE audit_entry"):
        with pytest.raises(DBAPIError, match="append-only"), pg_engine.begin() as conn:
            conn.exec_driver_sql(sql)
    with Session(pg_engine) as s:
        entry = s.execute(select(AuditEntry)).scalar_one()
        assert entry.username == "alice"
        entry.username = "mallory"
        with pytest.raises(audit.AuditTrailIsAppendOnly):
            s.commit()


def test_command_line_on_postgresql_through_database_url(pg_url: str, tmp_path: Path) -> None:
    assert _cli(pg_url, "init").returncode == 0
    patients = tmp_path / "patients.csv"
    patients.write_text("mrn,name,weight_kg,onset_date,culprit_drug\nPG-1,Synthetic Postgres,70,2026-01-05,Tegretol\n", encoding="utf-8")
    labs = tmp_path / "labs.csv"
    labs.write_text(
        "mrn,taken_at,test,value,unit,ref_high\n"
        "PG-1,2026-01-06 08:00,alt,6.0,ukat/L,0.67\n"
        "PG-1,2026-01-06 08:00,creatinine,176.8,umol/L,\n"
        "PG-1,2026-01-07,1742-6,300,U/L,40\n",
        encoding="utf-8",
    )
    meds = tmp_path / "meds.csv"
    meds.write_text("mrn,start_date,drug,daily_dose,unit\nPG-1,2026-01-06,methylprednisolone,1,mg/kg\nPG-1,2026-01-20,carbamazepine,200,mg\n", encoding="utf-8")
    done = _cli(pg_url, "import", str(patients), str(labs), str(meds))
    assert done.returncode == 0, done.stderr
    again = _cli(pg_url, "import", str(patients), str(labs), str(meds))
    assert again.returncode == 0 and "3 skipped" in again.stdout  # importing the same rows changes nothing
    bad = tmp_path / "bad.csv"
    bad.write_text("mrn,taken_at,test,value,unit\nPG-1,2026-01-06 08:00,alt,999,U/L\n", encoding="utf-8")
    refused = _cli(pg_url, "import", str(bad))
    assert refused.returncode == 2 and "bad.csv: row 2" in refused.stderr
    listed = json.loads(_cli(pg_url, "labs", "--mrn", "PG-1", "--json").stdout)
    assert [(r["test"], r["value"]) for r in listed][:2] == [("alt", 360.0), ("creatinine", 2.0)]
    alerts = json.loads(_cli(pg_url, "alerts", "--mrn", "PG-1", "--as-of", "2026-01-21", "--json").stdout)
    codes = {a["code"] for a in alerts}
    assert {"HEPATIC_INVOLVEMENT", "RECHALLENGE"} <= codes
    users = _cli(pg_url, "users", "add", "pg.admin", "--role", "admin", "--password-stdin", stdin="a long enough password\n")
    assert users.returncode == 0, users.stderr
    backup = _cli(pg_url, "backup", str(tmp_path / "x.db"))
    assert backup.returncode == 2 and "pg_dump" in backup.stderr


@pytest.mark.skipif(not FHIR_FIXTURES.is_dir(), reason="shared FHIR fixtures not present (../shared/fixtures/fhir)")
def test_fhir_fixture_import_on_postgresql(pg_engine: Engine) -> None:
    from monitoring.importers import import_files

    files = sorted(FHIR_FIXTURES.glob("*.json"))
    with Session(pg_engine, expire_on_commit=False) as s:
        report = import_files(s, files, username="test")
    assert report.ok, report.problem_lines()
    with Session(pg_engine, expire_on_commit=False) as s:
        again = import_files(s, files, username="test")
    assert again.ok and again.result is not None and again.result.labs_inserted == 0
    with Session(pg_engine) as s:
        alt = s.execute(select(LabResult).where(LabResult.test == "alt")).scalars().all()
    assert len(alt) == 18  # 10 + 8, as the fixtures' README says


def _evaluate_everything(eng: Engine) -> list[tuple[str, list[dict], dict]]:
    from monitoring.records import load_records
    from monitoring.rules import evaluate
    from monitoring.summary import summarise

    with Session(eng) as s:
        records = load_records(s, active_only=False)
    out = []
    for record in sorted(records, key=lambda r: r.patient.mrn):
        alerts = [a.to_dict() for a in evaluate(record, TODAY)]
        out.append((record.patient.mrn, alerts, summarise(record, TODAY)))
    return out


def test_demo_cohort_gives_the_same_alerts_and_summaries_on_both_backends(pg_engine: Engine, tmp_path: Path) -> None:
    from monitoring.demo import ensure_demo

    sqlite = create_db_engine(f"sqlite:///{tmp_path / 'demo.db'}")
    try:
        schema.upgrade(sqlite)
        assert ensure_demo(sqlite, TODAY)
        assert ensure_demo(pg_engine, TODAY)
        on_sqlite = _evaluate_everything(sqlite)
        on_pg = _evaluate_everything(pg_engine)
    finally:
        sqlite.dispose()
    assert len(on_pg) >= 5
    assert [mrn for mrn, _a, _s in on_pg] == [mrn for mrn, _a, _s in on_sqlite]
    assert any(alerts for _m, alerts, _s in on_pg)  # the comparison is of something
    assert on_pg == on_sqlite
    with Session(pg_engine) as s:
        assert all(p.synthetic for p in s.execute(select(Patient)).scalars())
