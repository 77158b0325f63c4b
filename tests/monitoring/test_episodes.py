"""Alert episodes (PRODUCT.md §10): opened by the write that makes an alert hold, closed when it
stops, acknowledged with a coded reason, snoozed within the profile's horizon (never for the codes
that cannot wait), reopened by new evidence; every action audited, viewers refused."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from monitoring import auth, episodes, services
from monitoring.guideline import load_profile
from monitoring.importers import import_files
from monitoring.models import AlertEpisode, AuditEntry, LabResult, Patient

USER = "dr.test"
TODAY = dt.date.today()


def d(n: int) -> dt.date:
    return TODAY - dt.timedelta(days=n)


def at(n: int, hour: int = 6) -> dt.datetime:
    return dt.datetime.combine(d(n), dt.time(hour if n else 0))


@pytest.fixture(autouse=True)
def accounts(session: Session) -> None:
    auth.create_user(session, actor="test", username=USER, role=auth.CLINICIAN, password=None)
    auth.create_user(session, actor="test", username="ward.viewer", role=auth.VIEWER, password=None)
    services.add_patient(session, username=USER, mrn="E1", name="Synthetic Episode", weight_kg=70,
                         onset_date=d(12), culprit_drugs="allopurinol")
    session.commit()


def _lab(session: Session, days: int, test: str, value: float, unit: str, hour: int = 6, ref_high: float | None = None) -> int:
    lab_id = services.add_lab_result(session, username=USER, mrn="E1", test=test, taken_at=at(days, hour), value=value,
                                     unit=unit, ref_high=ref_high)
    session.commit()
    return lab_id


def _episodes(session: Session, code: str | None = None) -> list[AlertEpisode]:
    session.expire_all()
    stmt = select(AlertEpisode).order_by(AlertEpisode.id)  # type: ignore[arg-type]
    if code:
        stmt = stmt.where(AlertEpisode.code == code)
    return list(session.execute(stmt).scalars())


def test_a_result_that_makes_an_alert_hold_opens_one_episode_with_its_row(session: Session) -> None:
    lab_id = _lab(session, 0, "eosinophils", 2.1, "10^9/L")
    (ep,) = _episodes(session, "EOSINOPHILIA")
    assert ep.state == episodes.OPEN and ep.closed_at is None and ep.severity == "warning"
    assert f"lab_result:{lab_id}" in ep.evidence_rows
    assert ep.onset_date == TODAY  # it did not hold on yesterday's data: new since yesterday
    assert episodes.is_new(ep, TODAY)
    # The same result again changes nothing, and so does another commit.
    _lab(session, 0, "eosinophils", 2.1, "10^9/L")
    assert len(_episodes(session, "EOSINOPHILIA")) == 1


def test_an_alert_that_already_held_yesterday_is_not_new_since_yesterday(session: Session) -> None:
    _lab(session, 3, "eosinophils", 2.1, "10^9/L")
    (ep,) = _episodes(session, "EOSINOPHILIA")
    assert ep.onset_date == d(1) and not episodes.is_new(ep, TODAY)


def test_the_episode_closes_when_the_alert_stops_holding_and_a_new_one_opens_when_it_holds_again(session: Session) -> None:
    _lab(session, 2, "eosinophils", 2.1, "10^9/L")
    _lab(session, 1, "eosinophils", 0.4, "10^9/L")
    (closed,) = _episodes(session, "EOSINOPHILIA")
    assert closed.state == episodes.CLOSED and closed.closed_at is not None
    _lab(session, 0, "eosinophils", 1.9, "10^9/L")
    first, second = _episodes(session, "EOSINOPHILIA")
    assert first.id == closed.id and first.closed_at is not None
    assert second.state == episodes.OPEN and second.closed_at is None


def test_hiding_the_result_behind_it_closes_the_episode(session: Session) -> None:
    lab_id = _lab(session, 0, "eosinophils", 2.1, "10^9/L")
    services.hide_record(session, username=USER, entity="lab_result", record_id=lab_id, reason="wrong patient")
    session.commit()
    (ep,) = _episodes(session, "EOSINOPHILIA")
    assert ep.state == episodes.CLOSED


def test_acknowledge_with_a_coded_reason_is_signed_and_audited(session: Session) -> None:
    _lab(session, 0, "eosinophils", 2.1, "10^9/L")
    (ep,) = _episodes(session, "EOSINOPHILIA")
    episodes.acknowledge(session, username=USER, episode_id=ep.id, reason="discussed_with_consultant")
    session.commit()
    (ep,) = _episodes(session, "EOSINOPHILIA")
    assert ep.state == episodes.ACKNOWLEDGED and ep.acknowledged_by == USER and ep.ack_reason == "discussed_with_consultant"
    entry = session.execute(select(AuditEntry).where(AuditEntry.action == episodes.ACKNOWLEDGE)).scalar_one()
    assert entry.username == USER and entry.entity_id == str(ep.id) and entry.patient_id == ep.patient_id
    assert entry.after is not None and entry.after["ack_reason"] == "discussed_with_consultant"


def test_not_relevant_needs_a_text_and_an_unknown_reason_is_refused(session: Session) -> None:
    _lab(session, 0, "eosinophils", 2.1, "10^9/L")
    (ep,) = _episodes(session, "EOSINOPHILIA")
    with pytest.raises(episodes.EpisodeActionRefused, match="needs a text"):
        episodes.acknowledge(session, username=USER, episode_id=ep.id, reason="not_relevant", text="  ")
    with pytest.raises(episodes.EpisodeActionRefused, match="must be one of"):
        episodes.acknowledge(session, username=USER, episode_id=ep.id, reason="busy")
    episodes.acknowledge(session, username=USER, episode_id=ep.id, reason="not_relevant",
                         text="<b>known</b> hypereosinophilia, followed by haematology")
    session.commit()
    (ep,) = _episodes(session, "EOSINOPHILIA")
    assert ep.ack_text == "<b>known</b> hypereosinophilia, followed by haematology"  # stored as typed, shown as text


def test_a_viewer_cannot_acknowledge_or_snooze_and_the_refusal_is_audited(session: Session) -> None:
    _lab(session, 0, "eosinophils", 2.1, "10^9/L")
    (ep,) = _episodes(session, "EOSINOPHILIA")
    with pytest.raises(auth.PermissionDenied):
        episodes.acknowledge(session, username="ward.viewer", episode_id=ep.id, reason="ivig_ordered")
    with pytest.raises(auth.PermissionDenied):
        episodes.snooze(session, username="ward.viewer", episode_id=ep.id, until=d(-2))
    session.rollback()
    (ep,) = _episodes(session, "EOSINOPHILIA")
    assert ep.state == episodes.OPEN
    refused = session.execute(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.action == "write_refused", AuditEntry.entity == episodes.ENTITY)).scalar_one()
    assert refused == 2


def test_snooze_within_the_profile_horizon_then_it_wakes_on_its_date(session: Session) -> None:
    _lab(session, 0, "eosinophils", 2.1, "10^9/L")
    (ep,) = _episodes(session, "EOSINOPHILIA")
    horizon = load_profile().days("snooze_max_days")
    with pytest.raises(episodes.EpisodeActionRefused, match=f"at most {horizon} days ahead"):
        episodes.snooze(session, username=USER, episode_id=ep.id, until=TODAY + dt.timedelta(days=horizon + 1))
    with pytest.raises(episodes.EpisodeActionRefused, match="must be after today"):
        episodes.snooze(session, username=USER, episode_id=ep.id, until=TODAY)
    episodes.snooze(session, username=USER, episode_id=ep.id, until=TODAY + dt.timedelta(days=horizon))
    session.commit()
    (ep,) = _episodes(session, "EOSINOPHILIA")
    assert ep.state == episodes.SNOOZED
    assert episodes.effective_state(ep, TODAY) == episodes.SNOOZED
    assert episodes.effective_state(ep, TODAY + dt.timedelta(days=horizon)) == episodes.OPEN
    assert session.execute(select(AuditEntry).where(AuditEntry.action == episodes.SNOOZE)).scalar_one().patient_id == ep.patient_id


def test_cardiac_involvement_can_be_acknowledged_but_never_snoozed(session: Session) -> None:
    _lab(session, 0, "troponin_t", 60, "ng/L")
    ep = _episodes(session, "CARDIAC_INVOLVEMENT")[0]
    with pytest.raises(episodes.EpisodeActionRefused, match="never snoozed"):
        episodes.snooze(session, username=USER, episode_id=ep.id, until=TODAY + dt.timedelta(days=1))
    assert {"RECHALLENGE", "CULPRIT_NOT_STOPPED", "ICU_CRITERIA", "CARDIAC_INVOLVEMENT"} == episodes.NEVER_SNOOZE
    episodes.acknowledge(session, username=USER, episode_id=ep.id, reason="discussed_with_consultant")
    session.commit()
    assert _episodes(session, "CARDIAC_INVOLVEMENT")[0].state == episodes.ACKNOWLEDGED


def test_new_evidence_reopens_an_acknowledged_episode_and_the_reopening_is_audited(session: Session) -> None:
    _lab(session, 1, "eosinophils", 2.1, "10^9/L")
    (ep,) = _episodes(session, "EOSINOPHILIA")
    episodes.acknowledge(session, username=USER, episode_id=ep.id, reason="ivig_ordered")
    session.commit()
    # A result of another test changes nothing behind this alert: it stays acknowledged.
    _lab(session, 0, "alt", 30, "U/L", hour=1)
    assert _episodes(session, "EOSINOPHILIA")[0].state == episodes.ACKNOWLEDGED
    newer = _lab(session, 0, "eosinophils", 3.4, "10^9/L", hour=2)
    (ep,) = _episodes(session, "EOSINOPHILIA")
    assert ep.state == episodes.OPEN and ep.reopen_count == 1 and ep.reopened_at is not None
    assert f"lab_result:{newer}" in ep.evidence_rows
    assert episodes.is_new(ep, TODAY)
    entry = session.execute(select(AuditEntry).where(AuditEntry.action == episodes.REOPEN)).scalar_one()
    assert entry.after is not None and entry.after["new_evidence"] == [f"lab_result:{newer}"]


def test_a_second_open_episode_of_the_same_code_is_refused_by_the_database(session: Session) -> None:
    _lab(session, 0, "eosinophils", 2.1, "10^9/L")
    (ep,) = _episodes(session, "EOSINOPHILIA")
    session.add(AlertEpisode(patient_id=ep.patient_id, code="EOSINOPHILIA", severity="warning", onset_date=TODAY,
                             alert_date=TODAY))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()
    # A closed one beside the open one is fine (history).
    session.add(AlertEpisode(patient_id=ep.patient_id, code="EOSINOPHILIA", severity="warning", onset_date=d(30),
                             alert_date=d(30), state=episodes.CLOSED, closed_at=dt.datetime(2020, 1, 1)))
    session.commit()


def test_evaluating_twice_on_stale_state_opens_no_duplicate(session: Session) -> None:
    """Two processes that both saw no open episode: the second insert gives way."""
    _lab(session, 0, "eosinophils", 2.1, "10^9/L")
    pid = session.execute(select(Patient.id).where(Patient.mrn == "E1")).scalar_one()
    session.execute(AlertEpisode.__table__.delete())  # type: ignore[attr-defined]
    session.commit()
    episodes.update_episodes(session, [pid])
    # The same reconciliation from a process that had not seen that insert:
    from monitoring.records import load_records
    from monitoring.rules import evaluate

    (record,) = load_records(session, [pid])
    alert = next(a for a in evaluate(record, TODAY, load_profile()) if a.code == "EOSINOPHILIA")
    assert episodes._insert_open(session, pid, alert, episodes.evidence_rows(alert), TODAY, dt.datetime.now()) is None
    session.commit()
    assert len(_episodes(session, "EOSINOPHILIA")) == 1


def test_an_import_opens_the_episodes_of_the_patients_it_wrote(session: Session, tmp_path: Path) -> None:
    f = tmp_path / "labs.csv"
    f.write_text(f"mrn,taken_at,test,value,unit\nE1,{at(0).isoformat()},troponin_t,55,ng/L\n", encoding="utf-8")
    report = import_files(session, [f], username=USER)
    assert not report.problems
    codes = {e.code for e in _episodes(session)}
    assert {"CARDIAC_INVOLVEMENT", "ICU_CRITERIA"} <= codes


def test_a_failing_evaluation_never_loses_the_write(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    import monitoring.rules

    def broken(*_a: object, **_k: object) -> list[object]:
        raise RuntimeError("rule bug")

    monkeypatch.setattr(monitoring.rules, "evaluate", broken)
    lab_id = _lab(session, 0, "eosinophils", 2.1, "10^9/L")
    assert session.get(LabResult, lab_id) is not None
    assert _episodes(session) == []
    monkeypatch.undo()
    pid = session.execute(select(Patient.id).where(Patient.mrn == "E1")).scalar_one()
    episodes.update_episodes(session, [pid])  # the next evaluation catches up
    session.commit()
    assert [e.code for e in _episodes(session)] == ["EOSINOPHILIA"]


def test_a_database_error_while_reconciling_never_loses_the_write(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing statement in the episode step (a lock timeout, say) is undone alone: on PostgreSQL
    it would otherwise abort the whole transaction and the result with it."""
    from sqlalchemy import text

    def failing_lock(s: Session, _ids: object) -> None:
        s.execute(text("SELECT no_such_column FROM patient"))

    monkeypatch.setattr(episodes, "_lock_patients", failing_lock)
    lab_id = _lab(session, 0, "eosinophils", 2.1, "10^9/L")
    session.expire_all()
    assert session.get(LabResult, lab_id) is not None
    assert _episodes(session) == []
