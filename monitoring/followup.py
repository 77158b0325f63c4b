"""Clinic follow-up after DRESS: patch-test date, sequelae checklist, viral PCR over time.

- Patch test: the earliest date and both of its reasons come from the engine
  (``monitoring.summary.patch_test_earliest``); this module adds what is still unknown, in words.
- Sequelae checklist (thyroid and glucose checks after resolution): the schedule lives in
  ``monitoring/followup.toml`` with a source and a basis per check (CLINICAL_REFERENCE.md §5:
  monthly glucose, TSH and free T4 for 3 months after discharge, Cutis/MDedge; thyroid checks
  regularly for at least 2 years, Cutis 2018; the 3/6/12-month TFT schedule is UNCONFIRMED).
- Viral PCR (HHV-6, EBV, CMV) results in time order with the day since onset: HHV-6 reactivates
  2–3 weeks after onset, then EBV and CMV (CLINICAL_REFERENCE.md §5).
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from monitoring import display, limits
from monitoring.catalogue import PCR_TESTS, lookup
from monitoring.guideline import GuidelineProfile, load_profile
from monitoring.limits import Limit, pcr_detected
from monitoring.records import LabPoint, PatientRecord
from monitoring.steroids import last_day_above, pred_eq_changes
from monitoring.summary import add_months, patch_test_earliest

FOLLOWUP_PATH = Path(__file__).with_name("followup.toml")
FOLLOWUP_ENV = "DRESS_FOLLOWUP"
BASES = ("sourced", "default (UNCONFIRMED)", "design choice")
STATUSES = ("done", "overdue", "due", "upcoming")


class FollowupConfigError(ValueError):
    """The follow-up schedule file cannot be used; the message names the entry and field."""


# --------------------------------------------------------------------------------------------
# Patch test


@dataclass(frozen=True)
class PatchTestPlan:
    earliest: dt.date | None
    after_resolution: dt.date | None  # resolution + 6 calendar months
    after_steroids: dt.date | None  # last day above 10 mg prednisone-equivalent + 28 days
    reasons: tuple[str, ...]  # the engine's sentences, one per condition
    unknowns: tuple[str, ...]  # what must be recorded or planned before a date can be given
    source: str


def patch_test_plan(record: PatientRecord, profile: GuidelineProfile | None = None) -> PatchTestPlan:
    """Earliest patch-test date (PRODUCT.md §5), its two reasons and what is still unknown."""
    prof = profile or load_profile()
    info = patch_test_earliest(record, prof)
    unknowns: list[str] = []
    if record.patient.resolved_date is None:
        unknowns.append("Resolution date: not recorded. Record it on the patient's details when the reaction has resolved.")
    limit = prof.value("patch_test_steroid_mg")
    known, _ = last_day_above(pred_eq_changes(record.meds), limit)
    if not known:
        unknowns.append(
            f"Steroid washout: the schedule (plan included) never comes down to {limit:g} mg/day "
            "prednisone-equivalent or less. Plan the taper to fix the date."
        )
    return PatchTestPlan(
        earliest=_date(info["earliest"]),
        after_resolution=_date(info["after_resolution"]),
        after_steroids=_date(info["after_steroids"]),
        reasons=tuple(info["reasons"]),
        unknowns=tuple(unknowns),
        source=str(info.get("source") or ""),
    )


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


# --------------------------------------------------------------------------------------------
# Sequelae checklist


@dataclass(frozen=True)
class ScheduledCheck:
    test: str  # catalogue key
    month: int  # calendar months after resolution
    before_days: int
    after_days: int
    label: str
    source: str
    basis: str


@dataclass(frozen=True)
class ChecklistItem:
    check: ScheduledCheck
    due: dt.date
    window_start: dt.date
    window_end: dt.date
    status: str  # done | overdue | due | upcoming
    result: LabPoint | None  # the stored result that did it
    range: RangeCheck | None = None  # the result against its reference range (``range_check``)

    @property
    def test_label(self) -> str:
        return lookup(self.check.test).label

    @property
    def above_range(self) -> bool:
        return self.range is not None and self.range.above is True

    @property
    def outside_range(self) -> bool:
        """Decided above the upper or below the lower limit (the flag of the checklist)."""
        return self.range is not None and (self.range.above is True or self.range.below is True)

    @property
    def range_text(self) -> str:
        """'ABOVE RANGE (> 4.5 mIU/L, laboratory)', 'BELOW RANGE (< 0.4 mIU/L, laboratory)',
        'within range (0.4–4.5 mIU/L, laboratory)', 'not above 4.5 mIU/L (laboratory; no lower
        limit given)', or why nothing can be said; empty while no result did the check."""
        r, rc = self.result, self.range
        if r is None:
            return ""
        if rc is None or (rc.upper is None and rc.lower is None):
            return "no reference range given"

        def bound(limit: Limit) -> str:
            return f"{display.number(r.test, limit.value, r.unit)} {display.unit_label(r.unit)}"

        if rc.above is True and rc.upper is not None:
            return f"ABOVE RANGE (> {bound(rc.upper)}, {rc.upper.basis})"
        if rc.below is True and rc.lower is not None:
            return f"BELOW RANGE (< {bound(rc.lower)}, {rc.lower.basis})"
        if rc.upper is not None and rc.lower is not None and rc.above is False and rc.below is False:
            low, high = bound(rc.lower).split(" ", 1)[0], bound(rc.upper)
            return f"within range ({low}–{high}, {rc.upper.basis})"
        if rc.upper is not None and rc.above is False:
            return f"not above {bound(rc.upper)} ({rc.upper.basis}; no lower limit given)"
        if rc.lower is not None and rc.below is False and rc.upper is None:
            return f"not below {bound(rc.lower)} ({rc.lower.basis}; no upper limit given)"
        return "cannot be judged against the range (a text or censored result)"


