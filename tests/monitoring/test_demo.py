"""The synthetic demo cohort: labelled synthetic, idempotent, first-run only, and each patient
raising the alerts its story is about on the dates a clinician would expect (PRODUCT.md §5)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitoring.cli import main
from monitoring.db import create_db_engine
from monitoring.demo import (
    DEMO_STORIES,
    build_demo,
    ensure_demo,
    generate_cohort,
    load_demo,
    synthetic_rash_image,
    write_cohort,
)
from monitoring.models import ClinicalFinding, LabResult, MedicationRow, Patient, Photo
from monitoring.records import PatientRecord, load_record
from monitoring.rules import evaluate
from monitoring.store import LabIn, PatientIn, write_batch
from monitoring.summary import summarise

TODAY = dt.date(2026, 11, 24)
# A second reference date across a month end, a year end and a leap day: stories are relative.
OTHER_DAY = dt.date(2028, 3, 1)


def _counts(session: Session) -> tuple[int, int, int, int]:
    return (
        session.execute(select(func.count()).select_from(Patient)).scalar_one(),
        session.execute(select(func.count()).select_from(LabResult)).scalar_one(),
        session.execute(select(func.count()).select_from(MedicationRow)).scalar_one(),
        session.execute(select(func.count()).select_from(ClinicalFinding)).scalar_one(),
    )


@pytest.fixture
def demo_session(session: Session) -> Session:
    load_demo(session, TODAY)
    session.commit()
    return session


# --- labelling -------------------------------------------------------------------------------


def test_every_demo_patient_is_synthetic_and_labelled(demo_session: Session) -> None:
    patients = demo_session.execute(select(Patient).order_by(Patient.mrn)).scalars().all()
    assert len(patients) >= 8
    assert [p.mrn for p in patients] == [s.mrn for s in DEMO_STORIES]
    for p in patients:
        assert p.synthetic is True
        assert p.mrn.startswith("DEMO-")
        assert "SYNTHETIC" in p.name.upper(), p.name
        assert p.onset_date is not None and p.onset_date < TODAY
        assert p.weight_kg and p.culprit_drugs
    assert set(demo_session.execute(select(MedicationRow.source)).scalars()) == {"demo"}
    # Results are the demo's, except the BSA % entered with the (synthetic) photographs.
    by_source = set(demo_session.execute(select(LabResult.source, LabResult.test)).all())
    assert {src for src, _ in by_source} == {"demo", "photo"}
    assert {test for src, test in by_source if src == "photo"} == {"bsa_pct"}


def test_demo_results_are_never_in_the_future(demo_session: Session) -> None:
    latest = demo_session.execute(select(func.max(LabResult.taken_at))).scalar_one()
    assert latest.date() == TODAY


def test_loading_at_dawn_leaves_out_the_mornings_bloods(session: Session) -> None:
    now = dt.datetime.combine(TODAY, dt.time(5, 0))
    _, labs, _ = build_demo(TODAY, now=now)
    assert labs and max(lab.taken_at for lab in labs) <= now
    _, all_labs, _ = build_demo(TODAY)
    assert any(lab.taken_at.date() == TODAY for lab in all_labs)


def test_generator_is_deterministic_for_a_reference_date() -> None:
    assert build_demo(TODAY) == build_demo(TODAY)
    assert build_demo(TODAY) != build_demo(TODAY + dt.timedelta(days=1))


# --- idempotence and first run ---------------------------------------------------------------


def test_loading_again_the_same_day_adds_nothing(demo_session: Session) -> None:
    before = _counts(demo_session)
    again = load_demo(demo_session, TODAY)
    demo_session.commit()
    assert _counts(demo_session) == before
    assert (again.patients_created, again.labs_inserted, again.meds_inserted) == (0, 0, 0)
    assert (again.findings_inserted, again.photos_inserted) == (0, 0)
    assert again.skipped_mrns == [s.mrn for s in DEMO_STORIES]


def test_loading_on_a_later_day_neither_adds_nor_conflicts(demo_session: Session) -> None:
    before = _counts(demo_session)
    later = load_demo(demo_session, TODAY + dt.timedelta(days=5))
    demo_session.commit()
    assert _counts(demo_session) == before
    assert later.skipped_mrns == [s.mrn for s in DEMO_STORIES]


def test_a_demo_mrn_already_present_is_left_alone_and_the_rest_loaded(session: Session) -> None:
    write_batch(session, patients=[PatientIn("DEMO-003", "Someone else", {"weight_kg": 70.0})], source="csv")
    result = load_demo(session, TODAY)
    session.commit()
    assert result.skipped_mrns == ["DEMO-003"]
    assert result.patients_created == len(DEMO_STORIES) - 1
    kept = session.execute(select(Patient).where(Patient.mrn == "DEMO-003")).scalar_one()
    assert kept.name == "Someone else" and kept.synthetic is False
    assert (
        session.execute(select(func.count()).select_from(LabResult).where(LabResult.patient_id == kept.id)).scalar_one()
        == 0
    )


def test_ensure_demo_fills_an_empty_database_once(engine: Engine) -> None:
    assert ensure_demo(engine, TODAY) is True
    with Session(engine) as s:
        first = _counts(s)
    assert first[0] == len(DEMO_STORIES) and first[1] > 0 and first[2] > 0 and first[3] > 0
    assert ensure_demo(engine, TODAY) is False
    with Session(engine) as s:
        assert _counts(s) == first


def test_ensure_demo_never_touches_a_database_with_patients(engine: Engine) -> None:
    with Session(engine) as s:
        write_batch(s, patients=[PatientIn("MRN-1", "Real Patient", {"weight_kg": 60.0})], source="csv")
        s.commit()
    assert ensure_demo(engine, TODAY) is False
    with Session(engine) as s:
        assert _counts(s)[:3] == (1, 0, 0)


def test_two_first_runs_racing_load_the_demo_once(db_url: str) -> None:
    """The dashboard's first run while someone loads the demo by hand: one load wins, the other
    sees its patients and reports False; nothing is duplicated and nothing crashes."""
    import threading

    first, second = create_db_engine(db_url), create_db_engine(db_url)
    outcome: list[object] = []
    with Session(first) as winner:
        load_demo(winner, TODAY)  # holds the write lock, not yet committed

        def run() -> None:
            try:
                outcome.append(ensure_demo(second, TODAY))
            except Exception as exc:  # noqa: BLE001 - the assertion below shows it
                outcome.append(exc)

        loser = threading.Thread(target=run)
        loser.start()
        time.sleep(0.5)  # the loser has seen an empty database and is waiting for the lock
        winner.commit()
        loser.join(timeout=60)
    assert outcome == [False]
    with Session(first) as s:
        assert _counts(s)[0] == len(DEMO_STORIES)
    first.dispose()
    second.dispose()


# --- the stories, through the engine ---------------------------------------------------------

# (MRN, day relative to the reference date, codes that must hold, codes that must not).
STORY_CHECKS: list[tuple[str, int, set[str], set[str]]] = [
    # Responder: day 7 of steroids is day -2; ALT 142 of 388 and eosinophils 0.45 of 2.6, afebrile.
    ("DEMO-001", -9, {"HEPATIC_INVOLVEMENT", "EOSINOPHILIA"}, {"ICU_CRITERIA"}),
    ("DEMO-001", -2, {"HEPATIC_INVOLVEMENT"}, {"STALLED_RESPONSE_DAY7", "EOSINOPHILIA"}),
    (
        "DEMO-001",
        0,
        {"HEPATIC_INVOLVEMENT"},
        {"STALLED_RESPONSE_DAY7", "PREMATURE_TAPER", "RELAPSE_RISK", "GI_PROPHYLAXIS_MISSING", "RECHALLENGE"},
    ),
    # No response: day 6 is too early, day 7 stalls, IVIG the next day silences it.
    ("DEMO-002", -5, {"HEPATIC_INVOLVEMENT", "EOSINOPHILIA", "FERRITIN_HIGH"}, {"STALLED_RESPONSE_DAY7"}),
    ("DEMO-002", -4, {"STALLED_RESPONSE_DAY7", "HEPATIC_INVOLVEMENT", "EOSINOPHILIA", "FERRITIN_HIGH"}, set()),
    ("DEMO-002", -3, {"HEPATIC_INVOLVEMENT"}, {"STALLED_RESPONSE_DAY7"}),
    (
        "DEMO-002",
        0,
        {"HEPATIC_INVOLVEMENT", "FERRITIN_HIGH"},
        {"STALLED_RESPONSE_DAY7", "RENAL_INVOLVEMENT", "EOSINOPHILIA"},
    ),
    # Premature taper (18 days, planned from the start) then a flare ten days after the stop.
    ("DEMO-003", -30, {"PREMATURE_TAPER", "RELAPSE_RISK"}, set()),
    ("DEMO-003", -3, {"PREMATURE_TAPER", "RELAPSE_RISK"}, {"HEPATIC_INVOLVEMENT", "EOSINOPHILIA"}),
    ("DEMO-003", -1, {"PREMATURE_TAPER", "RELAPSE_RISK", "HEPATIC_INVOLVEMENT"}, {"GI_PROPHYLAXIS_MISSING"}),
    ("DEMO-003", 0, {"PREMATURE_TAPER", "RELAPSE_RISK", "HEPATIC_INVOLVEMENT", "EOSINOPHILIA"}, set()),
    # HHV-6 detected on day -5 (week 3 after onset), during a 77-day taper.
    ("DEMO-004", -6, set(), {"RELAPSE_RISK", "PREMATURE_TAPER"}),
    ("DEMO-004", -5, {"RELAPSE_RISK"}, {"PREMATURE_TAPER", "EOSINOPHILIA"}),
    ("DEMO-004", 0, {"RELAPSE_RISK"}, {"PREMATURE_TAPER", "EOSINOPHILIA", "HEPATIC_INVOLVEMENT"}),
    # Kidney, heart, ferritin: troponin above its limit from day -4, ferritin >= 3000 from day -2.
    ("DEMO-005", -6, {"RENAL_INVOLVEMENT", "POOR_PROGNOSIS", "ICU_CRITERIA", "FERRITIN_HIGH"}, {"CARDIAC_INVOLVEMENT"}),
    ("DEMO-005", -4, {"CARDIAC_INVOLVEMENT", "RENAL_INVOLVEMENT", "ICU_CRITERIA", "POOR_PROGNOSIS"}, set()),
    (
        "DEMO-005",
        0,
        {
            "RENAL_INVOLVEMENT",
            "CARDIAC_INVOLVEMENT",
            "FERRITIN_HIGH",
            "POOR_PROGNOSIS",
            "ICU_CRITERIA",
            "HEPATIC_INVOLVEMENT",
        },
        {"GI_PROPHYLAXIS_MISSING", "STALLED_RESPONSE_DAY7"},
    ),
    # Resolved, off steroids, normal bloods: nothing to alert about.
    ("DEMO-006", 0, set(), {"PREMATURE_TAPER", "RELAPSE_RISK", "GI_PROPHYLAXIS_MISSING", "EOSINOPHILIA"}),
    # Mixed units: ALT 1.7 ukat/L = 102 U/L > 2 x 45 U/L (the laboratory's 0.75 ukat/L); no PPI.
    ("DEMO-007", -7, {"HEPATIC_INVOLVEMENT", "EOSINOPHILIA", "FERRITIN_HIGH"}, {"GI_PROPHYLAXIS_MISSING"}),
    (
        "DEMO-007",
        0,
        {"HEPATIC_INVOLVEMENT", "GI_PROPHYLAXIS_MISSING"},
        {"EOSINOPHILIA", "RENAL_INVOLVEMENT", "ICU_CRITERIA", "STALLED_RESPONSE_DAY7"},
    ),
    # Long clinic taper: no alert at all.
    ("DEMO-008", 0, set(), {"PREMATURE_TAPER", "RELAPSE_RISK", "GI_PROPHYLAXIS_MISSING", "HEPATIC_INVOLVEMENT"}),
    # Carbamazepine (Tegretol) for a phenytoin DRESS.
    ("DEMO-009", 0, {"RECHALLENGE"}, {"PREMATURE_TAPER", "RELAPSE_RISK", "GI_PROPHYLAXIS_MISSING"}),
]

_NOT_ELSEWHERE = {"RECHALLENGE": {"DEMO-009"}, "CARDIAC_INVOLVEMENT": {"DEMO-005"}, "POOR_PROGNOSIS": {"DEMO-005"}}


@pytest.fixture(scope="module", params=[TODAY, OTHER_DAY], ids=str)
def demo_records(request: pytest.FixtureRequest) -> tuple[dt.date, dict[str, PatientRecord]]:
    from sqlmodel import SQLModel

    today: dt.date = request.param
    eng = create_db_engine("sqlite://")
    SQLModel.metadata.create_all(eng)
    with Session(eng) as s:
        load_demo(s, today)
        s.commit()
        records = {story.mrn: load_record(s, story.mrn) for story in DEMO_STORIES}
    eng.dispose()
    return today, records


@pytest.mark.parametrize(("mrn", "day", "present", "absent"), STORY_CHECKS)
def test_each_patient_raises_the_alerts_of_its_story(
    demo_records: tuple[dt.date, dict[str, PatientRecord]], mrn: str, day: int, present: set[str], absent: set[str]
) -> None:
    today, records = demo_records
    codes = {a.code for a in evaluate(records[mrn], today + dt.timedelta(days=day))}
    assert present <= codes, f"{mrn} day {day}: missing {present - codes}, got {sorted(codes)}"
    assert not (absent & codes), f"{mrn} day {day}: unexpected {sorted(absent & codes)}"


def test_every_story_alert_is_raised_today_or_on_its_day(
    demo_records: tuple[dt.date, dict[str, PatientRecord]],
) -> None:
    today, records = demo_records
    for story in DEMO_STORIES:
        seen: set[str] = set()
        for day in range(-12, 1):
            seen |= {a.code for a in evaluate(records[story.mrn], today + dt.timedelta(days=day))}
        assert set(story.alerts) <= seen, f"{story.mrn}: {set(story.alerts) - seen} never raised"
        for code, owners in _NOT_ELSEWHERE.items():
            if story.mrn not in owners:
                assert code not in seen, f"{story.mrn} raises {code}, which is another patient's story"


def test_the_default_demo_tells_its_stories_as_of_today(session: Session) -> None:
    """What the dashboard loads on first run (reference date today, nothing after the current
    time): every story's alerts show up within the last twelve days, whatever the hour."""
    load_demo(session)
    session.commit()
    today = dt.date.today()
    for story in DEMO_STORIES:
        record = load_record(session, story.mrn)
        assert record.patient.onset_date is not None and record.patient.onset_date < today
        seen: set[str] = set()
        for day in range(-12, 1):
            seen |= {a.code for a in evaluate(record, today + dt.timedelta(days=day))}
        assert set(story.alerts) <= seen, f"{story.mrn}: {set(story.alerts) - seen} never raised"
    latest = session.execute(select(func.max(LabResult.taken_at))).scalar_one()
    assert latest <= dt.datetime.now()


