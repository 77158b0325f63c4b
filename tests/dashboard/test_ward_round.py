"""Issue 18, the ward: every latest value says when it was taken (point 2), each name links to the
patient's timeline (point 8), second-line treatment is marked (point 14)."""

from __future__ import annotations

import datetime as dt
import html
import re
from pathlib import Path

import pytest
from sqlmodel import Session

from dashboard import ward_model, widgets
from dashboard.safe import WORD_JOINER
from monitoring import display, services
from monitoring.episodes import open_episodes
from monitoring.guideline import load_profile
from monitoring.records import load_records
from monitoring.schema import open_database
from tests.dashboard.cohort import USER, signed_in_app, write_cohort

TODAY = dt.date.today()


def _rows(session: Session, as_of: dt.date = TODAY) -> list[ward_model.WardRow]:
    prof = load_profile()
    return ward_model.sort_ward([
        ward_model.ward_row(r, prof, as_of, open_episodes(session, [r.patient.id or 0])) for r in load_records(session)
    ])


def _cells(markup: str, mrn: str) -> list[str]:
    """The text of each cell of one patient's row, as a reader sees it (tags dropped)."""
    row = re.search(rf'<tr [^>]*data-mrn="{re.escape(mrn)}".*?</tr>', markup)
    assert row is not None, mrn
    return [html.unescape(re.sub(r"<br>", " / ", re.sub(r"<(?!br>)[^>]+>", "", c))).replace(WORD_JOINER, "")
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(0))]


# --- point 2: when each value was taken ------------------------------------------------------


def test_taken_text_says_today_yesterday_or_the_age() -> None:
    on = dt.date(2026, 12, 2)
    assert display.taken_text(dt.datetime(2026, 12, 2, 6, 10), on) == "today 06:10"
    assert display.taken_text(dt.datetime(2026, 12, 1, 18, 30), on) == "yesterday 18:30"
    assert display.taken_text(dt.datetime(2026, 11, 28, 7, 0), on) == "4 d ago"
    assert display.taken_text(dt.datetime(2026, 11, 28, 7, 0), on, with_date=True) == "4 d ago, 2026-11-28"
    assert display.taken_text(dt.datetime(2026, 12, 3, 7, 0), on) == "2026-12-03 07:00"  # never "-1 d ago"


def test_every_ward_value_says_when_it_was_taken(session: Session) -> None:
    write_cohort(session, TODAY)
    rows = _rows(session)
    markup = widgets.ward_table_html(rows, [("alt", "ALT U/L"), ("eosinophils", "Eos")], as_of=TODAY)
    # Columns: patient, day, steroid, ALT, eosinophils, alerts, new.
    crit, warn, calm = (_cells(markup, m) for m in ("CRIT-1", "WARN-1", "CALM-1"))
    assert crit[3].endswith("yesterday 06:00")  # ALT 400, taken yesterday morning
    assert warn[3].endswith("today 00:00") and warn[4].endswith("today 00:00")
    assert calm[3].endswith("2 d ago") and calm[4].endswith("2 d ago")
    assert crit[4] == "—"  # no value: no age either
    # The same rows read two days later: the values have aged, nothing else is recomputed.
    later = widgets.ward_table_html(rows, [("alt", "ALT U/L")], as_of=TODAY + dt.timedelta(days=2))
    assert _cells(later, "CRIT-1")[3].endswith("3 d ago")
    # From two days old the age is set off (bold, dark amber), not only muted.
    assert re.search(r'color:#8a5a00;font-weight:700">2 d ago<', markup)
    assert not re.search(r'font-weight:700">yesterday', markup)


# --- point 8: names link to the timeline ----------------------------------------------------


def test_each_name_links_to_its_own_timeline(session: Session) -> None:
    write_cohort(session, TODAY)
    markup = widgets.ward_table_html(_rows(session), [("alt", "ALT U/L")], as_of=TODAY)
    links = re.findall(r'<a href="([^"]*)" target="_self"[^>]*>([^<]*)</a>', markup)
    assert [(html.unescape(h), html.unescape(n)) for h, n in links] == [
        ("timeline?mrn=CRIT-1", "Cora Critical"), ("timeline?mrn=WARN-1", "Walt Warning"), ("timeline?mrn=CALM-1", "Carl Calm"),
    ]
    assert widgets.timeline_href("A&B 1/2") == "timeline?mrn=A%26B%201%2F2"


@pytest.fixture
def cohort_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'ward.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    with Session(open_database(url)) as s:
        write_cohort(s, TODAY)
    return url


def test_the_link_opens_that_patients_timeline(cohort_url: str) -> None:
    """What the link's address does on a fresh session (a page load): ?mrn= picks the patient."""
    at = signed_in_app()
    at.run()
    table = next(m.value for m in at.markdown if "dm-ward" in m.value)
    href = html.unescape(re.findall(r'<a href="([^"]*)"', table)[1])  # the second patient's link
    page, _, query = href.partition("?")
    assert page == "timeline"
    fresh = signed_in_app(dict([query.split("=")]))
    fresh.switch_page("views/timeline.py").run()
    assert not fresh.exception, [e.value for e in fresh.exception]
    assert any(m.value.startswith("### Walt Warning") for m in fresh.markdown)


