"""RegiSCAR score (CLINICAL_REFERENCE.md §1): points, the percentage rule, categories, origins."""

from __future__ import annotations

import pytest

from monitoring.regiscar import REGISCAR_ITEMS, category_for, score_regiscar
from tests.monitoring.engine_builder import Chart, at, day


def items(chart: Chart, as_of=None) -> dict:
    result = score_regiscar(chart.record(), as_of or day(10))
    return {i.key: i for i in result.items}


@pytest.mark.parametrize(
    ("score", "category"),
    [(-4, "no case"), (1, "no case"), (2, "possible"), (3, "possible"), (4, "probable"), (5, "probable"), (6, "definite"), (9, "definite")],
)
def test_categories(score: int, category: str) -> None:
    assert category_for(score) == category


def test_nothing_recorded_scores_minus_two(session) -> None:
    c = Chart(session)
    r = score_regiscar(c.record(), day(10))
    # fever unknown -1, resolution unknown -1, the rest 0
    assert r.score == -2 and r.category == "no case"
    assert all(i.filled_by == "not recorded" for i in r.items)


def test_minimum_and_maximum_scores(session) -> None:
    low = Chart(session)
    for item, answer in [("fever", "no"), ("rash_suggestive", "no"), ("biopsy", "no"), ("resolution_15_days", "no")]:
        low.finding(item, answer)
    assert score_regiscar(low.record(), day(10)).score == -4

    high = Chart(session, baseline_creatinine=0.8)
    high.lab("temperature", 1, 39.2)
    high.lab("eosinophils", 2, 2.1)
    high.lab("atypical_lymphocytes_pct", 2, 8)
    high.lab("bsa_pct", 2, 60)
    high.lab("alt", 2, 300)
    high.lab("creatinine", 3, 2.0)
    for item in ("lymphadenopathy", "rash_suggestive", "biopsy", "resolution_15_days", "other_causes_excluded"):
        high.finding(item, "yes")
    r = score_regiscar(high.record(), day(10))
    assert r.score == 9 and r.category == "definite"
    by = {i.key: i.filled_by for i in r.items}
    assert by["fever"] == by["eosinophilia"] == by["atypical_lymphocytes"] == by["rash_extent"] == by["organ_involvement"] == "data"
    assert by["lymphadenopathy"] == by["biopsy"] == "clinician"


def test_eosinophil_counts(session) -> None:
    c = Chart(session)
    c.lab("eosinophils", 1, 0.69)
    assert items(c)["eosinophilia"].points == 0
    c.lab("eosinophils", 2, 0.7)
    assert items(c)["eosinophilia"].points == 1
    c.lab("eosinophils", 3, 1.499)
    assert items(c)["eosinophilia"].points == 1
    c.lab("eosinophils", 4, 1.5)
    i = items(c)["eosinophilia"]
    assert i.points == 2 and i.answer == "high" and i.evidence["count"]["value"] == 1.5
    c.lab("eosinophils", 5, 0.2)  # the peak of the episode counts, not the latest
    assert items(c)["eosinophilia"].points == 2
    assert items(c, day(2))["eosinophilia"].points == 1  # as of an earlier date


def test_eosinophil_percentage_counts_only_with_low_leukocytes(session) -> None:
    c = Chart(session)
    c.lab("eosinophils_pct", at(1, 8), 25)
    c.lab("wbc", at(1, 8), 5.0)  # normal leukocytes: the percentage does not score
    i = items(c)["eosinophilia"]
    assert i.points == 0 and i.filled_by == "data"
    d = Chart(session)
    d.lab("eosinophils_pct", at(1, 8), 15)
    d.lab("wbc", at(1, 8), 3.2)
    assert items(d)["eosinophilia"].points == 1
    d.lab("eosinophils_pct", at(2, 8), 20)
    d.lab("wbc", at(2, 14), 3.9)  # same day, other time
    i = items(d)["eosinophilia"]
    assert i.points == 2 and i.evidence["leukocytes"]["value"] == 3.9


def test_fever_from_data_and_history(session) -> None:
    c = Chart(session)
    c.lab("temperature", 1, 38.4)
    f = items(c)["fever"]
    assert (f.answer, f.points, f.filled_by) == ("no", -1, "data")
    c.finding("fever", "yes")  # fever at home before admission: the clinician knows
    f = items(c)["fever"]
    assert (f.answer, f.points, f.filled_by) == ("yes", 0, "clinician")
    c.lab("temperature", 2, 38.5)
    f = items(c)["fever"]
    assert (f.answer, f.points, f.filled_by) == ("yes", 0, "data")


def test_organ_involvement_from_data_and_clinician(session) -> None:
    c = Chart(session)
    c.lab("alt", 1, 80)  # exactly 2 x ULN: not involvement
    o = items(c)["organ_involvement"]
    assert (o.points, o.filled_by) == (0, "data")
    c.lab("alt", 2, 81)
    c.lab("alt", 5, 30)  # recovered later: the liver was still involved in this episode
    o = items(c)["organ_involvement"]
    assert (o.answer, o.points) == ("1", 1) and "liver" in o.evidence["organs_from_data"]
    c.finding("organ_other", "yes")  # e.g. pneumonitis
    o = items(c)["organ_involvement"]
    assert (o.answer, o.points) == ("2", 2)
    d = Chart(session)
    d.finding("organ_other", "2")
    o = items(d)["organ_involvement"]
    assert (o.points, o.filled_by) == (2, "clinician")


def test_rash_extent_and_atypical_lymphocytes(session) -> None:
    c = Chart(session)
    c.lab("bsa_pct", 1, 50)  # not above 50 %
    c.lab("atypical_lymphocytes_pct", 1, 0)
    i = items(c)
    assert (i["rash_extent"].answer, i["rash_extent"].points) == ("no", 0)
    assert (i["atypical_lymphocytes"].answer, i["atypical_lymphocytes"].filled_by) == ("no", "data")
    c.lab("bsa_pct", 2, 55)
    c.lab("atypical_lymphocytes_pct", 2, 4)
    i = items(c)
    assert i["rash_extent"].points == 1 and i["atypical_lymphocytes"].points == 1


def test_hand_answers_and_their_points(session) -> None:
    c = Chart(session)
    c.finding("rash_suggestive", "no")
    c.finding("biopsy", "unknown")
    c.finding("resolution_15_days", "yes")
    c.finding("lymphadenopathy", "maybe")  # not an allowed answer: not recorded
    i = items(c)
    assert i["rash_suggestive"].points == -1 and i["rash_suggestive"].filled_by == "clinician"
    assert i["biopsy"].points == 0
    assert i["resolution_15_days"].points == 0
    assert i["lymphadenopathy"].filled_by == "not recorded"
    c.finding("rash_suggestive", "yes")  # the latest entry is in force
    assert items(c)["rash_suggestive"].points == 1


def test_hand_item_keys_are_listed_with_answers() -> None:
    assert {"lymphadenopathy", "atypical_lymphocytes", "rash_suggestive", "biopsy", "organ_other", "resolution_15_days", "other_causes_excluded"} <= set(
        REGISCAR_ITEMS
    )
    for label, answers in REGISCAR_ITEMS.values():
        assert label and {"yes", "no", "unknown"} <= set(answers)
