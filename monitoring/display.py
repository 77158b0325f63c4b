"""How a number, a unit and a test are written for people: one place, used everywhere (the ward,
the timeline's table and hover, alert messages, the report, the entry pickers).

Stored values keep full precision; only their display is rounded. A converted value (65 µmol/L =
0.7352941 mg/dL) must not look more precise than the laboratory measured, so each test has one
display precision per unit, chosen from how laboratories report it (ALT in whole U/L, creatinine
to 0.01 mg/dL, temperature to 0.1 °C). Units are shown by their usual label, never by their UCUM
code (``Cel`` is °C, ``{copies}/mL`` is copies/mL, ``m[IU]/L`` is mIU/L).
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

from monitoring.catalogue import CATALOGUE

__all__ = [
    "test_label",
    "unit_label",
    "decimals",
    "number",
    "value_text",
    "quantity",
    "taken_text",
    "as_of_moment",
    "as_received",
    "reference_range",
]

# At most this many decimal places per (test, unit), trailing zeros dropped (ALT 81 U/L stays '81',
# a hand-entered 80.5 stays '80.5' and is never shown as the threshold it exceeds); the canonical
# unit's entry is the test's default.
_DECIMALS: dict[str, dict[str, int]] = {
    "alt": {"U/L": 1, "ukat/L": 2},
    "ast": {"U/L": 1, "ukat/L": 2},
    "alp": {"U/L": 1},
    "ggt": {"U/L": 1},
    "bilirubin": {"mg/dL": 2, "umol/L": 0},
    "creatinine": {"mg/dL": 2, "umol/L": 0},
    "eosinophils": {"10^9/L": 2},
    "eosinophils_pct": {"%": 1},
    "wbc": {"10^9/L": 1},
    "atypical_lymphocytes_pct": {"%": 0},
    "ferritin": {"ng/mL": 1},
    "troponin_t": {"ng/L": 1},
    "troponin_i": {"ng/L": 1},
    "crp": {"mg/L": 1},
    "temperature": {"Cel": 1},
    "bsa_pct": {"%": 0},
    "hhv6_pcr": {"{copies}/mL": 0},
    "ebv_pcr": {"{copies}/mL": 0},
    "cmv_pcr": {"{copies}/mL": 0},
    "tsh": {"m[IU]/L": 2},
    "glucose": {"mg/dL": 0, "mmol/L": 1},
    "weight": {"kg": 1},
}
_DEFAULT_DECIMALS = 2

# UCUM code (or catalogue spelling) -> the label people read.
_UNIT_LABELS: dict[str, str] = {
    "Cel": "°C",
    "[degF]": "°F",
    "{copies}/mL": "copies/mL",
    "m[IU]/L": "mIU/L",
    "[IU]/mL": "IU/mL",
    "10^9/L": "×10^9/L",
    "10*9/L": "×10^9/L",
    "10^3/uL": "×10^3/µL",
    "10*3/uL": "×10^3/µL",
    "umol/L": "µmol/L",
    "ukat/L": "µkat/L",
    "ug/L": "µg/L",
    "[lb_av]": "lb",
}


def test_label(test: str) -> str:
    """'ALT', 'Creatinine', 'HHV-6 PCR' (the catalogue's label; the key for an unknown test)."""
    t = CATALOGUE.get(test)
    return t.label if t is not None else test


def unit_label(unit: str) -> str:
    """The label of a unit ('Cel' -> '°C'); a unit without a special label is shown as written."""
    return _UNIT_LABELS.get(unit, unit)


def decimals(test: str, unit: str | None = None) -> int:
    """Decimal places shown for ``test`` in ``unit`` (default: its canonical unit)."""
    per_unit = _DECIMALS.get(test)
    if not per_unit:
        return _DEFAULT_DECIMALS
    if unit is not None and unit in per_unit:
        return per_unit[unit]
    t = CATALOGUE.get(test)
    if t is not None and t.canonical_unit in per_unit:
        return per_unit[t.canonical_unit]
    return next(iter(per_unit.values()))


def number(test: str, value: float, unit: str | None = None) -> str:
    """``value`` at the test's display precision, without trailing zeros: 0.7352941 creatinine ->
    '0.74', 36.8888 °C -> '36.9', 1.50 ×10^9/L -> '1.5', 81.0 U/L -> '81'."""
    places = decimals(test, unit)
    # Half up on the decimal spelling (0.735 -> 0.74), not on the binary float (0.73499...).
    text = f"{Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def value_text(test: str, value: float, unit: str | None = None, comparator: str | None = None) -> str:
    """The number with its comparator when censored: '<0.01', '>2000', '1.5'."""
    return f"{comparator or ''}{number(test, value, unit)}"


def quantity(test: str, value: float, unit: str, comparator: str | None = None) -> str:
    """'0.74 mg/dL', '36.9 °C', '<5 ng/L', '1.5 ×10^9/L'."""
    return f"{value_text(test, value, unit, comparator)} {unit_label(unit)}".strip()


def taken_text(taken_at: dt.datetime, as_of: dt.date, *, with_date: bool = False) -> str:
    """When a result was taken, as read on ``as_of``: 'today 06:10', 'yesterday 18:30', '4 d ago'
    (with ``with_date``: '4 d ago, 2026-11-28'), so that yesterday's bloods never read as this
    morning's (issue 18 point 2). A time after ``as_of`` (a later day) is written as its date."""
    days = (as_of - taken_at.date()).days
    if days == 0:
        return f"today {taken_at:%H:%M}"
    if days == 1:
        return f"yesterday {taken_at:%H:%M}"
    if days < 0:
        return f"{taken_at:%Y-%m-%d %H:%M}"
    return f"{days} d ago, {taken_at.date().isoformat()}" if with_date else f"{days} d ago"


def as_of_moment(as_of: dt.date, now: dt.datetime | None = None) -> dt.datetime:
    """Where a timeline's "now" line stands (the dashboard's figure and the PDF's): the current
    time when the view is as of today, so this morning's results are before it; else the end of the
    as-of day, so every result counted as of that date, whatever its time, is before it."""
    current = now or dt.datetime.now()
    if as_of == current.date():
        return current.replace(microsecond=0)
    return dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())


def as_received(original_value: str | None, original_unit: str | None) -> str:
    """A result as the laboratory sent it: its value exactly as written (never rounded: it is the
    record of what came in), its unit by its label ('98.4 °F', '<0.05 ng/mL', '150 µmol/L')."""
    unit = unit_label(original_unit) if original_unit else ""
    return f"{original_value or ''} {unit}".strip()


def reference_range(test: str, low: float | None, high: float | None, unit: str) -> str:
    """A stored reference range at the test's display precision: '0.5–1.2', 'up to 40', 'from 3.5'
    ('' when none was given)."""
    lo = None if low is None else number(test, low, unit)
    hi = None if high is None else number(test, high, unit)
    if lo is not None and hi is not None:
        return f"{lo}–{hi}"
    if hi is not None:
        return f"up to {hi}"
    return "" if lo is None else f"from {lo}"
