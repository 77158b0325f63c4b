"""The one intake path (PRODUCT.md §6, "Data as hospitals send it"): a reading, a dose or a
patient's fields as received, turned into the record that is stored, or refused with reasons.

Every source calls it: the CSV importer (column-wise, through the same parsers, converters and
checks), the FHIR importer, the HL7 feed, the dashboard's forms (``monitoring.services``) and the
demo. A form and a file given the same reading store the same record or refuse it with the same
reason (tests/monitoring/test_intake_agree.py runs one table of readings, and a Hypothesis property, through both).

Each function returns a record (``LabIn``, ``MedIn``, ``PatientFields``) or raises ``Refused``,
whose ``errors`` name every field refused (column, value as received, reason, and the test
concerned): the caller adds where it came from (file and row, resource, or the form).

Decisions, each made once here (issue 13 listed where the five earlier implementations disagreed):

- **Decimal comma** (``1,5``): refused, "write a decimal point". In a CSV file ``1,500`` is as
  likely a thousands separator as 1.5; a wrong guess is a thousandfold error.
- **Numeric PCR result** (``1200`` copies/mL): stored as a number, ``value_text`` None; a load
  above 0 means detected (``catalogue.parse_detection`` for text, the number otherwise).
  ``value_text`` is only ever the text a laboratory sent (detected / not detected).
- **A time later today** than now: refused as in the future (a result cannot have been taken
  yet; it is nearly always a typing mistake, 18:00 for 08:00). ``FUTURE_TOLERANCE`` allows for
  analyser and server clocks that disagree by a few minutes. An import run for an explicit
  ``as_of`` date (tests, back-dated runs) takes the end of that day as "now".
- **A UTC offset** (``2026-02-01T08:00+01:00``): the wall-clock time is stored as recorded and the
  offset is kept beside it (``taken_at_offset_minutes``), never applied (PRODUCT.md §6); the future
  check uses the instant the offset defines.
- **A negative reference limit** (``ref_low`` −5 U/L): refused like a negative value: a reference
  limit is checked against the same physiological bounds as the values of its test.
- **A weight of 600 kg**: refused: body weight follows the catalogue's bounds for the weight test
  (above 0, at most 500 kg), for a patient's weight field and a weight observation alike.
- **Text**: every stored text field has a length limit (the column's, ``models``) and is refused
  above it with the field named; control characters (C0/C1) and bidirectional-override characters
  (which can make a name read as another) are refused, never stripped silently; only notes may hold
  line breaks and tabs. Leading and trailing white space is trimmed.
- **Birth dates** on or before 1900-01-01 (placeholders such as 1000-01-01, 1800-01-01 and
  1900-01-01, which EHRs write for "unknown"; nobody alive was born then) are dropped with a note;
  the rest of the patient is stored.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

from monitoring import catalogue
from monitoring.catalogue import Conversion, TestDef
from monitoring.drugs import normalise_drug, resolve
from monitoring.models import ClinicalFinding, LabResult, MedicationRow, Patient, Photo, User
from monitoring.store import FIELD_LABELS, LabIn, MedIn

__all__ = [
    "COMPARATORS",
    "DOSE_UNITS",
    "drug_name",
    "FUTURE_TOLERANCE",
    "RESULT_STATUSES",
    "resent_result",
    "SETTINGS",
    "SEX_CODES",
    "SEXES",
    "ConvertedValue",
    "FieldError",
    "LabConverter",
    "PatientFields",
    "Refused",
    "check_text",
    "free_text",
    "converter",
    "dose",
    "future_limit",
    "lab_time",
    "lookup_test",
    "parse_date",
    "parse_datetime",
    "parse_number",
    "parse_value",
    "patient_fields",
    "reading",
    "text_limit",
    "today",
]

# ASCII digits only: float() and \d would also take other scripts' digits.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?", re.ASCII
)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+", re.ASCII)

# --- censored results (PRODUCT.md §4) --------------------------------------------------------
COMPARATORS: tuple[str, ...] = ("<", "<=", ">", ">=")
# How laboratories write a comparator before the number -> the stored comparator.
_COMPARATOR_WORDS: dict[str, str] = {
    "<": "<",
    "<=": "<=",
    "=<": "<=",
    "\u2264": "<=",  # ≤
    ">": ">",
    ">=": ">=",
    "=>": ">=",
    "\u2265": ">=",  # ≥
    "less than": "<",
    "less than or equal to": "<=",
    "greater than": ">",
    "more than": ">",
    "greater than or equal to": ">=",
}
_CENSORED = re.compile(
    r"(?P<cmp>less\s+than(?:\s+or\s+equal\s+to)?|greater\s+than(?:\s+or\s+equal\s+to)?|more\s+than"
    r"|<=|>=|=<|=>|<|>|\u2264|\u2265)\s*(?P<num>\S.*)",
    re.IGNORECASE,
)

# --- result status (FHIR Observation.status, HL7 v2 OBX-11) ------------------------------------
RESULT_STATUSES: tuple[str, ...] = ("final", "preliminary", "amended", "cancelled")


def resent_result(stored_status: str, new_status: str, same: bool) -> tuple[str, str]:
    """What a result re-sent with the identity of a stored one does (PRODUCT.md §6 edition 2,
    "Corrections"): ("unchanged" | "amend" | "conflict", why). One decision for FHIR and HL7.

    ``same``: the re-sent values equal the stored ones. A stored preliminary result is replaced by
    its final (or by an updated preliminary), even when only the status changes; a correction
    (status amended: FHIR corrected or amended, HL7 C) is an amendment of the stored value; the same
    values again change nothing; a preliminary sent after its final, or a final re-sent with
    another value and no correction status, is a conflict a person decides (nothing is changed)."""
    if stored_status == "preliminary" and new_status in ("final", "amended"):
        return "amend", "final result replaces the preliminary one"
    if same:
        return "unchanged", "the same result again"
    if stored_status == "preliminary" and new_status == "preliminary":
        return "amend", "preliminary result updated by its sender"
    if new_status == "amended":
        return "amend", "corrected by its sender"
    if new_status == "preliminary":
        return "conflict", f"a preliminary result sent after the {stored_status} one stored"
    return "conflict", "stored with a different value or time; a correction is sent with status corrected or amended"


# --- doses (PRODUCT.md §6): unit -> mg per unit; mg/kg is resolved with the patient's weight ------
DOSE_UNITS: dict[str, float | None] = {"mg": 1.0, "g": 1000.0, "mg/kg": None}

# --- patient fields ---------------------------------------------------------------------------
# Accepted spellings of sex -> the stored value (FHIR administrative gender codes).
SEX_CODES: dict[str, str] = {
    "female": "female",
    "f": "female",
    "male": "male",
    "m": "male",
    "other": "other",
    "o": "other",
    "unknown": "unknown",
    "u": "unknown",
}
SEXES: tuple[str, ...] = ("female", "male", "other", "unknown")
SETTINGS: tuple[str, ...] = ("inpatient", "clinic")
# Birth dates on or before this are placeholders (1000-01-01, 1800-01-01, 1900-01-01 in real EHR
# exports): dropped with a note (PRODUCT.md §6 "Identity": before 1900; 1900-01-01 itself, the
# commonest placeholder, is one too: a design choice, nobody alive was born on it).
PLACEHOLDER_BIRTH_LAST = dt.date(1900, 1, 1)

# Clocks of analysers, interface engines and this server differ by minutes: a result stamped a
# few minutes ahead of the server's clock is not refused as "in the future".
FUTURE_TOLERANCE = dt.timedelta(minutes=5)

# Text without a column limit (notes, reasons) is still bounded: a design choice, big enough for a
# clinical note, small enough that one cell cannot fill a screen or a log.
NOTE_MAX_CHARS = 2000


# --- refusals -----------------------------------------------------------------------------------

class FieldError(ValueError):
    """One field refused: its column, the value as received, the reason, and what it is about
    (the test label for a reading, the drug for a dose): "ALT value '-5': negative values are
    impossible"."""

    def __init__(self, column: str, value: object, reason: str, subject: str | None = None):
        self.column = column
        self.value = value
        self.reason = reason
        self.subject = subject
        super().__init__(self.message)

    @property
    def message(self) -> str:
        label = FIELD_LABELS.get(self.column, self.column)
        head = f"{self.subject} {label}" if self.subject else label
        return f"{head} {_shown(self.value)}: {self.reason}"


