"""Catalogue of tests: keys, LOINC codes, canonical units, unit conversions, physiological bounds.

Specification: PRODUCT.md §4. LOINC codes and conversion factors: CLINICAL_REFERENCE.md §7
(HL7 FHIR IG pages; creatinine 88.4 µmol/L per mg/dL; bilirubin 17.1 µmol/L per mg/dL is
derived from the molar mass and marked UNCONFIRMED there).

An unknown unit for a known test is an error, never a guess. A value outside physiological
bounds is an error too: it is almost always a unit mistake (µmol/L entered as mg/dL).

Upper limits of normal are thresholds and live in the guideline profile (``guideline.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict, Unpack

__all__ = [
    "CATALOGUE",
    "TestDef",
    "UnitError",
    "BoundsError",
    "UnknownTestError",
    "lookup",
    "lookup_loinc",
    "normalise_unit",
    "to_canonical",
    "from_canonical",
    "check_bounds",
    "accepted_units",
    "PCR_TESTS",
    "parse_detection",
]


class CatalogueError(ValueError):
    """Base class: a value that the catalogue refuses, with a reason a clinician can read."""


class UnknownTestError(CatalogueError):
    pass


class UnitError(CatalogueError):
    pass


class BoundsError(CatalogueError):
    pass


@dataclass(frozen=True)
class Conversion:
    """value_canonical = value * factor + offset (or ``func`` when not affine)."""

    factor: float = 1.0
    offset: float = 0.0
    func: Callable[[float], float] | None = None
    inverse: Callable[[float], float] | None = None

    def apply(self, value: float) -> float:
        if self.func is not None:
            return self.func(value)
        return value * self.factor + self.offset

    def invert(self, value: float) -> float:
        if self.inverse is not None:
            return self.inverse(value)
        return (value - self.offset) / self.factor


@dataclass(frozen=True)
class TestDef:
    key: str
    label: str
    loinc: tuple[str, ...]
    canonical_unit: str
    # normalised unit string -> conversion to the canonical unit
    units: dict[str, Conversion] = field(repr=False)
    # physiological bounds in the canonical unit (inclusive); values outside are refused
    min_value: float = 0.0
    max_value: float | None = None
    # the unit shown by the "SI" toggle of the dashboard, when it differs from canonical
    si_unit: str | None = None
    qualitative: bool = False  # PCR: "detected"/"not detected" accepted as text

    @property
    def primary_loinc(self) -> str | None:
        return self.loinc[0] if self.loinc else None


def normalise_unit(unit: str | None) -> str:
    """Normalise a unit string for matching: case, micro sign, UCUM brackets and exponents.

    ``µmol/L``, ``μmol/L`` and ``umol/l`` compare equal; ``10^9/L`` equals ``10*9/L``;
    ``[degF]`` equals ``degF``; ``{copies}/mL`` equals ``copies/mL``; ``m[IU]/L`` equals ``mIU/L``.
    """
    if unit is None:
        return ""
    u = unit.strip()
    u = u.replace("\u00b5", "u").replace("\u03bc", "u")  # micro sign, Greek mu
    u = u.replace("\u00b0", "deg")  # degree sign: °C -> degC, °F -> degF
    u = u.replace("^", "*").replace("[", "").replace("]", "").replace("{", "").replace("}", "")
    u = re.sub(r"\s+", "", u)
    return u.lower()


# Normalised unit -> the spelling shown to people (the first one the catalogue lists).
_SPELLING: dict[str, str] = {}


def _spelled(units: tuple[str, ...]) -> None:
    for u in units:
        _SPELLING.setdefault(normalise_unit(u), u)


def _same(*units: str) -> dict[str, Conversion]:
    _spelled(units)
    return {normalise_unit(u): Conversion() for u in units}


def _scaled(factor: float, *units: str) -> dict[str, Conversion]:
    _spelled(units)
    return {normalise_unit(u): Conversion(factor=factor) for u in units}


_ENZYME_UNITS = {**_same("U/L", "IU/L"), **_scaled(60.0, "ukat/L")}
_COUNT_UNITS = {
    **_same("10^9/L", "10*9/L", "10^3/uL", "10*3/uL", "K/uL"),
    **_scaled(1 / 1000, "/uL", "#/uL", "cells/uL"),
}
_FAHRENHEIT = Conversion(func=lambda f: (f - 32.0) * 5.0 / 9.0, inverse=lambda c: c * 9.0 / 5.0 + 32.0)


def _fahrenheit(*units: str) -> dict[str, Conversion]:
    _spelled(units)
    return {normalise_unit(u): _FAHRENHEIT for u in units}


_PCR_UNITS = _same("{copies}/mL", "copies/mL", "[IU]/mL", "IU/mL")


class _Optional(TypedDict, total=False):
    """The fields of TestDef that have a default, as ``_def`` takes them by name."""

    min_value: float
    max_value: float | None
    si_unit: str | None
    qualitative: bool


def _def(
    key: str,
    label: str,
    loinc: tuple[str, ...],
    canonical: str,
    units: dict[str, Conversion],
    **kw: Unpack[_Optional],
) -> TestDef:
    return TestDef(key, label, loinc, canonical, units, **kw)


_TESTS: tuple[TestDef, ...] = (
    _def("alt", "ALT", ("1742-6", "1743-4", "1744-2"), "U/L", _ENZYME_UNITS, max_value=20000.0, si_unit="ukat/L"),
    _def("ast", "AST", ("1920-8",), "U/L", _ENZYME_UNITS, max_value=20000.0, si_unit="ukat/L"),
    _def("alp", "ALP", ("6768-6",), "U/L", _same("U/L", "IU/L")),
    _def("ggt", "GGT", ("2324-2",), "U/L", _same("U/L", "IU/L")),
    _def(
        "bilirubin",
        "Bilirubin (total)",
        ("1975-2", "14631-6"),
        "mg/dL",
        {**_same("mg/dL"), **_scaled(1 / 17.1, "umol/L")},
        si_unit="umol/L",
    ),
    _def(
        "creatinine",
        "Creatinine",
        ("2160-0", "38483-4", "14682-9"),
        "mg/dL",
        {**_same("mg/dL"), **_scaled(1 / 88.4, "umol/L"), **_scaled(1000 / 88.4, "mmol/L")},
        max_value=30.0,
        si_unit="umol/L",
    ),
    _def("eosinophils", "Eosinophils", ("711-2", "26449-9"), "10^9/L", _COUNT_UNITS, max_value=100.0),
    _def("eosinophils_pct", "Eosinophils %", ("713-8", "26450-7"), "%", _same("%"), max_value=100.0),
    _def("wbc", "Leukocytes", ("6690-2", "26464-8", "804-5"), "10^9/L", _COUNT_UNITS, max_value=1000.0),
    _def(
        "atypical_lymphocytes_pct",
        "Atypical lymphocytes %",
        ("735-1", "13046-8"),
        "%",
        _same("%"),
        max_value=100.0,
    ),
    _def("ferritin", "Ferritin", ("2276-4",), "ng/mL", _same("ng/mL", "ug/L")),
    _def("troponin_t", "Troponin T", ("67151-1", "6598-7"), "ng/L", {**_same("ng/L"), **_scaled(1000.0, "ng/mL")}),
    _def("troponin_i", "Troponin I", ("89579-7", "10839-9"), "ng/L", {**_same("ng/L"), **_scaled(1000.0, "ng/mL")}),
    _def("crp", "CRP", ("1988-5",), "mg/L", {**_same("mg/L"), **_scaled(10.0, "mg/dL")}),
    _def(
        "temperature",
        "Temperature",
        ("8310-5",),
        "Cel",
        {**_same("Cel", "°C", "C", "degC"), **_fahrenheit("[degF]", "°F", "F")},
        min_value=30.0,
        max_value=45.0,
    ),
    _def("bsa_pct", "Rash BSA %", (), "%", _same("%"), max_value=100.0),
    _def("hhv6_pcr", "HHV-6 PCR", (), "{copies}/mL", _PCR_UNITS, qualitative=True),
    _def("ebv_pcr", "EBV PCR", ("36923-1", "47982-4"), "{copies}/mL", _PCR_UNITS, qualitative=True),
    _def("cmv_pcr", "CMV PCR", ("29604-6", "72493-0"), "{copies}/mL", _PCR_UNITS, qualitative=True),
    _def("tsh", "TSH", ("3016-3",), "m[IU]/L", _same("m[IU]/L", "mIU/L", "uIU/mL", "uU/mL", "u[IU]/mL")),
    _def(
        "glucose",
        "Glucose",
        ("2345-7", "2339-0", "15074-8"),
        "mg/dL",
        {**_same("mg/dL"), **_scaled(18.016, "mmol/L")},
        si_unit="mmol/L",
    ),
    # Body weight: at most 500 kg, a design choice (intake.py). Above it a weight is nearly always lb
    # typed as kg or a slipped digit, and it would multiply every mg/kg dose; the rare heavier patient
    # is stored without a weight and dosed in mg.
    _def(
        "weight",
        "Body weight",
        ("29463-7",),
        "kg",
        {**_same("kg"), **_scaled(0.45359237, "lb", "[lb_av]")},
        max_value=500.0,
    ),
)

CATALOGUE: dict[str, TestDef] = {t.key: t for t in _TESTS}
_BY_LOINC: dict[str, TestDef] = {code: t for t in _TESTS for code in t.loinc}
PCR_TESTS: tuple[str, ...] = ("hhv6_pcr", "ebv_pcr", "cmv_pcr")

_DETECTED = {"detected", "positive", "pos", "reactive"}
_NOT_DETECTED = {"not detected", "negative", "neg", "undetected", "non-reactive", "nonreactive"}


def lookup(key_or_loinc: str) -> TestDef:
    """The test for a catalogue key (case-insensitive) or any of its LOINC codes."""
    k = (key_or_loinc or "").strip()
    t = CATALOGUE.get(k.lower()) or _BY_LOINC.get(k)
    if t is None:
        raise UnknownTestError(f"unknown test {k!r}: not a catalogue key or a catalogue LOINC code")
    return t


def lookup_loinc(code: str) -> TestDef | None:
    return _BY_LOINC.get((code or "").strip())


def conversion_for(test: TestDef, unit: str) -> Conversion:
    conv = test.units.get(normalise_unit(unit))
    if conv is None:
        accepted = ", ".join(_display_units(test))
        raise UnitError(f"unit {unit!r} is not known for {test.key} (accepted: {accepted})")
    return conv


def _display_units(test: TestDef) -> list[str]:
    return accepted_units(test)


def accepted_units(test: TestDef) -> list[str]:
    """The units a test accepts, spelled as the catalogue lists them (``ukat/L``, not ``ukat/l``)."""
    return [_SPELLING.get(u, u) for u in test.units]


def to_canonical(test: TestDef | str, value: float, unit: str) -> float:
    """Convert ``value`` in ``unit`` to the test's canonical unit; UnitError for an unknown unit."""
    t = lookup(test) if isinstance(test, str) else test
    return conversion_for(t, unit).apply(float(value))