@dataclass(frozen=True)
class RangeCheck:
    """A result against its reference range: ``upper`` the ULN in force (the laboratory's, else the
    profile's default), ``lower`` the laboratory's lower limit; ``above`` / ``below`` True or False
    when decided, None when the limit is unknown or a censored or text result cannot decide."""

    upper: Limit | None
    lower: Limit | None
    above: bool | None
    below: bool | None


def range_check(point: LabPoint, profile: GuidelineProfile) -> RangeCheck:
    """Is a follow-up result outside its reference range? Issue 18 point 5: a TSH of 5.2 then 6.4
    with the laboratory's ULN 4.5 must not read as done and fine; a suppressed TSH below the
    laboratory's lower limit must not read as "within range" either (Graves / hyperthyroid disease
    and painless thyroiditis follow DRESS: Tempark 2022 and the Asian SCAR sequelae survey,
    CLINICAL_REFERENCE.md §5). The lines and the comparison are monitoring.limits'
    (``uln_limit``: the row's ref_high, else the profile's default ULN; ``lln_limit``: the row's
    ref_low; ``Limit.judge``); a limit neither given nor defaulted is never made up."""
    try:
        upper: Limit | None = limits.uln_limit(profile, point)
    except KeyError:
        upper = None
    lower = limits.lln_limit(point)
    above = upper.judge(point) if upper is not None else None
    at_or_above_low = lower.judge(point) if lower is not None else None
    return RangeCheck(upper, lower, above, None if at_or_above_low is None else not at_or_above_low)


def load_followup_schedule(path: str | Path | None = None) -> tuple[ScheduledCheck, ...]:
    """The checks of the follow-up file (default DRESS_FOLLOWUP, else monitoring/followup.toml)."""
    p = Path(path or os.environ.get(FOLLOWUP_ENV) or FOLLOWUP_PATH)
    try:
        stamp = p.stat().st_mtime_ns
    except OSError as exc:
        raise FollowupConfigError(f"follow-up schedule {p}: cannot be read: {exc}") from exc
    return _load_schedule(str(p), stamp)


@lru_cache(maxsize=8)
def _load_schedule(path: str, _mtime: int) -> tuple[ScheduledCheck, ...]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FollowupConfigError(f"follow-up schedule {path}: cannot be read: {exc}") from exc
    problems: list[str] = []
    windows = data.get("windows", {})
    checks: list[ScheduledCheck] = []
    for i, entry in enumerate(data.get("check", []), start=1):
        where = f"follow-up schedule {path}: check {i}"
        test = entry.get("test")
        try:
            key = lookup(str(test)).key
        except Exception:  # noqa: BLE001 - any lookup failure is the same user error
            problems.append(f"{where}: test: value {test!r}: not a catalogue test")
            continue
        months = entry.get("months")
        if not isinstance(months, list) or not months or not all(isinstance(m, int) and 0 < m <= 120 for m in months):
            problems.append(f"{where}: months: value {months!r}: a list of whole months from 1 to 120")
            continue
        window = entry.get("window")
        before = windows.get(f"{window}_before_days")
        after = windows.get(f"{window}_after_days")
        if not isinstance(before, int) or not isinstance(after, int) or before < 0 or after < 0:
            problems.append(f"{where}: window: value {window!r}: [windows] needs whole {window}_before_days and {window}_after_days")
            continue
        basis = entry.get("basis")
        if basis not in BASES:
            problems.append(f"{where}: basis: value {basis!r}: one of {', '.join(BASES)}")
            continue
        for field_name in ("label", "source"):
            if not str(entry.get(field_name) or "").strip():
                problems.append(f"{where}: {field_name}: required")
        for m in months:
            checks.append(ScheduledCheck(key, m, before, after, str(entry.get("label")), str(entry.get("source")), basis))
    if problems:
        raise FollowupConfigError("\n".join(problems))
    checks.sort(key=lambda c: (c.month, c.test))
    return tuple(checks)