def test_relapse_evidence_names_the_factor_of_each_story(
    demo_records: tuple[dt.date, dict[str, PatientRecord]],
) -> None:
    today, records = demo_records

    def factors(mrn: str, day: int) -> set[str]:
        alerts = [a for a in evaluate(records[mrn], today + dt.timedelta(days=day)) if a.code == "RELAPSE_RISK"]
        assert len(alerts) == 1
        return {f["factor"] for f in alerts[0].evidence["factors"]}

    assert factors("DEMO-003", -3) == {"premature_taper"}
    assert factors("DEMO-003", -1) == {"premature_taper", "eosinophils_flare", "alt_flare"}
    assert factors("DEMO-004", -5) == {"viral_reactivation"}


def test_summaries_tell_the_course_of_each_story(demo_records: tuple[dt.date, dict[str, PatientRecord]]) -> None:
    today, records = demo_records

    def summary(mrn: str, day: int = 0) -> dict[str, Any]:
        return summarise(records[mrn], today + dt.timedelta(days=day))

    def iso(day: int) -> str:
        return (today + dt.timedelta(days=day)).isoformat()

    s1 = summary("DEMO-001")
    assert s1["day_since_onset"] == 12
    assert s1["steroid"]["course_start"] == iso(-9) and s1["steroid"]["stop_date"] is None
    s2 = summary("DEMO-002")
    assert s2["steroid"]["day_of_course"] == 11
    assert [x["drug"] for x in s2["steroid"]["second_line"]] == ["ivig"]
    s3 = summary("DEMO-003")
    assert (s3["steroid"]["taper_start"], s3["steroid"]["stop_date"], s3["steroid"]["taper_days"]) == (
        iso(-28),
        iso(-10),
        18,
    )
    s4 = summary("DEMO-004")
    assert s4["steroid"]["taper_days"] == 77 and s4["steroid"]["stop_date"] == iso(69)
    s8 = summary("DEMO-008")
    assert s8["steroid"]["taper_days"] == 150 and s8["steroid"]["current_pred_eq_mg"] == 20.0
    assert s8["patch_test_earliest"] is None  # no resolution date recorded yet
    s6 = summary("DEMO-006")
    assert s6["steroid"]["stop_date"] == iso(-119)
    # Resolved on day -150 (2026-06-27, 2027-10-03); six calendar months later beats the last day
    # above 10 mg (day -134) + 28 days.
    expected = {TODAY: "2026-12-27", OTHER_DAY: "2028-04-03"}[today]
    assert s6["patch_test_earliest"] == expected
    assert s6["patch_test_earliest"] > today.isoformat()  # still waiting


