"""The episode step after a write reads and evaluates the written patients once (issue 13/16,
performance), and still reads again when another connection committed in between (a write that
landed meanwhile is never undone). On a SQLite file: the marker is PRAGMA data_version."""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

import monitoring.records
import monitoring.rules
from monitoring import auth, episodes, services
from monitoring.db import create_db_engine
from monitoring.models import AlertEpisode, LabResult

USER = "dr.test"
NOW = dt.datetime.combine(dt.date.today(), dt.time(0))


@pytest.fixture
def file_engine(db_path: Path) -> Iterator[Engine]:
    eng = create_db_engine(f"sqlite:///{db_path}")
    with Session(eng) as s:
        auth.create_user(s, actor="test", username=USER, role=auth.CLINICIAN, password=None)
        services.add_patient(s, username=USER, mrn="R1", name="Synthetic Once", weight_kg=70,
                             onset_date=dt.date.today() - dt.timedelta(days=12), culprit_drugs="allopurinol")
        s.commit()
    yield eng
    eng.dispose()


def _add_eosinophils(eng: Engine) -> int:
    with Session(eng, expire_on_commit=False) as s:
        lab_id = services.add_lab_result(s, username=USER, mrn="R1", test="eosinophils", taken_at=NOW, value=2.1,
                                         unit="10^9/L")
        s.commit()
    return lab_id


def _codes(eng: Engine) -> list[str]:
    with Session(eng) as s:
        stmt = select(AlertEpisode.code).where(AlertEpisode.closed_at.is_(None))  # type: ignore[union-attr]
        return sorted(s.execute(stmt).scalars())


def test_a_write_that_opens_an_episode_reads_the_patient_once(file_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    real = monitoring.records.load_records
    calls: list[Any] = []

    def counting(*a: Any, **k: Any) -> Any:
        calls.append(a[1] if len(a) > 1 else k.get("patient_ids"))
        return real(*a, **k)

    monkeypatch.setattr(monitoring.records, "load_records", counting)
    _add_eosinophils(file_engine)
    assert "EOSINOPHILIA" in _codes(file_engine)
    assert len(calls) == 1, f"records read {len(calls)} times after one write"


def test_a_commit_by_another_connection_in_between_is_read_again(file_engine: Engine, db_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the episode step's unlocked read and its lock, another program hides the result:
    the step must read again and open nothing, not reuse what it read before."""
    real = monitoring.rules.evaluate
    state = {"first": True}

    def evaluate_then_other_writer(*a: Any, **k: Any) -> Any:
        out = real(*a, **k)
        if state["first"]:
            state["first"] = False
            other = sqlite3.connect(db_path)
            other.execute("UPDATE lab_result SET hidden = 1, hidden_reason = 'entered in error'")
            other.commit()
            other.close()
        return out

    monkeypatch.setattr(monitoring.rules, "evaluate", evaluate_then_other_writer)
    _add_eosinophils(file_engine)
    assert not state["first"]
    assert "EOSINOPHILIA" not in _codes(file_engine)


def test_nothing_in_between_reuses_what_was_read(file_engine: Engine) -> None:
    """update_episodes given what was just read (and the marker taken before) uses it as it is;
    given a stale marker it reads and evaluates again."""
    from monitoring.guideline import load_profile

    _add_eosinophils(file_engine)
    assert "EOSINOPHILIA" in _codes(file_engine)
    prof = load_profile()
    with Session(file_engine, expire_on_commit=False) as s:
        version = episodes.read_version(s)
        assert version is not None
        records = monitoring.records.load_records(s, None)
        (pid,) = [r.patient.id for r in records]
        assert pid is not None
        # Alerts that do not match the data (none): used as they are only while the marker is current.
        none: dict[int, list[Any]] = {pid: []}
        changes = episodes.update_episodes(s, [pid], profile=prof, evaluated=episodes.Evaluated(records, none, version))
        assert [(c.code, c.change) for c in changes] == [("EOSINOPHILIA", "closed")]
        s.rollback()
        changes = episodes.update_episodes(s, [pid], profile=prof, evaluated=episodes.Evaluated(records, none, version - 1))
        assert "closed" not in [c.change for c in changes]
        s.rollback()


def test_reopen_and_close_through_the_single_read(file_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a file (the path that reuses what it read): new evidence reopens an acknowledged episode,
    audited; hiding the results closes it; the after-commit step reads the records once."""
    from monitoring.models import AuditEntry

    _add_eosinophils(file_engine)
    with Session(file_engine, expire_on_commit=False) as s:
        (ep,) = s.execute(select(AlertEpisode).where(AlertEpisode.code == "EOSINOPHILIA")).scalars().all()
        episodes.acknowledge(s, username=USER, episode_id=ep.id, reason="discussed_with_consultant")  # type: ignore[arg-type]
        s.commit()
    real = monitoring.records.load_records
    calls: list[Any] = []

    def counting(*a: Any, **k: Any) -> Any:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(monitoring.records, "load_records", counting)
    with Session(file_engine, expire_on_commit=False) as s:
        newer = services.add_lab_result(s, username=USER, mrn="R1", test="eosinophils", taken_at=NOW + dt.timedelta(hours=2),
                                        value=2.6, unit="10^9/L")
        s.commit()
    assert len(calls) == 1
    with Session(file_engine) as s:
        (ep,) = s.execute(select(AlertEpisode).where(AlertEpisode.code == "EOSINOPHILIA")).scalars().all()
        assert ep.state == episodes.OPEN and ep.reopen_count == 1 and f"lab_result:{newer}" in ep.evidence_rows
        assert s.execute(select(AuditEntry).where(AuditEntry.action == episodes.REOPEN)).scalars().all()
    with Session(file_engine, expire_on_commit=False) as s:
        for lab_id in s.execute(select(LabResult.id)).scalars().all():
            services.hide_record(s, username=USER, entity="lab_result", record_id=lab_id, reason="entered in error")
        s.commit()
    assert "EOSINOPHILIA" not in _codes(file_engine)