def _shown(value: object) -> str:
    text = "" if value is None else str(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return repr(text)


class Refused(ValueError):
    """Every field of one record that was refused (never only the first)."""

    def __init__(self, errors: Iterable[FieldError]):
        self.errors = list(errors)
        super().__init__("; ".join(e.message for e in self.errors))


def today() -> dt.date:
    """The local calendar date."""
    return dt.date.today()


# --- text ---------------------------------------------------------------------------------------

# C0 and C1 control characters, and the bidirectional embedding / override / isolate characters
# that make text display in another order than stored ("Trojan source").
_FORBIDDEN_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_FORBIDDEN_IN_NOTES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

_MODELS: dict[str, Any] = {
    "patient": Patient,
    "lab_result": LabResult,
    "medication_row": MedicationRow,
    "clinical_finding": ClinicalFinding,
    "photo": Photo,
    "app_user": User,
}


@cache
def text_limit(table: str, column: str) -> int:
    """The length limit of a stored text field: its column's, else ``NOTE_MAX_CHARS``."""
    col = _MODELS[table].__table__.c[column]
    length = getattr(col.type, "length", None)
    return int(length) if length else NOTE_MAX_CHARS


def check_text(
    column: str, value: object, *, limit: int, multiline: bool = False, subject: str | None = None
) -> str:
    """``value`` trimmed, or FieldError: longer than ``limit`` characters, or a control character."""
    text = str(value).strip()
    bad = (_FORBIDDEN_IN_NOTES if multiline else _FORBIDDEN_CHARS).search(text)
    if bad is not None:
        raise FieldError(
            column, value, f"contains the control character U+{ord(bad.group()):04X} (not stored: remove it)", subject
        )
    if len(text) > limit:
        raise FieldError(column, value, f"{len(text):,} characters: at most {limit:,} can be stored", subject)
    return text


def free_text(column: str, value: object, *, limit: int = NOTE_MAX_CHARS, required: str | None = None) -> str | None:
    """A note or a reason as typed (photo notes, finding notes, amendment / removal / discard /
    acknowledgement reasons): trimmed, None when blank, line breaks allowed; FieldError naming
    ``column`` when longer than ``limit``, holding a control character, or blank when ``required``
    (the reason given)."""
    text = "" if value is None else check_text(column, value, limit=limit, multiline=True)
    if not text:
        if required:
            raise FieldError(column, value, required)
        return None
    return text


def stored_text(table: str, column: str, value: object, *, multiline: bool = False, subject: str | None = None) -> str:
    """``check_text`` with the column's own limit (``text_limit``)."""
    return check_text(column, value, limit=text_limit(table, column), multiline=multiline, subject=subject)


def display_name(value: object) -> str | None:
    """An account's display name as typed (how reports and the dashboard name the person, e.g.
    "Dr A. Mensah, dermatology registrar"): trimmed, None when blank (the user name is shown);
    FieldError when longer than the column allows or holding a control or bidirectional-override
    character (one line: no line breaks)."""
    text = "" if value is None else check_text("display name", value, limit=text_limit("app_user", "display_name"))
    return text or None


# --- numbers, dates and times ---------------------------------------------------------------------


def parse_number(text: str) -> float:
    """A finite decimal number; '1,5', '1 000', 'NaN', 'inf' and '5 mg' are refused."""
    s = text.strip()
    if not s:
        raise ValueError("a number is required")
    if not _NUMBER.fullmatch(s):
        if _DECIMAL_COMMA.fullmatch(s):
            raise ValueError(f"a decimal comma is not read (it may be a thousands separator): write {s.replace(',', '.')!r}")
        raise ValueError("not a number")
    value = float(s)
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def parse_value(text: str) -> tuple[str | None, float]:
    """(comparator, number) of a result as written: ``'<0.01'`` -> ('<', 0.01); ``'5'`` -> (None, 5)."""
    s = text.strip()
    m = _CENSORED.fullmatch(s)
    if m is None:
        return None, parse_number(s)
    word = re.sub(r"\s+", " ", m.group("cmp").lower())
    return _COMPARATOR_WORDS[word], parse_number(m.group("num"))


def _number_text(value: float | int) -> str:
    return repr(float(value)).removesuffix(".0")


def parse_date(text: str) -> dt.date:
    """An ISO 8601 calendar date ``YYYY-MM-DD``."""
    s = text.strip()
    if not _ISO_DATE.fullmatch(s):
        raise ValueError("not an ISO 8601 date (expected YYYY-MM-DD)")
    try:
        return dt.date.fromisoformat(s)
    except ValueError:
        raise ValueError("not a valid calendar date (expected YYYY-MM-DD)") from None


def parse_datetime(text: str) -> tuple[dt.datetime, int | None]:
    """An ISO 8601 date (midnight) or date-time: (wall-clock time as recorded, UTC offset in
    minutes or None). The offset is kept, never applied."""
    s = text.strip()
    if not _ISO_DATETIME.fullmatch(s):
        raise ValueError("not an ISO 8601 date or date-time (expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS])")
    try:
        value = dt.datetime.fromisoformat(s)
    except ValueError:
        raise ValueError("not a valid date or time (expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS])") from None
    return _split_offset(value)


def _split_offset(value: dt.datetime) -> tuple[dt.datetime, int | None]:
    offset = value.utcoffset()
    minutes = None if offset is None else int(offset.total_seconds() // 60)
    return value.replace(tzinfo=None), minutes


def future_limit(*, now: dt.datetime | None = None, as_of: dt.date | None = None) -> dt.datetime:
    """The latest local time a result may carry: ``now`` (local, naive) plus the clock tolerance;
    for an explicit ``as_of`` date without ``now``, the end of that day."""
    if now is None:
        if as_of is not None:
            return dt.datetime.combine(as_of, dt.time.max)
        now = dt.datetime.now()
    elif now.tzinfo is not None:
        now = now.astimezone().replace(tzinfo=None)
    return now + FUTURE_TOLERANCE


def _local(when: dt.datetime, offset: int | None) -> dt.datetime:
    """The recorded time on this server's clock (for the future check only; never stored)."""
    if offset is None:
        return when
    aware = when.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset)))
    return aware.astimezone().replace(tzinfo=None)