def test_mixed_units_are_stored_converted_with_the_original_kept(demo_session: Session) -> None:
    pid = demo_session.execute(select(Patient.id).where(Patient.mrn == "DEMO-007")).scalar_one()
    rows = {
        (r.test, r.taken_at.date()): r
        for r in demo_session.execute(select(LabResult).where(LabResult.patient_id == pid)).scalars()
    }
    day5 = TODAY - dt.timedelta(days=5)
    alt = rows[("alt", day5)]
    assert (alt.original_value, alt.original_unit, alt.unit) == ("4.4", "ukat/L", "U/L")
    assert alt.value == pytest.approx(264.0) and alt.ref_high == pytest.approx(45.0)
    eos = rows[("eosinophils", day5)]
    assert (eos.original_value, eos.original_unit, eos.value) == ("2300", "cells/uL", pytest.approx(2.3))
    cr = rows[("creatinine", day5)]
    assert cr.original_unit == "umol/L" and cr.value == pytest.approx(74 / 88.4)
    assert cr.ref_high == pytest.approx(90 / 88.4)
    temp = rows[("temperature", day5)]
    assert temp.original_unit == "[degF]" and temp.value == pytest.approx((100.9 - 32) * 5 / 9)


def test_demo_rows_are_what_the_csv_importer_makes_of_them() -> None:
    """The demo obeys the import's rules: its rows, written out as CSV files exactly as received
    (value, unit, laboratory limit in that unit, dose as entered), are accepted by the CSV importer
    and become the same canonical records."""
    import csv
    import io

    from monitoring import catalogue
    from monitoring.importers.csv_import import parse_csv_bytes

    patients, labs, meds = build_demo(TODAY)

    def as_csv(header: list[str], rows: list[list[object]]) -> bytes:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
        return buf.getvalue().encode()

    # A PCR result given as text has no unit, which a CSV labs row cannot express: FHIR-only here.
    numeric = [lab for lab in labs if lab.value is not None]
    assert len(labs) - len(numeric) == 2
    lab_rows = [
        [
            lab.mrn,
            lab.taken_at.isoformat(timespec="minutes"),
            lab.test,
            lab.original_value,
            lab.original_unit,
            None if lab.ref_high is None else repr(catalogue.from_canonical(lab.test, lab.ref_high, lab.original_unit)),
        ]
        for lab in numeric
    ]
    parsed = parse_csv_bytes(
        as_csv(["mrn", "taken_at", "test", "value", "unit", "ref_high"], lab_rows), "demo_labs.csv", as_of=TODAY
    )
    assert parsed.problems == [] and parsed.kind == "labs"
    got = parsed.labs
    assert len(got) == len(numeric)
    for mine, theirs in zip(numeric, got, strict=True):
        assert (theirs.mrn, theirs.test, theirs.taken_at, theirs.unit) == (
            mine.mrn,
            mine.test,
            mine.taken_at,
            mine.unit,
        )
        assert theirs.value == pytest.approx(mine.value)
        assert (theirs.original_value, theirs.original_unit) == (mine.original_value, mine.original_unit)
        if mine.ref_high is None:
            assert theirs.ref_high is None
        else:
            assert theirs.ref_high == pytest.approx(mine.ref_high)

    med_rows = [
        [m.mrn, m.start_date.isoformat(), m.drug_as_entered, m.dose_as_entered, m.unit_as_entered, m.route]
        for m in meds
    ]
    parsed = parse_csv_bytes(
        as_csv(["mrn", "start_date", "drug", "daily_dose", "unit", "route"], med_rows), "demo_meds.csv", as_of=TODAY
    )
    assert parsed.problems == [] and parsed.kind == "medications"
    for mine, theirs in zip(meds, parsed.meds, strict=True):
        assert (theirs.drug, theirs.start_date, theirs.dose_per_kg) == (mine.drug, mine.start_date, mine.dose_per_kg)
        if mine.dose_per_kg is None:
            assert theirs.daily_dose_mg == pytest.approx(mine.daily_dose_mg)

    fields = ["sex", "birth_date", "weight_kg", "onset_date", "baseline_creatinine_mg_dl", "resolved_date"]
    patient_rows = [
        [p.mrn, p.name, *(p.values[f] for f in fields), ";".join(p.values["culprit_drugs"])] for p in patients
    ]
    parsed = parse_csv_bytes(
        as_csv(["mrn", "name", *fields, "culprit_drug"], patient_rows), "demo_patients.csv", as_of=TODAY
    )
    assert parsed.problems == [] and parsed.kind == "patients"
    for mine, theirs in zip(patients, parsed.patients, strict=True):
        assert theirs.name == mine.name
        for f in [*fields, "culprit_drugs"]:
            assert theirs.values.get(f) == mine.values[f], (mine.mrn, f)


