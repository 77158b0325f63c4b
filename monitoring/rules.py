"""Alert rules of PRODUCT.md §5 (edition 2), evaluated as of a date D.

A result counts when the calendar date of its taken_at, as recorded, is on or before D (the time
of day never excludes it); the latest value is the last counted result (ties on time: the row
stored last). Medication rows after D are the plan and count only where §5 says so (taper, stop,
rechallenge).

Each rule is a small named function, one per alert code, returning its ``Alert`` or None; its
docstring names its source and ``RULES`` lists them in the order of the §5 table. Every number
comes from the guideline profile; every "is it beyond the line?" is monitoring.limits' one
comparison. An alert is data: what was found, what the guideline recommends, the evidence (each
quoted result with its row id, value, comparator, unit, date and age in days as of D) and the
source are fields, and the message is composed from them. Alerts are decision support, not a
diagnosis: every message says so.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from monitoring import display
from monitoring.catalogue import PCR_TESTS
from monitoring.drugs import cross_reacts, drugs_of_class, normalise_drug, resolve, steroid_factor
from monitoring.guideline import GuidelineProfile, load_profile
from monitoring.limits import (
    Baseline,
    Limit,
    baseline_creatinine,
    bsa_limit,
    cardiac_limit,
    comparator_of,
    eosinophil_limits,
    exceeds,
    ferritin_limits,
    fever_limit,
    hepatic_limits,
    is_exact,
    pcr_detected,
    renal_limit,
    uln,
    uln_limit,
)
from monitoring.records import DoseRow, LabPoint, PatientRecord
from monitoring.severity import SEVERITY_ORDER, Severity
from monitoring.steroids import CourseInfo, analyse_course, course_day_words, dose_above

__all__ = [
    "Alert",
    "RuleContext",
    "RULES",
    "SEVERITY_ORDER",
    "NOT_A_DIAGNOSIS",
    "MONITORED_TESTS",
    "evaluate",
    "evaluate_many",
    "lab_evidence",
    "dose_evidence",
    "culprit_reason",
]

NOT_A_DIAGNOSIS = "Decision support, not a diagnosis."

# LABS_OVERDUE: what the guideline asks to follow throughout treatment (liver enzymes, kidney
# function, blood count), one test each.
MONITORED_TESTS: tuple[str, ...] = ("alt", "creatinine", "eosinophils")

_ROW_TABLES = ("lab_result", "medication_row")


@dataclass(frozen=True)
class Alert:
    """One alert: what was found, what the guideline recommends, the evidence behind it and the
    source, as fields. ``message`` is composed from them and never parsed back."""

    code: str
    severity: Severity  # CDS Hooks indicator: info | warning | critical (a str)
    date: dt.date  # date of the finding (the triggering result or schedule event; as-of for composites)
    finding: str  # what was found: values, dates (and age when stale), units
    recommendation: str  # what the guideline recommends
    evidence: dict[str, Any]  # structured, JSON-ready; row ids make every number traceable
    source: str
    title: str = ""

    @property
    def message(self) -> str:
        return f"{self.finding} {self.recommendation} {NOT_A_DIAGNOSIS}"

    @cached_property
    def quoted(self) -> tuple[dict[str, Any], ...]:
        """Each result the alert quotes (lab rows of its evidence, each once, oldest first)."""
        seen: dict[int, dict[str, Any]] = {}
        for row in _rows_in(self.evidence):
            if row["table"] == "lab_result":
                seen.setdefault(row["row_id"], row)
        return tuple(sorted(seen.values(), key=lambda r: (r["taken_at"], r["row_id"])))

    @cached_property
    def row_ids(self) -> dict[str, tuple[int, ...]]:
        """The ids of the result and medication rows behind the alert, per table (alert episodes
        are keyed by patient and code with these ids: new evidence is a new id)."""
        ids: dict[str, set[int]] = {t: set() for t in _ROW_TABLES}
        for row in _rows_in(self.evidence):
            ids[row["table"]].add(row["row_id"])
        return {t: tuple(sorted(v)) for t, v in ids.items()}

    def to_dict(self) -> dict[str, Any]:
        """The ``alerts --json`` object (PRODUCT.md §6): code, severity, date, message, evidence,
        source, and the fields the message is composed from."""
        return {
            "code": self.code,
            "severity": str(self.severity),
            "date": self.date.isoformat(),
            "title": self.title,
            "message": self.message,
            "finding": self.finding,
            "recommendation": self.recommendation,
            "evidence": self.evidence,
            "source": self.source,
            "row_ids": {t: list(v) for t, v in self.row_ids.items()},
            "quoted": list(self.quoted),
        }


def _rows_in(value: Any) -> Iterator[dict[str, Any]]:
    """Every row reference (a dict with ``table`` and ``row_id``) nested in the evidence."""
    if isinstance(value, dict):
        if value.get("table") in _ROW_TABLES and isinstance(value.get("row_id"), int):
            yield value
        for v in value.values():
            yield from _rows_in(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _rows_in(v)


# --- comparisons and formatting -------------------------------------------------------------
# Every "is it beyond the line?" is monitoring.limits' one comparison (the engine's tolerance, the
# comparator of a censored result): a value exactly at a threshold is at it on every screen.


def _num(x: float) -> str:
    """A derived number (a multiple, a percentage, a dose): at most two decimals."""
    return format(round(x, 2), ".10g")


def _value(p: LabPoint, x: float) -> str:
    """A number of this result's test at the test's display precision, with its unit."""
    return display.quantity(p.test, x, p.unit)


def _when(p: LabPoint) -> str:
    t = p.taken_at
    return t.date().isoformat() if t.time() == dt.time(0) else t.isoformat(sep=" ", timespec="minutes")


def lab_evidence(p: LabPoint, as_of: dt.date) -> dict[str, Any]:
    """A quoted result: row id, value, comparator, unit, date and age in days as of D."""
    return {
        "row_id": p.id,
        "table": "lab_result",
        "test": p.test,
        "taken_at": p.taken_at.isoformat(),
        "date": p.taken_at.date().isoformat(),
        "age_days": (as_of - p.taken_at.date()).days,
        "value": p.value,
        "comparator": comparator_of(p),
        "unit": p.unit,
        "value_text": p.value_text,
        "original_value": p.original_value,
        "original_unit": p.original_unit,
        "ref_high": p.ref_high,
    }


def dose_evidence(m: DoseRow) -> dict[str, Any]:
    return {
        "row_id": m.id,
        "table": "medication_row",
        "drug": m.drug,
        "start_date": m.start_date.isoformat(),
        "daily_dose_mg": m.daily_dose_mg,
        "route": m.route,
        "drug_as_entered": m.drug_as_entered,
        "dose_as_entered": m.dose_as_entered,
        "unit_as_entered": m.unit_as_entered,
    }


def _threshold_evidence(profile: GuidelineProfile, *keys: str) -> dict[str, Any]:
    return {k: {"value": profile.value(k), "unit": profile.threshold(k).unit, "basis": profile.threshold(k).basis} for k in keys}


# --- evaluation context -----------------------------------------------------------------------


@dataclass
class RuleContext:
    """One patient as of one date under one profile; shared by the rules so that the course is
    analysed once and a rule can ask whether another holds (ICU criteria, relapse risk)."""

    record: PatientRecord
    as_of: dt.date
    profile: GuidelineProfile
    _memo: dict[str, Alert | None] = field(default_factory=dict)
    # The rules being evaluated (innermost last: ICU_CRITERIA asks the organ rules) and, per rule,
    # the censored results that could not decide one of its lines (PRODUCT.md §4: not counted,
    # and the alert's evidence says so), keyed by (row id, line) so each is named once.
    _running: list[str] = field(default_factory=list)
    _not_counted: dict[str, dict[tuple[int | None, str], dict[str, Any]]] = field(default_factory=dict)

    @cached_property
    def course(self) -> CourseInfo:
        return analyse_course(self.record, self.as_of)

    @cached_property
    def baseline(self) -> Baseline | None:
        return baseline_creatinine(self.record, self.as_of)

    def results(self, test: str) -> tuple[LabPoint, ...]:
        return self.record.results(test, self.as_of)

    def latest(self, test: str) -> LabPoint | None:
        return self.record.latest(test, self.as_of)

    def holds(self, code: str) -> Alert | None:
        if code not in self._memo:
            self._running.append(code)
            try:
                self._memo[code] = RULES[code](self)
            finally:
                self._running.pop()
        return self._memo[code]

    def beyond(self, p: LabPoint, limit: Limit) -> bool:
        """The result is beyond the line: monitoring.limits' one comparison, a decided yes only.
        A censored result that cannot decide it (``<0.05`` against a ULN of 0.04) is not counted,
        and the rule being evaluated names it in its evidence (``not_counted``)."""
        decision = limit.judge(p)
        if decision is None and p.shown_value is not None and self._running:
            notes = self._not_counted.setdefault(self._running[-1], {})
            notes.setdefault((p.id, f"{limit.key}:{limit.value!r}"), self._not_counted_entry(p, limit))
        return exceeds(decision)

    def _not_counted_entry(self, p: LabPoint, limit: Limit) -> dict[str, Any]:
        line = _value(p, limit.value)
        against = f"{limit.label} {line}" if limit.label and not line.startswith(limit.label) else line
        return {
            "row_id": p.id,  # traceable, but not a row the finding rests on (no 'table': not in row_ids)
            "test": p.test,
            "date": p.taken_at.date().isoformat(),
            "age_days": self.age(p),
            "value": p.shown_value,
            "comparator": comparator_of(p),
            "unit": p.unit,
            "line": limit.key,
            "limit": limit.value,
            "text": f"{self.show(p)}: undecidable against {against}, not counted",
        }

    def not_counted(self, code: str) -> tuple[dict[str, Any], ...]:
        """The censored results rule ``code`` could not decide, in the order it met them."""
        return tuple(self._not_counted.get(code, {}).values())

    def uln(self, p: LabPoint) -> tuple[float, bool]:
        u = uln(self.profile, p.test, p.ref_high)
        return u.value, u.is_default

    def age(self, p: LabPoint) -> int:
        """Age in days of a result as of D (calendar days)."""
        return (self.as_of - p.taken_at.date()).days

    def show(self, p: LabPoint) -> str:
        """'ALT 250 U/L on 2026-01-05 08:00', with the value as received when its unit differs, and
        '(N days old)' past the profile's stale_after_days (PRODUCT.md §5, age of the evidence)."""
        label = display.test_label(p.test)
        if p.shown_value is None:
            text = f"{label} {p.value_text or p.original_value} on {_when(p)}"
        else:
            text = f"{label} {display.quantity(p.test, p.shown_value, p.unit, comparator_of(p))}"
            if p.original_unit and p.original_unit != p.unit:
                text += f" (received {display.as_received(p.original_value, p.original_unit)})"
            text += f" on {_when(p)}"
        age = self.age(p)
        if age > self.profile.days("stale_after_days"):
            text += f" ({age} days old)"
        return text

    def quote(self, p: LabPoint) -> dict[str, Any]:
        return lab_evidence(p, self.as_of)

    def start_value(self, test: str, course_start: dt.date) -> LabPoint | None:
        """PRODUCT.md §5: the latest result taken on or before the course start date; if none,
        the first taken within the start-value window (days) after it."""
        counted = [p for p in self.results(test) if p.value is not None]
        before = [p for p in counted if p.taken_at.date() <= course_start]
        if before:
            return before[-1]
        window_end = course_start + dt.timedelta(days=self.profile.days("start_value_window_days"))
        for p in counted:
            if course_start < p.taken_at.date() <= window_end:
                return p
        return None

    def alert(
        self,
        code: str,
        severity: str,
        date: dt.date,
        finding: str,
        recommendation: str,
        evidence: dict[str, Any],
    ) -> Alert:
        definition = self.profile.alert(code)
        not_counted = self.not_counted(code)
        if not_counted:
            finding += " Not counted: " + "; ".join(n["text"] for n in not_counted) + "."
        evidence = {
            "as_of": self.as_of.isoformat(),
            **evidence,
            **({"not_counted": list(not_counted)} if not_counted else {}),
            "profile": self.profile.summary(),
        }
        return Alert(code, Severity(severity), date, finding, recommendation, evidence, definition.source, definition.title)


