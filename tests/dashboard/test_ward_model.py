"""The ward model (dashboard.ward_model): order of the ward rows, changes since the previous value,
what is new since yesterday, the incremental evaluation."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlmodel import Session

from dashboard import ward_model
from monitoring import services, severity
from monitoring.db import create_db_engine
from monitoring.guideline import load_profile
from monitoring.models import LabResult, Patient
from monitoring.records import load_records
from tests.dashboard.cohort import USER, write_cohort
from tests.dashboard.shown import shown_html

TODAY = dt.date.today()


def _rows(session: Session) -> list[ward_model.WardRow]:
    """The ward's rows with each patient's open alert episodes (what "new since yesterday" and the
    acknowledgements come from), as ward_model.ward_rows builds them."""
    from monitoring.episodes import open_episodes

    prof = load_profile()
    return ward_model.sort_ward([
        ward_model.ward_row(r, prof, TODAY, open_episodes(session, [r.patient.id or 0])) for r in load_records(session)
    ])


def test_critical_first_then_warning_then_the_rest(session: Session) -> None:
    write_cohort(session, TODAY)
    rows = _rows(session)
    assert [r.mrn for r in rows] == ["CRIT-1", "WARN-1", "CALM-1"]
    assert [r.worst for r in rows] == ["critical", "warning", ""]
    crit = rows[0]
    assert crit.alerts[0][0] == "critical" and ("warning", "HEPATIC_INVOLVEMENT") in crit.alerts
    assert [s for s, _ in crit.alerts] == sorted((s for s, _ in crit.alerts), key=severity.rank)


def test_change_since_previous_value_has_arrow_and_signed_number(session: Session) -> None:
    write_cohort(session, TODAY)
    crit, warn, calm = _rows(session)
    alt = crit.changes["alt"]
    assert alt is not None and alt.text() == "400 ↑ +20"
    assert calm.changes["alt"] is not None and calm.changes["alt"].text() == "22 ↓ −3"
    assert warn.changes["eosinophils"] is not None and warn.changes["eosinophils"].text() == "1.8 ↑ +0.8"
    assert calm.changes["ferritin"] is None
    assert calm.changes["eosinophils"] is not None and calm.changes["eosinophils"].text() == "0.2 (first)"


def test_course_day_and_dose_in_mg_and_mg_per_kg(session: Session) -> None:
    write_cohort(session, TODAY)
    crit = _rows(session)[0]
    assert crit.day_since_onset == 10
    assert crit.course_day == 8
    assert crit.dose_mg == 100.0  # methylprednisolone 80 mg x 1.25
    assert crit.dose_mg_per_kg is not None and abs(crit.dose_mg_per_kg - 100 / 70) < 1e-9


def test_new_since_yesterday_names_new_alert_and_crossed_line(session: Session) -> None:
    write_cohort(session, TODAY)
    crit, warn, calm = _rows(session)
    assert any(n.startswith("new warning:") and "osinophil" in n for n in warn.new)
    assert "Eosinophils ↑ above 1.5" in warn.new
    assert not calm.new
    assert not any(n.startswith("new") for n in crit.new)  # its alerts already held yesterday


def test_a_crossing_back_below_is_news_too(session: Session) -> None:
    write_cohort(session, TODAY)
    services.add_lab_result(session, username=USER, mrn="CALM-1", test="creatinine",
                            taken_at=dt.datetime.combine(TODAY - dt.timedelta(days=1), dt.time(6)), value=1.5, unit="mg/dL")
    services.add_lab_result(session, username=USER, mrn="CALM-1", test="creatinine",
                            taken_at=dt.datetime.combine(TODAY, dt.time(0)), value=1.0, unit="mg/dL")
    session.commit()
    calm = next(r for r in _rows(session) if r.mrn == "CALM-1")
    ch = calm.changes["creatinine"]
    assert ch is not None and ch.crossed == "↓ below 1.5× baseline"  # 1.5 x the recorded 0.9 = 1.35


def test_ward_table_html_order_and_badges(session: Session) -> None:
    write_cohort(session, TODAY)
    from dashboard import widgets

    html = widgets.ward_table_html(_rows(session), [("alt", "ALT U/L")], as_of=TODAY)
    positions = [html.index(f'data-mrn="{m}"') for m in ("CRIT-1", "WARN-1", "CALM-1")]
    assert positions == sorted(positions)
    assert "‼ CRITICAL · Cardiac involvement, ICU criteria" in html
    assert html.count('target="_self"') == 3  # each name links to its timeline (test_ward_round.py)
    assert "no alerts" in html




# --- incremental ward evaluation (issue 8): after one write only that patient is evaluated -----


@pytest.fixture
def ward_url(db_url: str) -> Iterator[str]:
    """A migrated SQLite file holding the three-patient cohort, with a cold ward cache."""
    with Session(create_db_engine(db_url)) as s:
        write_cohort(s, TODAY)
    ward_model.clear_ward_cache()
    yield db_url
    ward_model.clear_ward_cache()


def _pid(url: str, mrn: str) -> int:
    with Session(create_db_engine(url)) as s:
        pid = s.execute(select(Patient.id).where(Patient.mrn == mrn)).scalar_one()
    return int(pid)


def _fresh(url: str) -> list[ward_model.WardRow]:
    """The ward evaluated from scratch, the reference an incremental evaluation must equal."""
    with Session(create_db_engine(url)) as s:
        return _rows(s)


def _ward(url: str) -> list[ward_model.WardRow]:
    return ward_model.ward_rows(url, TODAY, "profile-key")


def test_ward_cold_evaluates_everyone_warm_no_one(ward_url: str) -> None:
    cold = _ward(ward_url)
    assert len(ward_model.last_ward_evaluation().evaluated) == 3
    warm = _ward(ward_url)
    assert ward_model.last_ward_evaluation().evaluated == () and ward_model.last_ward_evaluation().reused == 3
    assert warm == cold == _fresh(ward_url)
    # Another as-of date or another profile is another evaluation, never a reused row.
    ward_model.ward_rows(ward_url, TODAY - dt.timedelta(days=1), "profile-key")
    assert len(ward_model.last_ward_evaluation().evaluated) == 3
    ward_model.ward_rows(ward_url, TODAY, "another-profile")
    assert len(ward_model.last_ward_evaluation().evaluated) == 3


def test_one_new_result_re_evaluates_only_that_patient(ward_url: str) -> None:
    _ward(ward_url)
    with Session(create_db_engine(ward_url)) as s:
        services.add_lab_result(s, username=USER, mrn="CALM-1", test="alt",
                                taken_at=dt.datetime.combine(TODAY, dt.time(0)), value=500, unit="U/L")
        s.commit()
    rows = _ward(ward_url)
    assert ward_model.last_ward_evaluation().evaluated == (_pid(ward_url, "CALM-1"),)
    assert ward_model.last_ward_evaluation().reused == 2
    calm = next(r for r in rows if r.mrn == "CALM-1")
    assert calm.changes["alt"] is not None and calm.changes["alt"].value == 500
    assert ("warning", "HEPATIC_INVOLVEMENT") in calm.alerts
    assert rows == _fresh(ward_url)


def test_amendment_hide_finding_and_detail_change_each_re_evaluate_their_patient(ward_url: str) -> None:
    """Amendments and hides add no row: the patient's audit entries carry them into its version."""
    _ward(ward_url)
    eng = create_db_engine(ward_url)
    with Session(eng) as s:
        lab_id = s.execute(
            select(LabResult.id).join(Patient).where(Patient.mrn == "WARN-1", LabResult.test == "eosinophils")
            .order_by(LabResult.taken_at.desc())  # type: ignore[attr-defined]
        ).scalars().first()
    assert lab_id is not None
    warn = _pid(ward_url, "WARN-1")

    with Session(eng) as s:
        services.amend_lab_result(s, username=USER, lab_id=lab_id, value=0.4, unit="10^9/L", reason="typo")
        s.commit()
    rows = _ward(ward_url)
    assert ward_model.last_ward_evaluation().evaluated == (warn,)
    row = next(r for r in rows if r.mrn == "WARN-1")
    assert row.changes["eosinophils"] is not None and row.changes["eosinophils"].value == 0.4
    assert ("warning", "EOSINOPHILIA") not in row.alerts
    assert rows == _fresh(ward_url)

    with Session(eng) as s:
        services.hide_record(s, username=USER, entity="lab_result", record_id=lab_id, reason="wrong patient")
        s.commit()
    rows = _ward(ward_url)
    assert ward_model.last_ward_evaluation().evaluated == (warn,)
    row = next(r for r in rows if r.mrn == "WARN-1")
    assert row.changes["eosinophils"] is not None and row.changes["eosinophils"].value == 1.0
    assert rows == _fresh(ward_url)

    with Session(eng) as s:
        services.set_finding(s, username=USER, mrn="WARN-1", item="lymphadenopathy", value="yes")
        s.commit()
    _ward(ward_url)
    assert ward_model.last_ward_evaluation().evaluated == (warn,)

    crit = _pid(ward_url, "CRIT-1")
    with Session(eng) as s:
        services.update_patient(s, username=USER, mrn="CRIT-1", weight_kg=100, reason="weighed today")
        s.commit()
    rows = _ward(ward_url)
    assert ward_model.last_ward_evaluation().evaluated == (crit,)
    row = next(r for r in rows if r.mrn == "CRIT-1")
    assert row.dose_mg is not None and row.dose_mg_per_kg == pytest.approx(row.dose_mg / 100)
    assert rows == _fresh(ward_url)