# --- point 14: second-line treatment on the ward -------------------------------------------


def test_second_line_started_by_the_ward_date_is_marked_a_planned_one_is_not(session: Session) -> None:
    write_cohort(session, TODAY)  # CRIT-1: IVIG from yesterday
    services.add_dose_change(session, username=USER, mrn="WARN-1", drug="ciclosporin", start_date=TODAY + dt.timedelta(days=2),
                             dose=300, unit="mg")  # planned, not started
    services.add_dose_change(session, username=USER, mrn="CALM-1", drug="Neoral", start_date=TODAY, dose=250, unit="mg")
    session.commit()
    rows = {r.mrn: r for r in _rows(session)}
    yesterday = TODAY - dt.timedelta(days=1)
    assert rows["CRIT-1"].second_line == (("ivig", yesterday),)
    assert rows["WARN-1"].second_line == ()
    assert rows["CALM-1"].second_line == (("cyclosporine", TODAY),)
    markup = widgets.ward_table_html(list(rows.values()), [("alt", "ALT U/L")], as_of=TODAY)
    assert f"IVIG from {yesterday.isoformat()}" in _cells(markup, "CRIT-1")[2]
    assert f"cyclosporine from {TODAY.isoformat()}" in _cells(markup, "CALM-1")[2]
    assert "cyclosporine" not in _cells(markup, "WARN-1")[2] and "IVIG" not in _cells(markup, "WARN-1")[2]
    # Read as of two days ago, yesterday's IVIG had not started.
    earlier = {r.mrn: r for r in _rows(session, TODAY - dt.timedelta(days=2))}
    assert earlier["CRIT-1"].second_line == ()


# --- point 15: the printable ward-round list -------------------------------------------------


def _doc_rows(doc: str) -> list[tuple[str, list[str]]]:
    """(MRN, cell texts) of each patient row of the ward-round document, in document order."""
    return [(html.unescape(m), _cells(doc, html.unescape(m))) for m in re.findall(r'<tr data-mrn="([^"]*)"', doc)]


def test_ward_round_list_is_in_the_wards_order_with_dates(cohort_url: str) -> None:
    from dashboard.ward_round import ward_round_html

    with Session(open_database(cohort_url)) as s:
        services.add_dose_change(s, username=USER, mrn="CALM-1", drug="Neoral", start_date=TODAY, dose=250, unit="mg")
        s.commit()
    ward_model.clear_ward_cache()
    rows = ward_model.ward_rows(cohort_url, TODAY)  # what the ward page shows, in its order
    assert [r.mrn for r in rows] == [r.mrn for r in ward_model.sort_ward(list(reversed(rows)))]
    doc = ward_round_html(rows, [("alt", "ALT U/L"), ("creatinine", "Creatinine mg/dL")], as_of=TODAY,
                          heading="3 of 3 active patients", generated_at=dt.datetime(2026, 12, 2, 7, 5), author="dr.round")
    printed = _doc_rows(doc)
    assert [m for m, _ in printed] == ["CRIT-1", "WARN-1", "CALM-1"]
    (_, crit), (_, warn), (_, calm) = printed
    yesterday = (TODAY - dt.timedelta(days=1)).isoformat()
    # Columns: #, patient, day, steroid, ALT, creatinine, alerts, new, notes.
    assert crit[0] == "1" and crit[1] == "‼ CRITICAL / Cora Critical / MRN CRIT-1 · inpatient"
    # The course day with its first dose (issue 18 point 7): day 0 is the first dose, 8 days ago.
    assert crit[2] == f"day 10 / day 8 of steroids (first dose {(TODAY - dt.timedelta(days=8)).isoformat()})"
    assert crit[3] == f"100 mg/day / 1.43 mg/kg / IVIG from {yesterday}"
    assert crit[4] == "400 ↑ +20 · yesterday 06:00"
    assert crit[6].startswith("CRITICAL: Cardiac involvement, ICU criteria / WARNING: Hepatic involvement")
    assert crit[8] == ""  # the notes column, for the round
    assert warn[4] == "30 (first) · today 00:00" and warn[5] == "—"
    two_days = (TODAY - dt.timedelta(days=2)).isoformat()
    assert calm[4] == f"22 ↓ −3 · 2 d ago, {two_days}"  # an old value carries its date
    assert calm[3].endswith(f"cyclosporine from {TODAY.isoformat()}") and calm[6] == "—"
    assert "Ward round " + TODAY.isoformat() in doc and "printed 2026-12-02 07:05 by dr.round" in html.unescape(doc).replace(WORD_JOINER, "")
    assert "<script" not in doc and "http" not in doc  # self-contained, nothing fetched
    ward_model.clear_ward_cache()


def test_the_ward_page_offers_the_list(cohort_url: str) -> None:
    at = signed_in_app()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (button,) = [b for b in at.get("download_button") if b.proto.label == "Ward-round list (print)"]
    assert button.proto.deferred_file_id or button.proto.url  # a file, built when pressed
