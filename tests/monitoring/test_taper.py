"""Taper planner: arithmetic, rounding to tablets, the engine's PREMATURE_TAPER check, save/discard."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.taper import Tablets, TaperError, load_formulary, plannable_drugs, propose_taper

D0 = dt.date(2026, 3, 2)


def doses(plan) -> list[float]:  # type: ignore[no-untyped-def]
    return [s.dose_mg for s in plan.steps]


def dates(plan) -> list[dt.date]:  # type: ignore[no-untyped-def]
    return [s.date for s in plan.steps]


# --- formulary ------------------------------------------------------------------------------


def test_formulary_has_the_local_defaults() -> None:
    f = load_formulary()
    # 2.5 mg tablets (issue 18): the ladder's 7.5 and 2.5 mg can be dispensed without splitting.
    assert f["prednisone"].sizes_mg == (1.0, 2.5, 5.0, 20.0)
    assert f["prednisolone"].sizes_mg == (1.0, 2.5, 5.0, 25.0)
    assert f["prednisone"].ladder_mg == (60, 50, 40, 30, 25, 20, 15, 10, 7.5, 5, 2.5)
    assert f["methylprednisolone"].sizes_mg == (4.0, 16.0, 32.0)
    assert f["dexamethasone"].sizes_mg == (0.5, 2.0, 4.0)
    assert plannable_drugs(f)[0] == "prednisone"


def test_formulary_file_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "pharmacy.toml"
    path.write_text("[prednisone]\ntablets_mg = [5]\n", encoding="utf-8")
    monkeypatch.setenv("DRESS_FORMULARY", str(path))
    f = load_formulary()
    plan = propose_taper(drug="prednisone", current_dose_mg=40, start_date=D0, interval_days=7, step_mg=12, formulary=f)
    assert all(d % 5 == 0 for d in doses(plan))  # only 5 mg tablets stocked
    assert doses(plan) == [30, 20, 10, 0]  # 28 -> 30, 18 -> 20, 8 -> 10, then below zero -> stop
    monkeypatch.delenv("DRESS_FORMULARY")


def test_formulary_bad_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[prednisone]\ntablets_mg = 'five'\n", encoding="utf-8")
    with pytest.raises(TaperError, match=r"\[prednisone\]: tablets_mg must be a list of numbers"):
        load_formulary(path)


def test_tablet_breakdown_uses_fewest_whole_tablets() -> None:
    pred = Tablets("prednisone", (1, 5, 20))
    assert pred.breakdown(47) == ((20.0, 2), (5.0, 1), (1.0, 2))
    mp = Tablets("methylprednisolone", (4, 16, 32))
    assert mp.breakdown(24) == ((16.0, 1), (4.0, 2))
    assert not mp.is_dispensable(10)
    dexa = Tablets("dexamethasone", (0.5, 2, 4))
    assert dexa.breakdown(2.5) == ((2.0, 1), (0.5, 1))
    with pytest.raises(TaperError, match="cannot be made"):
        mp.breakdown(6)


# --- schedules ------------------------------------------------------------------------------


def test_step_in_mg() -> None:
    plan = propose_taper(drug="prednisone", current_dose_mg=60, start_date=D0, interval_days=7, step_mg=10)
    assert doses(plan) == [50, 40, 30, 20, 10, 0]
    assert dates(plan) == [D0 + dt.timedelta(days=7 * k) for k in range(6)]
    assert plan.stop_date == D0 + dt.timedelta(days=35)
    assert plan.plan_days == 35
    assert plan.steps[0].tablets_text == "2 × 20 mg + 2 × 5 mg"
    assert plan.steps[-1].tablets_text == "stop"


def test_step_in_percent_of_previous_dose_uses_the_dose_ladder() -> None:
    plan = propose_taper(drug="prednisone", current_dose_mg=60, start_date=D0, interval_days=14, step_pct=20)
    # Issue 18: doses a prescriber writes, not 48, 38, 30, 24 ... 3, 2, 1 mg. 60 x 0.8 = 48 -> 50;
    # 50 x 0.8 = 40; 40 x 0.8 = 32 -> 30; 30 x 0.8 = 24 -> 25; 20; 16 -> 15; 12 -> 10; 8 -> 7.5; 6 -> 5;
    # 4 -> 5 is no change, so one rung lower: 2.5; then 0.
    assert doses(plan) == [50, 40, 30, 25, 20, 15, 10, 7.5, 5, 2.5, 0]
    assert plan.steps[7].tablets_text == "1 × 5 mg + 1 × 2.5 mg"
    assert all((b - a).days == 14 for a, b in zip(dates(plan), dates(plan)[1:], strict=False))


def test_percent_rounds_to_methylprednisolone_ladder() -> None:
    plan = propose_taper(drug="Medrol", current_dose_mg=40, start_date=D0, interval_days=5, step_pct=25)
    assert plan.drug == "methylprednisolone"
    assert doses(plan) == [32, 24, 16, 12, 8, 4, 0]  # 30 -> 32 (nearest rung), 24, 18 -> 16 (ties lower), 12 ...
    assert plan.steps[0].pred_eq_mg == pytest.approx(40.0)  # methylprednisolone x 1.25


def test_half_milligram_tablets_of_dexamethasone() -> None:
    plan = propose_taper(drug="dexamethasone", current_dose_mg=6, start_date=D0, interval_days=3, step_pct=30)
    assert doses(plan) == [4, 3, 2, 1.5, 1, 0.5, 0]
    assert plan.steps[3].tablets == ((0.5, 3),)


def test_a_ladder_rung_the_tablets_cannot_make_is_left_out(tmp_path: Path) -> None:
    f = tmp_path / "formulary.toml"
    f.write_text("[prednisone]\ntablets_mg = [1, 5, 20]\nladder_mg = [20, 15, 10, 7.5, 5, 2.5]\n", encoding="utf-8")
    tablets = load_formulary(f)["prednisone"]
    assert tablets.ladder_at_or_below(20) == [0, 5, 10, 15, 20]  # no 2.5 mg tablet: 7.5 and 2.5 cannot be made
    plan = propose_taper(drug="prednisone", current_dose_mg=20, start_date=D0, interval_days=7, step_pct=50,
                         formulary=load_formulary(f))
    assert doses(plan) == [10, 5, 0]


def test_above_the_ladder_doses_fall_by_its_step() -> None:
    tablets = load_formulary()["prednisone"]
    assert tablets.ladder_at_or_below(85)[-4:] == [50, 60, 70, 80]


def test_end_date_target_in_whole_weeks_on_the_ladder() -> None:
    end = D0 + dt.timedelta(days=56)
    plan = propose_taper(drug="prednisone", current_dose_mg=60, start_date=D0, interval_days=7, end_date=end)
    assert plan.stop_date == end
    # Issue 18: not 53, 47, 40, 33, 27, 20, 13, 7 mg: the ladder's doses, one step every 7 days,
    # chosen evenly along the ladder (8 of its 10 rungs below 60 mg: bigger steps high, smaller low).
    assert doses(plan) == [50, 40, 25, 20, 15, 10, 5, 2.5, 0]
    assert all((b - a).days == 7 for a, b in zip(dates(plan), dates(plan)[1:], strict=False))
    assert not plan.notes


def test_end_date_not_a_multiple_of_the_interval_moves_the_stop_later_never_earlier() -> None:
    end = D0 + dt.timedelta(days=30)
    plan = propose_taper(drug="prednisolone", current_dose_mg=30, start_date=D0, interval_days=7, end_date=end)
    # Whole weeks (issue 18: steps slipped to 6 days): 30 days is not 4 or 5 whole weeks, so the
    # stop is after 5 weeks (day 35), not before the date asked for, and the plan says so.
    assert plan.stop_date == D0 + dt.timedelta(days=35)
    assert {(b - a).days for a, b in zip(dates(plan), dates(plan)[1:], strict=False)} == {7}
    assert any("not a whole number of 7-day steps" in n for n in plan.notes)
    assert all(d in (25, 20, 15, 10, 7.5, 5, 2.5, 0) for d in doses(plan))  # rungs of the ladder


def test_end_date_with_few_tablet_levels_merges_steps() -> None:
    plan = propose_taper(
        drug="methylprednisolone", current_dose_mg=8, start_date=D0, interval_days=1, end_date=D0 + dt.timedelta(days=9)
    )
    assert doses(plan) == [4, 0]  # the only rung below 8 mg of methylprednisolone is 4 mg
    assert dates(plan)[0] == D0  # the first reduction on the day asked for, then held to the stop
    assert plan.stop_date == D0 + dt.timedelta(days=9)
    assert any("held for more than one step" in n for n in plan.notes)


def test_end_date_on_the_start_date_is_an_abrupt_stop() -> None:
    plan = propose_taper(drug="prednisone", current_dose_mg=20, start_date=D0, interval_days=7, end_date=D0)
    assert doses(plan) == [0]
    assert plan.plan_days == 0


def test_tiny_current_dose_goes_straight_to_zero() -> None:
    plan = propose_taper(drug="prednisone", current_dose_mg=0.5, start_date=D0, interval_days=7, step_pct=10)
    assert doses(plan) == [0]
    assert any("cannot be made" in n for n in plan.notes)
    plan = propose_taper(drug="prednisone", current_dose_mg=1, start_date=D0, interval_days=7, step_mg=5)
    assert doses(plan) == [0]


@pytest.mark.parametrize("dose", [0, -5])
def test_zero_current_dose_is_refused_with_a_clear_message(dose: float) -> None:
    with pytest.raises(TaperError, match=r"current dose: value .* nothing to taper"):
        propose_taper(drug="prednisone", current_dose_mg=dose, start_date=D0, interval_days=7, step_mg=5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step_mg": 0}, r"step: value '0' mg: must be more than 0 mg"),
        ({"step_pct": 120}, r"step: value '120' %"),
        ({"step_pct": 10, "step_mg": 5}, "exactly one of"),
        ({}, "exactly one of"),
        ({"end_date": D0 - dt.timedelta(days=1)}, r"end date: value '2026-03-01': must be on or after"),
        ({"step_mg": 5, "interval_days": 0}, r"interval: value 0"),
        ({"step_mg": 5, "drug": "cyclosporine"}, r"drug: value 'cyclosporine': not a systemic corticosteroid"),
        ({"step_mg": 5, "current_dose_mg": 50000}, r"above 2000 mg/day, check the unit"),
    ],
)
def test_bad_inputs_are_refused_naming_the_input(kwargs: dict, message: str) -> None:
    args = {"drug": "prednisone", "current_dose_mg": 40, "start_date": D0, "interval_days": 7} | kwargs
    with pytest.raises(TaperError, match=message):
        propose_taper(**args)


def test_drug_without_tablets_in_the_formulary_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text("[prednisone]\ntablets_mg = [5]\n", encoding="utf-8")
    with pytest.raises(TaperError, match=r"no tablet strengths in the formulary"):
        propose_taper(
            drug="dexamethasone", current_dose_mg=4, start_date=D0, interval_days=7, step_mg=1, formulary=load_formulary(path)
        )


def test_a_plan_of_hundreds_of_steps_is_refused() -> None:
    with pytest.raises(TaperError, match="more than 400 reductions: choose a larger step"):
        propose_taper(drug="dexamethasone", current_dose_mg=500, start_date=D0, interval_days=1, step_mg=0.5)


FORMULARY = load_formulary()


@settings(max_examples=150, deadline=None)
@given(
    drug=st.sampled_from(sorted(FORMULARY)),
    current=st.floats(min_value=0.25, max_value=200, allow_nan=False),
    interval=st.integers(min_value=1, max_value=30),
    mode=st.sampled_from(["mg", "pct", "end"]),
    step=st.floats(min_value=0.1, max_value=100, allow_nan=False),
    span=st.integers(min_value=0, max_value=365),
)
def test_any_plan_never_increases_reaches_zero_and_can_be_dispensed(
    drug: str, current: float, interval: int, mode: str, step: float, span: int
) -> None:
    kwargs: dict = {"mg": {"step_mg": step}, "pct": {"step_pct": step}, "end": {"end_date": D0 + dt.timedelta(days=span)}}[mode]
    plan = propose_taper(drug=drug, current_dose_mg=current, start_date=D0, interval_days=interval, **kwargs)
    got = doses(plan)
    assert got[-1] == 0
    assert got[0] <= current
    assert all(b < a for a, b in zip(got, got[1:], strict=False)), got  # strictly falling: every row is a change
    assert all(b > a for a, b in zip(dates(plan), dates(plan)[1:], strict=False))
    assert dates(plan)[0] >= D0
    tablets = FORMULARY[plan.drug]
    for s in plan.steps:
        assert tablets.is_dispensable(s.dose_mg)
        assert sum(size * n for size, n in s.tablets) == pytest.approx(s.dose_mg)
    # Every step falls on a whole number of intervals after the first reduction.
    assert all((d - D0).days % interval == 0 for d in dates(plan))
    if mode == "end":
        # The stop is on the date asked for, or the next whole interval after it: never earlier.
        assert D0 + dt.timedelta(days=span) <= plan.stop_date < D0 + dt.timedelta(days=span + interval)
    else:
        assert all((b - a).days == interval for a, b in zip(dates(plan), dates(plan)[1:], strict=False))
    if mode != "mg" and tablets.ladder_mg:
        assert all(s.dose_mg == 0 or s.dose_mg in tablets.ladder_at_or_below(max(current, 1000)) for s in plan.steps)


# --- the plan against the engine, saving and discarding ---------------------------------------

from sqlalchemy import select  # noqa: E402
from sqlmodel import Session  # noqa: E402

from monitoring import services  # noqa: E402
from monitoring.models import AuditEntry, MedicationRow  # noqa: E402
from monitoring.records import DoseRow, PatientInfo, PatientRecord, load_record  # noqa: E402
from monitoring.steroids import analyse_course  # noqa: E402
from monitoring.taper import (  # noqa: E402
    PLAN_DISCARDED,
    check_plan,
    discard_plan,
    planning_dose,
    save_plan,
    saved_plan,
)

TODAY = dt.date(2026, 2, 1)
USER = "dr.taper"


@pytest.fixture(autouse=True)
def clinician(request: pytest.FixtureRequest) -> None:
    """Write services refuse unknown accounts: the tests that store data sign as a clinician."""
    if "session" in request.fixturenames:
        from monitoring import auth

        s: Session = request.getfixturevalue("session")
        auth.create_user(s, actor="test", username=USER, role=auth.CLINICIAN, password=None)
        s.commit()


def _patient(session: Session, drug: str = "prednisone", dose: float = 60) -> str:
    services.add_patient(
        session, username=USER, mrn="T1", name="Taper Test", weight_kg=60, onset_date=dt.date(2026, 1, 1),
        culprit_drugs=["carbamazepine"],
    )
    services.add_dose_change(session, username=USER, mrn="T1", drug=drug, start_date=dt.date(2026, 1, 5), dose=dose)
    session.commit()
    return "T1"


def test_short_plan_is_flagged_premature_by_the_engine(session: Session) -> None:
    mrn = _patient(session)
    record = load_record(session, mrn)
    assert planning_dose(record, TODAY, "prednisone") == 60
    fast = propose_taper(drug="prednisone", current_dose_mg=60, start_date=TODAY + dt.timedelta(days=1), interval_days=5, step_mg=20)
    check = check_plan(record, fast, TODAY)
    assert check.taper_days == 10
    assert check.course.taper_start == dt.date(2026, 2, 2)
    assert check.course.stop_date == dt.date(2026, 2, 12)
    assert check.premature
    assert check.premature_taper is not None and check.premature_taper.code == "PREMATURE_TAPER"
    assert check.min_taper.value == 28 and "4-week" in check.min_taper.source
    # The planner's verdict is the alert the rules raise for the same schedule.
    assert any(a.code == "RELAPSE_RISK" for a in check.alerts)  # PREMATURE_TAPER is a relapse factor


def test_four_week_plan_passes_and_27_days_does_not(session: Session) -> None:
    record = load_record(session, _patient(session))
    start = TODAY + dt.timedelta(days=1)
    ok = propose_taper(drug="prednisone", current_dose_mg=60, start_date=start, interval_days=7, end_date=start + dt.timedelta(days=28))
    assert check_plan(record, ok, TODAY).taper_days == 28
    assert not check_plan(record, ok, TODAY).premature
    short = propose_taper(drug="prednisone", current_dose_mg=60, start_date=start, interval_days=9, end_date=start + dt.timedelta(days=27))
    assert check_plan(record, short, TODAY).taper_days == 27
    assert check_plan(record, short, TODAY).premature


def test_switching_steroid_stops_the_old_one(session: Session) -> None:
    record = load_record(session, _patient(session, drug="methylprednisolone", dose=48))
    assert planning_dose(record, TODAY, "methylprednisolone") == 48
    assert planning_dose(record, TODAY, "prednisone") == pytest.approx(60)  # 48 x 1.25
    plan = propose_taper(drug="prednisone", current_dose_mg=60, start_date=TODAY + dt.timedelta(days=1), interval_days=7, step_mg=10)
    check = check_plan(record, plan, TODAY)
    # Methylprednisolone stops when prednisone starts: the total falls 60 -> 50 on the first date.
    assert [(p.date, p.pred_eq_mg) for p in check.course.schedule][:2] == [(dt.date(2026, 1, 5), 60), (TODAY + dt.timedelta(days=1), 50)]
    assert check.taper_days == 35


def test_plan_must_start_after_today(session: Session) -> None:
    record = load_record(session, _patient(session))
    plan = propose_taper(drug="prednisone", current_dose_mg=60, start_date=TODAY, interval_days=7, step_mg=10)
    with pytest.raises(TaperError, match=r"start date: value '2026-02-01': the first reduction must be after today"):
        check_plan(record, plan, TODAY)


def test_save_edit_and_discard_a_plan(session: Session) -> None:
    mrn = _patient(session)
    start = TODAY + dt.timedelta(days=1)
    first = propose_taper(drug="prednisone", current_dose_mg=60, start_date=start, interval_days=7, step_mg=20)
    res = save_plan(session, username=USER, mrn=mrn, plan=first, as_of=TODAY)
    session.commit()
    assert res.created == 3
    record = load_record(session, mrn)
    assert [(m.start_date, m.daily_dose_mg) for m in saved_plan(record, TODAY)] == [(s.date, s.dose_mg) for s in first.steps]
    course = analyse_course(record, TODAY)
    assert [p.planned for p in course.schedule] == [False, True, True, True]
    assert course.taper_days == 14

    # Edit = a new plan replaces it: the shared first date is amended, the other old dates hidden.
    second = propose_taper(drug="prednisone", current_dose_mg=60, start_date=start, interval_days=10, step_mg=10)
    res = save_plan(session, username=USER, mrn=mrn, plan=second, as_of=TODAY)
    session.commit()
    assert (res.created, res.amended, res.hidden) == (5, 1, 2)
    record = load_record(session, mrn)
    assert [m.daily_dose_mg for m in saved_plan(record, TODAY)] == [50, 40, 30, 20, 10, 0]
    assert analyse_course(record, TODAY).taper_days == 50
    hidden = session.execute(select(MedicationRow).where(MedicationRow.hidden == True)).scalars().all()  # noqa: E712
    assert sorted((h.start_date, h.hidden_reason) for h in hidden) == [
        (start + dt.timedelta(days=7), "plan discarded: replaced by a new taper plan"),
        (start + dt.timedelta(days=14), "plan discarded: replaced by a new taper plan"),
    ]

    # Going back to the first plan brings the discarded rows back (never a second row per date).
    res = save_plan(session, username=USER, mrn=mrn, plan=first, as_of=TODAY)
    session.commit()
    assert (res.created, res.amended, res.restored, res.hidden) == (0, 1, 2, 5)
    assert [m.daily_dose_mg for m in saved_plan(load_record(session, mrn), TODAY)] == [40, 20, 0]
    assert session.execute(select(AuditEntry).where(AuditEntry.action == "unhide")).scalars().all()

    # Discard hides every planned row, keeps the given doses, and audits each.
    assert discard_plan(session, username=USER, mrn=mrn, as_of=TODAY) == 3
    session.commit()
    record = load_record(session, mrn)
    assert saved_plan(record, TODAY) == ()
    assert [m.daily_dose_mg for m in record.meds] == [60]
    rows = session.execute(select(MedicationRow)).scalars().all()
    assert len(rows) == 9  # nothing deleted: 1 given + 3 + 5 planned
    reasons = session.execute(select(AuditEntry.reason).where(AuditEntry.action == "hide")).scalars().all()
    assert reasons.count(PLAN_DISCARDED) == 3
    assert reasons.count("plan discarded: replaced by a new taper plan") == 7


def test_a_refused_save_writes_nothing(session: Session) -> None:
    mrn = _patient(session)
    plan = propose_taper(drug="prednisone", current_dose_mg=60, start_date=TODAY + dt.timedelta(days=1), interval_days=7, step_mg=30)
    with pytest.raises(services.BatchRejected, match="user name is required"):
        save_plan(session, username="", mrn=mrn, plan=plan, as_of=TODAY)
    session.rollback()
    assert saved_plan(load_record(session, mrn), TODAY) == ()


def _record_on(drug: str, dose: float, start: dt.date) -> PatientRecord:
    info = PatientInfo(
        id=1, mrn="P", name="Property", sex=None, birth_date=None, weight_kg=70.0, onset_date=start - dt.timedelta(days=3),
        culprit_drugs=(), baseline_creatinine_mg_dl=None, resolved_date=None, setting="clinic", active=True, synthetic=True,
        updated_at=None,
    )
    row = DoseRow(1, drug, start, dose, "oral", f"{dose:g}", "mg", "manual", drug)
    return PatientRecord(patient=info, labs=(), meds=(row,))


@settings(max_examples=60, deadline=None)
@given(
    drug=st.sampled_from(["prednisone", "methylprednisolone", "dexamethasone"]),
    dose=st.sampled_from([8.0, 16.0, 40.0, 64.0]),
    interval=st.integers(min_value=1, max_value=21),
    mode=st.sampled_from(["mg", "pct", "end"]),
    step=st.floats(min_value=2, max_value=60, allow_nan=False),
    span=st.integers(min_value=0, max_value=90),
)
def test_planner_verdict_is_the_engines_alert(drug: str, dose: float, interval: int, mode: str, step: float, span: int) -> None:
    """The live check and the alert list can never disagree: PREMATURE_TAPER holds exactly when
    the engine's taper length of the course with the plan is under the profile's minimum."""
    record = _record_on(drug, dose, TODAY - dt.timedelta(days=10))
    start = TODAY + dt.timedelta(days=1)
    kwargs: dict = {"mg": {"step_mg": step}, "pct": {"step_pct": min(step, 100)}, "end": {"end_date": start + dt.timedelta(days=span)}}[mode]
    plan = propose_taper(drug=drug, current_dose_mg=dose, start_date=start, interval_days=interval, **kwargs)
    check = check_plan(record, plan, TODAY)
    assert check.taper_days == check.course.taper_days == plan.plan_days  # no reduction before the plan
    assert check.premature == (check.taper_days is not None and check.taper_days < check.min_taper.value)
    assert check.premature == any(a.code == "PREMATURE_TAPER" for a in check.alerts)


def test_default_plan_drug_is_the_steroid_given_today(session: Session) -> None:
    from monitoring.taper import default_plan_drug

    drugs = plannable_drugs()
    record = load_record(session, _patient(session, drug="methylprednisolone", dose=48))
    assert default_plan_drug(record, TODAY, drugs) == "methylprednisolone"  # not prednisone (issue 18)
    # Before the first dose there is nothing given: the first plannable drug.
    assert default_plan_drug(record, dt.date(2025, 1, 1), drugs) == "prednisone"
