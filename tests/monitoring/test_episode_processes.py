"""The episode store holds across processes (issue 17), on one SQLite file and on PostgreSQL: a
writer entering results that open and close alerts, two dashboard processes evaluating the ward
at the same time, and two notifiers sending to one real local webhook. Afterwards no process saw
an error, no patient has two open episodes of one code, every open episode matches what the rules
say now, and every notification was delivered exactly once."""

from __future__ import annotations

import datetime as dt
import multiprocessing as mp
import traceback
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from monitoring import auth, episodes, notify, services
from monitoring.db import create_db_engine, session_scope
from monitoring.guideline import load_profile
from monitoring.models import AlertEpisode, AlertNotification
from monitoring.records import load_records
from monitoring.rules import evaluate
from tests.monitoring.test_notify import Hooks, free_port

USER = "dr.proc"
PATIENTS = 4
ROUNDS = 12
TODAY = dt.date.today()


def prepare(url: str) -> None:
    eng = create_db_engine(url)
    try:
        with session_scope(eng) as s:
            auth.create_user(s, actor="test", username=USER, role=auth.CLINICIAN, password=None)
            for i in range(PATIENTS):
                services.add_patient(s, username=USER, mrn=f"P-{i}", name=f"Synthetic Process {i}", weight_kg=70,
                                     onset_date=TODAY - dt.timedelta(days=20))
    finally:
        eng.dispose()


def writer(url: str, start: Any, errors: Any) -> None:
    """Eosinophils up and down (EOSINOPHILIA opens and closes), ferritin over 3000 (critical)."""
    eng = create_db_engine(url)
    try:
        start.wait(timeout=60)
        for r in range(ROUNDS):
            for i in range(PATIENTS):
                with session_scope(eng) as s:
                    services.add_lab_result(
                        s, username=USER, mrn=f"P-{i}", test="eosinophils",
                        taken_at=dt.datetime.combine(TODAY - dt.timedelta(days=15), dt.time(0)) + dt.timedelta(hours=r),
                        value=2.0 if (r + i) % 2 == 0 else 0.3, unit="10^9/L",
                    )
                    if r == ROUNDS // 2:
                        services.add_lab_result(
                            s, username=USER, mrn=f"P-{i}", test="ferritin",
                            taken_at=dt.datetime.combine(TODAY - dt.timedelta(days=14), dt.time(i)), value=3500, unit="ng/mL",
                        )
    except BaseException:  # noqa: BLE001 - reported to the parent, which fails the test
        errors.put(f"writer: {traceback.format_exc()}")
    finally:
        eng.dispose()


def ward(url: str, start: Any, errors: Any) -> None:
    """A dashboard process: evaluate every active patient and reconcile, as the ward does."""
    eng = create_db_engine(url)
    prof = load_profile()
    try:
        start.wait(timeout=60)
        for _ in range(ROUNDS * 2):
            with Session(eng, expire_on_commit=False) as s:
                records = load_records(s, None)
                alerts = {r.patient.id: evaluate(r, TODAY, prof) for r in records}
                episodes.sync_evaluated(s, records, alerts, as_of=TODAY, profile=prof)  # type: ignore[arg-type]
    except BaseException:  # noqa: BLE001
        errors.put(f"ward: {traceback.format_exc()}")
    finally:
        eng.dispose()


def notifier(url: str, port: int, start: Any, errors: Any) -> None:
    eng = create_db_engine(url)
    settings = notify.NotifySettings(webhook_url=f"http://127.0.0.1:{port}/hook", retry_base_s=1)
    try:
        start.wait(timeout=60)
        for _ in range(ROUNDS * 2):
            notify.run_once(eng, settings, as_of=TODAY)
    except BaseException:  # noqa: BLE001
        errors.put(f"notifier: {traceback.format_exc()}")
    finally:
        eng.dispose()


def run_all(url: str) -> tuple[list[str], Hooks]:
    hooks = Hooks(free_port())
    ctx = mp.get_context("fork")
    start, errors = ctx.Event(), ctx.Queue()
    port = hooks.server.server_port
    procs = [
        ctx.Process(target=writer, args=(url, start, errors)),
        ctx.Process(target=ward, args=(url, start, errors)),
        ctx.Process(target=ward, args=(url, start, errors)),
        ctx.Process(target=notifier, args=(url, port, start, errors)),
        ctx.Process(target=notifier, args=(url, port, start, errors)),
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=900)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    for p in procs:
        if p.exitcode != 0:
            problems.append(f"{p.name} exited with {p.exitcode}")
            if p.is_alive():
                p.kill()
    # One last round, alone: whatever the others left due is sent now.
    eng = create_db_engine(url)
    try:
        notify.run_once(eng, notify.NotifySettings(webhook_url=f"http://127.0.0.1:{port}/hook"), as_of=TODAY)
    finally:
        eng.dispose()
    return problems, hooks


def check(url: str, hooks: Hooks) -> None:
    eng = create_db_engine(url)
    try:
        with Session(eng) as s:
            open_per_code = s.execute(
                select(AlertEpisode.patient_id, AlertEpisode.code, func.count())
                .where(AlertEpisode.closed_at.is_(None))  # type: ignore[union-attr]
                .group_by(AlertEpisode.patient_id, AlertEpisode.code)
            ).all()
            assert open_per_code and all(n == 1 for *_, n in open_per_code)
            # The open episodes are exactly what the rules say now.
            prof = load_profile()
            holding = {(r.patient.id, a.code) for r in load_records(s, None) for a in evaluate(r, TODAY, prof)}
            assert {(pid, code) for pid, code, _ in open_per_code} == holding
            closed = s.execute(select(func.count()).select_from(AlertEpisode).where(AlertEpisode.closed_at.is_not(None))).scalar_one()  # type: ignore[union-attr]
            assert closed > 0  # eosinophilia came and went
            notes = s.execute(select(AlertNotification)).scalars().all()
            assert notes and all(n.status == notify.SENT and n.attempts == 1 for n in notes)
    finally:
        eng.dispose()
        hooks.stop()
    # Delivered exactly once each: one webhook call per stored notification, none twice.
    received = Counter((b["mrn"], b["code"]) for b in hooks.bodies)
    assert sum(received.values()) == len(notes)
    ferritin = {mrn for (mrn, code) in received if code == "FERRITIN_HIGH"}
    assert ferritin == {f"P-{i}" for i in range(PATIENTS)}
    assert all(received[(f"P-{i}", "FERRITIN_HIGH")] == 1 for i in range(PATIENTS))


def test_writer_two_wards_and_two_notifiers_on_one_sqlite_file(db_url: str) -> None:
    prepare(db_url)
    problems, hooks = run_all(db_url)
    assert problems == []
    check(db_url, hooks)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_writer_two_wards_and_two_notifiers_on_postgresql(backend: str, pg_url: str) -> None:
    prepare(pg_url)
    problems, hooks = run_all(pg_url)
    assert problems == []
    check(pg_url, hooks)
