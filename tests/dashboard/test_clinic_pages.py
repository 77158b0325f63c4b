"""The clinic pages through Streamlit's AppTest: taper planner (warning before saving, plan rows
stored and drawn as planned by the timeline, discard), follow-up (patch test, RegiSCAR with the
hand-entry form, sequelae checklist, viral PCR) and report (preview and PDF download)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from monitoring.db import create_db_engine, session_scope
from monitoring.models import ClinicalFinding, MedicationRow, Patient, User
from monitoring.records import load_record
from monitoring.store import LabIn, MedIn, PatientIn, write_batch
from tests.dashboard.apptest import sign_in
from tests.dashboard.shown import shown, shown_html

PAGES = Path(__file__).resolve().parents[2] / "dashboard" / "views"
MRN = "CLINIC-T1"
USER = "dr.clinic"
TODAY = dt.date.today()
ONSET = TODAY - dt.timedelta(days=40)
COURSE_START = ONSET + dt.timedelta(days=2)


def _lab(test: str, day: dt.date, value: float | None, unit: str, text: str | None = None) -> LabIn:
    return LabIn(MRN, test, dt.datetime.combine(day, dt.time(8, 0)), value, unit, text or f"{value:g}", unit, value_text=text)


@pytest.fixture
def clinic_db(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    url = f"sqlite:///{db_path}"
    monkeypatch.setenv("DATABASE_URL", url)
    eng = create_db_engine(url)
    with session_scope(eng) as s:
        write_batch(
            s,
            patients=[PatientIn(MRN, "Synthetic Clinic Page", {
                "onset_date": ONSET, "weight_kg": 60.0, "synthetic": True, "sex": "female", "culprit_drugs": ["allopurinol"],
                "resolved_date": ONSET + dt.timedelta(days=30),
            })],
            labs=[
                _lab("eosinophils_pct", ONSET + dt.timedelta(days=1), 15, "%"),
                _lab("wbc", ONSET + dt.timedelta(days=1), 3.2, "10^9/L"),
                _lab("temperature", ONSET + dt.timedelta(days=1), 39.0, "Cel"),
                _lab("alt", ONSET + dt.timedelta(days=1), 180, "U/L"),
                _lab("hhv6_pcr", ONSET + dt.timedelta(days=18), 12000, "{copies}/mL"),
                _lab("cmv_pcr", ONSET + dt.timedelta(days=25), None, "{copies}/mL", text="not detected"),
            ],
            meds=[MedIn(MRN, "prednisone", "prednisone", COURSE_START, 60, "60", "mg", route="oral")],
            username="test",
        )
        s.add(User(username=USER, role="clinician"))
    yield eng
    eng.dispose()


def signed_in(at: AppTest, eng: Engine, username: str) -> AppTest:
    """Seed the session as the sign-in gate does (dashboard.auth.signed_in_state); the gate checks
    the account against the database on every run."""
    return sign_in(at, username, eng)


def page(name: str, eng: Engine, username: str = USER) -> AppTest:
    at = signed_in(AppTest.from_file(str(PAGES / name), default_timeout=60), eng, username)
    at.session_state["patient_mrn"] = MRN
    return at.run()


def texts(at: AppTest) -> str:
    return shown("\n".join([m.value for m in at.markdown] + [c.value for c in at.caption]))


def plan_rows(eng: Engine) -> list[tuple[dt.date, float, bool, str | None]]:
    with Session(eng) as s:
        rows = s.execute(
            select(MedicationRow).where(MedicationRow.start_date > TODAY).order_by(MedicationRow.start_date)  # type: ignore[arg-type]
        ).scalars().all()
        return [(r.start_date, r.daily_dose_mg, r.hidden, r.hidden_reason) for r in rows]


# --- taper planner ---------------------------------------------------------------------------


def test_short_plan_is_flagged_before_saving(clinic_db: Engine) -> None:
    at = page("taper.py", clinic_db)
    assert not at.exception
    assert at.number_input(key="taper_current_prednisone").value == 60
    assert "Taper length" in [m.label for m in at.metric]
    # Default: 10 mg every 7 days from 60 mg = 35 days, at least the 28 days the guideline asks for.
    assert at.metric[0].value == "35 days"
    assert not at.warning and at.success
    # 20 mg every 5 days: 60 -> 40 -> 20 -> 0 over 10 days.
    at.number_input(key="taper_step_mg").set_value(20.0)
    at.number_input(key="taper_interval").set_value(5).run()
    assert not at.exception
    assert at.metric[0].value == "10 days"
    warning = "\n".join(w.value for w in at.warning)
    assert "PREMATURE_TAPER" in warning and "shorter than 28 days" in warning
    assert "minimum 4-week taper" in warning  # the guideline's source, from the profile
    # Nothing is stored until saved, and saving needs the warning acknowledged.
    assert plan_rows(clinic_db) == []
    assert at.button(key="taper_save").disabled
    at.checkbox(key="taper_ack").check().run()
    at.button(key="taper_save").click().run()
    assert not at.exception
    assert [(d, mg) for d, mg, hidden, _ in plan_rows(clinic_db) if not hidden] == [
        (TODAY + dt.timedelta(days=1), 40), (TODAY + dt.timedelta(days=6), 20), (TODAY + dt.timedelta(days=11), 0),
    ]


def test_saved_plan_is_drawn_as_planned_by_the_timeline(clinic_db: Engine) -> None:
    from dashboard import figures, timeline_model
    from monitoring.guideline import load_profile

    at = page("taper.py", clinic_db)
    at.radio(key="taper_method").set_value("by %").run()
    at.number_input(key="taper_step_pct").set_value(25.0).run()
    at.button(key="taper_save").click().run()
    assert not at.exception
    assert any("Plan saved" in s.value for s in at.success)
    stored = [(d, mg) for d, mg, hidden, _ in plan_rows(clinic_db) if not hidden]
    # 60 mg less 25 % = 45 mg, between the ladder's 50 and 40 mg rungs: ties go to the lower (issue 18).
    assert stored[0] == (TODAY + dt.timedelta(days=1), 40) and stored[-1][1] == 0
    assert all(b[1] < a[1] for a, b in zip(stored, stored[1:], strict=False))

    with Session(clinic_db) as s:
        record = load_record(s, MRN)
    tl = timeline_model.timeline(record, load_profile(), TODAY)
    planned = [(st.day, st.mg) for st in tl.dose.steps if st.planned]
    assert planned == [(d, mg) for d, mg in stored]
    assert [(st.day, st.mg) for st in tl.dose.steps if not st.planned] == [(COURSE_START, 60)]
    fig = figures.timeline_figure(tl)
    assert "dose planned" in [t.name for t in fig.data]

    # The page now shows the saved plan and offers to replace or discard it.
    out = texts(at)
    assert "Taper length on the saved schedule" in out
    assert at.button(key="taper_save").label.startswith("Replace the saved plan")
    at.button(key="taper_discard").click().run()
    assert not at.exception
    rows = plan_rows(clinic_db)
    assert rows and all(hidden and reason == "plan discarded" for _, _, hidden, reason in rows)
    assert "No plan saved" in texts(at)


def test_planner_defaults_to_the_steroid_the_patient_is_on_and_uses_the_ladder(clinic_db: Engine) -> None:
    # Issue 18 points 3 and 4: a patient switched to prednisolone is planned on prednisolone (no
    # switch back on saving), and "to an end date" gives the ladder's doses in whole weeks.
    switch = TODAY - dt.timedelta(days=10)
    with session_scope(clinic_db) as s:
        write_batch(s, meds=[MedIn(MRN, "prednisone", "prednisone", switch, 0, "0", "mg", route="oral"),
                             MedIn(MRN, "prednisolone", "prednisolone", switch, 60, "60", "mg", route="oral")],
                    username="test")
    at = page("taper.py", clinic_db)
    assert not at.exception
    assert at.selectbox(key=f"taper_drug_{MRN}").value == "prednisolone"
    assert at.number_input(key="taper_current_prednisolone").value == 60
    assert not any("Saving also stops" in i.value for i in at.info)
    at.radio(key="taper_method").set_value("to an end date").run()
    at.date_input(key="taper_end").set_value(TODAY + dt.timedelta(days=1 + 56)).run()
    assert not at.exception
    table = next(d.value for d in at.dataframe if "prednisolone (mg/day)" in d.value.columns)
    assert list(table["prednisolone (mg/day)"]) == [50, 40, 25, 20, 15, 10, 5, 2.5, 0]
    days = [dt.date.fromisoformat(x) for x in table["from"]]
    assert {(b - a).days for a, b in zip(days, days[1:], strict=False)} == {7}
    at.button(key="taper_save").click().run()
    assert not at.exception
    with Session(clinic_db) as s:
        future = s.execute(select(MedicationRow).where(MedicationRow.start_date > TODAY)).scalars().all()
    assert {r.drug for r in future} == {"prednisolone"}  # nothing stops: no switch


def test_planner_says_the_course_day_with_its_first_dose(clinic_db: Engine) -> None:
    """Issue 18 point 7: the planner's header counts as the day-7 rule does, from the first dose
    as day 0, and says so."""
    at = page("taper.py", clinic_db)
    facts = " ".join(m.value for m in at.markdown)
    day = (TODAY - COURSE_START).days
    assert f"day {day} of steroids (first dose {COURSE_START.isoformat()})" in shown_html(facts)


def test_zero_dose_is_refused_with_a_message(clinic_db: Engine) -> None:
    at = page("taper.py", clinic_db)
    at.number_input(key="taper_current_prednisone").set_value(0.0).run()
    assert not at.exception
    assert any("nothing to taper" in shown(e.value) for e in at.error)
    assert all(b.key != "taper_save" for b in at.button)


def test_the_page_needs_a_signed_in_user(clinic_db: Engine) -> None:
    at = AppTest.from_file(str(PAGES / "taper.py"), default_timeout=60)
    at.session_state["patient_mrn"] = MRN
    at.run()
    assert any("Sign in first" in w.value for w in at.warning)
    assert all(b.key != "taper_save" for b in at.button)


def test_a_viewer_sees_the_check_but_cannot_save_or_discard(clinic_db: Engine) -> None:
    with session_scope(clinic_db) as s:
        s.add(User(username="viewer.only", role="viewer"))
    at = page("taper.py", clinic_db, "viewer.only")
    assert not at.exception
    assert at.metric[0].value == "35 days"
    assert all(b.key not in ("taper_save", "taper_discard") for b in at.button)
    assert plan_rows(clinic_db) == []


def test_a_role_change_to_viewer_takes_effect_before_the_write(clinic_db: Engine) -> None:
    at = page("taper.py", clinic_db)
    with session_scope(clinic_db) as s:  # an administrator makes the account read-only meanwhile
        s.execute(select(User).where(User.username == USER)).scalar_one().role = "viewer"
    at.button(key="taper_save").click().run()
    assert not at.exception
    assert plan_rows(clinic_db) == []
    assert all(b.key != "taper_save" for b in at.button)  # the page follows the new role at once


# --- follow-up -------------------------------------------------------------------------------


def frame(at: AppTest, column: str):  # type: ignore[no-untyped-def]
    """The first table on the page with this column (AppTest does not expose dataframe keys)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def score(at: AppTest) -> int:
    return int(next(m.value for m in at.metric if m.label == "RegiSCAR score"))


