"""Drug exposure periods for the timeline's bars (monitoring.exposure), the culprit marked by the
rule RECHALLENGE uses (issue 18 point 15)."""

from __future__ import annotations

from monitoring.exposure import Period, drug_exposures
from monitoring.rules import evaluate
from tests.monitoring.engine_builder import Chart, day


def test_periods_from_first_dose_to_the_first_day_not_given(session) -> None:
    c = Chart(session, onset=0)
    c.dose("omeprazole", 1, 40)
    c.dose("omeprazole", 3, 20)  # a dose change: still the same period
    c.dose("omeprazole", 6, 0)  # stopped on day 6
    c.dose("omeprazole", 9, 40)  # restarted: a second period, no stop recorded
    c.dose("paracetamol", 2, 0)  # only a stop row: never given, no bar
    (ppi,) = drug_exposures(c.record())
    assert ppi.drug == "omeprazole" and ppi.culprit is None
    assert ppi.periods == (Period(day(1), day(6), 40), Period(day(9), None, 40))


def test_culprit_and_cross_reacting_drugs_come_first_and_say_why(session) -> None:
    c = Chart(session, onset=0, culprits=["carbamazepine"])
    c.dose("omeprazole", -20, 40)
    c.dose("Tegretol", -30, 400)  # the culprit under its brand name, started weeks before onset
    c.dose("Tegretol", 0, 0)  # withdrawn at onset
    c.dose("phenytoin", 5, 300)  # same group (aromatic anticonvulsants): a rechallenge
    c.dose("pantoprazole", 1, 40)
    record = c.record()
    exposures = drug_exposures(record)
    assert [e.drug for e in exposures] == ["carbamazepine", "phenytoin", "omeprazole", "pantoprazole"]
    assert exposures[0].label == "Tegretol (carbamazepine)"
    assert exposures[0].periods == (Period(day(-30), day(0), 400),)
    assert exposures[0].culprit and "culprit" in exposures[0].culprit
    assert exposures[1].culprit and "cross-reactivity group" in exposures[1].culprit
    assert exposures[2].culprit is None and exposures[3].culprit is None
    # The bar marked is the drug the rechallenge alert names.
    rechallenge = next(a for a in evaluate(record, day(6)) if a.code == "RECHALLENGE")
    assert "phenytoin" in rechallenge.message


def test_no_culprit_recorded_marks_nothing(session) -> None:
    c = Chart(session, onset=0)
    c.dose("carbamazepine", -30, 400)
    assert [e.culprit for e in drug_exposures(c.record())] == [None]
