"""Follow-up: patch-test date and its unknowns, sequelae checklist against stored results, viral
PCR over time, and RegiSCAR worked cases as the follow-up page sees them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlmodel import Session

from monitoring import auth, services
from monitoring.followup import (
    FollowupConfigError,
    checklist_rows,
    load_followup_schedule,
    patch_test_plan,
    sequelae_checklist,
    viral_pcr_results,
)
from monitoring.records import load_record
from monitoring.regiscar import score_regiscar

USER = "dr.followup"
ONSET = dt.date(2025, 12, 1)
RESOLVED = dt.date(2026, 1, 15)


@pytest.fixture(autouse=True)
def clinician(session: Session) -> None:
    auth.create_user(session, actor="test", username=USER, role=auth.CLINICIAN, password=None)
    session.commit()


def _patient(session: Session, mrn: str = "F1", **fields: object) -> str:
    values: dict[str, object] = {"weight_kg": 70, "onset_date": ONSET, "culprit_drugs": ["allopurinol"]}
    values.update(fields)
    services.add_patient(session, username=USER, mrn=mrn, name="Follow Up", **values)
    session.commit()
    return mrn


def _lab(session: Session, mrn: str, test: str, when: str, value: float | str, unit: str) -> int:
    lab_id = services.add_lab_result(session, username=USER, mrn=mrn, test=test, taken_at=when, value=value, unit=unit)
    session.commit()
    return lab_id


# --- schedule file -----------------------------------------------------------------------------


def test_default_schedule_is_labelled_with_its_basis() -> None:
    checks = load_followup_schedule()
    by = {(c.test, c.month): c for c in checks}
    assert {m for t, m in by if t == "glucose"} == {1, 2, 3}
    assert {m for t, m in by if t == "tsh"} == {1, 2, 3, 6, 12, 18, 24}
    assert by[("tsh", 1)].basis == "sourced" and "Cutis/MDedge" in by[("tsh", 1)].source
    assert by[("tsh", 6)].basis == "default (UNCONFIRMED)" and "UNCONFIRMED" in by[("tsh", 6)].source
    assert by[("tsh", 24)].basis == "design choice" and "at least 2 years" in by[("tsh", 24)].source


def test_bad_schedule_file_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text(
        '[windows]\nmonthly_before_days = 7\nmonthly_after_days = 14\n'
        '[[check]]\ntest = "tsh"\nmonths = [1]\nwindow = "monthly"\nlabel = "x"\nsource = "y"\nbasis = "sourced"\n'
        '[[check]]\ntest = "thyroxine"\nmonths = [1]\nwindow = "monthly"\nlabel = "x"\nsource = "y"\nbasis = "sourced"\n'
        '[[check]]\ntest = "glucose"\nmonths = [0]\nwindow = "monthly"\nlabel = "x"\nsource = "y"\nbasis = "guess"\n',
        encoding="utf-8",
    )
    with pytest.raises(FollowupConfigError) as err:
        load_followup_schedule(path)
    text = str(err.value)
    assert "check 2: test: value 'thyroxine': not a catalogue test" in text
    assert "check 3: months: value [0]" in text


# --- sequelae checklist ------------------------------------------------------------------------


def test_checklist_done_overdue_due_upcoming_against_stored_results(session: Session) -> None:
    mrn = _patient(session, resolved_date=RESOLVED)
    # Month-1 checks are due 2026-02-15, window 02-08 .. 03-01; month 2: 03-15 (03-08 .. 03-29);
    # month 3: 04-15 (04-08 .. 04-29); month 6: 07-15 (07-01 .. 08-14).
    _lab(session, mrn, "glucose", "2026-02-20 08:00", 5.4, "mmol/L")  # done month 1
    _lab(session, mrn, "tsh", "2026-02-10 09:00", 2.1, "mIU/L")  # done month 1
    _lab(session, mrn, "tsh", "2026-03-10 09:00", 2.4, "mIU/L")  # done month 2
    late = _lab(session, mrn, "glucose", "2026-04-30 09:00", 98, "mg/dL")  # one day after the month-3 window
    hidden = _lab(session, mrn, "glucose", "2026-03-16 09:00", 101, "mg/dL")  # would do month 2, but removed
    services.hide_record(session, username=USER, entity="lab_result", record_id=hidden, reason="wrong patient")
    session.commit()
    record = load_record(session, mrn)

    items = sequelae_checklist(record, dt.date(2026, 5, 1))
    status = {(i.check.test, i.check.month): i.status for i in items}
    assert status[("glucose", 1)] == "done"
    assert status[("tsh", 1)] == "done"
    assert status[("tsh", 2)] == "done"
    assert status[("glucose", 2)] == "overdue"  # the only result in its window was removed
    assert status[("glucose", 3)] == "overdue"  # 30 April is after the window closed on 29 April
    assert status[("tsh", 3)] == "overdue"
    assert status[("tsh", 6)] == "upcoming"
    assert status[("tsh", 24)] == "upcoming"
    done = next(i for i in items if (i.check.test, i.check.month) == ("glucose", 1))
    assert done.result is not None and done.result.original_value == "5.4" and done.due == dt.date(2026, 2, 15)
    assert all(i.result is None or i.result.id != late for i in items)

    # Within the month-3 window and before a result: due, not yet overdue.
    as_of_due = {(i.check.test, i.check.month): i.status for i in sequelae_checklist(record, dt.date(2026, 4, 10))}
    assert as_of_due[("glucose", 3)] == "due"
    assert as_of_due[("glucose", 2)] == "overdue"

    rows = checklist_rows(items)
    assert rows[0]["status"] in {"DONE", "OVERDUE"} and "basis" in rows[0]
    assert any(r["result"] == "5.4 mmol/L on 2026-02-20" for r in rows)


def test_a_result_outside_the_laboratorys_range_is_flagged_on_the_checklist(session: Session, tmp_path: Path) -> None:
    """Issue 18 point 5: TSH 5.2 then 6.4 with the laboratory's ULN 4.5 is done AND above range;
    a suppressed TSH below the laboratory's lower limit is flagged too, never 'within range'."""
    mrn = _patient(session, resolved_date=RESOLVED)

    def tsh(when: str, value: float | str, ref_high: float | None = 4.5, ref_low: float | None = None) -> None:
        services.add_lab_result(session, username=USER, mrn=mrn, test="tsh", taken_at=when, value=value, unit="mIU/L",
                                ref_high=ref_high, ref_low=ref_low)

    schedule = tmp_path / "monthly.toml"
    schedule.write_text(
        '[windows]\nw_before_days = 10\nw_after_days = 10\n'
        '[[check]]\ntest = "tsh"\nmonths = [1, 2, 3, 4, 5, 6, 7]\nwindow = "w"\nlabel = "TSH"\nsource = "test"\nbasis = "design choice"\n'
        '[[check]]\ntest = "glucose"\nmonths = [1]\nwindow = "w"\nlabel = "Glucose"\nsource = "test"\nbasis = "design choice"\n',
        encoding="utf-8",
    )
    tsh("2026-02-10 09:00", 5.2)  # month 1
    tsh("2026-03-10 09:00", 6.4)  # month 2
    tsh("2026-04-12 09:00", 4.5, ref_low=0.4)  # month 3: exactly at the ULN is not above it
    tsh("2026-05-15 09:00", 0.05, ref_low=0.4)  # month 4: suppressed, below the laboratory's range
    tsh("2026-06-15 09:00", 9.0, ref_high=None)  # month 5: no range sent, and the profile has no TSH default
    tsh("2026-07-15 09:00", 2.0)  # month 6: only an upper limit sent
    _lab(session, mrn, "glucose", "2026-02-20 08:00", 5.4, "mmol/L")
    session.commit()
    record = load_record(session, mrn)
    items = {(i.check.test, i.check.month): i for i in sequelae_checklist(record, dt.date(2026, 9, 1), load_followup_schedule(schedule))}
    months = (1, 2, 3, 4, 5, 6)
    assert [items[("tsh", m)].status for m in months] == ["done"] * 6
    assert [items[("tsh", m)].outside_range for m in months] == [True, True, False, True, False, False]
    assert [items[("tsh", m)].above_range for m in months] == [True, True, False, False, False, False]
    assert items[("tsh", 1)].range_text == "ABOVE RANGE (> 4.5 mIU/L, laboratory)"
    assert items[("tsh", 3)].range_text == "within range (0.4–4.5 mIU/L, laboratory)"
    assert items[("tsh", 4)].range_text == "BELOW RANGE (< 0.4 mIU/L, laboratory)"
    assert items[("tsh", 5)].range_text == "no reference range given"  # never a made-up limit
    assert items[("tsh", 6)].range_text == "not above 4.5 mIU/L (laboratory; no lower limit given)"
    assert items[("glucose", 1)].range_text == "no reference range given"
    assert items[("tsh", 7)].status == "overdue" and items[("tsh", 7)].range_text == ""  # no result
    rows = {(r["test"], r["month"]): r for r in checklist_rows(list(items.values()))}
    assert rows[("TSH", 2)]["range"] == "ABOVE RANGE (> 4.5 mIU/L, laboratory)"