def lab_time(value: object, limit: dt.datetime) -> tuple[dt.datetime, int | None]:
    """A result's time as (recorded time, offset minutes); ValueError with the reason."""
    if isinstance(value, dt.datetime):
        when, offset = _split_offset(value)
    elif isinstance(value, dt.date):
        when, offset = dt.datetime.combine(value, dt.time()), None
    else:
        text = "" if value is None else str(value)
        if not text.strip():
            raise ValueError("a date or date-time is required")
        when, offset = parse_datetime(text)
    if _local(when, offset) > limit:
        raise ValueError(f"in the future (after {limit.replace(microsecond=0).isoformat(sep=' ', timespec='minutes')}): "
                         "a result must have been taken")
    return when, offset


# --- tests, units and values ------------------------------------------------------------------------


def lookup_test(text: object) -> TestDef:
    """The catalogue test for a key or LOINC code; ValueError with the reason."""
    s = "" if text is None else str(text).strip()
    if not s:
        raise ValueError("a test is required (a catalogue key or a LOINC code)")
    try:
        return catalogue.lookup(s)
    except catalogue.UnknownTestError:
        raise ValueError(
            f"unknown test: not a catalogue key ({', '.join(catalogue.CATALOGUE)}) nor one of their LOINC codes"
        ) from None