def _uln_text(uln_value: float, default: bool, p: LabPoint) -> str:
    return f"ULN {_value(p, uln_value)} ({'profile default: the laboratory gave none' if default else 'laboratory'})"


def _numeric(p: LabPoint | None) -> bool:
    return p is not None and p.value is not None


# --- rules ------------------------------------------------------------------------------------

RuleFn = Callable[[RuleContext], Alert | None]
RULES: dict[str, RuleFn] = {}


def rule(code: str) -> Callable[[RuleFn], RuleFn]:
    def register(fn: RuleFn) -> RuleFn:
        RULES[code] = fn
        return fn

    return register


def _organ_recommendation(profile: GuidelineProfile) -> str:
    lo, hi = profile.value("steroid_dose_min_mg_per_kg"), profile.value("steroid_dose_max_mg_per_kg")
    return (
        f"The guideline treats organ involvement with systemic corticosteroids (methylprednisolone "
        f"{_num(lo)}–{_num(hi)} mg/kg/day) and close monitoring of the organ concerned."
    )


@rule("HEPATIC_INVOLVEMENT")
def hepatic_involvement(ctx: RuleContext) -> Alert | None:
    """Latest ALT > 2 × ULN (ULN: the row's ref_high, else the profile default).

    Source: DRESS treatment guideline summary (product requirement); RegiSCAR liver definition,
    transaminases > 2 × ULN (Kardaun 2013 Appendix S1, via Devarbhavi & Raj, Liver Int 2019;39:802).
    """
    p = ctx.latest("alt")
    if p is None or p.shown_value is None:
        return None
    uln_line, limit = hepatic_limits(ctx.profile, p)
    if not ctx.beyond(p, limit) or p.value is None:
        return None
    multiple = ctx.profile.value("hepatic_alt_uln_multiple")
    default = uln_line.basis != "laboratory"
    return ctx.alert(
        "HEPATIC_INVOLVEMENT",
        "warning",
        p.taken_at.date(),
        f"Latest {ctx.show(p)} is above {_num(multiple)} × ULN = {_value(p, limit.value)} "
        f"({_uln_text(uln_line.value, default, p)}); {_num(p.value / uln_line.value)} × ULN.",
        _organ_recommendation(ctx.profile),
        {
            "latest": ctx.quote(p),
            "uln": uln_line.value,
            "uln_is_default": default,
            "limit": limit.value,
            "thresholds": _threshold_evidence(ctx.profile, "hepatic_alt_uln_multiple"),
        },
    )