def test_demo_patients_carry_hand_entered_regiscar_items(demo_session: Session) -> None:
    from monitoring.regiscar import REGISCAR_ITEMS

    rows = demo_session.execute(select(ClinicalFinding)).scalars().all()
    assert {r.patient_id for r in rows} == set(demo_session.execute(select(Patient.id)).scalars())
    for r in rows:
        assert r.item in REGISCAR_ITEMS and r.value in REGISCAR_ITEMS[r.item][1]


def test_demo_photographs_are_synthetic_drawings_with_their_bsa(demo_session: Session) -> None:
    from monitoring.photos import list_photos

    photos = list_photos(demo_session, "DEMO-005", with_thumbnails=False)
    assert [(p.taken_on, p.body_site, p.bsa_pct) for p in photos] == [
        (TODAY - dt.timedelta(days=d), "chest", bsa) for d, bsa in ((6, 40), (4, 55), (2, 60))
    ]
    assert all((p.note or "").startswith("SYNTHETIC") for p in photos)
    # The BSA entered with each photograph is the day's observation (ICU_CRITERIA reads it).
    record = load_record(demo_session, "DEMO-005")
    bsa = [(pt.taken_at.date(), pt.value) for pt in record.labs if pt.test == "bsa_pct"]
    assert bsa == [(p.taken_on, p.bsa_pct) for p in photos]
    total = demo_session.execute(select(func.count()).select_from(Photo)).scalar_one()
    assert total == 12  # DEMO-001, -003, -005, -008: three dates of one site each
    assert load_demo(demo_session, TODAY).photos_inserted == 0  # idempotent


