"""Database faults and command-line safety (issue 12 points 5 and 8, issue 18 point 13): a busy,
locked or read-only database gives one clear message (exit 1, no traceback, nothing stored) after a
bounded wait; no SQL or parameter reaches a message or a log; a mistyped ``--db`` is an error, not
a new empty database; a symbolic link is not followed by ``backup``; a '%' in a PostgreSQL URL
works; ``import --json`` prints its refusal on stdout."""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from monitoring.cli import main
from monitoring.db import FAULT_MESSAGE, create_db_engine, database_fault, describe_error
from monitoring.models import Patient

ROOT = Path(__file__).resolve().parents[2]
NAME = "Synthetic Fault-Patient"
PATIENTS = f"mrn,name,sex,birth_date,weight_kg,onset_date,culprit_drug\nF1,{NAME},F,1970-03-02,70,2026-01-10,carbamazepine\n"


@pytest.fixture
def patients_csv(tmp_path: Path) -> Path:
    path = tmp_path / "patients.csv"
    path.write_text(PATIENTS, encoding="utf-8")
    return path


def _patients(db: Path) -> int:
    engine = create_db_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as s:
            return int(s.execute(select(func.count()).select_from(Patient)).scalar_one())
    finally:
        engine.dispose()


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "monitoring", *args], cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120
    )


# --- busy, locked, read-only ------------------------------------------------------------------


def test_a_locked_database_refuses_the_import_quickly_with_the_fault_message(db_path: Path, patients_csv: Path) -> None:
    holder = sqlite3.connect(db_path)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write
    try:
        started = time.monotonic()
        proc = _run("--db", str(db_path), "import", str(patients_csv), env={"DRESS_DB_BUSY_TIMEOUT_S": "0.5"})
        waited = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == f"error: {FAULT_MESSAGE}"
    assert "Traceback" not in proc.stderr and NAME not in proc.stderr and "INSERT" not in proc.stderr
    assert waited < 30  # bounded by the setting, not SQLite's former 30 s (+ interpreter start-up)
    assert _patients(db_path) == 0  # nothing stored
    # Once the other writer is done, the same command works.
    assert _run("--db", str(db_path), "import", str(patients_csv)).returncode == 0
    assert _patients(db_path) == 1


def test_a_read_only_database_still_lists_patients_and_refuses_writes(db_path: Path, patients_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(db_path), "import", str(patients_csv)]) == 0
    capsys.readouterr()
    read_only = f"sqlite:///file:{db_path}?mode=ro&uri=true"
    assert main(["--db", read_only, "patients", "--json"]) == 0
    assert [p["mrn"] for p in json.loads(capsys.readouterr().out)] == ["F1"]
    other = patients_csv.with_name("more.csv")
    other.write_text(PATIENTS.replace("F1,", "F2,"), encoding="utf-8")
    assert main(["--db", read_only, "import", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"error: {FAULT_MESSAGE}"
    assert _patients(db_path) == 1


def test_busy_timeout_setting_is_checked() -> None:
    import os

    from monitoring.db import busy_timeout_s

    os.environ["DRESS_DB_BUSY_TIMEOUT_S"] = "soon"
    try:
        with pytest.raises(ValueError, match="DRESS_DB_BUSY_TIMEOUT_S: value 'soon'"):
            busy_timeout_s()
    finally:
        del os.environ["DRESS_DB_BUSY_TIMEOUT_S"]
    assert busy_timeout_s() == 5.0


# --- no SQL parameters in messages or logs ----------------------------------------------------


def test_database_errors_and_logs_carry_no_patient_data(engine, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    engine.echo = True  # the engine's own statement log, as a debugging administrator would turn on
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    with Session(engine) as s:
        s.add(Patient(mrn="DUP", name=NAME, culprit_drugs=["lamotrigine"]))
        s.commit()
        s.add(Patient(mrn="DUP", name="Synthetic Second", culprit_drugs=["lamotrigine"]))
        with pytest.raises(IntegrityError) as raised:
            s.commit()
    engine.echo = False
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "INSERT INTO patient" in logged  # the log was captured ...
    for secret in (NAME, "Synthetic Second", "lamotrigine"):
        assert secret not in logged  # ... without its parameters
        assert secret not in str(raised.value)
        assert secret not in describe_error(raised.value)
    assert database_fault(raised.value) is None  # a refused value is not "busy"
    assert describe_error(raised.value).startswith("database refused the change (IntegrityError:")


def test_postgresql_too_long_name_prints_no_sql_and_no_value(pg_url: str, tmp_path: Path) -> None:
    long_name = "Synthetic " + "N" * 191  # 201 characters: more than the column holds
    path = tmp_path / "long.csv"
    path.write_text(PATIENTS.replace(NAME, long_name), encoding="utf-8")
    proc = _run("--db", pg_url, "import", str(path))
    assert proc.returncode in (1, 2), proc.stdout  # refused (by the intake check or the database)
    assert "Traceback" not in proc.stderr and "INSERT" not in proc.stderr and "[SQL" not in proc.stderr
    assert long_name not in proc.stderr and "carbamazepine" not in proc.stderr
    assert "nothing" in proc.stderr  # says that nothing was stored


# --- --db naming nothing, symbolic links, '%' in URLs ----------------------------------------


def test_a_mistyped_db_path_is_an_error_and_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    typo = tmp_path / "dres_monitor.db"
    for command in (["patients"], ["backup", str(tmp_path / "b.db")], ["users", "list"]):
        assert main(["--db", str(typo), *command]) == 2
        err = capsys.readouterr().err
        assert f"--db: {typo}: no database here" in err and "init" in err
        assert not typo.exists() and not (tmp_path / "b.db").exists()
    assert main(["--db", str(typo), "init"]) == 0  # init is the one command that creates it
    assert typo.is_file()
    assert main(["--db", str(typo), "patients"]) == 0


def test_a_database_url_to_a_missing_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{missing}")
    assert main(["patients"]) == 2
    assert "no database here" in capsys.readouterr().err and not missing.exists()


def test_a_dangling_symbolic_link_is_not_followed(db_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "elsewhere" / "stolen.db"
    target.parent.mkdir()
    link = tmp_path / "backup.db"
    link.symlink_to(target)
    assert main(["--db", str(db_path), "backup", str(link)]) == 2
    assert "a symbolic link" in capsys.readouterr().err
    assert not target.exists()
    db_link = tmp_path / "db-link.db"
    db_link.symlink_to(tmp_path / "elsewhere" / "new.db")
    assert main(["--db", str(db_link), "init"]) == 1
    assert "symbolic link to a file that does not exist" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere" / "new.db").exists()


def test_a_percent_sign_in_a_postgresql_url_works_for_init(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"{pg_url}?application_name=ward%2520round"  # a %-escape, as passwords often carry
    assert main(["--db", url, "init"]) == 0
    assert "schema at revision" in capsys.readouterr().out
    assert main(["--db", url, "patients", "--json"]) == 0


# --- import --json when refused -----------------------------------------------------------------


def test_import_json_refusal_prints_the_report_on_stdout(db_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "labs.csv"
    bad.write_text("mrn,taken_at,test,value,unit\nNOPE,2026-01-12T08:00,alt,-5,U/L\n", encoding="utf-8")
    assert main(["--db", str(db_path), "import", "--json", str(bad)]) == 2
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["ok"] is False and report["result"] is None
    assert report["problems"] and all(str(bad) in line for line in report["problems"])
    assert "import refused" in captured.err