@rule("RENAL_INVOLVEMENT")
def renal_involvement(ctx: RuleContext) -> Alert | None:
    """Latest creatinine > 1.5 × baseline (recorded baseline, else the lowest counted as of D).

    Source: DRESS treatment guideline summary (product requirement); KDIGO 2012 AKI
    (≥ 1.5 × baseline); the exact RegiSCAR wording is UNCONFIRMED (CLINICAL_REFERENCE.md §3).
    """
    p = ctx.latest("creatinine")
    base = ctx.baseline
    if p is None or p.shown_value is None or base is None:
        return None
    limit = renal_limit(ctx.profile, base)
    if not ctx.beyond(p, limit) or p.value is None:
        return None
    multiple = ctx.profile.value("renal_creatinine_baseline_multiple")
    base_text = (
        f"recorded baseline {_value(p, base.value)}"
        if base.row is None
        else f"baseline {_value(p, base.value)} = lowest creatinine so far ({ctx.show(base.row)}; no baseline recorded)"
    )
    return ctx.alert(
        "RENAL_INVOLVEMENT",
        "warning",
        p.taken_at.date(),
        f"Latest {ctx.show(p)} is above {_num(multiple)} × {base_text} = {_value(p, limit.value)} "
        f"({_num(p.value / base.value)} × baseline).",
        _organ_recommendation(ctx.profile) + " Review nephrotoxic drugs and fluid balance.",
        {
            "latest": ctx.quote(p),
            "baseline_mg_dl": base.value,
            "baseline_source": "recorded" if base.row is None else "lowest counted result",
            "baseline_row": ctx.quote(base.row) if base.row is not None else None,
            "limit": limit.value,
            "thresholds": _threshold_evidence(ctx.profile, "renal_creatinine_baseline_multiple"),
        },
    )


@rule("CARDIAC_INVOLVEMENT")
def cardiac_involvement(ctx: RuleContext) -> Alert | None:
    """Latest troponin T or I > its ULN (the row's ref_high, else the profile default).

    Source: PRODUCT.md §5; the assay's 99th-percentile URL (Aw et al., Sci Rep 2018;8:15409); no
    DRESS-specific troponin threshold exists (UNCONFIRMED, CLINICAL_REFERENCE.md §3).
    """
    found: list[tuple[LabPoint, Limit]] = []
    for test in ("troponin_t", "troponin_i"):
        p = ctx.latest(test)
        if p is None or p.shown_value is None:
            continue
        limit = cardiac_limit(ctx.profile, p)
        if ctx.beyond(p, limit):
            found.append((p, limit))
    if not found:
        return None
    text = "; ".join(
        f"Latest {ctx.show(p)} is above its {_uln_text(lim.value, lim.basis != 'laboratory', p)}" for p, lim in found
    )
    return ctx.alert(
        "CARDIAC_INVOLVEMENT",
        "critical",
        max(p.taken_at.date() for p, _ in found),
        text + ".",
        "Cardiac involvement in DRESS can be fatal: ECG, echocardiography and cardiology review; "
        "the guideline counts it as an ICU criterion.",
        {
            "results": [
                {**ctx.quote(p), "uln": lim.value, "uln_is_default": lim.basis != "laboratory"} for p, lim in found
            ],
        },
    )


@rule("EOSINOPHILIA")
def eosinophilia(ctx: RuleContext) -> Alert | None:
    """Latest eosinophils ≥ 1.5 ×10^9/L.

    Source: RegiSCAR (Kardaun 2007 BJD 156:609; Kardaun 2013 BJD 169:1071).
    """
    p = ctx.latest("eosinophils")
    limit = eosinophil_limits(ctx.profile)[1]
    if p is None or p.shown_value is None or not ctx.beyond(p, limit):
        return None
    return ctx.alert(
        "EOSINOPHILIA",
        "warning",
        p.taken_at.date(),
        f"Latest {ctx.show(p)} is at or above {_value(p, limit.value)}.",
        "Follow eosinophils with the organ tests; a rise during the taper can signal a flare.",
        {"latest": ctx.quote(p), "thresholds": _threshold_evidence(ctx.profile, "eosinophils_high")},
    )