def test_followup_page_shows_patch_test_regiscar_checklist_and_pcr(clinic_db: Engine) -> None:
    at = page("followup.py", clinic_db)
    assert not at.exception
    out = texts(at)
    resolved = ONSET + dt.timedelta(days=30)
    assert "Resolution on" in out and resolved.isoformat() in out
    # The course never comes down to 10 mg without a plan: the washout is unknown.
    assert any("never comes down to 10 mg/day" in w.value for w in at.warning)
    # RegiSCAR from data: fever 0, eosinophils 15 % with leukocytes 3.2 -> +1, liver +1; the rest not recorded.
    regiscar = frame(at, "filled by")
    eos = regiscar[regiscar["key"] == "eosinophilia"].iloc[0]
    assert (eos["answer"], eos["points"], eos["filled by"]) == ("moderate", 1, "data")
    # fever 0 (39.0 °C), eosinophilia +1, organs +1 (liver), biopsy 0, rash suggestive 0 (unknown),
    # resolution -1 (not recorded scores as unknown); others 0: total 1, 'no case'.
    assert score(at) == 1
    assert next(m.value for m in at.metric if m.label == "Category") == "no case"
    # Sequelae checklist and viral PCR tables are there.
    checklist = frame(at, "window")
    assert set(checklist["test"]) == {"TSH", "Glucose"} and set(checklist["status"]) <= {"DONE", "OVERDUE", "DUE", "UPCOMING"}
    pcr = frame(at, "as received")
    assert list(pcr["test"]) == ["HHV-6 PCR", "CMV PCR"] and list(pcr["result"]) == ["DETECTED", "not detected"]