def test_import_by_another_process_is_seen_and_re_evaluates_only_its_patient(ward_url: str, tmp_path: Path) -> None:
    """The command line writes through write_batch, whose audit entry names no patient: the new
    row's id moves the patient's version all the same."""
    _ward(ward_url)
    csv = tmp_path / "labs.csv"
    taken = dt.datetime.combine(TODAY, dt.time(0)).isoformat()
    csv.write_text(f"mrn,taken_at,test,value,unit\nCALM-1,{taken},ferritin,3500,ng/mL\n", encoding="utf-8")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "monitoring", "--db", ward_url, "import", str(csv)],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = _ward(ward_url)
    assert ward_model.last_ward_evaluation().evaluated == (_pid(ward_url, "CALM-1"),)
    calm = next(r for r in rows if r.mrn == "CALM-1")
    assert calm.changes["ferritin"] is not None and calm.changes["ferritin"].value == 3500
    assert calm.worst == "critical"
    assert rows == _fresh(ward_url)

    # A patient upsert by import (details only, no new row) moves updated_at: re-evaluated too.
    pts = tmp_path / "patients.csv"
    pts.write_text("mrn,name,weight_kg\nCALM-1,Carl Calm,60\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "monitoring", "--db", ward_url, "import", str(pts)],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    _ward(ward_url)
    assert ward_model.last_ward_evaluation().evaluated == (_pid(ward_url, "CALM-1"),)


def test_a_patient_made_inactive_leaves_the_ward_without_re_evaluating_others(ward_url: str) -> None:
    _ward(ward_url)
    with Session(create_db_engine(ward_url)) as s:
        services.update_patient(s, username=USER, mrn="CALM-1", active=False, reason="discharged")
        s.commit()
    rows = _ward(ward_url)
    assert [r.mrn for r in rows] == ["CRIT-1", "WARN-1"]
    assert ward_model.last_ward_evaluation().evaluated == ()


def test_patient_versions_read_each_patient_through_its_indexes(ward_url: str) -> None:
    """The version query never scans a clinical table: SQLite answers each max(id) from the
    (patient_id, ...) index of the table."""
    captured: list[str] = []
    eng = create_db_engine(ward_url)

    @event.listens_for(eng, "before_cursor_execute")
    def _capture(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        captured.append(statement)

    versions = ward_model.patient_versions(eng)
    assert set(versions) == {_pid(ward_url, m) for m in ("CRIT-1", "WARN-1", "CALM-1")}
    assert len(captured) == 1
    with eng.connect() as conn:
        plan = [str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + captured[0])]
    searches = [p for p in plan if p.startswith(("SEARCH", "SCAN"))]
    assert [p for p in searches if p.startswith("SCAN")] == ["SCAN patient"], plan
    assert len([p for p in searches if "USING COVERING INDEX" in p]) == 6, plan  # labs, doses, findings, photos, audit, alert episodes




def test_a_converted_value_and_its_change_are_not_shown_more_precise_than_measured() -> None:
    """65 umol/L of creatinine is 0.7353 mg/dL: the ward shows 0.74 and a change of 2 umol/L as
    -0.02, not 0.735 and -0.0226."""
    from dashboard.ward_model import Change

    when = dt.datetime(2026, 11, 24, 6)
    assert Change("creatinine", 65 / 88.4, "mg/dL", -2 / 88.4, when, "").text() == "0.74 ↓ −0.02"
    assert Change("eosinophils", 1.6, "10^9/L", 0.45, when, "").text() == "1.6 ↑ +0.45"
    assert Change("ferritin", 4300.0, "ng/mL", 400.0, when, "").text() == "4300 ↑ +400"
    assert Change("creatinine", 0.77, "mg/dL", 0.001, when, "").text() == "0.77 → 0"  # below the shown precision


# --- alert episodes on the ward (issue 17) ---------------------------------------------------


def _acknowledge(session: Session, mrn: str, code: str, reason: str = "discussed_with_consultant") -> None:
    from monitoring import episodes
    from monitoring.models import AlertEpisode

    ep = session.execute(
        select(AlertEpisode).join(Patient, Patient.id == AlertEpisode.patient_id)  # type: ignore[arg-type]
        .where(Patient.mrn == mrn, AlertEpisode.code == code, AlertEpisode.closed_at.is_(None))  # type: ignore[union-attr]
    ).scalar_one()
    episodes.acknowledge(session, username=USER, episode_id=ep.id, reason=reason)
    session.commit()


def test_an_acknowledged_alert_stays_on_the_ward_marked_and_below_the_unacknowledged(session: Session) -> None:
    write_cohort(session, TODAY)
    crit = _rows(session)[0]
    assert [c for s, c in crit.alerts if s == "critical"] == ["CARDIAC_INVOLVEMENT", "ICU_CRITERIA"]
    _acknowledge(session, "CRIT-1", "CARDIAC_INVOLVEMENT")
    crit = _rows(session)[0]
    assert [c for s, c in crit.alerts if s == "critical"] == ["ICU_CRITERIA", "CARDIAC_INVOLVEMENT"]
    assert crit.handled == {"CARDIAC_INVOLVEMENT": "acknowledged: discussed with consultant"}
    from dashboard import widgets

    html = widgets.ward_table_html([crit], [("alt", "ALT U/L")], as_of=TODAY)
    assert "ICU criteria, Cardiac involvement (✓ acknowledged: discussed with consultant)" in shown_html(html)


def test_a_patient_whose_critical_alerts_are_all_acknowledged_moves_below_one_with_an_unacknowledged_critical(
    session: Session,
) -> None:
    write_cohort(session, TODAY)
    services.add_lab_result(session, username=USER, mrn="CALM-1", test="troponin_t",
                            taken_at=dt.datetime.combine(TODAY, dt.time(0)), value=90, unit="ng/L")
    session.commit()
    assert [r.mrn for r in _rows(session)][:2] == ["CRIT-1", "CALM-1"]  # more critical alerts first
    for code in ("CARDIAC_INVOLVEMENT", "ICU_CRITERIA"):
        _acknowledge(session, "CRIT-1", code)
    rows = _rows(session)
    assert [r.mrn for r in rows][:2] == ["CALM-1", "CRIT-1"]
    assert rows[1].worst == "critical"  # still shown as critical, marked acknowledged
    calm = rows[0]
    assert any(n.startswith("new critical") for n in calm.new)  # its troponin is today's
