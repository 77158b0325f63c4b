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


# --- an import's new patients: evaluated from what the import wrote (records.WrittenLabs) --------

_TODAY = dt.date.today()
_T = [(_TODAY - dt.timedelta(days=d)).isoformat() for d in range(6)]
_PATIENTS_CSV = "mrn,name,weight_kg,onset_date,culprit_drug\n" + "".join(
    f"N{i},Synthetic New {i},70,{_T[5]},allopurinol\n" for i in range(3)
)
# Out of time order within a patient, patients interleaved, two units converted, censored results
# both ways, a PCR given as text, a UTC offset, reference ranges, white space, equal times.
_LABS_CSV = "mrn,taken_at,test,value,unit,ref_low,ref_high\n" + "".join((
    f"N0,{_T[1]}T08:00,alt,410,U/L,,35\n",
    f"N0,{_T[3]}T08:00,alt,150,U/L,, 40\n",
    f"N1,{_T[2]}T06:30+01:00,eosinophils,2100,cells/uL,,\n",
    f"N0,{_T[1]}T08:00,creatinine,190,umol/L,60,110\n",
    f"N1,{_T[2]}T06:30+01:00,troponin_i,<0.03,ng/mL,,\n",
    f"N1,{_T[1]}T06:30,ferritin,>2000,ng/mL,,\n",
    f"N0,{_T[1]}T08:00,hhv6_pcr,detected,{{copies}}/mL,,\n",
    f"N2,{_T[0]},temperature, 39.2 ,Cel,,\n",
    f"N1,{_T[4]}T23:59,eosinophils,1.5,10^9/L,,\n",
    f"N0,{_T[2]}T10:15,ast,<=5,U/L,,\n",
))


def _import(eng: Engine, tmp: Path, labs: str = _LABS_CSV, patients: str | None = _PATIENTS_CSV) -> None:
    from monitoring.importers import import_files

    files = []
    if patients is not None:
        files.append(tmp / "patients.csv")
        files[-1].write_text(patients)
    files.append(tmp / "labs.csv")
    files[-1].write_text(labs)
    with Session(eng, expire_on_commit=False) as s:
        report = import_files(s, files, username=USER)
        assert report.ok, report.problem_lines()


def _spy(monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[Any]]:
    """(the known results each load_records call was given (the first: the episode step's), the
    ids each lab query read)."""
    real_load, real_rows = monitoring.records.load_records, monitoring.records._lab_rows
    given: list[Any] = []
    queried: list[Any] = []

    def load(*a: Any, **k: Any) -> Any:
        given.append(k.get("known_labs"))
        return real_load(*a, **k)

    def rows(session: Any, stmt: Any, params: dict[str, Any]) -> Any:
        queried.append(params.get("ids"))
        return real_rows(session, stmt, params)

    monkeypatch.setattr(monitoring.records, "load_records", load)
    monkeypatch.setattr(monitoring.records, "_lab_rows", rows)
    return given, queried