@dataclass(frozen=True, slots=True)
class ConvertedValue:
    """A result in the canonical unit: ``value`` is None only for a PCR result given as text."""

    value: float | None
    value_text: str | None = None
    comparator: str | None = None


class LabConverter:
    """Converts the values of one (test, unit) pair to the canonical unit and checks them.

    One per distinct (test, unit) (``converter``), so a file converts column-wise. A PCR result
    given as text needs no unit; a number always does.
    """

    def __init__(self, test: TestDef, unit: str):
        self.test = test
        self.unit = unit.strip()
        self.conversion: Conversion | None
        if not self.unit:
            if not test.qualitative:
                raise ValueError(f"a unit is required for {test.key} (accepted: {_units(test)})")
            self.conversion = None
            return
        try:
            self.conversion = catalogue.conversion_for(test, self.unit)
        except catalogue.UnitError:
            raise ValueError(f"unknown unit for {test.key} (accepted: {_units(test)})") from None

    def convert(self, text: str, comparator: str | None = None) -> ConvertedValue:
        """A value as written (``'<0.01'``, ``'detected'``, ``'12.5'``); ValueError with the reason.

        The text limit and control characters of the stored ``original_value`` are checked here,
        so a form and a file refuse an over-long value for the same reason."""
        try:
            s = stored_text("lab_result", "original_value", text)
        except FieldError as exc:
            raise ValueError(exc.reason) from None
        if not s:
            raise ValueError("a value is required")
        if self.test.qualitative and comparator is None:
            detected = catalogue.parse_detection(s)
            if detected is not None:
                return ConvertedValue(None, "detected" if detected else "not detected")
        try:
            written, number = parse_value(s)
        except ValueError as exc:
            if self.test.qualitative:
                raise ValueError(
                    f"{exc}, nor detected / not detected / positive / negative (a {self.test.label} result)"
                ) from None
            raise
        if written is not None and comparator is not None and written != comparator:
            raise ValueError(f"two comparators ({comparator!r} and {written!r})")
        comparator = comparator or written
        if comparator is not None and comparator not in COMPARATORS:
            raise ValueError(f"comparator {comparator!r} is not read (accepted: {', '.join(COMPARATORS)})")
        if self.conversion is None:
            raise ValueError(f"a unit is required for a {self.test.label} number (accepted: {_units(self.test)})")
        value = self.conversion.apply(number)
        try:
            catalogue.check_bounds(self.test, value)
        except catalogue.BoundsError as exc:
            raise ValueError(str(exc)) from None
        return ConvertedValue(value, None, comparator)

    def convert_reference(self, text: str) -> float:
        """A reference limit in the row's unit, converted and held to the test's bounds."""
        if self.conversion is None:
            raise ValueError(f"a reference limit needs the unit of the value (accepted: {_units(self.test)})")
        value = self.conversion.apply(parse_number(text))
        try:
            catalogue.check_bounds(self.test, value)
        except catalogue.BoundsError as exc:
            raise ValueError(str(exc)) from None
        return value


