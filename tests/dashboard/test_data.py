"""The ward overview's rows: order, changes since the previous value, what is new since yesterday."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.engine import Engine
from sqlmodel import Session

from dashboard import data
from monitoring import services
from monitoring.guideline import load_profile
from monitoring.records import load_records
from tests.dashboard.cohort import USER, write_cohort

TODAY = dt.date.today()


def _rows(session: Session) -> list[data.WardRow]:
    prof = load_profile()
    return data.sort_ward([data.ward_row(r, prof, TODAY) for r in load_records(session)])


def test_critical_first_then_warning_then_the_rest(session: Session) -> None:
    write_cohort(session, TODAY)
    rows = _rows(session)
    assert [r.mrn for r in rows] == ["CRIT-1", "WARN-1", "CALM-1"]
    assert [r.worst for r in rows] == ["critical", "warning", ""]
    crit = rows[0]
    assert crit.alerts[0][0] == "critical" and ("warning", "HEPATIC_INVOLVEMENT") in crit.alerts
    assert [s for s, _ in crit.alerts] == sorted((s for s, _ in crit.alerts), key=data.SEVERITY_RANK.get)


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

    html = widgets.ward_table_html(_rows(session), [("alt", "ALT U/L")])
    positions = [html.index(f'data-mrn="{m}"') for m in ("CRIT-1", "WARN-1", "CALM-1")]
    assert positions == sorted(positions)
    assert "‼ CRITICAL · Cardiac involvement, ICU criteria" in html
    assert "href=" not in html  # a link would reload the page: a new session, signed out
    assert "no alerts" in html


def test_data_version_changes_on_every_kind_of_write(engine: Engine, session: Session) -> None:
    write_cohort(session, TODAY)
    before = data.data_version(engine)
    lab_id = services.add_lab_result(session, username=USER, mrn="CALM-1", test="crp",
                                     taken_at=dt.datetime.combine(TODAY, dt.time(0)), value=3, unit="mg/L")
    session.commit()
    after_insert = data.data_version(engine)
    assert after_insert != before
    services.amend_lab_result(session, username=USER, lab_id=lab_id, value=4, unit="mg/L", reason="typo")
    session.commit()
    after_amend = data.data_version(engine)
    assert after_amend != after_insert
    services.hide_record(session, username=USER, entity="lab_result", record_id=lab_id, reason="wrong patient")
    session.commit()
    assert data.data_version(engine) != after_amend