def test_followup_flags_a_tsh_above_the_laboratorys_range(clinic_db: Engine) -> None:
    """Issue 18 point 5: a rising TSH above the laboratory's range (5.2 then 6.4, ULN 4.5) is
    flagged on the checklist, in a badge, a warning naming both results, and the table's range column."""
    # Resolved three months ago, so that the month-1 and month-2 checks are past.
    resolved = TODAY - dt.timedelta(days=92)
    first, second = resolved + dt.timedelta(days=31), resolved + dt.timedelta(days=60)  # months 1 and 2
    with session_scope(clinic_db) as s:
        s.execute(update(Patient).where(Patient.mrn == MRN).values(onset_date=resolved - dt.timedelta(days=30),
                                                                   resolved_date=resolved))
        write_batch(s, labs=[
            LabIn(MRN, "tsh", dt.datetime.combine(day, dt.time(9)), value, "mIU/L", f"{value:g}", "mIU/L", ref_high=4.5)
            for day, value in ((first, 5.2), (second, 6.4))
        ], username="test")
    at = page("followup.py", clinic_db)
    assert not at.exception, [e.value for e in at.exception]
    assert "1 outside range" not in texts(at) and "2 outside range" in texts(at)
    warning = next(shown(w.value) for w in at.warning if "Outside the reference range" in w.value)
    assert f"TSH month 1: 5.2 mIU/L on {first.isoformat()} ABOVE RANGE (> 4.5 mIU/L, laboratory)" in warning
    assert f"TSH month 2: 6.4 mIU/L on {second.isoformat()} ABOVE RANGE" in warning
    checklist = frame(at, "range")
    flagged = checklist[checklist["range"].str.startswith("ABOVE RANGE")]
    assert list(zip(flagged["test"], flagged["month"], strict=True)) == [("TSH", 1), ("TSH", 2)]