def sequelae_checklist(
    record: PatientRecord,
    as_of: dt.date,
    schedule: tuple[ScheduledCheck, ...] | None = None,
    profile: GuidelineProfile | None = None,
) -> list[ChecklistItem]:
    """Each scheduled check after the recorded resolution date with its status as of ``as_of``.

    A stored result of the check's test dated within its window marks it done (each result does
    one check at most: the earliest window it falls in), and is judged against its upper limit
    (``range_check``): done is not the same as normal. Empty while no resolution date is
    recorded: the schedule counts from it.
    """
    resolved = record.patient.resolved_date
    if resolved is None:
        return []
    checks = schedule if schedule is not None else load_followup_schedule()
    prof = profile or load_profile()
    used: set[int] = set()
    items: list[ChecklistItem] = []
    for c in sorted(checks, key=lambda c: (add_months(resolved, c.month), c.test)):
        due = add_months(resolved, c.month)
        start = due - dt.timedelta(days=c.before_days)
        end = due + dt.timedelta(days=c.after_days)
        match = next(
            (
                p
                for p in record.results(c.test, as_of)
                if p.id not in used and start <= p.taken_at.date() <= end and (p.value is not None or p.value_text)
            ),
            None,
        )
        if match is not None:
            used.add(match.id)
            status = "done"
        elif as_of > end:
            status = "overdue"
        elif as_of >= start:
            status = "due"
        else:
            status = "upcoming"
        items.append(ChecklistItem(c, due, start, end, status, match, range_check(match, prof) if match else None))
    return items


# --------------------------------------------------------------------------------------------
# Viral PCR over time


@dataclass(frozen=True)
class PcrResult:
    test: str
    label: str
    taken_at: dt.datetime
    day_since_onset: int | None
    detected: bool
    value: float | None  # copies/mL (canonical) when a number was given
    unit: str
    as_received: str  # value and unit as received
    lab_id: int


def viral_pcr_results(record: PatientRecord, as_of: dt.date) -> list[PcrResult]:
    """HHV-6, EBV and CMV PCR results counted as of ``as_of``, oldest first."""
    onset = record.patient.onset_date
    out: list[PcrResult] = []
    for test in PCR_TESTS:
        label = lookup(test).label
        for p in record.results(test, as_of):
            out.append(
                PcrResult(
                    test=test,
                    label=label,
                    taken_at=p.taken_at,
                    day_since_onset=(p.taken_at.date() - onset).days if onset else None,
                    detected=pcr_detected(p),  # the rules' one answer (monitoring.limits)
                    value=p.value,
                    unit=p.unit,
                    as_received=display.as_received(p.original_value, p.original_unit),
                    lab_id=p.id,
                )
            )
    out.sort(key=lambda r: (r.taken_at, r.lab_id))
    return out


def checklist_rows(items: list[ChecklistItem]) -> list[dict[str, Any]]:
    """Table rows for display and the report (status spelled out, never colour alone)."""
    rows = []
    for it in items:
        r = it.result
        rows.append(
            {
                "check": it.check.label,
                "test": it.test_label,
                "month": it.check.month,
                "due": it.due.isoformat(),
                "window": f"{it.window_start.isoformat()} to {it.window_end.isoformat()}",
                "status": it.status.upper(),
                "result": (
                    f"{display.as_received(r.original_value, r.original_unit)} on {r.taken_at.date().isoformat()}" if r else ""
                ),
                "range": it.range_text,
                "basis": it.check.basis,
                "source": it.check.source,
            }
        )
    return rows
