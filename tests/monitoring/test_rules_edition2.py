"""PRODUCT.md §5 edition 2, from the clinic's side, both ways and at the edges: LABS_OVERDUE, the
repeat requirement and infection wording of STALLED_RESPONSE_DAY7, the flare measured on or after
the taper start date, the latest positive PCR and its trend, the age of the evidence, and
censored values."""

from __future__ import annotations

import dataclasses
import datetime as dt

from monitoring.guideline import default_profile
from monitoring.records import PatientRecord
from monitoring.rules import Alert, evaluate
from tests.monitoring.engine_builder import Chart, at, day

PROF = default_profile()


def alerts(record: PatientRecord, as_of: dt.date) -> dict[str, Alert]:
    return {a.code: a for a in evaluate(record, as_of, PROF)}


def on_steroids(c: Chart, start: int = 0) -> None:
    c.dose("prednisone", start, 60)
    c.dose("omeprazole", start, 20)


# --- LABS_OVERDUE ------------------------------------------------------------------------------


def test_inpatient_labs_exactly_two_days_old_are_not_overdue_three_days_are(session) -> None:
    c = Chart(session)
    on_steroids(c)
    for test, value in (("alt", 50), ("creatinine", 0.9), ("eosinophils", 0.4)):
        c.lab(test, 1, value)
    record = c.record()
    assert "LABS_OVERDUE" not in alerts(record, day(3))  # day 1 is exactly D - 2
    a = alerts(record, day(4))["LABS_OVERDUE"]
    assert a.severity == "info"
    # The course day as the timeline and ward say it: counted from the first dose, which is named.
    assert f"On systemic steroids, day 4 of steroids (first dose {day(0).isoformat()}), with monitoring due" in a.message
    assert "of the course" not in a.message
    assert f"ALT: last {day(1).isoformat()} (3 days ago)" in a.message
    assert f"creatinine: last {day(1).isoformat()}".lower() in a.message.lower()
    assert "inpatient" in a.message and "design choice" in a.recommendation
    assert {o["test"] for o in a.evidence["overdue"]} == {"alt", "creatinine", "eosinophils"}
    assert len(a.row_ids["lab_result"]) == 3


def test_a_test_never_taken_is_named_never_and_only_the_overdue_ones_are_named(session) -> None:
    c = Chart(session)
    on_steroids(c)
    c.lab("alt", 3, 50)
    c.lab("creatinine", 3, 0.9)
    a = alerts(c.record(), day(4))["LABS_OVERDUE"]
    assert "Eosinophils: never" in a.finding
    assert "ALT" not in a.finding and "Creatinine" not in a.finding


def test_clinic_patients_have_fourteen_days(session) -> None:
    c = Chart(session, setting="clinic")
    on_steroids(c)
    for test, value in (("alt", 50), ("creatinine", 0.9), ("eosinophils", 0.4)):
        c.lab(test, 1, value)
    record = c.record()
    assert "LABS_OVERDUE" not in alerts(record, day(15))  # exactly 14 days
    a = alerts(record, day(16))["LABS_OVERDUE"]
    assert "clinic" in a.finding and a.evidence["interval_days"] == 14


def test_no_steroid_course_no_labs_overdue(session) -> None:
    c = Chart(session)
    c.lab("alt", 1, 50)
    assert "LABS_OVERDUE" not in alerts(c.record(), day(30))
    c.dose("prednisone", 2, 40)
    c.dose("prednisone", 10, 0)  # stopped: the course is over on day 30
    assert "LABS_OVERDUE" not in alerts(c.record(), day(30))
    assert "LABS_OVERDUE" in alerts(c.record(), day(9))


# --- STALLED_RESPONSE_DAY7 ---------------------------------------------------------------------


def test_a_single_alt_at_day_7_is_not_a_stalled_response_and_labs_overdue_says_it_is_due(session) -> None:
    """Edition 1 said 'ALT has not fallen' when ALT was never re-measured."""
    c = Chart(session)
    on_steroids(c)
    c.lab("alt", 0, 400)  # the start value, and the only ALT
    c.lab("creatinine", 7, 0.9)
    c.lab("eosinophils", 7, 0.3)
    found = alerts(c.record(), day(7))
    assert "STALLED_RESPONSE_DAY7" not in found
    overdue = found["LABS_OVERDUE"]
    assert "ALT: last" in overdue.finding and "only the course's start value" in overdue.finding
    # A repeat ALT still at 90 % of the start value: stalled.
    c.lab("alt", 7, 360)
    found = alerts(c.record(), day(7))
    stalled = found["STALLED_RESPONSE_DAY7"]
    assert "ALT has not fallen" in stalled.finding and "repeat ALT 360 U/L" in stalled.finding
    assert stalled.evidence["alt"]["latest"]["value"] == 360
    assert "LABS_OVERDUE" not in found