def from_canonical(test: TestDef | str, value: float, unit: str) -> float:
    t = lookup(test) if isinstance(test, str) else test
    return conversion_for(t, unit).invert(float(value))


def check_bounds(test: TestDef, canonical_value: float) -> None:
    """Refuse values outside physiological bounds (PRODUCT.md §4): usually a unit mistake."""
    if math.isnan(canonical_value) or math.isinf(canonical_value):
        raise BoundsError("value is not a finite number")
    if canonical_value < test.min_value:
        if test.min_value == 0:
            raise BoundsError("negative values are impossible")
        raise BoundsError(
            f"{test.label} {canonical_value:g} {test.canonical_unit} is below the physiological bound "
            f"{test.min_value:g} {test.canonical_unit}; check the unit"
        )
    if test.max_value is not None and canonical_value > test.max_value:
        raise BoundsError(
            f"{test.label} {canonical_value:g} {test.canonical_unit} is above the physiological bound "
            f"{test.max_value:g} {test.canonical_unit}; check the unit"
        )


def parse_detection(text: str) -> bool | None:
    """'detected'/'positive' -> True, 'not detected'/'negative' -> False, else None."""
    t = re.sub(r"\s+", " ", (text or "").strip().lower())
    if t in _DETECTED:
        return True
    if t in _NOT_DETECTED:
        return False
    return None