@rule("FERRITIN_HIGH")
def ferritin_high(ctx: RuleContext) -> Alert | None:
    """Latest ferritin ≥ 500 ng/mL (warning); critical at ≥ 3000 ng/mL (consider HLH).

    Source: HLH-2004 ferritin ≥ 500 µg/L (Henter et al. 2007); > 3000 ng/mL concerning for HLH
    (Jordan et al., Blood 2011); no DRESS-specific cutoff (UNCONFIRMED, CLINICAL_REFERENCE.md §3).
    """
    p = ctx.latest("ferritin")
    high, critical = ferritin_limits(ctx.profile)
    if p is None or p.shown_value is None or not ctx.beyond(p, high):
        return None
    if ctx.beyond(p, critical):
        severity = "critical"
        finding = f"Latest {ctx.show(p)} is at or above {_value(p, critical.value)}."
        recommendation = (
            "Consider haemophagocytic lymphohistiocytosis (HLH): check the HLH-2004 criteria "
            "(cytopenias, triglycerides, fibrinogen, splenomegaly, sCD25) and seek haematology advice."
        )
    else:
        severity = "warning"
        finding = f"Latest {ctx.show(p)} is at or above {_value(p, high.value)}."
        recommendation = f"Repeat ferritin; a rise towards {_value(p, critical.value)} raises the question of HLH."
    return ctx.alert(
        "FERRITIN_HIGH",
        severity,
        p.taken_at.date(),
        finding,
        recommendation,
        {"latest": ctx.quote(p), "thresholds": _threshold_evidence(ctx.profile, "ferritin_high", "ferritin_critical")},
    )


@rule("POOR_PROGNOSIS")
def poor_prognosis(ctx: RuleContext) -> Alert | None:
    """The first creatinine counted as of D is elevated (> 1.5 × recorded baseline, or > ULN when
    none is recorded) and the first ferritin counted as of D is ≥ 500 ng/mL.

    Source: DRESS treatment guideline summary (product requirement), PRODUCT.md §5; the ferritin
    cutoff is not DRESS-specific (UNCONFIRMED, CLINICAL_REFERENCE.md §3; HLH-2004 ≥ 500 µg/L).
    """
    creat = next((p for p in ctx.results("creatinine") if p.value is not None), None)
    ferr = next((p for p in ctx.results("ferritin") if p.value is not None), None)
    if creat is None or ferr is None or creat.value is None or ferr.value is None:
        return None
    recorded = ctx.record.patient.baseline_creatinine_mg_dl
    if recorded is not None and recorded > 0:
        multiple = ctx.profile.value("renal_creatinine_baseline_multiple")
        creat_limit = renal_limit(ctx.profile, Baseline(float(recorded), None))
        creat_text = (
            f"above {_num(multiple)} × the recorded baseline {_value(creat, recorded)} = {_value(creat, creat_limit.value)}"
        )
        uln_info: dict[str, Any] = {"basis": "recorded baseline", "baseline_mg_dl": recorded, "limit": creat_limit.value}
    else:
        creat_limit = uln_limit(ctx.profile, creat, "critical")
        default = creat_limit.basis != "laboratory"
        creat_text = f"above the {_uln_text(creat_limit.value, default, creat)} (no baseline recorded)"
        uln_info = {"basis": "ULN", "uln": creat_limit.value, "uln_is_default": default, "limit": creat_limit.value}
    ferr_limit = Limit("poor_prognosis_ferritin", "", ctx.profile.value("poor_prognosis_ferritin"), True, "critical")
    if not (ctx.beyond(creat, creat_limit) and ctx.beyond(ferr, ferr_limit)):
        return None
    return ctx.alert(
        "POOR_PROGNOSIS",
        "critical",
        max(creat.taken_at.date(), ferr.taken_at.date()),
        f"First {ctx.show(creat)} is {creat_text}, and first {ctx.show(ferr)} is at or above {_value(ferr, ferr_limit.value)}.",
        "Markers of a severe course: monitor closely, consider early ICU review and second-line therapy.",
        {
            "first_creatinine": ctx.quote(creat),
            "creatinine_limit": uln_info,
            "first_ferritin": ctx.quote(ferr),
            "thresholds": _threshold_evidence(ctx.profile, "renal_creatinine_baseline_multiple", "poor_prognosis_ferritin"),
        },
    )


@rule("ICU_CRITERIA")
def icu_criteria(ctx: RuleContext) -> Alert | None:
    """Latest BSA % > 30, or CARDIAC_INVOLVEMENT holds, or two or more of HEPATIC/RENAL/CARDIAC
    involvement hold.

    Source: DRESS treatment guideline summary (product requirement), PRODUCT.md §5.
    """
    reasons: list[str] = []
    evidence: dict[str, Any] = {}
    bsa = ctx.latest("bsa_pct")
    if bsa is not None and bsa.shown_value is not None:
        limit = bsa_limit(ctx.profile)
        if ctx.beyond(bsa, limit):
            reasons.append(f"latest {ctx.show(bsa)}, above {_value(bsa, limit.value)}")
            evidence["bsa"] = ctx.quote(bsa)
    organs = {
        code: ctx.holds(code) for code in ("HEPATIC_INVOLVEMENT", "RENAL_INVOLVEMENT", "CARDIAC_INVOLVEMENT")
    }
    involved = [code for code, a in organs.items() if a is not None]
    min_organs = ctx.profile.days("icu_min_organs")
    if organs["CARDIAC_INVOLVEMENT"] is not None:
        reasons.append("cardiac involvement")
    if len(involved) >= min_organs:
        reasons.append(f"{len(involved)} organs involved ({', '.join(c.split('_')[0].lower() for c in involved)})")
    if not reasons:
        return None
    evidence["organ_alerts"] = involved
    evidence["organ_evidence"] = {c: a.evidence for c, a in organs.items() if a is not None}
    evidence["thresholds"] = _threshold_evidence(ctx.profile, "icu_bsa_pct", "icu_min_organs")
    return ctx.alert(
        "ICU_CRITERIA",
        "critical",
        ctx.as_of,
        "ICU criteria met as of " + ctx.as_of.isoformat() + ": " + "; ".join(reasons) + ".",
        "The guideline recommends intensive-care assessment.",
        evidence,
    )