def test_two_alts_on_the_course_start_date_are_one_start_value_not_a_repeat(session) -> None:
    """The start value is the latest result on or before the course start date, so a second ALT
    that day is the start value itself; only a later one is a repeat."""
    c = Chart(session)
    on_steroids(c, start=2)
    c.lab("alt", at(2, 6), 400)
    c.lab("alt", at(2, 9), 390)  # the start value (latest on the start date)
    assert "STALLED_RESPONSE_DAY7" not in alerts(c.record(), day(9))
    c.lab("alt", at(3, 7), 380)  # a repeat after the start value's time
    a = alerts(c.record(), day(9))["STALLED_RESPONSE_DAY7"]
    assert a.evidence["alt"]["start"]["value"] == 390 and a.evidence["alt"]["latest"]["value"] == 380


def test_fever_says_exclude_infection_first_and_beyond_day_14_infection_or_relapse(session) -> None:
    c = Chart(session)
    on_steroids(c)
    c.lab("temperature", 7, 38.5)  # exactly the fever line counts
    a = alerts(c.record(), day(7))["STALLED_RESPONSE_DAY7"]
    assert a.recommendation.startswith("Exclude infection first: blood cultures")
    assert "IVIG 1–2 g/kg total or cyclosporine" in a.recommendation
    assert "design choice" in a.recommendation
    assert "Beyond course day 14" not in a.recommendation
    c.lab("temperature", 14, 39.0)
    assert "Beyond course day 14" not in alerts(c.record(), day(14))["STALLED_RESPONSE_DAY7"].recommendation  # day 14: not beyond
    c.lab("temperature", 15, 39.0)
    late = alerts(c.record(), day(15))["STALLED_RESPONSE_DAY7"]
    assert "Beyond course day 14, new fever or rising values also suggest infection" in late.recommendation
    assert late.evidence["beyond_infection_day"] is True


def test_no_fever_no_infection_first_wording(session) -> None:
    c = Chart(session)
    on_steroids(c)
    c.lab("temperature", 7, 38.4)
    c.lab("eosinophils", 0, 2.0)
    c.lab("eosinophils", 7, 1.9)
    a = alerts(c.record(), day(7))["STALLED_RESPONSE_DAY7"]
    assert "febrile" not in a.finding and "Exclude infection first" not in a.recommendation


# --- RELAPSE_RISK: flare on or after the taper start date; PCR trend ---------------------------


def _tapering(c: Chart) -> None:
    c.dose("prednisone", 0, 60)
    c.dose("prednisone", 20, 40)  # taper starts on day 20
    c.dose("prednisone", 60, 20)
    c.lab("eosinophils", 0, 2.0)
    c.lab("eosinophils", 10, 0.5)  # lowest since course start


def test_a_value_taken_the_minute_before_taper_start_is_no_flare(session) -> None:
    """Edition 1 called a flare from a value taken before the taper started."""
    c = Chart(session)
    _tapering(c)
    c.lab("eosinophils", at(19, 23, 59), 0.9)  # 1.8 x lowest, the minute before the taper start date
    assert "RELAPSE_RISK" not in alerts(c.record(), day(25))
    c.lab("eosinophils", at(20, 0, 0), 0.9)  # on the taper start date
    a = alerts(c.record(), day(25))["RELAPSE_RISK"]
    assert a.evidence["factors"][0]["factor"] == "eosinophils_flare"
    assert "on or after taper start" in a.finding


def test_relapse_names_the_latest_positive_pcr_and_its_rise(session) -> None:
    c = Chart(session)
    c.lab("hhv6_pcr", 14, 1200)
    c.lab("hhv6_pcr", 18, 8600)
    latest = c.lab("hhv6_pcr", 21, 52000)
    a = alerts(c.record(), day(21))["RELAPSE_RISK"]
    assert "latest positive HHV-6 PCR 52000 copies/mL" in a.finding
    assert f"rising (1200 → 8600 → 52000 copies/mL since {day(14).isoformat()})" in a.finding
    factor = a.evidence["factors"][0]
    assert factor["latest_positive"]["row_id"] == latest.id and len(factor["results"]) == 3
    # A negative result after the positives is said, and the latest positive is still named.
    c.lab("hhv6_pcr", 25, 0)
    later = alerts(c.record(), day(25))["RELAPSE_RISK"]
    assert "latest positive HHV-6 PCR 52000" in later.finding and "is not detected" in later.finding


