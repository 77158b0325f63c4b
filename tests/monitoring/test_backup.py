"""Backup and restore (issue 7): consistent while others write, owner-only files, and a restore
that refuses anything that is not a sound backup of this schema and changes nothing then."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from monitoring import auth, backup, schema, services
from monitoring.db import create_db_engine, session_scope
from monitoring.models import AuditEntry, LabResult, Patient
from tests.conftest import PROJECT_ROOT
from tests.monitoring import test_concurrency as conc


def _fill(url: str, labs: int = 3) -> None:
    eng = create_db_engine(url)
    try:
        with session_scope(eng) as s:
            auth.create_user(s, actor="test", username="doc", role=auth.CLINICIAN, password=None)
            services.add_patient(s, username="doc", mrn="B1", name="Backup Example")
            for i in range(labs):
                services.add_lab_result(s, username="doc", mrn="B1", test="alt", taken_at=f"2026-01-{i + 1:02d}", value=100 + i, unit="U/L")
    finally:
        eng.dispose()


def _labs(url: str) -> list[float]:
    eng = create_db_engine(url)
    try:
        with Session(eng) as s:
            return [v for v in s.execute(select(LabResult.value).order_by(LabResult.taken_at)).scalars() if v is not None]
    finally:
        eng.dispose()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_backup_is_a_sound_owner_only_single_file_copy(db_url: str, db_path: Path, tmp_path: Path) -> None:
    _fill(db_url)
    dest = tmp_path / "copies" / "b.db"
    info = backup.backup(db_url, dest)
    assert info.path == dest.resolve() and info.counts["lab_result"] == 3 and info.revision == schema.head_revision(create_db_engine(db_url))
    assert _mode(dest) == 0o600
    assert not Path(f"{dest}-wal").exists() and not [p for p in dest.parent.iterdir() if p.name.startswith(".")]
    with closing(sqlite3.connect(dest)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert _labs(f"sqlite:///{dest}") == [100, 101, 102]


def test_backup_refuses_an_existing_file_the_database_itself_and_other_databases(db_url: str, db_path: Path, tmp_path: Path) -> None:
    existing = tmp_path / "there.db"
    existing.write_bytes(b"keep me")
    with pytest.raises(backup.BackupError, match="exists already"):
        backup.backup(db_url, existing)
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(backup.BackupError, match="database itself"):
        backup.backup(db_url, db_path)
    with pytest.raises(backup.BackupError, match="pg_dump"):
        backup.backup("postgresql+psycopg://u@localhost/db", tmp_path / "x.db")
    with pytest.raises(backup.BackupError, match="in-memory"):
        backup.backup("sqlite://", tmp_path / "x.db")


def test_restore_takes_a_safety_backup_then_replaces_the_database(db_url: str, db_path: Path, tmp_path: Path) -> None:
    _fill(db_url, labs=2)
    saved = backup.backup(db_url, tmp_path / "b.db")
    eng = create_db_engine(db_url)
    with session_scope(eng) as s:
        services.add_lab_result(s, username="doc", mrn="B1", test="alt", taken_at="2026-02-01", value=500, unit="U/L")
    eng.dispose()
    assert _labs(db_url) == [100, 101, 500]
    result = backup.restore(db_url, saved.path)
    assert _labs(db_url) == [100, 101]
    assert result.safety_backup is not None and _mode(result.safety_backup) == 0o600
    assert _labs(f"sqlite:///{result.safety_backup}") == [100, 101, 500]  # what was there is kept
    assert result.revision == saved.revision


def test_restore_of_an_older_schema_migrates_it(tmp_path: Path, db_url: str) -> None:
    old = tmp_path / "old.db"
    eng = create_db_engine(f"sqlite:///{old}")
    schema.upgrade(eng, "0001")
    eng.dispose()
    result = backup.restore(db_url, old)
    assert result.restored.revision == "0001"
    assert result.revision == schema.head_revision(create_db_engine(db_url)) != "0001"


def _assert_unchanged(db_url: str, labs: list[float]) -> None:
    assert _labs(db_url) == labs
    eng = create_db_engine(db_url)
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    eng.dispose()


def _not_sqlite(tmp_path: Path) -> Path:
    p = tmp_path / "random.db"
    p.write_bytes(os.urandom(8192))
    return p


def _other_schema(tmp_path: Path) -> Path:
    p = tmp_path / "other.db"
    with closing(sqlite3.connect(p)) as conn:
        conn.execute("CREATE TABLE things (id INTEGER PRIMARY KEY)")
        conn.commit()
    return p


def _unknown_revision(tmp_path: Path) -> Path:
    p = tmp_path / "future.db"
    eng = create_db_engine(f"sqlite:///{p}")
    schema.upgrade(eng)
    with eng.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    eng.dispose()
    return p


def _damaged(tmp_path: Path) -> Path:
    p = tmp_path / "damaged.db"
    eng = create_db_engine(f"sqlite:///{p}")
    schema.upgrade(eng)
    with eng.begin() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode = DELETE")
    eng.dispose()
    data = bytearray(p.read_bytes())
    page = 4096
    # Scribble over the b-tree header of every page after the first: the file header is intact,
    # the tables are not.
    for start in range(page, len(data), page):
        data[start : start + 12] = b"\xff" * 12
    p.write_bytes(bytes(data))
    return p


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nope.db"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_not_sqlite, "not an SQLite database"),
        (_other_schema, "not a DRESS monitor database"),
        (_unknown_revision, "revision"),
        (_damaged, "damaged|cannot be read|not a DRESS"),
        (_missing, "no such file"),
    ],
    ids=["random-bytes", "other-schema", "unknown-revision", "damaged", "missing"],
)
def test_restore_refuses_what_is_not_a_backup_and_changes_nothing(db_url: str, db_path: Path, tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    _fill(db_url, labs=2)
    bad = make(tmp_path)
    with pytest.raises(backup.BackupError, match=message):
        backup.restore(db_url, bad)
    _assert_unchanged(db_url, [100, 101])
    assert not (db_path.parent / "backups").exists()  # refused before anything was done


def _cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitoring", "--db", str(db), *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120
    )


def test_backup_and_restore_commands(db_url: str, db_path: Path, tmp_path: Path) -> None:
    _fill(db_url, labs=2)
    dest = tmp_path / "cli.db"
    made = _cli(db_path, "backup", str(dest))
    assert made.returncode == 0, made.stderr
    assert "backup written to" in made.stdout and _mode(dest) == 0o600
    again = _cli(db_path, "backup", str(dest))
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = _cli(db_path, "restore", str(_not_sqlite(tmp_path)))
    assert bad.returncode == 2 and "not an SQLite database" in bad.stderr and "Traceback" not in bad.stderr
    done = _cli(db_path, "restore", str(dest))
    assert done.returncode == 0, done.stderr
    assert "the database as it was is kept in" in done.stdout
    eng = create_db_engine(db_url)
    with Session(eng) as s:
        actions = list(s.execute(select(AuditEntry.action).where(AuditEntry.entity == "database")).scalars())
    eng.dispose()
    # The restored database is the one from before the backup command ran, plus the restore entry.
    assert actions == ["restore"]


def test_backup_taken_during_concurrent_writes_restores_every_committed_row(db_url: str, tmp_path: Path) -> None:
    conc.prepare(db_url)
    taken: dict[str, object] = {}

    def during(progress) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 120
        while sum(progress) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        committed_before = list(progress)
        taken["info"] = backup.backup(db_url, tmp_path / "hot.db")
        taken["before"] = committed_before
        taken["after"] = list(progress)

    errors, committed = conc.run_writers(db_url, count=120, during=during)
    assert errors == []
    before, after = taken["before"], taken["after"]
    assert isinstance(before, list) and isinstance(after, list)
    assert sum(after) < conc.WRITERS * 120, "the backup must be taken while the writers are still writing"
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    backup.restore(target, tmp_path / "hot.db")
    eng = create_db_engine(target)
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        with Session(eng) as s:
            times = set(s.execute(select(LabResult.taken_at)).scalars())
            assert s.execute(select(func.count()).select_from(Patient)).scalar_one() == 1
    finally:
        eng.dispose()
    # Every result committed before the backup began is in it; and what it holds is a consistent
    # snapshot: for each writer, its first k results for some k, never a gap.
    for w in range(conc.WRITERS):
        mine = {t for t in times if (t - conc.BASE_TIME).total_seconds() / 60 % conc.WRITERS == w}
        k = len(mine)
        assert before[w] <= k <= after[w]
        assert mine == {conc.taken_at(w, i) for i in range(k)}
    conc.assert_all_stored(db_url, committed)


# --- restore compares the whole schema (issue 12 point 7) -------------------------------------


def _tampered(tmp_path: Path, db_url: str, *statements: str) -> Path:
    """A real backup of this database, then altered the way an attacker (or a careless hand) would."""
    p = tmp_path / "tampered.db"
    backup.backup(db_url, p)
    with closing(sqlite3.connect(p)) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    return p


@pytest.mark.parametrize(
    ("statements", "message"),
    [
        (
            (
                "DROP TRIGGER audit_entry_no_update",
                "DROP TRIGGER audit_entry_no_delete",
                "CREATE TRIGGER alt_divided AFTER INSERT ON lab_result WHEN NEW.test = 'alt' "
                "BEGIN UPDATE lab_result SET value = NEW.value / 10 WHERE id = NEW.id; END",
            ),
            r"trigger alt_divided not expected.*|trigger audit_entry_no_delete missing",
        ),
        (("CREATE TRIGGER audit_entry_no_nothing BEFORE INSERT ON patient BEGIN SELECT 1; END",), "trigger audit_entry_no_nothing not expected"),
        (("DROP INDEX ix_lab_patient_time",), "index ix_lab_patient_time missing"),
        (("CREATE INDEX ix_extra ON patient (name)",), "index ix_extra not expected"),
        (("ALTER TABLE patient ADD COLUMN shadow TEXT",), "table patient differs"),
        (("CREATE VIEW everyone AS SELECT name FROM patient",), "view everyone not expected"),
        (("CREATE TABLE exfiltrate (x TEXT)",), "table exfiltrate not expected"),
    ],
    ids=["audit-triggers-dropped-alt-trigger-added", "extra-trigger", "index-dropped", "index-added", "column-added", "view-added", "table-added"],
)
def test_restore_refuses_a_backup_whose_schema_was_changed(db_url: str, db_path: Path, tmp_path: Path, statements: tuple[str, ...], message: str) -> None:
    _fill(db_url, labs=2)
    bad = _tampered(tmp_path, db_url, *statements)
    with pytest.raises(backup.BackupError, match=message) as refused:
        backup.restore(db_url, bad)
    assert "its schema is not the one of revision" in str(refused.value)
    _assert_unchanged(db_url, [100, 101])
    assert not (db_path.parent / "backups").exists()
    # The command line says the same and exits 2.
    proc = _cli(db_path, "restore", str(bad))
    assert proc.returncode == 2 and "its schema is not the one of revision" in proc.stderr
    _assert_unchanged(db_url, [100, 101])


def test_an_untouched_backup_of_an_older_revision_matches_its_own_schema(tmp_path: Path, db_url: str) -> None:
    old = tmp_path / "old.db"
    eng = create_db_engine(f"sqlite:///{old}")
    schema.upgrade(eng, "0002")
    eng.dispose()
    assert backup.schema_differences(old, "0002") == []
    assert backup.schema_differences(old, schema.head_revision(create_db_engine(db_url)) or "")  # not the newest one
