"""A killed import leaves a consistent database (PRODUCT.md §8; issue 7).

``python -m monitoring import`` of a 100,000-row labs file is killed with SIGKILL while it writes
(the write-ahead log is growing: rows are being inserted, the transaction is not committed). The
database must pass ``PRAGMA integrity_check`` and hold either none or all of that import, and the
same import run again afterwards must succeed with all 100,000 rows.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlmodel import Session

from monitoring.db import create_db_engine
from monitoring.models import AuditEntry, LabResult
from tests.conftest import PROJECT_ROOT

ROWS = 100_000
MRN = "CRASH-1"


def _write_files(tmp: Path) -> tuple[Path, Path]:
    patients = tmp / "patients.csv"
    patients.write_text(f"mrn,name\n{MRN},Synthetic Crash Example\n", encoding="utf-8")
    labs = tmp / "labs.csv"
    start = dt.datetime(2020, 1, 1)
    with labs.open("w", encoding="utf-8") as fh:
        fh.write("mrn,taken_at,test,value,unit\n")
        for i in range(ROWS):
            fh.write(f"{MRN},{(start + dt.timedelta(minutes=i)).isoformat(sep=' ')},alt,{10 + i % 300},U/L\n")
    return patients, labs


def _import(db: Path, *files: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitoring", "--db", str(db), "import", *map(str, files)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _state(db: Path) -> tuple[str, int, int]:
    eng = create_db_engine(f"sqlite:///{db}")
    try:
        with eng.connect() as conn:
            check = conn.exec_driver_sql("PRAGMA integrity_check").scalar()
        with Session(eng) as s:
            labs = s.execute(select(func.count()).select_from(LabResult)).scalar_one()
            imports = s.execute(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "import")).scalar_one()
    finally:
        eng.dispose()
    return str(check), int(labs), int(imports)


def test_sigkill_during_a_100k_row_import_leaves_none_or_all_of_it(db_path: Path, tmp_path: Path) -> None:
    patients, labs = _write_files(tmp_path)
    wal = Path(f"{db_path}-wal")
    baseline = wal.stat().st_size if wal.exists() else 0
    proc = _import(db_path, patients, labs)
    killed_while_running = False
    deadline = time.monotonic() + 300
    try:
        # Wait for the write phase: the WAL grows by more than a few pages while rows go in.
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            size = wal.stat().st_size if wal.exists() else 0
            if size > baseline + 256 * 1024:
                os.kill(proc.pid, signal.SIGKILL)
                killed_while_running = True
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None and not killed_while_running:
            proc.kill()
        proc.wait(timeout=60)
    assert killed_while_running, f"the import ended before it could be killed (exit {proc.returncode}): {proc.stderr.read() if proc.stderr else ''}"
    assert proc.returncode == -signal.SIGKILL

    check, stored, imports = _state(db_path)
    assert check == "ok"
    assert (stored, imports) in {(0, 0), (ROWS, 1)}, f"a killed import left {stored} of {ROWS} rows"

    # The database is usable: the same import now completes (or changes nothing if it had committed).
    again = _import(db_path, patients, labs)
    _out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err.decode(errors="replace")
    check, stored, _imports = _state(db_path)
    assert check == "ok" and stored == ROWS


def test_sigkill_while_reading_the_file_writes_nothing(db_path: Path, tmp_path: Path) -> None:
    """Killed early (parsing, before any write): nothing of the import is stored."""
    patients, labs = _write_files(tmp_path)
    proc = _import(db_path, patients, labs)
    time.sleep(0.3)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    check, stored, imports = _state(db_path)
    assert check == "ok"
    assert (stored, imports) in {(0, 0), (ROWS, 1)}