# --- age of the evidence ----------------------------------------------------------------------


def test_a_result_exactly_stale_after_days_old_is_not_marked_one_day_more_is(session) -> None:
    assert PROF.days("stale_after_days") == 7
    c = Chart(session)
    row = c.lab("alt", 3, 300)
    a = alerts(c.record(), day(10))["HEPATIC_INVOLVEMENT"]  # 7 days old
    assert "days old" not in a.message
    assert a.quoted[0]["row_id"] == row.id and a.quoted[0]["age_days"] == 7 and a.quoted[0]["date"] == day(3).isoformat()
    b = alerts(c.record(), day(11))["HEPATIC_INVOLVEMENT"]
    assert "(8 days old)" in b.finding and b.quoted[0]["age_days"] == 8


def test_a_2004_alt_still_counts_in_2026_and_says_how_old_it_is(session) -> None:
    c = Chart(session, onset=None)
    c.lab("alt", dt.datetime(2004, 5, 1, 9), 250)
    a = alerts(c.record(), dt.date(2026, 3, 1))["HEPATIC_INVOLVEMENT"]
    age = (dt.date(2026, 3, 1) - dt.date(2004, 5, 1)).days
    assert f"({age} days old)" in a.finding


def test_every_alert_quotes_its_results_with_date_and_age(session) -> None:
    c = Chart(session, culprits=["carbamazepine"])
    on_steroids(c)
    c.lab("alt", 1, 400)
    c.lab("ferritin", 1, 3500)
    c.lab("troponin_t", 2, 40)
    c.dose("carbamazepine", 3, 200)
    for a in evaluate(c.record(), day(9), PROF):
        assert a.message == f"{a.finding} {a.recommendation} Decision support, not a diagnosis."
        for q in a.quoted:
            assert {"row_id", "value", "comparator", "unit", "date", "age_days"} <= set(q)
            assert q["age_days"] == (day(9) - dt.date.fromisoformat(q["date"])).days
    found = alerts(c.record(), day(9))
    assert found["RECHALLENGE"].row_ids["medication_row"]
    assert found["ICU_CRITERIA"].row_ids["lab_result"]  # the organ rules' rows, carried up


def test_gi_prophylaxis_names_the_proton_pump_inhibitors_of_the_drug_table(session) -> None:
    c = Chart(session)
    c.dose("prednisone", 0, 60)
    a = alerts(c.record(), day(1))["GI_PROPHYLAXIS_MISSING"]
    for ppi in ("omeprazole", "esomeprazole", "pantoprazole", "lansoprazole", "rabeprazole"):
        assert ppi in a.recommendation


# --- censored values (PRODUCT.md §4) ----------------------------------------------------------


def _censor(record: PatientRecord, row_id: int, comparator: str) -> PatientRecord:
    labs = tuple(p._replace(comparator=comparator) if p.id == row_id else p for p in record.labs)
    return dataclasses.replace(record, labs=labs)


def test_a_troponin_below_the_assay_range_is_never_cardiac_above_it_always(session) -> None:
    c = Chart(session)
    low = c.lab("troponin_t", 1, 20)
    record = _censor(c.record(), low.id, "<")  # '<20': may or may not be above 14: not counted
    assert "CARDIAC_INVOLVEMENT" not in alerts(record, day(1))
    d = Chart(session)
    high = d.lab("troponin_t", 1, 14)
    record = _censor(d.record(), high.id, ">")  # '>14' exceeds the ULN 14
    a = alerts(record, day(1))["CARDIAC_INVOLVEMENT"]
    assert ">14 ng/L" in a.finding and a.quoted[0]["comparator"] == ">"


def test_a_ferritin_above_2000_is_high_but_not_decided_critical(session) -> None:
    c = Chart(session)
    row = c.lab("ferritin", 1, 2000)
    a = alerts(_censor(c.record(), row.id, ">"), day(1))["FERRITIN_HIGH"]
    assert a.severity == "warning" and ">2000 ng/mL" in a.finding