def test_one_result_does_one_check_only(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "overlap.toml"
    path.write_text(
        '[windows]\nwide_before_days = 40\nwide_after_days = 40\n'
        '[[check]]\ntest = "tsh"\nmonths = [1, 2]\nwindow = "wide"\nlabel = "TSH"\nsource = "test"\nbasis = "design choice"\n',
        encoding="utf-8",
    )
    mrn = _patient(session, resolved_date=RESOLVED)
    _lab(session, mrn, "tsh", "2026-03-01 09:00", 1.9, "mIU/L")  # inside both wide windows
    items = sequelae_checklist(load_record(session, mrn), dt.date(2026, 6, 1), load_followup_schedule(path))
    assert [i.status for i in items] == ["done", "overdue"]


def test_no_checklist_without_a_resolution_date(session: Session) -> None:
    mrn = _patient(session)
    assert sequelae_checklist(load_record(session, mrn), dt.date(2026, 5, 1)) == []


# --- patch test --------------------------------------------------------------------------------


def test_patch_test_date_with_both_reasons(session: Session) -> None:
    mrn = _patient(session, resolved_date=RESOLVED)
    for day, dose in (("2025-12-02", 60), ("2026-01-10", 20), ("2026-02-01", 10), ("2026-03-01", 0)):
        services.add_dose_change(session, username=USER, mrn=mrn, drug="prednisone", start_date=day, dose=dose)
    session.commit()
    plan = patch_test_plan(load_record(session, mrn))
    # Resolution + 6 months = 2026-07-15; last day above 10 mg = 2026-01-31, + 28 days = 2026-02-28.
    assert plan.after_resolution == dt.date(2026, 7, 15)
    assert plan.after_steroids == dt.date(2026, 2, 28)
    assert plan.earliest == dt.date(2026, 7, 15)
    assert plan.unknowns == ()
    assert len(plan.reasons) == 2 and "2026-01-31" in plan.reasons[1]


def test_patch_test_unknowns_are_named(session: Session) -> None:
    mrn = _patient(session)
    services.add_dose_change(session, username=USER, mrn=mrn, drug="prednisone", start_date="2025-12-02", dose=40)
    session.commit()
    plan = patch_test_plan(load_record(session, mrn))
    assert plan.earliest is None
    assert len(plan.unknowns) == 2
    assert plan.unknowns[0].startswith("Resolution date: not recorded")
    assert "never comes down to 10 mg/day" in plan.unknowns[1]


# --- viral PCR -----------------------------------------------------------------------------------


def test_viral_pcr_over_time(session: Session) -> None:
    mrn = _patient(session)
    _lab(session, mrn, "hhv6_pcr", "2025-12-08 10:00", "not detected", "")
    _lab(session, mrn, "hhv6_pcr", "2025-12-20 10:00", 15000, "copies/mL")
    _lab(session, mrn, "cmv_pcr", "2026-01-05 10:00", "detected", "")
    _lab(session, mrn, "ebv_pcr", "2026-01-20 10:00", 0, "copies/mL")
    results = viral_pcr_results(load_record(session, mrn), dt.date(2026, 1, 10))
    assert [(r.test, r.day_since_onset, r.detected) for r in results] == [
        ("hhv6_pcr", 7, False),
        ("hhv6_pcr", 19, True),
        ("cmv_pcr", 35, True),
    ]  # the EBV result of 20 January is after the as-of date
    assert results[1].value == 15000 and results[1].as_received == "15000 copies/mL"


# --- RegiSCAR as the follow-up page sees it ----------------------------------------------------


def _findings(session: Session, mrn: str, **answers: str) -> None:
    for item, value in answers.items():
        services.set_finding(session, username=USER, mrn=mrn, item=item, value=value)
    session.commit()


def test_regiscar_percentage_rule_only_when_leukocytes_are_low(session: Session) -> None:
    low = _patient(session, "LOW")
    _lab(session, low, "eosinophils_pct", "2025-12-03 08:00", 15, "%")
    _lab(session, low, "wbc", "2025-12-03 08:00", 3.2, "10^9/L")
    normal = _patient(session, "NORMAL")
    _lab(session, normal, "eosinophils_pct", "2025-12-03 08:00", 25, "%")
    _lab(session, normal, "wbc", "2025-12-03 08:00", 6.5, "10^9/L")
    as_of = dt.date(2026, 1, 1)

    def eos(mrn: str) -> tuple[str, int, str]:
        item = next(i for i in score_regiscar(load_record(session, mrn), as_of).items if i.key == "eosinophilia")
        return item.answer, item.points, item.filled_by

    assert eos(low) == ("moderate", 1, "data")  # 10-19.9 % with leukocytes < 4.0: +1
    assert eos(normal) == ("none", 0, "data")  # 25 % with normal leukocytes does not score
    _lab(session, low, "eosinophils_pct", "2025-12-05 08:00", 21, "%")
    _lab(session, low, "wbc", "2025-12-05 08:00", 3.9, "10^9/L")
    assert eos(low) == ("high", 2, "data")  # >= 20 % with leukocytes < 4.0: +2


def test_regiscar_definite_boundary_is_six(session: Session) -> None:
    mrn = _patient(session)
    _lab(session, mrn, "temperature", "2025-12-02 18:00", 39.1, "Cel")  # fever: 0 (not -1)
    _lab(session, mrn, "eosinophils", "2025-12-03 08:00", 1.6, "10^9/L")  # +2
    _lab(session, mrn, "alt", "2025-12-03 08:00", 210, "U/L")  # liver > 2 x ULN 40: one organ, +1
    _findings(
        session, mrn,
        lymphadenopathy="yes",  # +1
        atypical_lymphocytes="yes",  # +1
        rash_suggestive="yes",  # +1
        rash_extent="no",  # 0
        biopsy="unknown",  # 0
        resolution_15_days="yes",  # 0
        other_causes_excluded="unknown",  # 0
    )
    as_of = dt.date(2026, 1, 1)
    result = score_regiscar(load_record(session, mrn), as_of)
    assert (result.score, result.category) == (6, "definite")
    by = {i.key: i.filled_by for i in result.items}
    assert by["fever"] == "data" and by["eosinophilia"] == "data" and by["organ_involvement"] == "data"
    assert by["lymphadenopathy"] == "clinician"

    # A later answer is in force: one point fewer is 'probable' (4-5), not 'definite' (> 5).
    _findings(session, mrn, atypical_lymphocytes="no")
    result = score_regiscar(load_record(session, mrn), as_of)
    assert (result.score, result.category) == (5, "probable")