def test_synthetic_rash_image_is_deterministic_and_scales_with_bsa() -> None:
    from io import BytesIO

    from PIL import Image

    day = dt.date(2026, 1, 1)
    a = synthetic_rash_image("DEMO-001", "back", 40, day)
    assert a == synthetic_rash_image("DEMO-001", "back", 40, day)
    clear = Image.open(BytesIO(synthetic_rash_image("DEMO-001", "back", 0, day))).convert("RGB")
    rash = Image.open(BytesIO(a)).convert("RGB")

    def red_fraction(im: Image.Image) -> float:
        raw = im.crop((0, 40, im.width, im.height)).tobytes()  # RGB triples, below the banner
        n = len(raw) // 3
        return sum(1 for i in range(n) if raw[3 * i] - raw[3 * i + 1] > 80) / n

    assert red_fraction(clear) == 0.0 < red_fraction(rash)


def test_every_demo_patient_is_a_probable_or_definite_case(
    demo_records: tuple[dt.date, dict[str, PatientRecord]],
) -> None:
    """Demo patients are DRESS cases by RegiSCAR (score >= 4), scored from their data and the
    items a clinician entered by hand."""
    from monitoring.regiscar import score_regiscar

    today, records = demo_records
    for story in DEMO_STORIES:
        result = score_regiscar(records[story.mrn], today)
        assert result.score >= 4 and result.category in {"probable", "definite"}, (story.mrn, result.score)
        origins = {item.filled_by for item in result.items}
        assert {"data", "clinician"} <= origins, story.mrn


