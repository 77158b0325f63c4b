"""Drug exposure: each drug's given periods on the schedule, for the timeline's exposure bars.

A schedule row holds from its start date until the next row of the same drug; dose 0 is stopped
(PRODUCT.md §3). A period runs from a row with dose > 0 after none (or a stop) to the first row of
that drug with dose 0 (the first day not given), or has no recorded stop. Rows after the as-of date
are the plan. Whether a drug is a culprit or cross-reacts with one is asked of the one rule
(monitoring.rules.culprit_reason, the resolver RECHALLENGE uses), so the bar marked culprit is the
drug the rechallenge alert would name.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from monitoring.drugs import normalise_drug
from monitoring.rules import culprit_reason
from monitoring.steroids import dose_above

if TYPE_CHECKING:
    from monitoring.records import DoseRow, PatientRecord

__all__ = ["Period", "Exposure", "drug_exposures"]


@dataclass(frozen=True)
class Period:
    """Given from ``start`` up to (not including) ``stop``; ``stop`` None: no stop recorded."""

    start: dt.date
    stop: dt.date | None
    daily_mg: float  # the dose at the start of the period (as stored, mg/day)


@dataclass(frozen=True)
class Exposure:
    drug: str  # the drug as stored (generic name)
    label: str  # 'Tegretol (carbamazepine)' when entered under another name, else the drug
    periods: tuple[Period, ...]
    culprit: str | None  # why it is a culprit or cross-reacts with one (monitoring.rules.culprit_reason)


def _label(m: DoseRow) -> str:
    written = (m.drug_as_entered or "").strip()
    return f"{written} ({m.drug})" if written and written.lower() != m.drug.lower() else m.drug


def drug_exposures(record: PatientRecord) -> tuple[Exposure, ...]:
    """Every drug on the schedule with its given periods (plan included), culprits and
    cross-reacting drugs first, then by first start; a drug never given (only dose-0 rows) has no bar."""
    culprits = record.patient.culprit_drugs
    rows: dict[str, list[DoseRow]] = {}
    for m in record.meds:  # by (start_date, id)
        rows.setdefault(normalise_drug(m.drug), []).append(m)
    out: list[Exposure] = []
    for drug_rows in rows.values():
        periods: list[Period] = []
        start: DoseRow | None = None
        for m in drug_rows:
            on = dose_above(m.daily_dose_mg, 0.0)
            if on and start is None:
                start = m
            elif not on and start is not None:  # one row per drug and date: the stop is after the start
                periods.append(Period(start.start_date, m.start_date, start.daily_dose_mg))
                start = None
        if start is not None:
            periods.append(Period(start.start_date, None, start.daily_dose_mg))
        if not periods:
            continue
        why = None
        if culprits:
            why = next((r for r in (culprit_reason(m, culprits) for m in drug_rows) if r), None)
        first = drug_rows[0]
        out.append(Exposure(first.drug, _label(first), tuple(periods), why))
    out.sort(key=lambda e: (e.culprit is None, e.periods[0].start, e.drug))
    return tuple(out)