def _second_line_in_course(ctx: RuleContext, course_start: dt.date) -> list[tuple[str, dt.date]]:
    return [(d, s) for d, s in ctx.course.second_line if course_start <= s <= ctx.as_of]


def _not_fallen(
    ctx: RuleContext, test: str, start: LabPoint | None, latest: LabPoint | None, fraction: float
) -> tuple[float, bool] | None:
    """(percent of start, is a repeat) when the latest is still ≥ ``fraction`` of an exact start
    value; the latest must be a repeat (taken after the start value's time) to count."""
    if start is None or latest is None or not is_exact(start) or latest.shown_value is None or start.value is None:
        return None
    if latest.taken_at <= start.taken_at:
        return None
    still = Limit("stalled_fraction", f"{_num(100 * fraction)} % of the start value", fraction * start.value, True, "warning")
    if not ctx.beyond(latest, still) or latest.value is None:
        return None
    return 100 * latest.value / start.value, True


@rule("STALLED_RESPONSE_DAY7")
def stalled_response_day7(ctx: RuleContext) -> Alert | None:
    """On day ≥ 7 of an ongoing steroid course without IVIG or cyclosporine started within it:
    (a) ALT start value > 2 × ULN and a repeat ALT (taken after the start value) ≥ 80 % of it, or
    (b) eosinophil start value ≥ 0.7 ×10^9/L and a repeat ≥ 80 % of it, or (c) a temperature
    ≥ 38.5 °C taken on D or D − 1. A fever says to exclude infection first (blood cultures); beyond
    course day 14, new fever or rising values also suggest infection or relapse.

    Source: the day-7 line and the 80 % fraction are design choices of this product (no formal
    definition of steroid non-response exists, UNCONFIRMED); anchor: IVIG 1–2 g/kg added a median
    of 7 days after steroids in steroid-hyporesponsive DRESS (Sim, Yu & Koh, Clin Transl Sci 2022);
    sepsis is more frequent on systemic steroids (Funck-Brentano et al., JAAD 2015;72:246).
    """
    course = ctx.course
    if course.course_start is None or course.day_of_course is None or not course.ongoing:
        return None
    day_line = ctx.profile.days("stalled_response_day")
    day = course.day_of_course  # the one count (steroids.course_day): the timeline and ward say the same day
    if day < day_line or _second_line_in_course(ctx, course.course_start):
        return None
    fraction = ctx.profile.value("stalled_fraction")
    reasons: list[str] = []
    evidence: dict[str, Any] = {"course_start": course.course_start.isoformat(), "day_of_course": day}

    alt_start = ctx.start_value("alt", course.course_start)
    alt_latest = ctx.latest("alt")
    if alt_start is not None and ctx.beyond(alt_start, hepatic_limits(ctx.profile, alt_start)[1]):
        stalled = _not_fallen(ctx, "alt", alt_start, alt_latest, fraction)
        if stalled is not None:
            assert alt_latest is not None
            uln_value, default = ctx.uln(alt_start)
            multiple = ctx.profile.value("hepatic_alt_uln_multiple")
            pct = stalled[0]
            reasons.append(
                f"ALT has not fallen: start value {ctx.show(alt_start)} (> {_num(multiple)} × {_uln_text(uln_value, default, alt_start)}), "
                f"repeat {ctx.show(alt_latest)} = {_num(pct)} % of it (≥ {_num(100 * fraction)} %)"
            )
            evidence["alt"] = {"start": ctx.quote(alt_start), "latest": ctx.quote(alt_latest), "uln": uln_value, "percent_of_start": pct}

    eos_start = ctx.start_value("eosinophils", course.course_start)
    eos_latest = ctx.latest("eosinophils")
    floor = eosinophil_limits(ctx.profile)[0]
    if eos_start is not None and ctx.beyond(eos_start, floor):
        stalled = _not_fallen(ctx, "eosinophils", eos_start, eos_latest, fraction)
        if stalled is not None:
            assert eos_latest is not None
            pct = stalled[0]
            reasons.append(
                f"eosinophils have not fallen: start value {ctx.show(eos_start)} (≥ {_value(eos_start, floor.value)}), "
                f"repeat {ctx.show(eos_latest)} = {_num(pct)} % of it (≥ {_num(100 * fraction)} %)"
            )
            evidence["eosinophils"] = {"start": ctx.quote(eos_start), "latest": ctx.quote(eos_latest), "percent_of_start": pct}

    fever = fever_limit(ctx.profile)
    first_day = ctx.as_of - dt.timedelta(days=ctx.profile.days("fever_lookback_days"))
    fevers = [p for p in ctx.results("temperature") if first_day <= p.taken_at.date() <= ctx.as_of and ctx.beyond(p, fever)]
    if fevers:
        top = max(fevers, key=lambda p: (p.value, p.taken_at))
        reasons.append(f"still febrile: {ctx.show(top)} (≥ {_value(top, fever.value)})")
        evidence["fever"] = [ctx.quote(p) for p in fevers]

    if not reasons:
        return None
    lo, hi = ctx.profile.value("ivig_total_dose_min_g_per_kg"), ctx.profile.value("ivig_total_dose_max_g_per_kg")
    infection_day = ctx.profile.days("stalled_infection_day")
    advice: list[str] = []
    if fevers:
        advice.append(
            "Exclude infection first: blood cultures (the guideline's work-up when febrile) before adding immunosuppression."
        )
    advice.append(f"Consider adding IVIG {_num(lo)}–{_num(hi)} g/kg total or cyclosporine.")
    if day > infection_day:
        advice.append(
            f"Beyond course day {infection_day}, new fever or rising values also suggest infection (sepsis on steroids) "
            "or relapse (viral reactivation): look for them before escalating."
        )
    advice.append(
        f"The day-{day_line} line is a design choice of this product: no formal definition of steroid non-response exists."
    )
    evidence["infection_first"] = bool(fevers)
    evidence["beyond_infection_day"] = day > infection_day
    evidence["thresholds"] = _threshold_evidence(
        ctx.profile, "stalled_response_day", "stalled_fraction", "hepatic_alt_uln_multiple", "eosinophils_moderate",
        "fever_c", "stalled_infection_day",
    )
    return ctx.alert(
        "STALLED_RESPONSE_DAY7",
        "warning",
        ctx.as_of,
        f"Day {day} of systemic steroids (course started {course.course_start.isoformat()}, "
        f"{_num(course.current_pred_eq_mg)} mg/day prednisone-equivalent) without IVIG or cyclosporine, and "
        + "; ".join(reasons)
        + ".",
        " ".join(advice),
        evidence,
    )