def converter(test: TestDef, unit: str) -> LabConverter:
    """The converter of a (test, unit), made once; ValueError naming the accepted units."""
    return _converter(test.key, unit)


@lru_cache(maxsize=4096)
def _converter(key: str, unit: str) -> LabConverter:
    return LabConverter(catalogue.CATALOGUE[key], unit)


def _units(test: TestDef) -> str:
    return ", ".join(catalogue.accepted_units(test))


def reference_ranges_ordered(low: float | None, high: float | None) -> bool:
    return low is None or high is None or low <= high


REFERENCE_ORDER_REASON = "the reference range's lower limit is above its upper limit"


def _blank(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def as_text(value: object) -> str:
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, int | float):
        return _number_text(value)
    return "" if value is None else str(value)


def reading(
    *,
    mrn: str,
    test: str,
    taken_at: object,
    value: object,
    unit: str | None,
    ref_low: object = None,
    ref_high: object = None,
    comparator: str | None = None,
    status: str = "final",
    source: str = "manual",
    source_id: str | None = None,
    where: str = "",
    now: dt.datetime | None = None,
    as_of: dt.date | None = None,
) -> LabIn:
    """A lab result or bedside observation as received -> the ``LabIn`` that is stored.

    Number and comparator (``'<0.01'``, or ``comparator`` given apart as by FHIR), time with its
    UTC offset, the future check, unit conversion through the catalogue, physiological bounds, PCR
    text, reference range. Raises ``Refused`` naming every field refused.
    """
    errors: list[FieldError] = []
    t: TestDef | None = None
    try:
        t = lookup_test(test)
    except ValueError as exc:
        errors.append(FieldError("test", test, str(exc)))
    subject = t.label if t is not None else None
    mrn_text = ""
    try:
        mrn_text = stored_text("patient", "mrn", mrn or "", subject=subject)
        if not mrn_text:
            raise FieldError("mrn", mrn, "an MRN is required", subject)
    except FieldError as exc:
        errors.append(exc)
    when: dt.datetime | None = None
    offset: int | None = None
    try:
        when, offset = lab_time(taken_at, future_limit(now=now, as_of=as_of))
    except ValueError as exc:
        errors.append(FieldError("taken_at", taken_at, str(exc), subject))
    if status not in RESULT_STATUSES:
        errors.append(FieldError("status", status, f"not a result status (one of {', '.join(RESULT_STATUSES)})", subject))
    conv: LabConverter | None = None
    unit_text = "" if unit is None else str(unit)
    if t is not None:
        try:
            unit_text = stored_text("lab_result", "original_unit", unit_text, subject=subject)
            conv = converter(t, unit_text)
        except FieldError as exc:  # named as the field given (a file's column, the form's field)
            errors.append(FieldError("unit", unit, exc.reason, subject))
        except ValueError as exc:
            errors.append(FieldError("unit", unit, str(exc), subject))
    cv: ConvertedValue | None = None
    original = ""
    refs: dict[str, float | None] = {"ref_low": None, "ref_high": None}
    if conv is not None:
        try:
            original = as_text(value).strip()
            cv = conv.convert(original, comparator)
        except ValueError as exc:
            errors.append(FieldError("value", value, str(exc), subject))
        for name, raw in (("ref_low", ref_low), ("ref_high", ref_high)):
            if _blank(raw):
                continue
            try:
                refs[name] = conv.convert_reference(as_text(raw))
            except ValueError as exc:
                errors.append(FieldError(name, raw, str(exc), subject))
        if not reference_ranges_ordered(refs["ref_low"], refs["ref_high"]):
            errors.append(FieldError("ref_low", ref_low, REFERENCE_ORDER_REASON, subject))
    if source_id is not None:
        try:
            source_id = stored_text("lab_result", "source_id", source_id, subject=subject)
        except FieldError as exc:
            errors.append(exc)
    if errors:
        raise Refused(errors)
    assert t is not None and cv is not None and when is not None
    # A comparator given apart from the number (FHIR valueQuantity.comparator) is shown with it.
    original_shown = original if cv.comparator is None or _CENSORED.fullmatch(original) else f"{cv.comparator}{original}"
    return LabIn(
        mrn=mrn_text,
        test=t.key,
        taken_at=when,
        value=cv.value,
        unit=t.canonical_unit,
        original_value=original_shown,
        original_unit=unit_text,
        loinc=loinc_for(t, str(test)),
        value_text=cv.value_text,
        ref_low=refs["ref_low"],
        ref_high=refs["ref_high"],
        source=source,
        source_id=source_id,
        where=where,
        comparator=cv.comparator,
        taken_at_offset_minutes=offset,
        status=status,
    )