def test_an_import_evaluates_the_patients_it_created_from_what_it_wrote(file_engine: Engine, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The results of the patients an import created are not read back after its commit: what it
    wrote is, field by field and type by type, what load_records reads for them, and the episodes
    are those of a fresh evaluation."""
    given, queried = _spy(monkeypatch)
    _import(file_engine, tmp_path)
    assert len(given) == 1 and given[0], "the import's new patients were not evaluated from what it wrote"
    known = given[0]
    assert queried == [], f"results read back for {queried}"
    monkeypatch.undo()
    with Session(file_engine) as s:
        stored = {r.patient.id: r.labs for r in monitoring.records.load_records(s, sorted(known))}
    assert len(stored) == 3 and sum(map(len, stored.values())) == 10
    for pid, labs in stored.items():
        assert known[pid] == labs
        assert [tuple(map(type, p)) for p in known[pid]] == [tuple(map(type, p)) for p in labs]
    censored = {p.test: (p.comparator, p.value, p.censored_value) for labs in stored.values() for p in labs}
    assert censored["troponin_i"] == ("<", None, 30.0) and censored["ferritin"] == (">", 2000.0, None)
    before = _codes(file_engine)
    assert {"HEPATIC_INVOLVEMENT", "EOSINOPHILIA"} <= set(before)
    with Session(file_engine) as s:  # a fresh evaluation changes nothing
        assert episodes.update_episodes(s, sorted(known)) == []


def test_results_of_a_patient_already_stored_are_read_back(file_engine: Engine, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """R1 was stored before the import: its earlier results are not in the file, so they are read."""
    _add_eosinophils(file_engine)
    given, queried = _spy(monkeypatch)
    _import(file_engine, tmp_path, labs=_LABS_CSV + f"R1,{_T[1]}T07:00,alt,300,U/L,,\n")
    with Session(file_engine) as s:
        r1 = s.execute(select(LabResult.patient_id).where(LabResult.test == "alt")).scalars().all()
    (r1_id,) = {p for p in r1} - set(given[0])
    assert queried == [[r1_id]]
    assert {"EOSINOPHILIA", "HEPATIC_INVOLVEMENT"} <= set(_codes(file_engine))


def test_a_commit_by_another_connection_after_the_import_is_read(file_engine: Engine, tmp_path: Path, db_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Between the import's commit and its episode step another program hides N1's eosinophil
    counts: what the import wrote is no longer what is stored, so the results are read back and
    N1 has no EOSINOPHILIA episode."""
    real = episodes.reconcile_patients
    hidden: list[int] = []

    def other_writer_first(*a: Any, **k: Any) -> Any:
        other = sqlite3.connect(db_path)
        cur = other.execute("UPDATE lab_result SET hidden = 1, hidden_reason = 'entered in error' WHERE test = 'eosinophils'")
        hidden.append(cur.rowcount)
        other.commit()
        other.close()
        return real(*a, **k)

    monkeypatch.setattr(episodes, "reconcile_patients", other_writer_first)
    given, queried = _spy(monkeypatch)
    _import(file_engine, tmp_path)
    assert hidden == [2]
    assert len(queried) == 1 and len(queried[0]) == 3, "the results were not read back"
    assert "EOSINOPHILIA" not in _codes(file_engine)


def test_a_patient_written_again_in_the_same_transaction_is_read_back(file_engine: Engine, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from monitoring.importers import import_files

    (tmp_path / "patients.csv").write_text(_PATIENTS_CSV)
    (tmp_path / "labs.csv").write_text(_LABS_CSV)
    given, queried = _spy(monkeypatch)
    with Session(file_engine, expire_on_commit=False) as s:
        assert import_files(s, [tmp_path / "patients.csv", tmp_path / "labs.csv"], username=USER, commit=False).ok
        services.add_lab_result(s, username=USER, mrn="N2", test="eosinophils", taken_at=NOW + dt.timedelta(hours=3),
                                value=3.0, unit="10^9/L")
        s.commit()
    assert len(given[0]) == 2  # N0 and N1 from what the import wrote
    with Session(file_engine) as s:
        n2_id = s.execute(select(LabResult.patient_id).where(LabResult.value == 3.0)).scalar_one()
    assert n2_id not in given[0] and queried == [[n2_id]]  # N2 is read back
    with Session(file_engine) as s:
        n2 = s.execute(select(AlertEpisode).where(AlertEpisode.code == "EOSINOPHILIA")).scalars().all()
    assert len(n2) == 2  # N1 (from the file) and N2 (the service's result)


def test_a_file_with_a_repeated_result_is_read_back(file_engine: Engine, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A row repeated in the file goes the row-by-row way (skipped, not inserted twice): nothing is
    claimed known."""
    given, queried = _spy(monkeypatch)
    _import(file_engine, tmp_path, labs=_LABS_CSV + f"N0,{_T[1]}T08:00,alt,410,U/L,,35\n")
    assert given == [None] or given == [{}]
    assert len(queried) == 1