# --- the benchmark generator -----------------------------------------------------------------


def test_generate_cohort_sizes_and_labels() -> None:
    patients, labs, meds = generate_cohort(7, 10, seed=3, today=TODAY)
    assert [p.mrn for p in patients] == [f"SYN-{i:06d}" for i in range(1, 8)]
    assert all(p.values["synthetic"] is True and "SYNTHETIC" in (p.name or "") for p in patients)
    assert len(labs) == 7 * 10 * 6
    per = {(lab.mrn, lab.test) for lab in labs}
    assert {t for _, t in per} == {"alt", "ast", "creatinine", "eosinophils", "ferritin", "temperature"}
    assert max(lab.taken_at.date() for lab in labs) == TODAY
    assert min(lab.taken_at.date() for lab in labs) == TODAY - dt.timedelta(days=9)
    assert all(isinstance(lab, LabIn) and lab.value is not None for lab in labs)
    # Each patient has a steroid course with a taper that ends in a stop (plan rows included).
    for p in patients:
        doses = [m.daily_dose_mg for m in meds if m.mrn == p.mrn and m.drug == "prednisone"]
        assert doses[0] > 0 and doses[-1] == 0 and len(doses) >= 3
    assert generate_cohort(7, 10, seed=3, today=TODAY) == (patients, labs, meds)
    assert generate_cohort(7, 10, seed=4, today=TODAY)[1] != labs