def _course_rows(ctx: RuleContext) -> list[dict[str, Any]]:
    """Steroid schedule rows from the course start to its stop (plan included), for evidence."""
    course = ctx.course
    if course.course_start is None:
        return []
    end = course.stop_date or dt.date.max
    return [
        dose_evidence(m)
        for m in ctx.record.meds
        if steroid_factor(m.drug, m.route, m.drug_as_entered) is not None and course.course_start <= m.start_date <= end
    ]


@rule("PREMATURE_TAPER")
def premature_taper(ctx: RuleContext) -> Alert | None:
    """The course's schedule (plan included) has a stop and its taper length < 28 days (an abrupt
    stop counts as 0 days).

    Source: DRESS treatment guideline summary (product requirement): minimum 4-week taper;
    relapses follow steroid reduction (Clin Transl Allergy 2020, doi:10.1186/s13601-020-00359-2).
    """
    course = ctx.course
    if course.course_start is None or course.stop_date is None or course.taper_days is None:
        return None
    minimum = ctx.profile.days("min_taper_days")
    if course.taper_days >= minimum:
        return None
    planned = course.stop_date > ctx.as_of
    if course.taper_start is None:
        what = f"an abrupt stop on {course.stop_date.isoformat()} with no taper (0 days)"
    else:
        what = (
            f"a taper of {course.taper_days} days (taper start {course.taper_start.isoformat()}, "
            f"stop {course.stop_date.isoformat()})"
        )
    return ctx.alert(
        "PREMATURE_TAPER",
        "warning",
        course.stop_date,
        f"The steroid course started {course.course_start.isoformat()} {'is planned to end with' if planned else 'ended with'} "
        f"{what}, shorter than {minimum} days.",
        f"The guideline asks for a taper of at least {minimum} days: DRESS relapses when steroids are withdrawn "
        "too fast. Consider a slower taper.",
        {
            "course_start": course.course_start.isoformat(),
            "taper_start": course.taper_start.isoformat() if course.taper_start else None,
            "stop_date": course.stop_date.isoformat(),
            "taper_days": course.taper_days,
            "stop_is_planned": planned,
            "schedule_rows": _course_rows(ctx),
            "thresholds": _threshold_evidence(ctx.profile, "min_taper_days"),
        },
    )


def _pcr_text(ctx: RuleContext, test: str, counted: tuple[LabPoint, ...], positives: list[LabPoint]) -> str:
    """The latest positive PCR and its trend: 'positive HHV-6 PCR: latest 52000 copies/mL on ...,
    rising (1200 → 8600 → 52000 copies/mL since 2026-03-12)'."""
    latest = positives[-1]
    text = f"positive {display.test_label(test)}: latest positive {ctx.show(latest)}"
    numeric = [p for p in positives if p.value is not None]
    if len(numeric) >= 2:
        first, last = numeric[0], numeric[-1]
        assert first.value is not None and last.value is not None
        trend = "rising" if last.value > first.value else "falling" if last.value < first.value else "unchanged"
        series = " → ".join(display.value_text(test, v, p.unit, comparator_of(p)) for p in numeric if (v := p.value) is not None)
        text += f", {trend} ({series} {display.unit_label(last.unit)} since {first.taken_at.date().isoformat()})"
    elif len(positives) > 1:
        text += f" ({len(positives)} positive results since {positives[0].taken_at.date().isoformat()})"
    last_result = counted[-1]
    if last_result.id != latest.id and not pcr_detected(last_result):
        text += f"; the latest result, {ctx.show(last_result)}, is not detected"
    return text


def _flare(ctx: RuleContext, test: str, course_start: dt.date, taper_start: dt.date) -> tuple[LabPoint, LabPoint] | None:
    """(latest, lowest since course start) when the latest was taken on or after the taper start
    date and is ≥ the flare multiple of the lowest and beyond the test's floor; None otherwise."""
    latest = next((p for p in reversed(ctx.results(test)) if p.shown_value is not None), None)
    if latest is None or latest.taken_at.date() < taper_start:
        return None
    since = [p for p in ctx.results(test) if is_exact(p) and p.taken_at.date() >= course_start]
    if not since:
        return None
    lowest = min(since, key=lambda p: (p.value, p.taken_at, p.id))
    assert lowest.value is not None
    multiple = ctx.profile.value("relapse_flare_multiple")
    rise = Limit("relapse_flare_multiple", f"{_num(multiple)} × the lowest since course start", multiple * lowest.value, True, "warning")
    if not ctx.beyond(latest, rise):
        return None
    floor = eosinophil_limits(ctx.profile)[0] if test == "eosinophils" else hepatic_limits(ctx.profile, latest)[1]
    return (latest, lowest) if ctx.beyond(latest, floor) else None


