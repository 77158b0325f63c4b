"""Censored results (PRODUCT.md §4) through the engine, as of a date, each case of the section:
'<x' exceeds no threshold ≥ x ('<0.03 ng/mL' against a ULN of 0.04 is below it); where the
comparator cannot decide ('<0.05' against 0.04) the result is neither above nor normal, is not
counted, and the alert's evidence names it; '>x' exceeds every threshold ≤ x, the boundary
included ('>80' against a line of 80 is above it). The results are entered as a laboratory sends
them, through the one intake path (services.add_lab_result -> monitoring.intake)."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session

from dashboard import timeline_model, ward_model
from monitoring import auth, services
from monitoring.guideline import default_profile
from monitoring.records import load_record
from monitoring.rules import Alert, evaluate

PROF = default_profile()
D = dt.date(2026, 11, 30)
MRN = "C1"


def _patient(session: Session) -> None:
    auth.create_user(session, actor="setup", username="doc", role=auth.CLINICIAN, password=None)
    services.add_patient(session, username="doc", mrn=MRN, name="Censored Example")


def _lab(session: Session, test: str, when: str, value: str, unit: str, ref_high: str | None = None) -> int:
    return services.add_lab_result(
        session, username="doc", mrn=MRN, test=test, taken_at=when, value=value, unit=unit, ref_high=ref_high,
        now=dt.datetime(2026, 12, 1, 12, 0),
    )


def _alerts(session: Session, as_of: dt.date = D) -> dict[str, Alert]:
    session.commit()
    return {a.code: a for a in evaluate(load_record(session, MRN), as_of, PROF)}


def test_below_an_assay_range_under_the_uln_is_below_it_and_no_note(session: Session) -> None:
    _patient(session)
    _lab(session, "troponin_i", "2026-11-30 08:00", "<0.03", "ng/mL", ref_high="0.04")
    alerts = _alerts(session)
    assert "CARDIAC_INVOLVEMENT" not in alerts and "ICU_CRITERIA" not in alerts
    assert not any("not_counted" in a.evidence for a in alerts.values())  # decided: below, nothing to say
    record = load_record(session, MRN)
    point = record.latest("troponin_i", D)
    assert point is not None and timeline_model.flags("troponin_i", point, record, PROF, D) == ""


def test_below_an_assay_range_above_the_uln_is_undecidable_not_counted_and_named(session: Session) -> None:
    _patient(session)
    t_id = _lab(session, "troponin_t", "2026-11-30 08:00", "<0.05", "ng/mL", ref_high="0.04")
    alerts = _alerts(session)
    # Neither above (no cardiac involvement, no ICU criteria) ...
    assert "CARDIAC_INVOLVEMENT" not in alerts and "ICU_CRITERIA" not in alerts
    record = load_record(session, MRN)
    point = record.latest("troponin_t", D)
    assert point is not None and point.comparator == "<"
    # ... nor normal: the table says it cannot tell, the ward marks no crossing either way.
    assert timeline_model.flags("troponin_t", point, record, PROF, D) == "censored: cannot tell against ULN"
    change = ward_model.latest_change("troponin_t", record, PROF, D)
    assert change is None or not change.crossed

    # A troponin I above its ULN makes CARDIAC_INVOLVEMENT hold; its evidence names the troponin T
    # it could not count, by name, date, value as received and the line.
    i_id = _lab(session, "troponin_i", "2026-11-30 09:00", "60", "ng/L")
    a = _alerts(session)["CARDIAC_INVOLVEMENT"]
    [note] = a.evidence["not_counted"]
    assert note["row_id"] == t_id and note["test"] == "troponin_t" and note["comparator"] == "<"
    assert note["text"] == (
        "Troponin T <50 ng/L (received <0.05 ng/mL) on 2026-11-30 08:00: undecidable against ULN 40 ng/L, not counted"
    )
    assert note["text"] in a.finding and "Not counted:" in a.message
    # The finding rests on the troponin I only: the undecidable row is named, not evidence for it.
    assert a.row_ids["lab_result"] == (i_id,)
    assert [r["test"] for r in a.evidence["results"]] == ["troponin_i"]


def test_above_an_assay_range_at_the_line_is_above_it(session: Session) -> None:
    _patient(session)
    # HEPATIC_INVOLVEMENT is strict (> 2 × ULN): a value of exactly 80 against ULN 40 is not above ...
    _lab(session, "alt", "2026-11-29 08:00", "80", "U/L", ref_high="40")
    assert "HEPATIC_INVOLVEMENT" not in _alerts(session)
    # ... but '>80' is some value above 80: above the line, strictly.
    row = _lab(session, "alt", "2026-11-30 08:00", ">80", "U/L", ref_high="40")
    a = _alerts(session)["HEPATIC_INVOLVEMENT"]
    assert a.evidence["latest"]["row_id"] == row and a.evidence["latest"]["comparator"] == ">"
    assert "ALT >80 U/L" in a.finding and "not_counted" not in a.evidence
    # As of the day before, the '>80' does not count yet (its calendar date is after D).
    assert "HEPATIC_INVOLVEMENT" not in _alerts(session, D - dt.timedelta(days=1))


def test_above_an_assay_range_below_a_higher_line_is_named_not_counted_for_it(session: Session) -> None:
    _patient(session)
    _lab(session, "ferritin", "2026-11-30 08:00", ">2000", "ng/mL")
    a = _alerts(session)["FERRITIN_HIGH"]
    # Above 500 (decided), but '>2000' cannot tell against the HLH line of 3000: warning, never critical.
    assert a.severity == "warning"
    [note] = a.evidence["not_counted"]
    assert note["line"] == "ferritin_critical" and note["limit"] == 3000
    assert note["text"] == "Ferritin >2000 ng/mL on 2026-11-30 08:00: undecidable against 3000 ng/mL, not counted"


def test_a_stale_undecidable_result_says_its_age(session: Session) -> None:
    _patient(session)
    _lab(session, "troponin_t", "2026-11-20 08:00", "<0.05", "ng/mL", ref_high="0.04")
    _lab(session, "troponin_i", "2026-11-30 09:00", "60", "ng/L")
    a = _alerts(session)["CARDIAC_INVOLVEMENT"]
    assert "on 2026-11-20 08:00 (10 days old): undecidable against ULN 40 ng/L" in a.evidence["not_counted"][0]["text"]
    assert a.evidence["not_counted"][0]["age_days"] == 10


def test_regiscar_counts_atypical_lymphocytes_above_zero_by_the_one_comparison(session: Session) -> None:
    from monitoring.regiscar import score_regiscar

    _patient(session)
    _lab(session, "atypical_lymphocytes_pct", "2026-11-29 08:00", "0", "%")
    session.commit()
    items = {i.key: i for i in score_regiscar(load_record(session, MRN), D, PROF).items}
    assert items["atypical_lymphocytes"].answer == "no"
    _lab(session, "atypical_lymphocytes_pct", "2026-11-30 08:00", ">0", "%")  # some, above 0: present
    session.commit()
    items = {i.key: i for i in score_regiscar(load_record(session, MRN), D, PROF).items}
    assert items["atypical_lymphocytes"].answer == "yes"


def test_the_followup_pcr_table_and_relapse_risk_say_the_same_detected(session: Session) -> None:
    from monitoring.followup import viral_pcr_results

    _patient(session)
    _lab(session, "hhv6_pcr", "2026-11-28 08:00", "<50", "copies/mL")  # below the assay's limit: not detected
    _lab(session, "ebv_pcr", "2026-11-29 08:00", ">0", "copies/mL")  # some load: detected
    session.commit()
    record = load_record(session, MRN)
    table = {r.test: r.detected for r in viral_pcr_results(record, D)}
    assert table == {"hhv6_pcr": False, "ebv_pcr": True}
    relapse = _alerts(session)["RELAPSE_RISK"]
    assert [f["test"] for f in relapse.evidence["factors"] if f["factor"] == "viral_reactivation"] == ["ebv_pcr"]