def test_generate_cohort_300_by_60_is_fast() -> None:
    started = time.perf_counter()
    patients, labs, meds = generate_cohort(300, 60, seed=1, today=TODAY)
    elapsed = time.perf_counter() - started
    assert (len(patients), len(labs)) == (300, 300 * 60 * 6)
    # About a second on a laptop; the bound leaves room for a slow CI machine.
    assert elapsed < 6.0, f"generating 300 x 60 took {elapsed:.2f} s"


def test_write_cohort_goes_through_the_write_path_and_is_idempotent(session: Session) -> None:
    first = write_cohort(session, 5, 8, seed=11, today=TODAY)
    session.commit()
    assert (first.patients_created, first.labs_inserted) == (5, 5 * 8 * 6)
    again = write_cohort(session, 5, 8, seed=11, today=TODAY)
    session.commit()
    assert (again.labs_inserted, again.meds_inserted, again.labs_skipped) == (0, 0, 5 * 8 * 6)


def test_generated_stalled_patients_raise_the_day7_alert(session: Session) -> None:
    """The cohort reuses the demo's shapes (SYN-000001 responder, 000002 stalled then IVIG,
    000003 short taper then flare, 000004 long taper, and again from 000005)."""
    write_cohort(session, 8, 40, seed=5, today=TODAY)
    session.commit()

    def codes(mrn: str, course_day: int) -> set[str]:
        record = load_record(session, mrn)
        start = min(m.start_date for m in record.meds if m.drug == "prednisone")
        return {a.code for a in evaluate(record, start + dt.timedelta(days=course_day))}

    for responder, stalled, flare, long_taper in (
        ("SYN-000001", "SYN-000002", "SYN-000003", "SYN-000004"),
        ("SYN-000005", "SYN-000006", "SYN-000007", "SYN-000008"),
    ):
        assert "STALLED_RESPONSE_DAY7" not in codes(responder, 7)
        assert "STALLED_RESPONSE_DAY7" in codes(stalled, 7)
        assert "STALLED_RESPONSE_DAY7" not in codes(stalled, 9)  # IVIG on course day 8
        assert {"PREMATURE_TAPER", "RELAPSE_RISK"} <= codes(flare, 38)
        assert not {"PREMATURE_TAPER", "STALLED_RESPONSE_DAY7"} & (codes(long_taper, 7) | codes(responder, 20))


