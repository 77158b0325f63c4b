"""Schema: Alembic creates and upgrades it (a database made by an older version is upgraded, never
dropped); SQLite runs in WAL mode with a busy timeout and enforced foreign keys (PRODUCT.md §8)."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from monitoring import schema
from monitoring.db import BUSY_TIMEOUT_MS, create_db_engine, resolve_database_url
from monitoring.models import TABLES


def test_upgrade_on_an_empty_file_creates_every_table(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    engine = create_db_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    names = set(inspect(engine).get_table_names())
    assert {t.__tablename__ for t in TABLES} <= names  # type: ignore[attr-defined]
    assert schema.current_revision(engine) == schema.head_revision(engine)
    assert schema.is_current(engine)
    engine.dispose()


def test_new_database_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private.db"
    create_db_engine(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_upgrade_from_the_first_migration_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    engine = create_db_engine(f"sqlite:///{path}")
    schema.upgrade(engine, "0001")
    assert schema.current_revision(engine) == "0001"
    now = dt.datetime(2026, 1, 1, 12, 0)
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO patient (mrn, name, culprit_drugs, setting, active, synthetic, created_at, updated_at, weight_kg)"
                " VALUES ('OLD1', 'Synthetic Old', '[\"allopurinol\"]', 'clinic', 1, 1, :now, :now, 61.5)"
            ),
            {"now": now},
        )
        c.execute(
            text(
                "INSERT INTO lab_result (patient_id, test, loinc, taken_at, value, unit, original_value, original_unit,"
                " source, created_at, hidden) VALUES (1, 'alt', '1742-6', :t, 88.0, 'U/L', '88', 'U/L', 'csv', :now, 0)"
            ),
            {"t": dt.datetime(2025, 12, 30, 8, 0), "now": now},
        )
    schema.ensure_schema(engine)
    assert schema.current_revision(engine) == schema.head_revision(engine)
    with engine.connect() as c:
        assert c.execute(text("SELECT mrn, weight_kg, culprit_drugs FROM patient")).one() == ("OLD1", 61.5, '["allopurinol"]')
        assert c.execute(text("SELECT test, value, original_value FROM lab_result")).one() == ("alt", 88.0, "88")
    engine.dispose()


def test_init_twice_is_harmless(tmp_path: Path) -> None:
    path = tmp_path / "twice.db"
    engine = create_db_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO patient (mrn, name, culprit_drugs, setting, active, synthetic, created_at, updated_at)"
                " VALUES ('T1', 'Synthetic Twice', '[]', 'inpatient', 1, 1, '2026-01-01', '2026-01-01')"
            )
        )
    schema.upgrade(engine)
    schema.ensure_schema(engine)
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM patient")).scalar_one() == 1
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_busy_timeout_and_foreign_keys(db_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{db_path}")
    with engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar_one().lower() == "wal"
        assert c.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == BUSY_TIMEOUT_MS  # the default bound
        assert c.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
    engine.dispose()


def test_foreign_keys_are_enforced(db_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{db_path}")
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO lab_result (patient_id, test, taken_at, value, unit, original_value, original_unit,"
                " source, created_at, hidden) VALUES (999, 'alt', '2026-01-01 00:00:00.000000', 1, 'U/L', '1', 'U/L',"
                " 'csv', '2026-01-01 00:00:00.000000', 0)"
            )
        )
    engine.dispose()


def test_a_medication_row_is_unique_per_patient_drug_and_start(db_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{db_path}")
    with engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO patient (id, mrn, name, culprit_drugs, setting, active, synthetic, created_at, updated_at)"
                " VALUES (1, 'U1', 'Synthetic U', '[]', 'inpatient', 1, 1, '2026-01-01', '2026-01-01')"
            )
        )
    row = (
        "INSERT INTO medication_row (patient_id, drug, drug_as_entered, start_date, daily_dose_mg, dose_as_entered,"
        " unit_as_entered, source, created_at, hidden) VALUES (1, 'prednisone', 'prednisone', '2026-01-02', 60, '60',"
        " 'mg', 'csv', '2026-01-01', 0)"
    )
    with engine.begin() as c:
        c.execute(text(row))
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(text(row))
    engine.dispose()


def test_indexes_for_a_patients_results_by_test_and_time(db_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{db_path}")
    indexes = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("lab_result")}
    assert indexes["ix_lab_patient_test_time"] == ["patient_id", "test", "taken_at"]
    engine.dispose()


def test_a_results_business_identifier_is_indexed_only_where_it_is_given(db_path: Path) -> None:
    # Migration 0009: FHIR Observation.identifier, found per patient; CSV rows (none) are not indexed.
    engine = create_db_engine(f"sqlite:///{db_path}")
    with engine.connect() as c:
        sql = c.execute(text("SELECT sql FROM sqlite_master WHERE name = 'ix_lab_patient_identifier'")).scalar_one()
    assert "patient_id" in sql and "source_identifier" in sql and "WHERE source_identifier IS NOT NULL" in sql
    engine.dispose()


@pytest.mark.parametrize(
    ("given", "expected_prefix"),
    [("postgresql+psycopg://u@h/db", "postgresql+psycopg://"), ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db")],
)
def test_db_option_takes_a_url(given: str, expected_prefix: str) -> None:
    assert resolve_database_url(given).startswith(expected_prefix)


def test_db_option_takes_a_path_and_the_environment_is_the_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_database_url(str(tmp_path / "a.db")) == f"sqlite:///{tmp_path / 'a.db'}"
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/from_env.db")
    assert resolve_database_url(None) == "sqlite:////tmp/from_env.db"
    monkeypatch.delenv("DATABASE_URL")
    assert resolve_database_url(None).endswith("data/dress_monitor.db")


def test_upgrade_to_0011_adds_an_empty_display_name_and_keeps_the_accounts(tmp_path: Path) -> None:
    """Issue 18 point 10: accounts made before display names keep signing in, named by their user
    name (display_name NULL); the column holds what the model allows."""
    path = tmp_path / "accounts.db"
    engine = create_db_engine(f"sqlite:///{path}")
    schema.upgrade(engine, "0010")
    with engine.begin() as c:
        assert "display_name" not in {col["name"] for col in inspect(c).get_columns("app_user")}
        c.execute(
            text("INSERT INTO app_user (username, role, disabled, failed_attempts, created_at) VALUES ('old', 'clinician', 0, 0, :now)"),
            {"now": dt.datetime(2026, 1, 1, 12, 0)},
        )
    schema.ensure_schema(engine)
    assert schema.current_revision(engine) == "0011" == schema.head_revision(engine)
    with engine.connect() as c:
        assert c.execute(text("SELECT username, role, display_name FROM app_user")).one() == ("old", "clinician", None)
        column = next(col for col in inspect(c).get_columns("app_user") if col["name"] == "display_name")
    assert column["nullable"] and column["type"].length == 120
    from monitoring.models import User

    assert User.__table__.c.display_name.type.length == 120  # type: ignore[attr-defined]
    engine.dispose()
    from monitoring import backup

    assert backup.schema_differences(path, "0011") == []
    assert backup.schema_differences(path, "0010") == ["table app_user differs"]  # restore tells the two apart


def test_the_newest_migration_file_is_alembics_head(tmp_path: Path) -> None:
    """schema.is_current trusts the newest file name for the head: it must be Alembic's own."""
    eng = create_db_engine(f"sqlite:///{tmp_path / 'h.db'}")
    assert schema.newest_file_revision() == schema.head_revision(eng)
    eng.dispose()


def test_is_current_only_at_the_head(tmp_path: Path) -> None:
    eng = create_db_engine(f"sqlite:///{tmp_path / 'c.db'}")
    assert not schema.is_current(eng)  # no alembic_version table yet
    schema.upgrade(eng, "0010")
    assert not schema.is_current(eng)
    schema.ensure_schema(eng)
    assert schema.is_current(eng) and schema.current_revision(eng) == schema.head_revision(eng)
    eng.dispose()