def loinc_for(t: TestDef, given: str) -> str | None:
    """The LOINC code as received when the row named one, else the test's primary code."""
    g = given.strip()
    return g if g in t.loinc else t.primary_loinc


# --- doses ------------------------------------------------------------------------------------------


def dose_amount(value: object, unit: str | None) -> tuple[str, str, float | None, float | None]:
    """(dose as entered, unit as entered, mg/day or None when per kg, mg/kg or None); Refused."""
    errors: list[FieldError] = []
    u = ("" if unit is None else str(unit)).strip().lower()
    if u not in DOSE_UNITS:
        reason = "a unit is required" if not u else "unknown dose unit"
        errors.append(FieldError("unit", unit, f"{reason} (accepted: {', '.join(DOSE_UNITS)})"))
    text = ""
    amount: float | None = None
    try:
        text = as_text(value).strip()
        if not text:
            raise ValueError("a daily dose is required (0 means stopped)")
        if len(text) > text_limit("medication_row", "dose_as_entered"):
            raise ValueError(f"at most {text_limit('medication_row', 'dose_as_entered')} characters can be stored")
        amount = parse_number(text)
        if amount < 0:
            raise ValueError("a daily dose cannot be negative (0 means stopped)")
    except ValueError as exc:
        errors.append(FieldError("daily_dose", value, str(exc)))
    if errors:
        raise Refused(errors)
    assert amount is not None
    factor = DOSE_UNITS[u]
    if factor is None:
        return text, u, None, amount
    return text, u, amount * factor, None


def drug_name(column: str, value: object, *, subject: str | None = None) -> tuple[str, str]:
    """A drug name as received -> (the name as written, the name stored: monitoring.drugs' resolved
    generic name, else the name as written, cleaned). One check for every path that takes a drug
    name (schedule rows, culprits): a name longer than its column is refused, naming ``column`` and
    the value, never cut (a cut name could match another drug, or none). ('', '') when blank."""
    written = check_text(column, value or "", limit=text_limit("medication_row", "drug_as_entered"), subject=subject)
    if not written:
        return "", ""
    generic = normalise_drug(written)
    limit = text_limit("medication_row", "drug")
    if len(generic) > limit:
        raise FieldError(
            column, value, f"the drug name is {len(generic)} characters long: at most {limit} can be stored (never cut)", subject
        )
    return written, generic


