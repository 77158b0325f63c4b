"""Dose arithmetic of medication resources: dose and rate units, timings, order periods, routes, and
the schedule rows of one drug (the schedule rule of PRODUCT.md §3).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from monitoring.importers.fhir.codes import ROUTES, SNOMED
from monitoring.importers.fhir.helpers import _FHIR_DATE

# "5 MG" of an RxNorm name; "5 MG/ML" is a concentration, not a strength per tablet.
_STRENGTH = re.compile(r"(\d+(?:\.\d+)?)\s*MG\b(?!/)", re.IGNORECASE)

# Dose units -> (mg per unit, per kg of body weight)
_MASS_UNITS: dict[str, tuple[float, bool]] = {
    "mg": (1.0, False),
    "g": (1000.0, False),
    "ug": (0.001, False),
    "mcg": (0.001, False),
    "mg/kg": (1.0, True),
    "g/kg": (1000.0, True),
}
# Units that count tablets or capsules: the strength comes from the product's name.
_COUNT_UNITS = frozenset(
    {"", "1", "tbl", "tab", "tabs", "tablet", "tablets", "capsule", "capsules", "cap", "caps", "each", "dose"}
)
_PERIOD_DAYS: dict[str, float] = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0, "a": 365.0}
_TIMING_CODES: dict[str, float] = {
    "QD": 1, "QOD": 0.5, "BID": 2, "TID": 3, "QID": 4, "AM": 1, "PM": 1, "QAM": 1, "QPM": 1, "QHS": 1,
    "Q4H": 6, "Q6H": 4, "Q8H": 3, "Q12H": 2, "Q24H": 1,
}

_ENDED_STATUS = frozenset({"stopped", "completed"})
# Rate units -> mg per hour
_RATE_MASS = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001}
_RATE_TIME = {"h": 1.0, "hr": 1.0, "hour": 1.0, "min": 1 / 60, "d": 24.0, "day": 24.0}


@dataclass
class _Interval:
    start: dt.date
    end: dt.date | None  # last day given (inclusive); None: until the next order of the drug
    mg: float
    per_kg: float
    drug_as_entered: str
    dose_as_entered: str
    unit_as_entered: str
    route: str | None
    source_id: str | None
    where: str
    exact: bool = False  # a schedule row of this product's export: kept as it is
    optional: bool = False  # a drug no decision reads: dropped (listed) rather than refusing the import


def _rate_mg_per_hour(rate: Mapping[str, Any]) -> float | None:
    """A rateQuantity such as 10 mg/h or 500 mg/min in mg per hour; None if not a mass rate."""
    unit = str(rate.get("code") or rate.get("unit") or "").strip().lower().replace("[", "").replace("]", "")
    mass, sep, per = unit.partition("/")
    if not sep or mass not in _RATE_MASS or per not in _RATE_TIME:
        return None
    try:
        return float(Decimal(str(rate["value"]))) * _RATE_MASS[mass] / _RATE_TIME[per]
    except (InvalidOperation, ValueError):
        return None


def _order_period(rtype: str, r: Mapping[str, Any]) -> tuple[str | None, str, str | None, str]:
    """(start, its element, end, its element) of an order outside its dosage steps."""
    if rtype == "MedicationStatement":
        if r.get("effectiveDateTime"):
            return str(r["effectiveDateTime"]), "effectiveDateTime", None, ""
        p = got if isinstance(got := r.get("effectivePeriod"), dict) else {}
        return p.get("start"), "effectivePeriod.start", p.get("end"), "effectivePeriod.end"
    validity = (r.get("dispenseRequest") or {}).get("validityPeriod")
    if isinstance(validity, dict) and validity.get("start"):
        return validity["start"], "dispenseRequest.validityPeriod.start", validity.get("end"), "dispenseRequest.validityPeriod.end"
    if r.get("authoredOn"):
        return str(r["authoredOn"]), "authoredOn", None, ""
    return None, "", None, ""


def _validity_end(r: Mapping[str, Any]) -> dt.date | None:
    end = ((r.get("dispenseRequest") or {}).get("validityPeriod") or {}).get("end")
    if end and _FHIR_DATE.fullmatch(str(end)[:10]):
        try:
            return dt.date.fromisoformat(str(end)[:10])
        except ValueError:
            return None
    return None


def _route(cc: Any) -> str | None:
    if not isinstance(cc, dict):
        return None
    for c in cc.get("coding") or []:
        if str(c.get("code")) in ROUTES and c.get("system") in (SNOMED, None):
            return ROUTES[str(c["code"])]
    text = cc.get("text") or next((c.get("display") for c in cc.get("coding") or [] if c.get("display")), None)
    if not text:
        return None
    t = re.sub(r"\s+route$", "", str(text).strip().lower())
    return t[:40] or None


def _per_day(timing: Any) -> float | None:
    """Administrations per day from a Timing; 1 when absent; None when not a regular frequency."""
    if not isinstance(timing, dict):
        return 1.0
    repeat = timing.get("repeat")
    if isinstance(repeat, dict) and (repeat.get("frequency") is not None or repeat.get("period") is not None):
        freq = float(repeat.get("frequency") or 1)
        period = float(repeat.get("period") or 1)
        days = _PERIOD_DAYS.get(str(repeat.get("periodUnit") or "d"))
        if days is None or period <= 0:
            return None
        return freq / (period * days)
    code = (timing.get("code") or {}).get("coding") or []
    for c in code:
        if str(c.get("code")).upper() in _TIMING_CODES:
            return float(_TIMING_CODES[str(c["code"]).upper()])
    if isinstance(repeat, dict) and repeat.get("timeOfDay"):
        return float(len(repeat["timeOfDay"]))
    return 1.0


def _schedule_rows(intervals: list[_Interval]) -> list[tuple[_Interval, dt.date, float, float]]:
    """Schedule rows of one drug: (the interval behind the row, start date, mg/day, mg/kg/day).

    At each date the dose in force is that of the orders started most recently and still running
    (orders of one drug starting the same day add up: two administrations, morning and evening);
    an open-ended order runs until the next order of the drug starts. A row is written at every
    order's start and wherever the dose changes, so a stop is a row with dose 0 the day after the
    last day unless the drug continues then.
    """
    ivs = sorted(intervals, key=lambda iv: iv.start)
    starts = sorted({iv.start for iv in ivs})
    ends: dict[int, dt.date | None] = {}
    for iv in ivs:
        if iv.end is not None:
            ends[id(iv)] = iv.end + dt.timedelta(days=1)
        else:
            ends[id(iv)] = next((s for s in starts if s > iv.start), None)
    points = sorted(set(starts) | {e for e in ends.values() if e is not None})
    rows: list[tuple[_Interval, dt.date, float, float]] = []
    prev: tuple[float, float] | None = None
    start_set = set(starts)
    for t in points:
        active = [iv for iv in ivs if iv.start <= t and ((end := ends[id(iv)]) is None or t < end)]
        if active:
            latest = max(iv.start for iv in active)
            current = [iv for iv in active if iv.start == latest]
            dose = (sum(iv.mg for iv in current), sum(iv.per_kg for iv in current))
            owner = current[0]
        else:
            dose = (0.0, 0.0)
            owner = max((iv for iv in ivs if ends[id(iv)] == t), key=lambda iv: iv.start, default=ivs[0])
        if t in start_set or dose != prev:
            rows.append((owner, t, dose[0], dose[1]))
        prev = dose
    return rows