@rule("RELAPSE_RISK")
def relapse_risk(ctx: RuleContext) -> Alert | None:
    """Any of: a positive HHV-6, EBV or CMV PCR on or before D (named by its latest positive and
    its trend); a flare after taper start (taper start on or before D, the latest value taken on
    or after the taper start date, and latest eosinophils ≥ 1.5 × their lowest since course start
    and ≥ 0.7 ×10^9/L, or latest ALT ≥ 1.5 × its lowest since course start and > 2 × ULN);
    PREMATURE_TAPER holds.

    Source: viral reactivation and flares (Tohyama et al., BJD 2007;157:934); relapses after steroid
    reduction, viral reactivation or new drugs (Clin Transl Allergy 2020,
    doi:10.1186/s13601-020-00359-2); flare thresholds UNCONFIRMED (CLINICAL_REFERENCE.md §5).
    """
    factors: list[dict[str, Any]] = []
    texts: list[str] = []
    for test in PCR_TESTS:
        counted = ctx.results(test)
        positives = [p for p in counted if pcr_detected(p)]
        if positives:
            factors.append(
                {
                    "factor": "viral_reactivation",
                    "test": test,
                    "latest_positive": ctx.quote(positives[-1]),
                    "results": [ctx.quote(p) for p in positives],
                }
            )
            texts.append(_pcr_text(ctx, test, counted, positives))
    course = ctx.course
    if course.course_start is not None and course.taper_start is not None and course.taper_start <= ctx.as_of:
        multiple = ctx.profile.value("relapse_flare_multiple")
        for test in ("eosinophils", "alt"):
            flare = _flare(ctx, test, course.course_start, course.taper_start)
            if flare is None:
                continue
            latest, lowest = flare
            factors.append(
                {
                    "factor": f"{test}_flare",
                    "taper_start": course.taper_start.isoformat(),
                    "latest": ctx.quote(latest),
                    "lowest_since_course_start": ctx.quote(lowest),
                }
            )
            texts.append(
                f"{display.test_label(test)} flare on or after taper start ({course.taper_start.isoformat()}): latest "
                f"{ctx.show(latest)} ≥ {_num(multiple)} × the lowest since course start ({ctx.show(lowest)})"
            )
    taper = ctx.holds("PREMATURE_TAPER")
    if taper is not None:
        factors.append(
            {
                "factor": "premature_taper",
                **{k: taper.evidence[k] for k in ("taper_start", "stop_date", "taper_days", "schedule_rows")},
            }
        )
        texts.append(f"premature taper ({taper.evidence['taper_days']} days)")
    if not factors:
        return None
    return ctx.alert(
        "RELAPSE_RISK",
        "warning",
        ctx.as_of,
        "Risk of relapse: " + "; ".join(texts) + ".",
        "Slow or pause the taper, repeat eosinophils, liver tests and viral PCRs, and review new drugs.",
        {
            "factors": factors,
            "thresholds": _threshold_evidence(ctx.profile, "relapse_flare_multiple", "eosinophils_moderate", "hepatic_alt_uln_multiple"),
        },
    )


@rule("RECHALLENGE")
def rechallenge(ctx: RuleContext) -> Alert | None:
    """A medication row with dose > 0 (plan included), dated after the onset date, names a culprit
    drug or a drug of the same cross-reactivity group (brand names mapped, case-insensitive).

    Source: PRODUCT.md §5 cross-reactivity groups; aromatic anticonvulsants cross-react in up to
    75 % (Knowles et al., Drug Saf 1999;21:489); relapses after new drug exposure (Clin Transl
    Allergy 2020). With no onset date recorded every such row is reported (safety first).
    """
    culprits = ctx.record.patient.culprit_drugs
    if not culprits:
        return None
    onset = ctx.record.patient.onset_date
    hits: list[tuple[DoseRow, str]] = []
    for m in ctx.record.meds:
        if not dose_above(m.daily_dose_mg, 0.0) or (onset is not None and m.start_date <= onset):
            continue
        why = culprit_reason(m, culprits)
        if why:
            hits.append((m, why))
    if not hits:
        return None
    first = min(m.start_date for m, _ in hits)
    rows = "; ".join(
        f"{_drug_name(m)} from {m.start_date.isoformat()}"
        f"{' (planned)' if m.start_date > ctx.as_of else ''}: {why}"
        for m, why in hits
    )
    onset_text = f"after onset ({onset.isoformat()})" if onset else "(no onset date recorded)"
    return ctx.alert(
        "RECHALLENGE",
        "critical",
        first,
        f"Culprit drug or cross-reacting drug prescribed {onset_text}: {rows}.",
        f"Never rechallenge: stop or cancel this prescription and choose a drug outside the group "
        f"of the culprit ({', '.join(culprits)}).",
        {
            "culprit_drugs": list(culprits),
            "onset_date": onset.isoformat() if onset else None,
            "rows": [{**dose_evidence(m), "reason": why, "planned": m.start_date > ctx.as_of} for m, why in hits],
        },
    )


def _drug_name(m: DoseRow) -> str:
    if m.drug_as_entered and m.drug_as_entered.strip().lower() != m.drug:
        return f"{m.drug_as_entered} ({m.drug})"
    return m.drug


def culprit_reason(m: DoseRow, culprits: tuple[str, ...]) -> str | None:
    """Why this schedule row gives a culprit or a drug of its group, or None: the drug as stored and
    as entered are both read by the one resolver (a row stored before a name was known still counts).
    RECHALLENGE, CULPRIT_NOT_STOPPED and the timeline's drug exposure bars (monitoring.exposure) ask this."""
    for c in culprits:
        for name in dict.fromkeys((m.drug, m.drug_as_entered or m.drug)):
            why = cross_reacts(name, c)
            if why:
                return why
    return None


@rule("GI_PROPHYLAXIS_MISSING")
def gi_prophylaxis_missing(ctx: RuleContext) -> Alert | None:
    """Systemic steroid dose > 0 on D and no proton-pump inhibitor with dose > 0 on that date.

    Source: DRESS treatment guideline summary (product requirement), PRODUCT.md §5.
    """
    dose = ctx.course.current_pred_eq_mg
    if not dose_above(dose, 0.0):
        return None
    ppi: dict[str, DoseRow] = {}
    for m in ctx.record.meds:
        if m.start_date > ctx.as_of:
            break
        if resolve(m.drug).has_class("ppi"):
            ppi[normalise_drug(m.drug)] = m
    if any(dose_above(m.daily_dose_mg, 0.0) for m in ppi.values()):
        return None
    return ctx.alert(
        "GI_PROPHYLAXIS_MISSING",
        "info",
        ctx.as_of,
        f"On {_num(dose)} mg/day prednisone-equivalent on {ctx.as_of.isoformat()} with no proton-pump inhibitor.",
        f"The guideline gives a proton-pump inhibitor ({_or_list(drugs_of_class('ppi'))}) with systemic corticosteroids.",
        {
            "pred_eq_mg": dose,
            "ppi_rows_stopped": [dose_evidence(m) for m in ppi.values()],
        },
    )