def test_followup_form_records_hand_items_and_moves_the_category(clinic_db: Engine) -> None:
    at = page("followup.py", clinic_db)
    before = score(at)
    for item, answer in (
        ("lymphadenopathy", "yes"), ("atypical_lymphocytes", "yes"), ("rash_suggestive", "yes"),
        ("resolution_15_days", "yes"), ("other_causes_excluded", "yes"),
    ):
        at.selectbox(key=f"followup_item_{item}").set_value(answer)
    at.button(key="FormSubmitter:followup_regiscar_form-Record answers").click().run()
    assert not at.exception
    with Session(clinic_db) as s:
        stored = {f.item: (f.value, f.recorded_by) for f in s.execute(select(ClinicalFinding)).scalars()}
    assert stored["lymphadenopathy"] == ("yes", USER) and len(stored) == 5
    after = score(at)
    # lymph +1, atypical +1, rash suggestive +1 (unknown 0 before), resolution 0 (was -1), other causes +1
    assert after == before + 5
    regiscar = frame(at, "filled by")
    assert regiscar[regiscar["key"] == "lymphadenopathy"].iloc[0]["filled by"] == "clinician"


# --- report ----------------------------------------------------------------------------------


def test_report_page_previews_and_offers_the_pdf(clinic_db: Engine) -> None:
    at = page("report.py", clinic_db)
    assert not at.exception
    assert at.get("download_button"), "a download button for the PDF"
    assert any(c.value.startswith("PDF ready: ") for c in at.caption)
    assert at.image and at.image[0].captions[0].startswith("Timeline as printed"), "a preview of the figure"
    assert "Synthetic Clinic Page" in texts(at)


def test_a_broken_schedule_file_is_named_on_the_page(clinic_db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "followup.toml"
    bad.write_text('[[check]]\ntest = "tsh"\nmonths = [1]\nwindow = "monthly"\nlabel = "x"\nsource = "y"\nbasis = "sourced"\n',
                   encoding="utf-8")
    monkeypatch.setenv("DRESS_FOLLOWUP", str(bad))
    at = page("followup.py", clinic_db)
    assert not at.exception
    assert any("check 1: window: value 'monthly'" in shown(e.value) for e in at.error)


def test_report_page_names_who_prepares_the_pdf_and_the_unit(clinic_db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18 point 10: the PDF is prepared by the signed-in clinician for the unit of the
    settings; the page shows the same line the PDF prints under its title."""
    monkeypatch.setenv("DRESS_REPORT_UNIT", "Dermatology ward 7")
    monkeypatch.setenv("DRESS_REPORT_CONTACT", "bleep 4321")
    at = page("report.py", clinic_db)
    assert not at.exception
    line = next(t.value for t in at.text if t.value.startswith("Prepared by"))
    assert line.startswith(f"Prepared by {USER} · Unit: Dermatology ward 7 · Contact: bleep 4321 · generated ")


def test_report_page_names_the_clinician_by_display_name(clinic_db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18 point 10: with a display name, "Prepared by" names the person and the account, in
    the line the page shows as plain text and the PDF prints under its title (the same
    ``prepared_line``; the PDF's own text: tests/monitoring/test_report.py)."""
    monkeypatch.setenv("DRESS_REPORT_UNIT", "Dermatology ward 7")
    monkeypatch.setenv("DRESS_REPORT_CONTACT", "bleep 4321")
    with session_scope(clinic_db) as s:
        s.execute(update(User).where(User.username == USER).values(display_name="Dr A. Mensah, dermatology registrar"))
    at = page("report.py", clinic_db)
    assert not at.exception
    line = next(t.value for t in at.text if t.value.startswith("Prepared by"))
    assert line.startswith(f"Prepared by Dr A. Mensah, dermatology registrar ({USER}) · Unit: Dermatology ward 7 · ")