def dose(
    *,
    mrn: str,
    drug: str,
    start_date: object,
    daily_dose: object,
    unit: str | None,
    route: str | None = None,
    source: str = "manual",
    source_id: str | None = None,
    where: str = "",
) -> MedIn:
    """A schedule row as received -> the ``MedIn`` that is stored (mg/day; a mg/kg dose is resolved
    against the patient's weight by ``store.write_batch``, the weight may come in the same import).
    Doses are ≥ 0 (0 means stopped); the start date may lie in the future (the plan)."""
    errors: list[FieldError] = []
    name = ""
    generic = ""
    try:
        name, generic = drug_name("drug", drug)
        if not generic:
            raise FieldError("drug", drug, "a drug name is required")
    except FieldError as exc:
        errors.append(exc)
    subject = name or None
    try:
        mrn_text = stored_text("patient", "mrn", mrn or "")
        if not mrn_text:
            raise FieldError("mrn", mrn, "an MRN is required")
    except FieldError as exc:
        errors.append(exc)
    start: dt.date | None = None
    if isinstance(start_date, dt.datetime):
        start = start_date.date()
    elif isinstance(start_date, dt.date):
        start = start_date
    else:
        raw = "" if start_date is None else str(start_date)
        try:
            if not raw.strip():
                raise ValueError("a date is required (YYYY-MM-DD)")
            start = parse_date(raw)
        except ValueError as exc:
            errors.append(FieldError("start_date", start_date, str(exc)))
    amount: tuple[str, str, float | None, float | None] | None = None
    try:
        amount = dose_amount(daily_dose, unit)
    except Refused as exc:
        errors.extend(exc.errors)
    route_text: str | None = None
    try:
        route_text = stored_text("medication_row", "route", route or "") or None
    except FieldError as exc:
        errors.append(exc)
    if errors:
        for e in errors:
            e.subject = e.subject or subject
        raise Refused(errors)
    assert start is not None and amount is not None
    text, u, mg, per_kg = amount
    return MedIn(
        mrn=mrn_text,
        drug=generic,
        drug_as_entered=name,
        start_date=start,
        daily_dose_mg=mg if mg is not None else 0.0,
        dose_as_entered=text,
        unit_as_entered=u,
        route=route_text,
        source=source,
        source_id=source_id,
        where=where,
        dose_per_kg=per_kg,
    )


# --- patient fields -----------------------------------------------------------------------------------

PATIENT_INPUT_FIELDS: tuple[str, ...] = (
    "mrn",
    "name",
    "sex",
    "birth_date",
    "weight_kg",
    "onset_date",
    "culprit_drugs",
    "baseline_creatinine_mg_dl",
    "resolved_date",
    "setting",
    "active",
    "synthetic",
)


@dataclass
class PatientFields:
    """A patient's fields as stored (only those given; None clears an optional field), and notes on
    what was dropped (a placeholder birth date)."""

    values: dict[str, Any] = field(default_factory=dict)
    notes: list[FieldError] = field(default_factory=list)


def _date_value(column: str, raw: object) -> dt.date:
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    text = str(raw)
    if len(text) > 10 and text[10] in "T ":
        text = text[:10]  # a FHIR dateTime's date (birthDate may carry a time in some exports)
    return parse_date(text)


def body_weight(raw: object) -> float:
    """A body weight in kg: above 0 and within the catalogue's bounds for the weight test."""
    number = parse_number(as_text(raw))
    if number <= 0:
        raise ValueError("must be greater than 0 (kg)")
    w = catalogue.CATALOGUE["weight"]
    if w.max_value is not None and number > w.max_value:
        raise ValueError(f"above {w.max_value:g} kg: check the unit (kg, not lb) and the digits")
    return number