def _or_list(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


@rule("CULPRIT_NOT_STOPPED")
def culprit_not_stopped(ctx: RuleContext) -> Alert | None:
    """A drug of a culprit's cross-reactivity group (the culprit itself included) has dose > 0 on D
    through a schedule row dated on or before the onset date: the culprit was never withdrawn. Rows
    dated after onset are RECHALLENGE's. Without an onset date every row is RECHALLENGE's.

    Source: PRODUCT.md §5 (product requirement): immediate withdrawal of the culprit drug is the
    first step of DRESS management; cross-reactivity groups as RECHALLENGE (Knowles et al., Drug
    Saf 1999;21:489).
    """
    culprits = ctx.record.patient.culprit_drugs
    onset = ctx.record.patient.onset_date
    if not culprits or onset is None:
        return None
    in_force: dict[str, DoseRow] = {}
    planned_stop: dict[str, dt.date] = {}
    for m in ctx.record.meds:  # by (start_date, id): the last row on or before D of a drug holds
        drug = normalise_drug(m.drug)
        if m.start_date <= ctx.as_of:
            in_force[drug] = m
        elif drug not in planned_stop and not dose_above(m.daily_dose_mg, 0.0):
            planned_stop[drug] = m.start_date
    hits: list[tuple[DoseRow, str, dt.date | None]] = []
    for drug, m in in_force.items():
        if m.start_date > onset or not dose_above(m.daily_dose_mg, 0.0):
            continue
        why = culprit_reason(m, culprits)
        if why:
            hits.append((m, why, planned_stop.get(drug)))
    if not hits:
        return None
    rows = "; ".join(
        f"{_drug_name(m)} {_num(m.daily_dose_mg)} mg/day since {m.start_date.isoformat()}"
        + (f", stop planned on {stop.isoformat()}" if stop else ", no stop recorded")
        + f": {why}"
        for m, why, stop in hits
    )
    return ctx.alert(
        "CULPRIT_NOT_STOPPED",
        "critical",
        min(m.start_date for m, _, _ in hits),
        f"Culprit drug or cross-reacting drug still given on {ctx.as_of.isoformat()}, started on or before the "
        f"DRESS onset ({onset.isoformat()}): {rows}.",
        "Immediate withdrawal of the culprit drug is the first step of management: stop it now and record "
        f"the stop (a row with daily dose 0); choose a drug outside the group of the culprit ({', '.join(culprits)}).",
        {
            "culprit_drugs": list(culprits),
            "onset_date": onset.isoformat(),
            "rows": [
                {**dose_evidence(m), "reason": why, "planned_stop": stop.isoformat() if stop else None}
                for m, why, stop in hits
            ],
        },
    )


@rule("LABS_OVERDUE")
def labs_overdue(ctx: RuleContext) -> Alert | None:
    """A systemic steroid course is ongoing on D and one of ALT, creatinine or eosinophils has no
    result counted as of D dated on or after D − the monitoring interval (inpatient 2 days, clinic
    14 days; a patient without a setting counts as inpatient). Names each overdue test with the
    date of its last result, or 'never'.

    Source: DRESS treatment guideline summary (product requirement): liver enzymes, kidney
    function and blood count throughout treatment; the intervals are design choices of this
    product; CBC and LFTs every 1–2 weeks after discharge (Cutis/MDedge, CLINICAL_REFERENCE.md §5).
    """
    course = ctx.course
    if course.course_start is None or not course.ongoing or not dose_above(course.current_pred_eq_mg, 0.0):
        return None
    setting = "clinic" if ctx.record.patient.setting == "clinic" else "inpatient"
    key = f"monitoring_interval_{setting}_days"
    interval = ctx.profile.days(key)
    due_from = ctx.as_of - dt.timedelta(days=interval)
    overdue: list[dict[str, Any]] = []
    texts: list[str] = []
    for test in MONITORED_TESTS:
        counted = ctx.results(test)
        last = counted[-1] if counted else None
        if last is not None and last.taken_at.date() >= due_from:
            continue
        label = display.test_label(test)
        if last is None:
            texts.append(f"{label}: never")
            overdue.append({"test": test, "last": None})
            continue
        text = f"{label}: last {last.taken_at.date().isoformat()} ({ctx.age(last)} days ago)"
        start = ctx.start_value(test, course.course_start)
        if start is not None and start.id == last.id:
            text += ", only the course's start value: the response to steroids cannot be judged without a repeat"
        texts.append(text)
        overdue.append({"test": test, "last": ctx.quote(last)})
    if not overdue:
        return None
    # The course day said as everywhere else (timeline, ward, report): counted from 0 with its first dose.
    course_words = course_day_words(course.course_start, course.day_of_course) or f"first dose {course.course_start.isoformat()}"
    return ctx.alert(
        "LABS_OVERDUE",
        "info",
        ctx.as_of,
        f"On systemic steroids, {course_words}, with monitoring due ({setting}: each test "
        f"within {interval} days): " + "; ".join(texts) + ".",
        "The guideline follows liver enzymes, kidney function and the blood count throughout treatment: take the "
        f"tests due. The {interval}-day {setting} interval is a design choice of this product.",
        {
            "setting": setting,
            "interval_days": interval,
            "due_from": due_from.isoformat(),
            "overdue": overdue,
            "thresholds": _threshold_evidence(ctx.profile, key),
        },
    )


# --- evaluation -------------------------------------------------------------------------------


def evaluate(record: PatientRecord, as_of: dt.date, profile: GuidelineProfile | None = None) -> list[Alert]:
    """Every alert that holds for ``record`` as of ``as_of``: critical, then warning, then info
    (table order within a severity)."""
    ctx = RuleContext(record, as_of, profile or load_profile())
    alerts = [a for code in RULES if (a := ctx.holds(code)) is not None]
    order = {code: i for i, code in enumerate(RULES)}
    alerts.sort(key=lambda a: (a.severity.rank, order[a.code]))
    return alerts


def evaluate_many(
    records: list[PatientRecord], as_of: dt.date, profile: GuidelineProfile | None = None
) -> dict[str, list[Alert]]:
    """Alerts per MRN for many patients (the ward overview), with the profile loaded once."""
    prof = profile or load_profile()
    return {r.patient.mrn: evaluate(r, as_of, prof) for r in records}
