"""Alert episodes evaluated beside the lab feed (monitoring/episodes_follow.py): every patient written
is evaluated after its last write, bursts cost one evaluation, failures are tried again, a restart
catches up, stopping finishes the queue; over the real listener, an episode follows its ACK."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

import monitoring.episodes_follow as follow
from monitoring.db import create_db_engine
from monitoring.episodes import open_episodes
from monitoring.episodes_follow import EpisodeFollower
from monitoring.guideline import load_profile
from monitoring.hl7.ack import parse_ack
from monitoring.hl7.codes import load_code_map
from monitoring.hl7.server import make_storer
from monitoring.models import AlertEpisode
from monitoring.records import load_records
from monitoring.rules import evaluate
from monitoring.schema import upgrade
from tests.monitoring.hl7.listener import Listener
from tests.monitoring.hl7.messages import adt, obx, oru

HIGH = [obx(1, "1742-6^ALT^LN", "250", "U/L", flags="H"), obx(2, "711-2^Eos^LN", "2.1", "10*9/L")]


def _engine(tmp_path: Path, name: str = "f.db") -> Engine:
    eng = create_db_engine(f"sqlite:///{tmp_path / name}")
    upgrade(eng)
    return eng


def _open(eng: Engine) -> dict[str, set[str]]:
    """MRN -> codes of the open episodes."""
    with Session(eng) as s:
        mrns = {r.patient.id: r.patient.mrn for r in load_records(s, None, active_only=False)}
        out: dict[str, set[str]] = {}
        for e in open_episodes(s):
            out.setdefault(mrns[e.patient_id], set()).add(e.code)
    return out


def _evaluated(eng: Engine) -> dict[str, set[str]]:
    """MRN -> codes an evaluation gives now (what the episodes must say)."""
    with Session(eng) as s:
        return {
            r.patient.mrn: codes
            for r in load_records(s, None, active_only=True)
            if (codes := {a.code for a in evaluate(r, dt.date.today(), load_profile())})
        }


def _messages() -> list[bytes]:
    out = [adt(mrn=f"F-{k}", name=f"SYNTHETIC^F{k}", control_id=f"ADT-F{k}").encode() for k in range(3)]
    for n in range(12):
        out.append(oru(HIGH, mrn=f"F-{n % 3}", control_id=f"F-{n}", order=f"ORD-{n}^LAB").encode())
    return out


def _written(tmp_path: Path, **timing: float) -> tuple[Engine, EpisodeFollower]:
    """A started follower (no catch-up) and the first four messages stored through it."""
    eng = _engine(tmp_path)
    follower = EpisodeFollower(eng, catch_up=False, **timing).start()
    store = make_storer(eng, load_code_map(), follower=follower)
    for raw in _messages()[:4]:
        store(raw)
    return eng, follower


def test_deferred_episodes_match_evaluating_before_each_ack(tmp_path: Path) -> None:
    codes = load_code_map()
    sync_eng, eng = _engine(tmp_path, "sync.db"), _engine(tmp_path)
    store_sync = make_storer(sync_eng, codes)
    follower = EpisodeFollower(eng, interval=0.2).start()
    store = make_storer(eng, codes, follower=follower)
    for raw in _messages():
        store_sync(raw)
        assert parse_ack(store(raw)[0])[0] == "AA"
    assert follower.wait_idle(60)
    follower.close()
    assert _open(eng) == _open(sync_eng) == _evaluated(eng)
    assert set(_open(eng)) == {"F-0", "F-1", "F-2"}


def test_a_burst_costs_one_evaluation_per_patient_after_its_last_write(tmp_path: Path) -> None:
    eng = _engine(tmp_path)
    follower = EpisodeFollower(eng, interval=5.0, catch_up=False)
    store = make_storer(eng, load_code_map(), follower=follower)
    raws = _messages()
    for raw in raws:  # before the thread starts: everything waits for the first pass
        store(raw)
    with Session(eng) as s:
        assert list(s.execute(select(AlertEpisode)).scalars()) == []  # not evaluated before the ACK
    follower.start()
    assert follower.wait_idle(60)
    assert (follower.evaluations, follower.patients_evaluated) == (1, 3)
    assert _open(eng) == _evaluated(eng) and len(_open(eng)) == 3
    follower.close()


def test_a_failed_evaluation_is_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = follow.reconcile_patients
    calls: list[set[int]] = []

    def flaky(engine: Engine, ids: Any, **k: Any) -> Any:
        calls.append(set(ids))
        if len(calls) == 1:
            raise RuntimeError("database unavailable")
        return real(engine, ids, **k)

    monkeypatch.setattr(follow, "reconcile_patients", flaky)
    eng, follower = _written(tmp_path, interval=0.0, retry_delay=0.1)
    assert follower.wait_idle(60)
    follower.close()
    assert follower.failures == 1 and len(calls) >= 2
    assert _open(eng) == _evaluated(eng) == {"F-0": _evaluated(eng)["F-0"]}


def test_a_restart_catches_up_what_a_killed_listener_left(tmp_path: Path) -> None:
    eng = _engine(tmp_path)
    lost: list[set[int]] = []
    never = EpisodeFollower(eng, catch_up=False)  # never started: as if killed before evaluating
    never.submit = lost.append  # type: ignore[method-assign]  # the queue of a process killed with SIGKILL
    store = make_storer(eng, load_code_map(), follower=never)
    for raw in _messages():
        store(raw)
    assert lost and _open(eng) == {}
    restarted = EpisodeFollower(eng).start()
    assert restarted.wait_idle(60)
    restarted.close()
    assert _open(eng) == _evaluated(eng) and len(_open(eng)) == 3


def test_stopping_finishes_the_queue(tmp_path: Path) -> None:
    eng, follower = _written(tmp_path, interval=30.0, quiet=30.0)
    assert _open(eng) == {}  # nothing evaluated yet: the pass waits 30 s
    done = threading.Event()
    threading.Thread(target=lambda: (follower.close(), done.set())).start()
    assert done.wait(60), "close() must not wait out the interval"
    assert _open(eng) == _evaluated(eng) != {}
    assert "lag from commit to evaluated" in follower.summary()


def test_a_negative_interval_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval -1"):
        EpisodeFollower(_engine(tmp_path), interval=-1)


def test_over_the_real_listener_an_episode_follows_its_ack(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    eng = _engine(tmp_path, "live.db")
    listener = Listener(f"sqlite:///{db}", tmp_path / "listener.log", "--evaluate-every", "0.5").start()
    try:
        client = listener.connect()
        assert parse_ack(client.send(adt(mrn="LIVE-1", name="SYNTHETIC^LIVE")))[0] == "AA"
        assert parse_ack(client.send(oru(HIGH, mrn="LIVE-1", control_id="LIVE-M1")))[0] == "AA"
        deadline = time.monotonic() + 30
        while not _open(eng) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _open(eng) == _evaluated(eng) and "LIVE-1" in _open(eng)
        client.close()
    finally:
        listener.stop()
    assert "alert episodes: " in listener.log() and "lag from commit to evaluated" in listener.log()


def test_listen_refuses_a_negative_evaluation_interval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from monitoring.cli import main

    _engine(tmp_path, "x.db")
    code = main(["--db", f"sqlite:///{tmp_path / 'x.db'}", "listen", "--evaluate-every", "-2"])
    assert code != 0
    assert "--evaluate-every: value -2.0: must be 0 or more seconds" in capsys.readouterr().err


def test_a_long_pass_is_followed_by_a_pause_twice_its_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Under a sustained load the evaluation takes at most a third of the listener's time.
    eng = _engine(tmp_path)
    spans: list[tuple[float, float]] = []

    def slow(engine: Engine, ids: Any, **k: Any) -> list[Any]:
        start = time.monotonic()
        time.sleep(0.4)
        spans.append((start, time.monotonic()))
        return []

    monkeypatch.setattr(follow, "reconcile_patients", slow)
    follower = EpisodeFollower(eng, interval=0.0, catch_up=False).start()
    follower.submit([1])
    deadline = time.monotonic() + 10
    while not follower._running and time.monotonic() < deadline:  # the first pass is running
        time.sleep(0.01)
    follower.submit([2])  # written during the first pass
    assert follower.wait_idle(30)
    follower.close()
    assert len(spans) == 2
    (_s1, e1), (s2, _e2) = spans
    assert s2 - e1 >= 2 * 0.4 - 0.05


def test_a_burst_that_stops_is_evaluated_a_quarter_second_later(tmp_path: Path) -> None:
    eng, follower = _written(tmp_path, interval=30.0)
    t0 = time.monotonic()
    assert follower.wait_idle(10)
    assert time.monotonic() - t0 < 5  # not the 30 s interval: the writes stopped
    assert _open(eng) == _evaluated(eng) != {}
    follower.close()


def test_writes_that_never_stop_are_evaluated_within_the_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    eng = _engine(tmp_path)
    starts: list[float] = []
    monkeypatch.setattr(follow, "reconcile_patients", lambda engine, ids, **k: starts.append(time.monotonic()) or [])
    follower = EpisodeFollower(eng, interval=1.0, quiet=0.25, catch_up=False).start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.2:  # a write every 50 ms: never a quarter of a second of quiet
        follower.submit([1])
        time.sleep(0.05)
    follower.close()
    gaps = [b - a for a, b in zip([t0, *starts], starts, strict=False)]
    assert len(starts) >= 3 and max(gaps) < 1.0 + 0.3


def test_help_names_the_default_interval(capsys: pytest.CaptureFixture[str]) -> None:
    from monitoring.cli import main

    try:
        main(["listen", "--help"])
    except SystemExit:
        pass
    assert f"(default {follow.DEFAULT_INTERVAL:g}, a design choice" in " ".join(capsys.readouterr().out.split())
