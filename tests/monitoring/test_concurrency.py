"""Concurrent writers lose nothing (PRODUCT.md §8; issue 7).

Four processes each enter 500 results through the write services at the same time, every result
its own transaction as in the dashboard, all on the same patient (the worst case: every write
touches the same patient row). Afterwards the database holds exactly the 2,000 results, each with
its audit entry, and no writer saw an error. Once on one SQLite file (WAL, busy timeout), once on
PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import traceback
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from monitoring import auth, services
from monitoring.db import create_db_engine, session_scope
from monitoring.models import AuditEntry, LabResult

WRITERS = 4
RESULTS_EACH = 500
MRN = "CONC-1"
BASE_TIME = dt.datetime(2026, 1, 1, 0, 0)


def taken_at(writer: int, i: int) -> dt.datetime:
    """A distinct time for every (writer, i): no two writes collide on (patient, test, time)."""
    return BASE_TIME + dt.timedelta(minutes=i * WRITERS + writer)


def prepare(url: str) -> None:
    eng = create_db_engine(url)
    try:
        with session_scope(eng) as s:
            for w in range(WRITERS):
                auth.create_user(s, actor="test", username=f"writer{w}", role=auth.CLINICIAN, password=None)
            services.add_patient(s, username="writer0", mrn=MRN, name="Concurrent Example", weight_kg=70)
    finally:
        eng.dispose()


def write_results(url: str, writer: int, count: int, start: Any, progress: Any, errors: Any) -> None:
    """One writer process: ``count`` results, one transaction each; ``progress[writer]`` is the
    number committed so far (set only after the commit returned)."""
    eng = create_db_engine(url)
    try:
        start.wait(timeout=60)
        for i in range(count):
            with session_scope(eng) as s:
                services.add_lab_result(
                    s,
                    username=f"writer{writer}",
                    mrn=MRN,
                    test="alt",
                    taken_at=taken_at(writer, i),
                    value=10 + (i % 400),
                    unit="U/L",
                )
            progress[writer] = i + 1
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test
        errors.put(f"writer {writer}: {traceback.format_exc()}")
    finally:
        eng.dispose()


def run_writers(url: str, count: int = RESULTS_EACH, during: Any = None) -> tuple[list[str], list[int]]:
    """Start the writers together; call ``during(progress)`` while they run. Returns the errors
    and how many each writer committed."""
    ctx = mp.get_context("fork")
    start = ctx.Event()
    progress = ctx.Array("i", WRITERS)
    errors = ctx.Queue()
    procs = [ctx.Process(target=write_results, args=(url, w, count, start, progress, errors)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    start.set()
    if during is not None:
        during(progress)
    for p in procs:
        p.join(timeout=600)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    for w, p in enumerate(procs):
        if p.exitcode != 0:
            problems.append(f"writer {w} exited with {p.exitcode}")
            if p.is_alive():
                p.kill()
    return problems, list(progress)


def assert_all_stored(url: str, committed: Sequence[int]) -> None:
    eng = create_db_engine(url)
    try:
        with Session(eng) as s:
            times = set(s.execute(select(LabResult.taken_at).where(LabResult.test == "alt")).scalars())
            expected = {taken_at(w, i) for w in range(WRITERS) for i in range(committed[w])}
            assert len(times) == sum(committed)
            assert times == expected
            created = s.execute(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.entity == "lab_result", AuditEntry.action == "create")
            ).scalar_one()
            assert created == sum(committed)
    finally:
        eng.dispose()


def test_four_processes_writing_into_one_sqlite_file_lose_nothing(db_url: str) -> None:
    prepare(db_url)
    errors, committed = run_writers(db_url)
    assert errors == []
    assert committed == [RESULTS_EACH] * WRITERS
    assert_all_stored(db_url, committed)
    eng = create_db_engine(db_url)
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    finally:
        eng.dispose()


def test_four_processes_writing_into_postgresql_lose_nothing(pg_url: str) -> None:
    prepare(pg_url)
    errors, committed = run_writers(pg_url)
    assert errors == []
    assert committed == [RESULTS_EACH] * WRITERS
    assert_all_stored(pg_url, committed)
