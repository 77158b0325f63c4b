"""The dashboard's database access: the data version moves on every kind of write, and a patient
page reads its patient through indexes only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dashboard import store
from monitoring import services
from monitoring.db import create_db_engine
from tests.dashboard.cohort import USER, write_cohort

TODAY = dt.date.today()


@pytest.fixture
def cohort_url(db_url: str) -> Iterator[str]:
    """A migrated SQLite file holding the three-patient cohort."""
    with Session(create_db_engine(db_url)) as s:
        write_cohort(s, TODAY)
    yield db_url


def test_data_version_changes_on_every_kind_of_write(engine: Engine, session: Session) -> None:
    write_cohort(session, TODAY)
    before = store.data_version(engine)
    lab_id = services.add_lab_result(session, username=USER, mrn="CALM-1", test="crp",
                                     taken_at=dt.datetime.combine(TODAY, dt.time(0)), value=3, unit="mg/L")
    session.commit()
    after_insert = store.data_version(engine)
    assert after_insert != before
    services.amend_lab_result(session, username=USER, lab_id=lab_id, value=4, unit="mg/L", reason="typo")
    session.commit()
    after_amend = store.data_version(engine)
    assert after_amend != after_insert
    services.hide_record(session, username=USER, entity="lab_result", record_id=lab_id, reason="wrong patient")
    session.commit()
    assert store.data_version(engine) != after_amend


def test_a_patient_page_reads_its_patient_through_indexes_only(cohort_url: str) -> None:
    """What a patient page reads on a data change (its record, its photo dates, the version) never
    scans a clinical table: each query finds the patient's rows through an index, so its cost does
    not grow with the number of other patients (issue 8)."""
    eng = store._engine(cohort_url)
    captured: list[tuple[str, object]] = []

    def _capture(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        captured.append((statement, parameters))

    event.listen(eng, "before_cursor_execute", _capture)
    try:
        version = store.data_version(eng)
        record = store.patient_record(cohort_url, version, "WARN-1")
        assert record is not None and record.patient.mrn == "WARN-1"
        store.photo_dates(cohort_url, version, record.patient.id)
    finally:
        event.remove(eng, "before_cursor_execute", _capture)
    selects = [(s, p) for s, p in captured if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) >= 3
    with eng.connect() as conn:
        for statement, parameters in selects:
            plan = [str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]  # type: ignore[arg-type]
            scans = [ln for ln in plan if ln.startswith("SCAN") and "USING" not in ln and ln != "SCAN CONSTANT ROW"]
            assert not scans, (statement, plan)
