"""The liver-injury pattern by the R ratio (monitoring.liver; CLINICAL_REFERENCE.md §3, ACG 2014):
R = (ALT/ULN) ÷ (ALP/ULN); R ≥ 5 hepatocellular, 2 < R < 5 mixed, R ≤ 2 cholestatic."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from monitoring.guideline import ProfileError, load_profile
from monitoring.liver import latest_pattern, liver_patterns, pattern_words, r_ratio
from monitoring.records import LabPoint
from tests.monitoring.engine_builder import Chart, at, day


def _point(test: str, value: float, ref_high: float | None, comparator: str | None = None, when: dt.datetime | None = None) -> LabPoint:
    return LabPoint(id=1, test=test, taken_at=when or at(1), value=None if comparator in ("<", "<=") else value, unit="U/L",
                    value_text=None, original_value=f"{comparator or ''}{value:g}", original_unit="U/L", ref_low=None,
                    ref_high=ref_high, loinc=None, source="manual", amended=False, comparator=comparator,
                    censored_value=value if comparator in ("<", "<=") else None)


@pytest.mark.parametrize(
    ("alt", "alp", "r", "pattern"),
    [
        (400, 120, 400 / 35, "hepatocellular"),  # ALT 11.4×ULN, ALP 1×ULN
        (175, 120, 5.0, "hepatocellular"),  # R exactly 5: hepatocellular (≥ 5)
        (174, 120, 174 / 35, "mixed"),  # just under 5
        (175, 300, 2.0, "cholestatic"),  # ALT 5×, ALP 2.5×: R exactly 2, cholestatic (≤ 2)
        (176, 300, (176 / 35) / 2.5, "mixed"),  # just over 2
        (70, 360, 2 / 3, "cholestatic"),  # ALT 2×ULN (not above), ALP 3×ULN: the ALP names the injury
    ],
)
def test_r_ratio_and_its_pattern_at_the_cut_points(alt: float, alp: float, r: float, pattern: str) -> None:
    found = r_ratio(_point("alt", alt, 35), _point("alp", alp, 120), load_profile())
    assert found is not None
    assert found.r == pytest.approx(r) and found.pattern == pattern


@pytest.mark.parametrize(
    ("alt", "alp"),
    [
        (30, 100),  # normal tests: R 1.0 would read "cholestatic"
        (40, 90),  # ALT 1.1×ULN, ALP normal: R 1.5, no injury to name
        (70, 240),  # ALT exactly 2×ULN and ALP exactly 2×ULN: not above the line
    ],
)
def test_no_pattern_without_a_liver_injury(alt: float, alp: float) -> None:
    """R names the pattern of an injury: only when ALT or ALP is above r_ratio_injury_uln_multiple
    (2) × its ULN (the hepatic rule's line)."""
    assert r_ratio(_point("alt", alt, 35), _point("alp", alp, 120), load_profile()) is None


def test_float_noise_at_a_cut_point_is_at_it() -> None:
    # (56/20) / (56/100) is 4.999999999999999 in floats: 5 to a clinician, so hepatocellular.
    assert (56 / 20) / (56 / 100) < 5
    found = r_ratio(_point("alt", 56, 20), _point("alp", 56, 100), load_profile())
    assert found is not None and found.pattern == "hepatocellular"


def test_each_results_own_uln_and_the_default_when_none_is_given() -> None:
    prof = load_profile()
    found = r_ratio(_point("alt", 200, None), _point("alp", 240, None), prof)
    assert found is not None
    assert found.alt_uln.is_default and found.alt_uln.value == prof.value("uln_alt")
    assert found.alp_uln.is_default and found.alp_uln.value == prof.value("uln_alp")
    assert found.r == pytest.approx((200 / prof.value("uln_alt")) / (240 / prof.value("uln_alp")))
    assert "ULN 40 (default)" in found.words() and found.words().startswith("R 2.5, mixed (")


def test_a_censored_value_gives_no_ratio() -> None:
    prof = load_profile()
    assert r_ratio(_point("alt", 400, 35), _point("alp", 30, 120, "<"), prof) is None
    assert r_ratio(_point("alt", 1000, 35, ">"), _point("alp", 100, 120), prof) is None


def test_cut_points_come_from_the_profile(tmp_path: Path) -> None:
    local = tmp_path / "local.toml"
    local.write_text('[profile]\nname = "local"\nversion = "1"\nextends = "default"\n'
                     '[thresholds.r_ratio_hepatocellular]\nvalue = 4\n')
    found = r_ratio(_point("alt", 160, 35), _point("alp", 120, 120), load_profile(local))  # R 4.57
    assert found is not None and found.pattern == "hepatocellular"
    assert r_ratio(_point("alt", 160, 35), _point("alp", 120, 120), load_profile()).pattern == "mixed"  # type: ignore[union-attr]
    bad = tmp_path / "bad.toml"
    bad.write_text('[profile]\nname = "bad"\nversion = "1"\nextends = "default"\n'
                   '[thresholds.r_ratio_cholestatic]\nvalue = 6\n')
    with pytest.raises(ProfileError, match="r_ratio_cholestatic"):
        load_profile(bad)


def test_source_is_named_in_the_profile() -> None:
    assert "RegiSCAR" in load_profile().threshold("r_ratio_injury_uln_multiple").source
    for key in ("r_ratio_hepatocellular", "r_ratio_cholestatic"):
        t = load_profile().threshold(key)
        assert "ACG 2014" in t.source and "Chalasani" in t.source and t.basis == "sourced"


def test_one_ratio_per_day_with_both_tests_closest_in_time(session) -> None:
    c = Chart(session)
    c.lab("alt", 1, 400, ref_high=35)
    c.lab("alp", 1, 120, ref_high=120)  # day 1: R 11.4
    c.lab("alt", 2, 300, ref_high=35)  # day 2: no ALP, no ratio
    c.lab("alt", at(3, 6), 100, ref_high=35)
    c.lab("alt", at(3, 18), 60, ref_high=35)
    c.lab("alp", at(3, 17), 300, ref_high=120)  # pairs with the 18:00 ALT: R (60/35)/2.5 = 0.69
    record = c.record()
    found = liver_patterns(record, load_profile())
    assert [(p.day, p.pattern) for p in found] == [(day(1), "hepatocellular"), (day(3), "cholestatic")]
    assert found[1].alt.value == 60
    assert latest_pattern(record, load_profile(), day(2)).day == day(1)  # type: ignore[union-attr]
    assert latest_pattern(record, load_profile(), day(0)) is None



def test_pattern_words_give_the_first_and_the_latest(session) -> None:
    c = Chart(session)
    c.lab("alt", 1, 400, ref_high=35)
    c.lab("alp", 1, 120, ref_high=120)  # R 11.4, hepatocellular at presentation
    assert pattern_words(c.record(), load_profile(), day(1)) == r_ratio(
        c.record().results("alt")[0], c.record().results("alp")[0], load_profile()).words()  # type: ignore[union-attr]
    c.lab("alt", 6, 100, ref_high=35)
    c.lab("alp", 6, 300, ref_high=120)  # R 1.1, cholestatic later
    words = pattern_words(c.record(), load_profile(), day(6))
    assert words is not None and words.startswith("first R 11.4, hepatocellular (")
    assert "; latest R 1.1, cholestatic (" in words
    c.lab("alt", 7, 30, ref_high=35)
    c.lab("alp", 7, 100, ref_high=120)  # recovered: no R that day, the latest stays day 6
    assert pattern_words(c.record(), load_profile(), day(7)) == words
