"""Steroid taper planner: propose a schedule, check it with the engine, save or discard it.

The arithmetic (``propose_taper``) turns today's dose into dated plan rows, by a fixed step in mg,
by a percentage of the previous dose, or by a target end date, every ``interval_days``. Every
planned dose is a sum of whole tablets of the strengths in the local formulary
(``monitoring/formulary.toml``, a local default, not a clinical rule), never above the previous
dose, and the last row is 0 mg (stop).

Whether a plan is long enough is not decided here: ``check_plan`` builds the patient's record with
the plan rows in place of any saved plan and asks the engine (``monitoring.steroids.analyse_course``
for the taper length, ``monitoring.rules.evaluate`` for PREMATURE_TAPER), so the planner and the
alerts can never disagree.

Saving writes the plan as future medication rows in one transaction with an audit entry per row;
discarding hides the future rows with the reason 'plan discarded' (never deletes them).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import TypeGuard

from sqlalchemy import select
from sqlmodel import Session, col

from monitoring import audit
from monitoring.drugs import PREDNISONE_EQUIVALENCE, normalise_drug, steroid_factor
from monitoring.guideline import GuidelineProfile, Threshold, load_profile
from monitoring.models import MedicationRow, utcnow
from monitoring.records import DoseRow, PatientRecord, load_record
from monitoring.rules import Alert, evaluate
from monitoring.steroids import CourseInfo, analyse_course
from monitoring.store import touch_patient

FORMULARY_PATH = Path(__file__).with_name("formulary.toml")
FORMULARY_ENV = "DRESS_FORMULARY"
FORMULARY_BASIS = "local formulary default (monitoring/formulary.toml): edit to match your pharmacy"

# Hundredths of a milligram: tablet strengths such as 0.5 mg become exact integers.
_CENTI = 100
MAX_DOSE_MG = 2000.0  # above any oral or pulse daily dose; a larger number is a unit mistake
MAX_STEPS = 400


class TaperError(ValueError):
    """A plan cannot be made from these inputs; the message says which input and why."""


# --------------------------------------------------------------------------------------------
# Formulary: tablet strengths and what can be dispensed


@dataclass(frozen=True)
class Tablets:
    """The tablet strengths of one drug, the doses they can make without splitting, and the
    drug's dose ladder: the daily doses a prescriber writes on a taper (60, 50, 40, 30, 25, 20, 15,
    10, 7.5, 5, 2.5 mg of prednisone; above the top rung, every ``ladder_step_above_mg``)."""

    drug: str
    sizes_mg: tuple[float, ...]
    ladder_mg: tuple[float, ...] = ()
    ladder_step_above_mg: float | None = None

    def __post_init__(self) -> None:
        if not self.sizes_mg or any(s <= 0 or not math.isfinite(s) for s in self.sizes_mg):
            raise TaperError(f"formulary: {self.drug}: tablet strengths must be positive numbers, got {self.sizes_mg}")
        if any(r <= 0 or not math.isfinite(r) for r in self.ladder_mg):
            raise TaperError(f"formulary: {self.drug}: ladder doses must be positive numbers, got {self.ladder_mg}")
        step = self.ladder_step_above_mg
        if step is not None and (step <= 0 or not math.isfinite(step) or not self.ladder_mg):
            raise TaperError(f"formulary: {self.drug}: ladder_step_above_mg must be a positive number, with a ladder_mg")

    def ladder_at_or_below(self, dose_mg: float) -> list[float]:
        """The rungs of the dose ladder from 0 up to ``dose_mg`` that whole tablets can make,
        ascending, 0 (stop) first; without a ladder, every dispensable dose."""
        if not self.ladder_mg:
            return self.dispensable_at_or_below(dose_mg)
        rungs = {0.0, *(r for r in self.ladder_mg if r <= dose_mg + 1e-9)}
        if self.ladder_step_above_mg:
            top = max(self.ladder_mg)
            k = 1
            while top + k * self.ladder_step_above_mg <= dose_mg + 1e-9:
                rungs.add(round(top + k * self.ladder_step_above_mg, 4))
                k += 1
        return sorted(r for r in rungs if self.is_dispensable(r))

    @property
    def _sizes_c(self) -> tuple[int, ...]:
        return tuple(sorted({round(s * _CENTI) for s in self.sizes_mg}, reverse=True))

    @property
    def _quantum_c(self) -> int:
        return math.gcd(*self._sizes_c)

    def _fewest(self, max_c: int) -> list[int | None]:
        return _fewest_tablets(self._sizes_c, self._quantum_c, max_c)

    def dispensable_at_or_below(self, dose_mg: float) -> list[float]:
        """Every dose (mg) from 0 up to ``dose_mg`` that whole tablets can make, ascending."""
        max_c = math.floor(dose_mg * _CENTI + 1e-6)
        q = self._quantum_c
        table = self._fewest(max_c)
        return [i * q / _CENTI for i, n in enumerate(table) if n is not None and i * q <= max_c]

    def is_dispensable(self, dose_mg: float) -> bool:
        c = round(dose_mg * _CENTI)
        if abs(dose_mg * _CENTI - c) > 1e-6 or c < 0 or c % self._quantum_c:
            return False
        return self._fewest(c)[c // self._quantum_c] is not None

    def breakdown(self, dose_mg: float) -> tuple[tuple[float, int], ...]:
        """Fewest whole tablets making ``dose_mg``: ((strength mg, count), ...), largest first."""
        if not self.is_dispensable(dose_mg):
            raise TaperError(f"{_mg(dose_mg)} mg of {self.drug} cannot be made from {self.describe()} tablets")
        c = round(dose_mg * _CENTI)
        q = self._quantum_c
        table = self._fewest(c)
        counts: dict[int, int] = {}
        i = c // q
        while i > 0:
            fewest = table[i]
            assert fewest is not None  # dispensable (checked above), and each step goes to a dose that is
            for s in self._sizes_c:
                j = i - s // q
                if j >= 0 and table[j] is not None and table[j] == fewest - 1:
                    counts[s] = counts.get(s, 0) + 1
                    i = j
                    break
        return tuple((s / _CENTI, n) for s, n in sorted(counts.items(), reverse=True))

    def describe(self) -> str:
        return ", ".join(f"{_mg(s)} mg" for s in sorted(self.sizes_mg))

    def describe_ladder(self) -> str:
        """The ladder as the planner uses it (rungs the tablets can make), highest first."""
        if not self.ladder_mg:
            return "none: any dose the tablets can make"
        rungs = [r for r in sorted(self.ladder_mg, reverse=True) if self.is_dispensable(r)]
        above = f" (above {_mg(max(self.ladder_mg))} mg, steps of {_mg(self.ladder_step_above_mg)} mg)" if self.ladder_step_above_mg else ""
        return ", ".join(_mg(r) for r in rungs) + " mg" + above


@lru_cache(maxsize=64)
def _fewest_tablets(sizes_c: tuple[int, ...], quantum_c: int, max_c: int) -> list[int | None]:
    """Fewest tablets for each multiple of the quantum up to max_c (None: cannot be made)."""
    n = max_c // quantum_c + 1
    steps = [s // quantum_c for s in sizes_c]
    best: list[int | None] = [None] * n
    best[0] = 0
    for i in range(1, n):
        options = [b for s in steps if s <= i and (b := best[i - s]) is not None]
        if options:
            best[i] = min(options) + 1
    return best


def load_formulary(path: str | Path | None = None) -> dict[str, Tablets]:
    """Tablet strengths per drug from the formulary file (default: DRESS_FORMULARY, else the
    project's monitoring/formulary.toml)."""
    p = Path(path or os.environ.get(FORMULARY_ENV) or FORMULARY_PATH)
    return _load_formulary_cached(str(p.resolve()), p.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _load_formulary_cached(path: str, _mtime: int) -> dict[str, Tablets]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TaperError(f"formulary {path}: cannot be read: {exc}") from exc
    out: dict[str, Tablets] = {}
    for name, entry in data.items():
        sizes = entry.get("tablets_mg") if isinstance(entry, dict) else None
        if not _numbers(sizes):
            raise TaperError(f"formulary {path}: [{name}]: tablets_mg must be a list of numbers")
        ladder = entry.get("ladder_mg", [])
        if not _numbers(ladder):
            raise TaperError(f"formulary {path}: [{name}]: ladder_mg must be a list of numbers")
        above = entry.get("ladder_step_above_mg")
        if above is not None and not _numbers([above]):
            raise TaperError(f"formulary {path}: [{name}]: ladder_step_above_mg must be a number")
        drug = normalise_drug(name)
        out[drug] = Tablets(
            drug, tuple(float(s) for s in sizes), tuple(float(r) for r in ladder), float(above) if above is not None else None
        )
    return out


def _numbers(value: object) -> TypeGuard[list[float]]:
    return isinstance(value, list) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)


def plannable_drugs(formulary: dict[str, Tablets] | None = None) -> list[str]:
    """Systemic corticosteroids the formulary lists tablets for (prednisone first)."""
    f = formulary if formulary is not None else load_formulary()
    drugs = [d for d in f if d in PREDNISONE_EQUIVALENCE]
    return sorted(drugs, key=lambda d: (d != "prednisone", d))


# --------------------------------------------------------------------------------------------
# The schedule


@dataclass(frozen=True)
class TaperStep:
    """From ``date`` the daily dose is ``dose_mg`` of the plan's drug (0 = stop)."""

    date: dt.date
    dose_mg: float
    pred_eq_mg: float
    tablets: tuple[tuple[float, int], ...]

    @property
    def tablets_text(self) -> str:
        if self.dose_mg == 0:
            return "stop"
        return " + ".join(f"{n} × {_mg(s)} mg" for s, n in self.tablets)


@dataclass(frozen=True)
class TaperPlan:
    drug: str
    current_dose_mg: float
    first_date: dt.date
    interval_days: int
    method: str  # human description: "by 5 mg every 7 days"
    steps: tuple[TaperStep, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def stop_date(self) -> dt.date:
        return self.steps[-1].date

    @property
    def plan_days(self) -> int:
        """Days from the first planned reduction to the stop (the engine's taper length may be
        longer when the taper had already begun before the plan)."""
        return (self.stop_date - self.steps[0].date).days


def _mg(x: float) -> str:
    return f"{x:g}"


def _validate_common(drug: str, current_dose_mg: float, start_date: dt.date, interval_days: int) -> None:
    if not isinstance(current_dose_mg, int | float) or not math.isfinite(current_dose_mg):
        raise TaperError(f"current dose: value {current_dose_mg!r}: must be a number of mg/day")
    if current_dose_mg <= 0:
        raise TaperError(
            f"current dose: value '{_mg(current_dose_mg)}' mg/day of {drug}: the patient is not on {drug}, "
            "so there is nothing to taper (record the current dose first)"
        )
    if current_dose_mg > MAX_DOSE_MG:
        raise TaperError(f"current dose: value '{_mg(current_dose_mg)}' mg/day: above {_mg(MAX_DOSE_MG)} mg/day, check the unit")
    if not isinstance(interval_days, int) or isinstance(interval_days, bool) or interval_days < 1:
        raise TaperError(f"interval: value {interval_days!r}: must be a whole number of days, at least 1")
    if not isinstance(start_date, dt.date):
        raise TaperError(f"start date: value {start_date!r}: must be a date")


def propose_taper(
    *,
    drug: str,
    current_dose_mg: float,
    start_date: dt.date,
    interval_days: int,
    step_mg: float | None = None,
    step_pct: float | None = None,
    end_date: dt.date | None = None,
    formulary: dict[str, Tablets] | None = None,
) -> TaperPlan:
    """Propose a taper from ``current_dose_mg`` (mg/day of ``drug``), first reduction on
    ``start_date``, one reduction every ``interval_days``, ending with a row of 0 mg (stop).

    Exactly one of:
    - ``step_mg``: each reduction takes this many mg off the previous dose;
    - ``step_pct``: each reduction takes this percentage of the previous dose (as in the DRESSCODE
      trial's 15–25 % every 15 days, CLINICAL_REFERENCE.md §4);
    - ``end_date``: the dose falls in about equal steps to 0, one reduction every whole
      ``interval_days``; when the target date is not a whole number of intervals after the first
      reduction, the stop moves to the next whole interval after it (never earlier: a taper is
      never made shorter than asked) and a note says so.

    By % and to an end date, each dose is a rung of the drug's dose ladder in the formulary (the
    doses prescribers write: 60, 50, 40, 30, 25, 20, 15, 10, 7.5, 5, 2.5 mg of prednisone, as its
    tablets allow), nearest to the arithmetic target (ties to the lower), never above the previous
    one. By mg, each dose is the previous minus the step, rounded to what whole tablets can make.
    When rounding would leave the dose unchanged the reduction goes to the next lower rung, so the
    plan always reaches zero.
    """
    drug_n = normalise_drug(drug)
    f = formulary if formulary is not None else load_formulary()
    if drug_n not in PREDNISONE_EQUIVALENCE:
        raise TaperError(f"drug: value '{drug}': not a systemic corticosteroid this planner knows ({', '.join(PREDNISONE_EQUIVALENCE)})")
    if drug_n not in f:
        raise TaperError(f"drug: value '{drug}': no tablet strengths in the formulary; add [{drug_n}] to {FORMULARY_PATH.name}")
    _validate_common(drug_n, current_dose_mg, start_date, interval_days)
    chosen = [name for name, v in (("step_mg", step_mg), ("step_pct", step_pct), ("end_date", end_date)) if v is not None]
    if len(chosen) != 1:
        raise TaperError("choose exactly one of: a step in mg, a step in %, or a target end date")
    tablets = f[drug_n]
    levels = tablets.dispensable_at_or_below(current_dose_mg)
    rungs = tablets.ladder_at_or_below(current_dose_mg)
    notes: list[str] = []
    if not tablets.is_dispensable(current_dose_mg):
        notes.append(
            f"today's {_mg(current_dose_mg)} mg cannot be made from {tablets.describe()} tablets; "
            "the plan starts from the nearest dose that can"
        )

    targets: list[tuple[dt.date, float]] = []
    if step_mg is not None:
        if not math.isfinite(step_mg) or step_mg <= 0:
            raise TaperError(f"step: value '{step_mg}' mg: must be more than 0 mg")
        if step_mg > current_dose_mg:
            notes.append(f"a step of {_mg(step_mg)} mg is more than today's dose: this plan is an abrupt stop")
        method = f"by {_mg(step_mg)} mg every {interval_days} days"
        targets = _stepwise(current_dose_mg, start_date, interval_days, levels, lambda prev: prev - step_mg)
    elif step_pct is not None:
        if not math.isfinite(step_pct) or not 0 < step_pct <= 100:
            raise TaperError(f"step: value '{step_pct}' %: must be more than 0 % and at most 100 %")
        method = f"by {_mg(step_pct)} % of the previous dose every {interval_days} days"
        targets = _stepwise(current_dose_mg, start_date, interval_days, rungs, lambda prev: prev * (1 - step_pct / 100))
    else:
        assert end_date is not None
        if not isinstance(end_date, dt.date) or end_date < start_date:
            raise TaperError(f"end date: value '{end_date}': must be on or after the first reduction ({start_date.isoformat()})")
        span = (end_date - start_date).days
        n = math.ceil(span / interval_days)  # whole intervals between the first reduction and the stop
        stop = start_date + dt.timedelta(days=n * interval_days)
        method = f"to stop on {stop.isoformat()}, every {interval_days} days"
        if stop != end_date:
            notes.append(
                f"the stop is on {stop.isoformat()}, not {end_date.isoformat()}: {span} days is not a whole number of "
                f"{interval_days}-day steps, and the taper is never made shorter than asked"
            )
        targets = _ladder_to_stop(current_dose_mg, start_date, interval_days, n, rungs)
        if n and len(targets) < n + 1:
            notes.append(
                "some doses are held for more than one step: the dose ladder and the tablet strengths have "
                "fewer doses below today's than the plan has steps"
            )

    if not targets or targets[-1][1] != 0:
        raise TaperError("internal: the plan does not reach zero")  # guarded by construction
    steps = tuple(
        TaperStep(
            date=day,
            dose_mg=dose,
            pred_eq_mg=round(dose * PREDNISONE_EQUIVALENCE[drug_n], 4),
            tablets=tablets.breakdown(dose) if dose else (),
        )
        for day, dose in targets
    )
    return TaperPlan(
        drug=drug_n,
        current_dose_mg=float(current_dose_mg),
        first_date=start_date,
        interval_days=interval_days,
        method=method,
        steps=steps,
        notes=tuple(notes),
    )


def _round_not_above(target: float, prev: float, levels: list[float], *, force_lower: bool) -> float:
    """Nearest dispensable dose to ``target`` (ties to the lower), never above ``prev``; with
    ``force_lower`` strictly below ``prev`` (so a step always changes the dose)."""
    if target <= 0 and (not levels or levels[0] == 0):
        return 0.0
    allowed = [lv for lv in levels if lv < prev - 1e-9] if force_lower else [lv for lv in levels if lv <= prev + 1e-9]
    if not allowed:
        return 0.0
    best = min(allowed, key=lambda lv: (abs(lv - target), lv))
    return best


def _ladder_to_stop(
    current: float, start: dt.date, interval: int, n: int, rungs: list[float]
) -> list[tuple[dt.date, float]]:
    """``n`` reductions every ``interval`` days from ``start``, then the stop on step ``n``.

    The doses are rungs below today's dose chosen evenly along the ladder (not along the mg
    scale), so the plan keeps the ladder's shape: larger mg steps at high doses, smaller ones near
    the end, where relapse is likeliest. With fewer rungs than steps, each rung is held for more
    than one step."""
    below = sorted((r for r in rungs if 0 < r < current - 1e-9), reverse=True)
    stop = start + dt.timedelta(days=n * interval)
    if n == 0 or not below:
        return [(stop, 0.0)]
    m = len(below)
    if m >= n:
        picks = [below[round(i * (m - 1) / (n - 1))] for i in range(n)] if n > 1 else [below[(m - 1) // 2]]
        out = [(start + dt.timedelta(days=k * interval), dose) for k, dose in enumerate(picks)]
    else:
        out = [(start + dt.timedelta(days=(j * n // m) * interval), dose) for j, dose in enumerate(below)]
    return [*out, (stop, 0.0)]


def _stepwise(
    current: float, start: dt.date, interval: int, levels: list[float], next_target: Callable[[float], float]
) -> list[tuple[dt.date, float]]:
    out: list[tuple[dt.date, float]] = []
    prev = current
    day = start
    while prev > 0:
        if len(out) >= MAX_STEPS:
            raise TaperError(f"the plan would need more than {MAX_STEPS} reductions: choose a larger step")
        dose = _round_not_above(next_target(prev), prev, levels, force_lower=True)
        out.append((day, dose))
        prev = dose
        day = day + dt.timedelta(days=interval)
    return out


# --------------------------------------------------------------------------------------------
# The plan against the patient's record: the engine decides (monitoring.steroids, monitoring.rules)


PLAN_DISCARDED = "plan discarded"
PLAN_REPLACED = "plan discarded: replaced by a new taper plan"
PLAN_ROUTE = "oral"


def is_plan_steroid_row(row: DoseRow, as_of: dt.date) -> bool:
    """A systemic corticosteroid row dated after ``as_of``: part of the saved plan (PRODUCT.md §3:
    rows after today are the plan)."""
    return row.start_date > as_of and steroid_factor(row.drug, row.route, row.drug_as_entered) is not None


def saved_plan(record: PatientRecord, as_of: dt.date) -> tuple[DoseRow, ...]:
    """The steroid rows of the saved plan (visible rows dated after ``as_of``)."""
    return tuple(m for m in record.meds if is_plan_steroid_row(m, as_of))


def current_steroid_doses(record: PatientRecord, as_of: dt.date) -> dict[str, float]:
    """mg/day of each systemic corticosteroid given on ``as_of`` (drug -> mg of that drug)."""
    latest: dict[str, float] = {}
    for m in record.meds:  # sorted by (start_date, id): the last row on or before as_of holds
        if m.start_date <= as_of and steroid_factor(m.drug, m.route, m.drug_as_entered) is not None:
            latest[normalise_drug(m.drug)] = m.daily_dose_mg
    return {d: mg for d, mg in latest.items() if mg > 0}


def default_plan_drug(record: PatientRecord, as_of: dt.date, drugs: list[str]) -> str:
    """The drug a plan starts from: the steroid the patient is on today (the largest by
    prednisone-equivalent dose when several), else the last one given, else the first plannable
    drug. Planning another drug would be a switch (issue 18: a patient on prednisolone was offered
    prednisone, and saving stopped the prednisolone)."""
    if not drugs:
        raise TaperError("formulary: no systemic corticosteroid has tablet strengths")
    on_now = {d: mg * PREDNISONE_EQUIVALENCE[d] for d, mg in current_steroid_doses(record, as_of).items() if d in drugs}
    if on_now:
        return max(sorted(on_now), key=lambda d: on_now[d])
    for m in reversed(record.meds):  # sorted by (start_date, id): the last steroid given
        drug = normalise_drug(m.drug)
        if m.start_date <= as_of and drug in drugs and steroid_factor(m.drug, m.route, m.drug_as_entered) is not None:
            return drug
    return drugs[0]


def planning_dose(record: PatientRecord, as_of: dt.date, drug: str) -> float:
    """Today's dose expressed in mg/day of ``drug``: the patient's own dose of that drug when it is
    the only steroid given, else the total prednisone-equivalent dose converted to it."""
    drug_n = normalise_drug(drug)
    current = current_steroid_doses(record, as_of)
    if set(current) == {drug_n}:
        return current[drug_n]
    total = analyse_course(record, as_of).current_pred_eq_mg
    factor = PREDNISONE_EQUIVALENCE.get(drug_n)
    if factor is None:
        raise TaperError(f"drug: value '{drug}': not a systemic corticosteroid")
    return round(total / factor, 4)


def plan_dose_rows(record: PatientRecord, plan: TaperPlan, as_of: dt.date) -> list[DoseRow]:
    """The rows a plan adds: one per step, plus a stop (0 mg) on the first step's date for any
    other steroid given today (a switch is two rows on one date, PRODUCT.md §6)."""
    if plan.first_date <= as_of:
        raise TaperError(
            f"start date: value '{plan.first_date.isoformat()}': the first reduction must be after today "
            f"({as_of.isoformat()}); rows dated today or earlier are doses given, not a plan"
        )
    rows: list[DoseRow] = []
    next_id = -1  # not stored yet: negative ids never collide with database ids
    for other in sorted(current_steroid_doses(record, as_of)):
        if other != plan.drug:
            rows.append(DoseRow(next_id, other, plan.first_date, 0.0, PLAN_ROUTE, "0", "mg", "manual", other))
            next_id -= 1
    for s in plan.steps:
        rows.append(DoseRow(next_id, plan.drug, s.date, s.dose_mg, PLAN_ROUTE, _mg(s.dose_mg), "mg", "manual", plan.drug))
        next_id -= 1
    return rows


def candidate_record(record: PatientRecord, plan: TaperPlan, as_of: dt.date) -> PatientRecord:
    """The record as it would be with this plan saved in place of any saved plan."""
    kept = [m for m in record.meds if not is_plan_steroid_row(m, as_of)]
    meds = sorted([*kept, *plan_dose_rows(record, plan, as_of)], key=lambda m: (m.start_date, m.id > 0, abs(m.id)))
    return replace(record, meds=tuple(meds))


@dataclass(frozen=True)
class PlanCheck:
    """What the engine says of the patient's course with the plan in place."""

    course: CourseInfo  # taper start, stop and taper length on the schedule with the plan
    min_taper: Threshold  # the guideline's minimum taper length, with its label and source
    premature_taper: Alert | None  # PREMATURE_TAPER as monitoring.rules raises it, or None
    alerts: tuple[Alert, ...]  # every alert for the record with the plan, as of today

    @property
    def taper_days(self) -> int | None:
        return self.course.taper_days

    @property
    def premature(self) -> bool:
        return self.premature_taper is not None


def check_plan(
    record: PatientRecord, plan: TaperPlan | None, as_of: dt.date, profile: GuidelineProfile | None = None
) -> PlanCheck:
    """Ask the engine about the course with ``plan`` (None: the record as stored)."""
    prof = profile or load_profile()
    rec = candidate_record(record, plan, as_of) if plan is not None else record
    alerts = tuple(evaluate(rec, as_of, prof))
    premature = next((a for a in alerts if a.code == "PREMATURE_TAPER"), None)
    return PlanCheck(
        course=analyse_course(rec, as_of),
        min_taper=prof.threshold("min_taper_days"),
        premature_taper=premature,
        alerts=alerts,
    )


# --------------------------------------------------------------------------------------------
# Saving and discarding (through monitoring.services: validation, audit entry per row)


@dataclass
class SaveResult:
    created: int = 0
    amended: int = 0
    restored: int = 0
    unchanged: int = 0
    hidden: int = 0


def _rows_at(session: Session, patient_id: int) -> dict[tuple[str, dt.date], MedicationRow]:
    rows = session.execute(select(MedicationRow).where(col(MedicationRow.patient_id) == patient_id)).scalars()
    return {(r.drug, r.start_date): r for r in rows}


def save_plan(
    session: Session, *, username: str, mrn: str, plan: TaperPlan, as_of: dt.date
) -> SaveResult:
    """Store ``plan`` as the patient's plan in the caller's transaction (one commit saves it all).

    Rows of a previously saved plan that the new plan does not repeat are hidden with the reason
    'plan discarded: replaced by a new taper plan' (editing a plan = discard + save new). A plan
    row that falls on a stored row of the same drug and date (the unique key) amends it, or brings
    back a discarded one with the new dose; each change has its audit entry.
    """
    from monitoring import services

    record = load_record(session, mrn)
    new_rows = plan_dose_rows(record, plan, as_of)
    wanted = {(r.drug, r.start_date): r for r in new_rows}
    result = SaveResult()
    for old in saved_plan(record, as_of):
        key = (normalise_drug(old.drug), old.start_date)
        if key not in wanted:
            services.hide_record(session, username=username, entity="medication_row", record_id=old.id, reason=PLAN_REPLACED)
            result.hidden += 1
    stored = _rows_at(session, record.patient.id)
    for key, row in wanted.items():
        existing = stored.get(key)
        if existing is None:
            services.add_dose_change(
                session, username=username, mrn=mrn, drug=row.drug, start_date=row.start_date,
                dose=row.daily_dose_mg, unit="mg", route=row.route,
            )
            result.created += 1
        elif existing.hidden:
            _restore(session, existing, row, username)
            result.restored += 1
        elif abs(existing.daily_dose_mg - row.daily_dose_mg) > 1e-9:
            services.amend_dose(
                session, username=username, med_id=existing.id or 0, dose=row.daily_dose_mg, unit="mg",
                reason="taper plan edited",
            )
            result.amended += 1
        else:
            result.unchanged += 1
    session.flush()
    return result


def _restore(session: Session, row: MedicationRow, new: DoseRow, username: str) -> None:
    """Bring back a discarded plan row at the same drug and date with the new plan's dose: the
    unique (patient, drug, start date) key forbids a second row, and nothing is ever deleted."""
    from monitoring.audit import UNHIDE

    before = {"hidden": True, "hidden_reason": row.hidden_reason, "daily_dose_mg": row.daily_dose_mg,
              "dose_as_entered": row.dose_as_entered, "unit_as_entered": row.unit_as_entered, "route": row.route}
    row.hidden = False
    row.hidden_reason = None
    if abs(row.daily_dose_mg - new.daily_dose_mg) > 1e-9 or row.unit_as_entered != "mg":
        row.amended_at = utcnow()
    row.daily_dose_mg = new.daily_dose_mg
    row.dose_as_entered = new.dose_as_entered
    row.unit_as_entered = "mg"
    row.route = new.route
    session.add(row)
    audit.record(
        session,
        username=username,
        action=UNHIDE,
        entity="medication_row",
        entity_id=str(row.id),
        patient_id=row.patient_id,
        before=before,
        after={"hidden": False, "daily_dose_mg": row.daily_dose_mg, "dose_as_entered": row.dose_as_entered,
               "unit_as_entered": "mg", "route": row.route},
        reason="taper plan saved: a discarded plan row on the same drug and date takes the new dose",
    )
    touch_patient(session, row.patient_id)


def discard_plan(session: Session, *, username: str, mrn: str, as_of: dt.date, reason: str = PLAN_DISCARDED) -> int:
    """Hide every row of the saved plan (never deleted); returns how many were hidden."""
    from monitoring import services

    record = load_record(session, mrn)
    rows = saved_plan(record, as_of)
    for m in rows:
        services.hide_record(session, username=username, entity="medication_row", record_id=m.id, reason=reason)
    session.flush()
    return len(rows)