@settings(max_examples=12, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=6),
    days=st.integers(min_value=1, max_value=90),
    seed=st.integers(min_value=0, max_value=2**32),
    offset=st.integers(min_value=-3000, max_value=0),
)
def test_any_generated_cohort_is_accepted_by_the_write_path(n: int, days: int, seed: int, offset: int) -> None:
    """Whatever the size, seed and reference date: values within the catalogue's bounds, no result
    after the reference date, one schedule row per (drug, start date), and write_batch accepts it."""
    from sqlmodel import SQLModel

    from monitoring import catalogue

    today = TODAY + dt.timedelta(days=offset)
    patients, labs, meds = generate_cohort(n, days, seed=seed, today=today)
    assert len(labs) == n * days * 6
    for lab in labs:
        assert lab.value is not None and lab.taken_at.date() <= today
        catalogue.check_bounds(catalogue.lookup(lab.test), lab.value)
    keys = [(m.mrn, m.drug, m.start_date) for m in meds]
    assert len(keys) == len(set(keys))
    assert all(m.daily_dose_mg >= 0 for m in meds)
    eng = create_db_engine("sqlite://")
    SQLModel.metadata.create_all(eng)
    with Session(eng) as s:
        result = write_batch(s, patients=patients, labs=labs, meds=meds, source="demo")
        assert (result.patients_created, result.labs_inserted, result.meds_inserted) == (n, len(labs), len(meds))
    eng.dispose()


def test_generate_cohort_refuses_nonsense_sizes() -> None:
    with pytest.raises(ValueError, match="days"):
        generate_cohort(3, 0, seed=1, today=TODAY)


# --- command line ----------------------------------------------------------------------------


def test_demo_command_is_idempotent(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(db_path), "demo", "--today", TODAY.isoformat()]) == 0
    out = capsys.readouterr().out
    assert f"{len(DEMO_STORIES)} patients" in out and "synthetic" in out
    # Later (here: the day before the real today, whatever it is): nothing added, nothing refused.
    later = max(TODAY, dt.date.today() - dt.timedelta(days=1))
    assert main(["--db", str(db_path), "demo", "--today", later.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "0 patients, 0 results, 0 medication rows, 0 RegiSCAR findings, 0 synthetic photographs added" in out
    assert "DEMO-001" in out and "left unchanged" in out
    assert main(["--db", str(db_path), "demo"]) == 0  # default reference date: today
    assert "left unchanged" in capsys.readouterr().out
    with Session(create_db_engine(f"sqlite:///{db_path}")) as s:
        assert _counts(s)[0] == len(DEMO_STORIES)


@pytest.mark.parametrize(
    ("value", "reason"),
    [("24/11/2026", "not an ISO 8601 date"), ("2026-02-30", "not an ISO 8601 date"), ("2999-01-01", "after today")],
)
def test_demo_command_refuses_a_bad_date(
    db_path: Path, capsys: pytest.CaptureFixture[str], value: str, reason: str
) -> None:
    assert main(["--db", str(db_path), "demo", "--today", value]) == 2
    err = capsys.readouterr().err
    assert f"--today: value '{value}'" in err and reason in err
    with Session(create_db_engine(f"sqlite:///{db_path}")) as s:
        assert _counts(s) == (0, 0, 0, 0)
