"""Parsing helpers shared by the importers (CSV, FHIR, dashboard entry).

Each helper either returns a clean value or raises ``ValueError`` whose message is the *reason*
part of a problem line (``FILE: row N: column C: value 'V': reason``): the caller knows the file,
row and column and builds the ``Problem``. Nothing here touches the database.

Rules (PRODUCT.md §4 and §6):
- dates are ISO 8601 (``YYYY-MM-DD``); a lab's ``taken_at`` is an ISO 8601 date or date-time, a
  date alone meaning midnight. Clinical times are kept as recorded: a UTC offset, when present, is
  dropped and the wall-clock time kept (the product stores naive local times, models.py).
- numbers must be finite decimal numbers (no thousands separators, no decimal comma);
- a lab value is converted to the test's canonical unit by the catalogue; an unknown unit is an
  error naming the accepted units; physiological bounds are enforced (a value outside them is
  almost always a unit mistake); PCR tests also accept detected / not detected / positive /
  negative as text;
- a medication dose is given in mg, g or mg/kg per day and stored in mg/day; mg/kg is resolved
  against the patient's weight by ``store.write_batch`` (the weight may come in the same import).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from monitoring import catalogue
from monitoring.catalogue import TestDef
from monitoring.drugs import normalise_drug
from monitoring.store import LabIn, MedIn

__all__ = [
    "DOSE_UNITS",
    "ConvertedValue",
    "FieldError",
    "LabConverter",
    "lab_record",
    "med_record",
    "parse_date",
    "parse_datetime",
    "parse_dose",
    "parse_number",
    "today",
]

# ASCII digits only: float() and \d would also take other scripts' digits.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?", re.ASCII)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)

# Dose units of a medication row (PRODUCT.md §6) -> mg per unit; mg/kg is resolved per patient.
DOSE_UNITS: dict[str, float | None] = {"mg": 1.0, "g": 1000.0, "mg/kg": None}


def today() -> dt.date:
    """The local calendar date: a lab taken after it is in the future."""
    return dt.date.today()


def parse_date(text: str) -> dt.date:
    """An ISO 8601 calendar date ``YYYY-MM-DD``."""
    s = text.strip()
    if not _ISO_DATE.fullmatch(s):
        raise ValueError("not an ISO 8601 date (expected YYYY-MM-DD)")
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        raise ValueError("not a valid calendar date (expected YYYY-MM-DD)") from None


def parse_datetime(text: str) -> dt.datetime:
    """An ISO 8601 date (midnight) or date-time, returned naive as recorded (offset dropped)."""
    s = text.strip()
    if not _ISO_DATETIME.fullmatch(s):
        raise ValueError("not an ISO 8601 date or date-time (expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS])")
    try:
        value = dt.datetime.fromisoformat(s)
    except ValueError:
        raise ValueError("not a valid date or time (expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS])") from None
    return value.replace(tzinfo=None)


def parse_number(text: str) -> float:
    """A finite decimal number; '1,5', '1 000', 'NaN', 'inf' and '5 mg' are refused."""
    s = text.strip()
    if not _NUMBER.fullmatch(s):
        raise ValueError("not a number")
    value = float(s)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


class FieldError(ValueError):
    """A problem with one field: the importer adds the file and row."""

    def __init__(self, column: str, value: object, reason: str):
        self.column = column
        self.value = value
        self.reason = reason
        super().__init__(f"column {column}: value {value!r}: {reason}")


@dataclass(frozen=True)
class ConvertedValue:
    """A lab value in the canonical unit: ``value`` is None only for a PCR result given as text."""

    value: float | None
    value_text: str | None


class LabConverter:
    """Converts lab values of one (test, unit) pair; cached so a file converts column-wise.

    Raises ``ValueError`` (UnitError, BoundsError or a parse error) with a reason a clinician can read.
    """

    def __init__(self, test: TestDef, unit: str):
        self.test = test
        self.unit = unit
        self.conversion = catalogue.conversion_for(test, unit)  # UnitError for an unknown unit

    def convert(self, text: str) -> ConvertedValue:
        s = text.strip()
        if self.test.qualitative and not _NUMBER.fullmatch(s):
            detected = catalogue.parse_detection(s)
            if detected is None:
                raise ValueError(
                    "not a number, nor detected / not detected / positive / negative "
                    f"(a {self.test.label} result)"
                )
            return ConvertedValue(None, "detected" if detected else "not detected")
        value = self.conversion.apply(parse_number(s))
        catalogue.check_bounds(self.test, value)
        return ConvertedValue(value, None)

    def convert_reference(self, text: str) -> float:
        """A reference limit given in the row's unit, converted to the canonical unit."""
        return self.conversion.apply(parse_number(text))


