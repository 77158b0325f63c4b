"""Summary of a patient as of a date (PRODUCT.md §5 last paragraph; JSON keys of §6).

- day since onset (onset date is day 0);
- the steroid course: start, day of course, current prednisone-equivalent mg/day and mg/kg, and,
  on the schedule with the plan included, taper start, stop date, taper length in days;
- RegiSCAR score, category and which items were filled from data and which by hand;
- earliest patch-test date = the later of (recorded resolution date + 6 calendar months) and
  (last day with prednisone-equivalent dose > 10 mg, on the schedule with the plan, + 28 days);
  null while either is unknown. It is a planning answer: it uses the recorded resolution date and
  the plan even when they lie after the as-of date.

Source of the patch-test rule: DRESS treatment guideline summary (product requirement),
attributed to Phillips et al., JACI 2019;143:66 (UNCONFIRMED wording, CLINICAL_REFERENCE.md §6).
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from monitoring.guideline import GuidelineProfile, load_profile
from monitoring.records import PatientRecord
from monitoring.regiscar import score_regiscar
from monitoring.steroids import analyse_course, last_day_above, pred_eq_changes

__all__ = ["summarise", "patch_test_earliest", "add_months"]


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` plus calendar months; the day of month is clamped (31 August + 6 months = 28 or
    29 February)."""
    total = day.month - 1 + months
    year, month = day.year + total // 12, total % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def patch_test_earliest(record: PatientRecord, profile: GuidelineProfile | None = None) -> dict[str, Any]:
    """The earliest patch-test date with the reasons behind it (JSON-ready).

    Keys: earliest (ISO date or None), resolved_date, after_resolution, last_day_above_mg,
    after_steroids, reasons (sentences a clinician reads).
    """
    prof = profile or load_profile()
    months = prof.days("patch_test_months_after_resolution")
    limit = prof.value("patch_test_steroid_mg")
    days_off = prof.days("patch_test_days_off_steroid")
    reasons: list[str] = []

    resolved = record.patient.resolved_date
    after_resolution: dt.date | None = None
    if resolved is None:
        reasons.append("No resolution date recorded: the patch-test date is unknown until it is.")
    else:
        after_resolution = add_months(resolved, months)
        reasons.append(f"Resolution on {resolved.isoformat()} + {months} calendar months = {after_resolution.isoformat()}.")

    known, last_above = last_day_above(pred_eq_changes(record.meds), limit)
    after_steroids: dt.date | None = None
    steroid_known = known
    if not known:
        reasons.append(
            f"The steroid schedule (plan included) does not come down to {limit:g} mg/day prednisone-equivalent "
            "or less: plan the taper first."
        )
    elif last_above is None:
        reasons.append(f"No day above {limit:g} mg/day prednisone-equivalent on the schedule: no steroid wait.")
    else:
        after_steroids = last_above + dt.timedelta(days=days_off)
        reasons.append(
            f"Last day above {limit:g} mg/day prednisone-equivalent (plan included) is {last_above.isoformat()} "
            f"+ {days_off} days = {after_steroids.isoformat()}."
        )

    earliest: dt.date | None = None
    if after_resolution is not None and steroid_known:
        earliest = max(d for d in (after_resolution, after_steroids) if d is not None)
    return {
        "earliest": earliest.isoformat() if earliest else None,
        "resolved_date": resolved.isoformat() if resolved else None,
        "after_resolution": after_resolution.isoformat() if after_resolution else None,
        "last_day_above_mg": last_above.isoformat() if last_above else None,
        "steroid_threshold_mg": limit,
        "after_steroids": after_steroids.isoformat() if after_steroids else None,
        "reasons": reasons,
        "source": prof.threshold("patch_test_days_off_steroid").source,
    }


def summarise(record: PatientRecord, as_of: dt.date, profile: GuidelineProfile | None = None) -> dict[str, Any]:
    """The §5 summary as a JSON-ready dict (ISO date strings)."""
    prof = profile or load_profile()
    p = record.patient
    course = analyse_course(record, as_of)
    regiscar = score_regiscar(record, as_of, prof)
    patch = patch_test_earliest(record, prof)
    return {
        "mrn": p.mrn,
        "name": p.name,
        "synthetic": p.synthetic,
        "as_of": as_of.isoformat(),
        "onset_date": p.onset_date.isoformat() if p.onset_date else None,
        "day_since_onset": (as_of - p.onset_date).days if p.onset_date else None,
        "weight_kg": p.weight_kg,
        "culprit_drugs": list(p.culprit_drugs),
        "resolved_date": p.resolved_date.isoformat() if p.resolved_date else None,
        "steroid": course.as_dict(),
        "regiscar": regiscar.as_dict(),
        "patch_test_earliest": patch["earliest"],
        "patch_test": patch,
        "guideline_profile": prof.summary(),
    }