def patient_fields(
    fields: Mapping[str, object], *, on: dt.date | None = None, known: Mapping[str, object] | None = None
) -> PatientFields:
    """A patient's fields as received -> as stored; ``Refused`` naming every field refused.

    Keys are those of ``PATIENT_INPUT_FIELDS`` (``culprit_drugs`` a list or a ';'-separated text).
    An empty value means not given and clears the field (``None``), except ``mrn`` and ``name``,
    which are required when given. ``on`` is today (birth and onset dates may not be after it);
    ``known`` holds stored values the date order is checked against (onset after birth).
    """
    day = on or today()
    errors: list[FieldError] = []
    out = PatientFields()
    values = out.values
    for key, raw in fields.items():
        empty = _blank(raw) if not isinstance(raw, list | tuple) else not raw
        try:
            if key not in PATIENT_INPUT_FIELDS:
                raise FieldError(key, raw, "not a patient field")
            if key in ("mrn", "name"):
                text = stored_text("patient", key, raw or "")
                if not text:
                    raise FieldError(key, raw, f"{'an MRN' if key == 'mrn' else 'a name'} is required")
                values[key] = text
            elif empty:
                values[key] = [] if key == "culprit_drugs" else None
                if key == "culprit_drugs":
                    values["culprits_as_entered"] = []
            elif key in ("birth_date", "onset_date", "resolved_date"):
                d = _date_value(key, raw)
                if key == "birth_date" and d <= PLACEHOLDER_BIRTH_LAST:
                    out.notes.append(FieldError(
                        key, raw, f"a placeholder birth date ({PLACEHOLDER_BIRTH_LAST.isoformat()} or earlier): not stored"))
                    continue
                if key != "resolved_date" and d > day:
                    raise ValueError(f"in the future (after {day.isoformat()})")
                values[key] = d
            elif key == "weight_kg":
                values[key] = body_weight(raw)
            elif key == "baseline_creatinine_mg_dl":
                number = parse_number(as_text(raw))
                if number <= 0:
                    raise ValueError("must be greater than 0 (mg/dL)")
                try:
                    catalogue.check_bounds(catalogue.CATALOGUE["creatinine"], number)
                except catalogue.BoundsError as exc:
                    raise ValueError(str(exc)) from None
                values[key] = number
            elif key == "culprit_drugs":
                if isinstance(raw, str):
                    names = raw.split(";")
                elif isinstance(raw, Iterable):
                    names = [str(n) for n in raw]
                else:  # a number or other single value: refused by name (it was a TypeError)
                    raise ValueError("must be a list of drug names or a text with ';' between them")
                drugs: list[str] = []
                written: list[dict[str, Any]] = []
                for n in names:
                    if not n.strip():
                        continue
                    entered, generic = drug_name(key, n)
                    drugs.append(generic)
                    written.append(
                        {"as_entered": entered, "drug": generic, "ingredients": sorted(resolve(entered).ingredients)}
                    )
                if not drugs:
                    raise ValueError("no drug name (several culprits are separated by ';')")
                values[key] = list(dict.fromkeys(drugs))
                # The text as written, kept beside what it resolved to (display and audit).
                values["culprits_as_entered"] = written
            elif key == "sex":
                sex = SEX_CODES.get(str(raw).strip().lower())
                if sex is None:
                    raise ValueError(f"unknown sex (accepted: {', '.join(SEXES)}, or M, F, O, U)")
                values[key] = sex
            elif key == "setting":
                s = str(raw).strip().lower()
                if s not in SETTINGS:
                    raise ValueError(f"one of {', '.join(SETTINGS)}")
                values[key] = s
            elif key in ("active", "synthetic"):
                values[key] = bool(raw)
        except FieldError as exc:
            errors.append(exc)
        except ValueError as exc:
            errors.append(FieldError(key, raw, str(exc)))
    merged = {**(known or {}), **values}
    onset, resolved, birth = merged.get("onset_date"), merged.get("resolved_date"), merged.get("birth_date")
    bad = {e.column for e in errors}
    if isinstance(onset, dt.date) and isinstance(resolved, dt.date) and resolved < onset and "resolved_date" not in bad:
        column = "resolved_date" if "resolved_date" in values else "onset_date"
        errors.append(FieldError(column, fields.get(column), "the resolution date is before the onset date"))
    if isinstance(onset, dt.date) and isinstance(birth, dt.date) and onset < birth and "onset_date" not in bad:
        column = "onset_date" if "onset_date" in values else "birth_date"
        errors.append(FieldError(column, fields.get(column), "the onset date is before the birth date"))
    if errors:
        raise Refused(errors)
    return out
