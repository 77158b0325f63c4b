"""The catalogue of PRODUCT.md §4: every listed unit converts, every LOINC code finds its test,
unit strings are normalised, unknown units and implausible values are refused."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring import catalogue
from monitoring.catalogue import BoundsError, UnitError, UnknownTestError

# (test, value, unit, expected canonical value) for every unit PRODUCT.md §4 lists.
CONVERSIONS = [
    ("alt", 55, "U/L", 55),
    ("alt", 55, "IU/L", 55),
    ("alt", 1, "ukat/L", 60),
    ("ast", 2, "ukat/L", 120),
    ("ast", 44, "IU/L", 44),
    ("ast", 44, "U/L", 44),
    ("alp", 130, "IU/L", 130),
    ("alp", 130, "U/L", 130),
    ("ggt", 80, "IU/L", 80),
    ("ggt", 80, "U/L", 80),
    ("bilirubin", 17.1, "umol/L", 1.0),
    ("bilirubin", 34.2, "µmol/L", 2.0),
    ("bilirubin", 1.3, "mg/dL", 1.3),
    ("creatinine", 88.4, "umol/L", 1.0),
    ("creatinine", 88.4, "µmol/L", 1.0),
    ("creatinine", 176.8, "μmol/L", 2.0),  # Greek mu
    ("creatinine", 1.1, "mg/dL", 1.1),
    ("eosinophils", 0.7, "10^9/L", 0.7),
    ("eosinophils", 0.7, "10*9/L", 0.7),
    ("eosinophils", 0.7, "10^3/uL", 0.7),
    ("eosinophils", 0.7, "10*3/uL", 0.7),
    ("eosinophils", 0.7, "K/uL", 0.7),
    ("eosinophils", 700, "/uL", 0.7),
    ("eosinophils", 700, "cells/uL", 0.7),
    ("eosinophils", 1500, "cells/µL", 1.5),
    ("eosinophils_pct", 12, "%", 12),
    ("wbc", 11, "10^9/L", 11),
    ("wbc", 11, "10*9/L", 11),
    ("wbc", 11, "10^3/uL", 11),
    ("wbc", 11, "10*3/uL", 11),
    ("wbc", 11, "K/uL", 11),
    ("wbc", 11000, "/uL", 11),
    ("wbc", 11000, "cells/uL", 11),
    ("atypical_lymphocytes_pct", 6, "%", 6),
    ("ferritin", 800, "ng/mL", 800),
    ("ferritin", 800, "ug/L", 800),
    ("ferritin", 800, "µg/L", 800),
    ("troponin_t", 0.014, "ng/mL", 14),
    ("troponin_t", 14, "ng/L", 14),
    ("troponin_i", 0.026, "ng/mL", 26),
    ("troponin_i", 26, "ng/L", 26),
    ("crp", 1.2, "mg/dL", 12),
    ("crp", 12, "mg/L", 12),
    ("temperature", 37, "Cel", 37),
    ("temperature", 37, "°C", 37),
    ("temperature", 37, "C", 37),
    ("temperature", 98.6, "[degF]", 37),
    ("temperature", 98.6, "°F", 37),
    ("temperature", 101.3, "F", 38.5),
    ("bsa_pct", 35, "%", 35),
    ("hhv6_pcr", 1200, "{copies}/mL", 1200),
    ("hhv6_pcr", 1200, "copies/mL", 1200),
    ("ebv_pcr", 500, "[IU]/mL", 500),
    ("cmv_pcr", 500, "IU/mL", 500),
    ("tsh", 2.5, "m[IU]/L", 2.5),
    ("tsh", 2.5, "mIU/L", 2.5),
    ("tsh", 2.5, "uIU/mL", 2.5),
    ("glucose", 5.5, "mmol/L", 99.088),
    ("glucose", 99, "mg/dL", 99),
    ("weight", 154.3236, "lb", 70.0),
    ("weight", 70, "kg", 70),
]


@pytest.mark.parametrize(("test", "value", "unit", "expected"), CONVERSIONS)
def test_every_listed_unit_converts_to_the_canonical_unit(test: str, value: float, unit: str, expected: float) -> None:
    assert catalogue.to_canonical(test, value, unit) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(("test", "value", "unit", "expected"), CONVERSIONS)
def test_conversion_round_trips(test: str, value: float, unit: str, expected: float) -> None:
    canonical = catalogue.to_canonical(test, value, unit)
    assert catalogue.from_canonical(test, canonical, unit) == pytest.approx(value, rel=1e-9)


def test_every_test_of_the_product_table_is_in_the_catalogue_with_its_canonical_unit() -> None:
    expected = {
        "alt": "U/L",
        "ast": "U/L",
        "alp": "U/L",
        "ggt": "U/L",
        "bilirubin": "mg/dL",
        "creatinine": "mg/dL",
        "eosinophils": "10^9/L",
        "eosinophils_pct": "%",
        "wbc": "10^9/L",
        "atypical_lymphocytes_pct": "%",
        "ferritin": "ng/mL",
        "troponin_t": "ng/L",
        "troponin_i": "ng/L",
        "crp": "mg/L",
        "temperature": "Cel",
        "bsa_pct": "%",
        "hhv6_pcr": "{copies}/mL",
        "ebv_pcr": "{copies}/mL",
        "cmv_pcr": "{copies}/mL",
        "tsh": "m[IU]/L",
        "glucose": "mg/dL",
        "weight": "kg",
    }
    assert {k: t.canonical_unit for k, t in catalogue.CATALOGUE.items()} == expected


LOINC = {
    "alt": ["1742-6", "1743-4", "1744-2"],
    "ast": ["1920-8"],
    "alp": ["6768-6"],
    "ggt": ["2324-2"],
    "bilirubin": ["1975-2", "14631-6"],
    "creatinine": ["2160-0", "38483-4", "14682-9"],
    "eosinophils": ["711-2", "26449-9"],
    "eosinophils_pct": ["713-8", "26450-7"],
    "wbc": ["6690-2"],
    "atypical_lymphocytes_pct": ["735-1", "13046-8"],
    "ferritin": ["2276-4"],
    "troponin_t": ["67151-1", "6598-7"],
    "troponin_i": ["89579-7", "10839-9"],
    "crp": ["1988-5"],
    "temperature": ["8310-5"],
    "ebv_pcr": ["36923-1", "47982-4"],
    "cmv_pcr": ["29604-6", "72493-0"],
    "tsh": ["3016-3"],
    "glucose": ["2345-7"],
    "weight": ["29463-7"],
}


@pytest.mark.parametrize(("key", "code"), [(k, c) for k, codes in LOINC.items() for c in codes])
def test_lookup_by_every_loinc_code(key: str, code: str) -> None:
    assert catalogue.lookup(code).key == key
    assert catalogue.lookup_loinc(code).key == key  # type: ignore[union-attr]
    assert catalogue.lookup(f" {code} ").key == key


@pytest.mark.parametrize("key", sorted(catalogue.CATALOGUE))
def test_lookup_by_key_any_case(key: str) -> None:
    assert catalogue.lookup(key).key == key
    assert catalogue.lookup(key.upper()).key == key


def test_tests_without_loinc_are_found_by_key_only() -> None:
    assert catalogue.CATALOGUE["hhv6_pcr"].loinc == ()
    assert catalogue.CATALOGUE["bsa_pct"].loinc == ()
    assert catalogue.lookup("HHV6_PCR").key == "hhv6_pcr"


@pytest.mark.parametrize("unknown", ["", "alanine", "1742-7", "17426", "hhv-6"])
def test_unknown_test_is_refused(unknown: str) -> None:
    with pytest.raises(UnknownTestError):
        catalogue.lookup(unknown)
    assert catalogue.lookup_loinc(unknown) is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("µmol/L", "umol/L"),
        ("μmol/L", "umol/L"),
        ("UMOL/L", "umol/l"),
        (" umol / L ", "umol/L"),
        ("10^9/L", "10*9/L"),
        ("10^3/µL", "10*3/uL"),
        ("[degF]", "degF"),
        ("°F", "degF"),
        ("°C", "degC"),
        ("{copies}/mL", "copies/mL"),
        ("[IU]/mL", "IU/mL"),
        ("m[IU]/L", "mIU/L"),
        ("K/uL", "k/ul"),
    ],
)
def test_unit_normalisation(a: str, b: str) -> None:
    assert catalogue.normalise_unit(a) == catalogue.normalise_unit(b)


def test_normalise_unit_of_nothing_is_empty() -> None:
    assert catalogue.normalise_unit(None) == ""


@pytest.mark.parametrize(
    ("test", "unit"),
    [
        ("creatinine", "mg/L"),
        ("creatinine", "mg/L"),
        ("alt", "ukat/s"),
        ("alt", "mg/dL"),
        ("eosinophils", "%"),
        ("temperature", "K"),
        ("ferritin", "mg/L"),
        ("glucose", "g/L"),
        ("crp", ""),
    ],
)
def test_unknown_unit_is_an_error_naming_the_accepted_units(test: str, unit: str) -> None:
    with pytest.raises(UnitError) as err:
        catalogue.to_canonical(test, 1.0, unit)
    message = str(err.value)
    assert "accepted" in message
    assert f"accepted: {catalogue.CATALOGUE[test].canonical_unit}" in message  # spelled as people write it


@pytest.mark.parametrize(
    ("test", "value"),
    [
        ("creatinine", 30.01),
        ("creatinine", -0.1),
        ("alt", 20000.5),
        ("eosinophils", 100.1),
        ("temperature", 29.9),
        ("temperature", 45.1),
        ("bsa_pct", 100.5),
        ("bsa_pct", -1),
        ("ferritin", -5),
        ("eosinophils_pct", 101),
    ],
)
def test_values_outside_physiological_bounds_are_refused(test: str, value: float) -> None:
    with pytest.raises(BoundsError):
        catalogue.check_bounds(catalogue.CATALOGUE[test], value)


@pytest.mark.parametrize(
    ("test", "value"),
    [("creatinine", 30.0), ("creatinine", 0.0), ("alt", 20000), ("eosinophils", 100), ("temperature", 30), ("temperature", 45), ("bsa_pct", 100)],
)
def test_bounds_are_inclusive(test: str, value: float) -> None:
    catalogue.check_bounds(catalogue.CATALOGUE[test], value)


def test_not_finite_values_are_refused() -> None:
    for v in (math.nan, math.inf, -math.inf):
        with pytest.raises(BoundsError):
            catalogue.check_bounds(catalogue.CATALOGUE["alt"], v)


def test_creatinine_in_umol_entered_as_mg_dl_is_caught_by_the_bounds() -> None:
    """The usual unit mistake: 130 µmol/L typed with mg/dL."""
    with pytest.raises(BoundsError, match="check the unit"):
        catalogue.check_bounds(catalogue.CATALOGUE["creatinine"], catalogue.to_canonical("creatinine", 130, "mg/dL"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("detected", True),
        ("Detected", True),
        (" POSITIVE ", True),
        ("positive", True),
        ("not detected", False),
        ("Not  Detected", False),
        ("negative", False),
        ("maybe", None),
        ("", None),
    ],
)
def test_pcr_text(text: str, expected: bool | None) -> None:
    assert catalogue.parse_detection(text) is expected


def test_pcr_tests_are_qualitative() -> None:
    assert set(catalogue.PCR_TESTS) == {"hhv6_pcr", "ebv_pcr", "cmv_pcr"}
    assert all(catalogue.CATALOGUE[k].qualitative for k in catalogue.PCR_TESTS)
    assert not catalogue.CATALOGUE["alt"].qualitative


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["creatinine", "bilirubin", "alt", "eosinophils", "temperature", "glucose", "crp", "troponin_t"]),
    st.floats(min_value=0.001, max_value=1e5, allow_nan=False),
    st.data(),
)
def test_any_accepted_unit_spelling_converts_the_same(test: str, value: float, data: st.DataObject) -> None:
    """Case, micro sign and UCUM brackets never change the converted value."""
    t = catalogue.CATALOGUE[test]
    unit = data.draw(st.sampled_from(sorted(t.units)))
    variant = data.draw(st.sampled_from([unit, unit.upper(), unit.replace("u", "µ"), f" {unit} ", unit.replace("*", "^")]))
    assert catalogue.to_canonical(t, value, variant) == pytest.approx(catalogue.to_canonical(t, value, unit))