def lab_record(
    *,
    mrn: str,
    test: str,
    taken_at: str | dt.datetime,
    value: str | float,
    unit: str,
    ref_low: str | float | None = None,
    ref_high: str | float | None = None,
    source: str = "manual",
    source_id: str | None = None,
    where: str = "",
    as_of: dt.date | None = None,
) -> LabIn:
    """One lab result as a ``LabIn``, checked and converted. Raises ``FieldError`` naming the field.

    For single entries (dashboard form, FHIR Observation). Bulk CSV import uses the same
    ``LabConverter`` and parsers column-wise.
    """
    try:
        t = catalogue.lookup(test)
    except catalogue.UnknownTestError as exc:
        raise FieldError("test", test, str(exc)) from None
    if isinstance(taken_at, dt.datetime):
        when = taken_at.replace(tzinfo=None)
    else:
        try:
            when = parse_datetime(taken_at)
        except ValueError as exc:
            raise FieldError("taken_at", taken_at, str(exc)) from None
    if when.date() > (as_of or today()):
        raise FieldError("taken_at", str(taken_at), "lab results cannot be dated in the future")
    try:
        conv = LabConverter(t, unit)
    except catalogue.UnitError as exc:
        raise FieldError("unit", unit, str(exc)) from None
    original = value if isinstance(value, str) else repr(float(value)).removesuffix(".0")
    try:
        cv = conv.convert(original)
    except ValueError as exc:
        raise FieldError("value", original, str(exc)) from None
    refs: dict[str, float | None] = {"ref_low": None, "ref_high": None}
    for name, raw in (("ref_low", ref_low), ("ref_high", ref_high)):
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        try:
            refs[name] = conv.convert_reference(raw if isinstance(raw, str) else repr(float(raw)))
        except ValueError as exc:
            raise FieldError(name, raw, str(exc)) from None
    if refs["ref_low"] is not None and refs["ref_high"] is not None and refs["ref_low"] > refs["ref_high"]:
        raise FieldError("ref_low", ref_low, "the reference range's lower limit is above its upper limit")
    return LabIn(
        mrn=mrn,
        test=t.key,
        taken_at=when,
        value=cv.value,
        unit=t.canonical_unit,
        original_value=original.strip(),
        original_unit=unit.strip(),
        loinc=_loinc_for(t, test),
        value_text=cv.value_text,
        ref_low=refs["ref_low"],
        ref_high=refs["ref_high"],
        source=source,
        source_id=source_id,
        where=where,
    )


def _loinc_for(t: TestDef, given: str) -> str | None:
    """The LOINC code as received when the row named one, else the test's primary code."""
    g = given.strip()
    return g if g in t.loinc else t.primary_loinc


def parse_dose(text: str, unit: str) -> tuple[float | None, float | None]:
    """(daily dose in mg, or None when per kg; dose per kg, or None). Doses are >= 0 (0 = stopped)."""
    u = unit.strip().lower()
    if u not in DOSE_UNITS:
        raise FieldError("unit", unit, f"unknown dose unit (accepted: {', '.join(DOSE_UNITS)})")
    try:
        amount = parse_number(text)
    except ValueError as exc:
        raise FieldError("daily_dose", text, str(exc)) from None
    if amount < 0:
        raise FieldError("daily_dose", text, "a daily dose cannot be negative (0 means stopped)")
    factor = DOSE_UNITS[u]
    if factor is None:
        return None, amount
    return amount * factor, None


def med_record(
    *,
    mrn: str,
    drug: str,
    start_date: str | dt.date,
    daily_dose: str | float,
    unit: str,
    route: str | None = None,
    source: str = "manual",
    source_id: str | None = None,
    where: str = "",
) -> MedIn:
    """One schedule row as a ``MedIn``: drug normalised, dose in mg/day (mg/kg resolved at write)."""
    name = drug.strip()
    generic = normalise_drug(name)
    if not generic:
        raise FieldError("drug", drug, "a drug name is required")
    if isinstance(start_date, dt.date):
        start = start_date
    else:
        try:
            start = parse_date(start_date)
        except ValueError as exc:
            raise FieldError("start_date", start_date, str(exc)) from None
    text = daily_dose if isinstance(daily_dose, str) else repr(float(daily_dose)).removesuffix(".0")
    mg, per_kg = parse_dose(text, unit)
    return MedIn(
        mrn=mrn,
        drug=generic,
        drug_as_entered=name,
        start_date=start,
        daily_dose_mg=mg if mg is not None else 0.0,
        dose_as_entered=text.strip(),
        unit_as_entered=unit.strip().lower(),
        route=(route or "").strip() or None,
        source=source,
        source_id=source_id,
        where=where,
        dose_per_kg=per_kg,
    )
