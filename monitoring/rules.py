"""Alert rules of PRODUCT.md §5, evaluated as of a date D.

A result counts when the calendar date of its taken_at, as recorded, is on or before D (the time
of day never excludes it); the latest value is the last counted result (ties on time: the row
stored last). Medication rows after D are the plan and count only where §5 says so (taper, stop,
rechallenge).

Each rule is a small named function, one per alert code, returning its ``Alert`` or None; its
docstring names its source and ``RULES`` lists them in the order of the §5 table. Every number
comes from the guideline profile. Alerts are decision support, not a diagnosis: every message
says so.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from monitoring.catalogue import PCR_TESTS, parse_detection
from monitoring.drugs import cross_reacts, drugs_of_class, normalise_drug, resolve, steroid_factor
from monitoring.guideline import GuidelineProfile, load_profile
from monitoring.records import DoseRow, LabPoint, PatientRecord
from monitoring.steroids import CourseInfo, analyse_course, dose_above

__all__ = [
    "Alert",
    "RuleContext",
    "RULES",
    "SEVERITY_ORDER",
    "NOT_A_DIAGNOSIS",
    "evaluate",
    "evaluate_many",
]

SEVERITY_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}
NOT_A_DIAGNOSIS = "Decision support, not a diagnosis."

_TEST_LABELS = {
    "alt": "ALT",
    "creatinine": "creatinine",
    "eosinophils": "eosinophils",
    "ferritin": "ferritin",
    "troponin_t": "troponin T",
    "troponin_i": "troponin I",
    "temperature": "temperature",
    "bsa_pct": "BSA with rash",
    "hhv6_pcr": "HHV-6 PCR",
    "ebv_pcr": "EBV PCR",
    "cmv_pcr": "CMV PCR",
}
_UNIT_LABELS = {"10^9/L": "×10^9/L", "Cel": "°C", "{copies}/mL": "copies/mL"}


@dataclass(frozen=True)
class Alert:
    code: str
    severity: str  # CDS Hooks indicator: info | warning | critical
    date: dt.date  # date of the finding (the triggering result or schedule event; as-of for composites)
    message: str  # what was found, what the guideline recommends, not a diagnosis
    evidence: dict[str, Any]  # structured, JSON-ready; row ids make every number traceable
    source: str
    recommendation: str
    title: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "date": self.date.isoformat(),
            "title": self.title,
            "message": self.message,
            "recommendation": self.recommendation,
            "evidence": self.evidence,
            "source": self.source,
        }


# --- comparisons and formatting -------------------------------------------------------------
# Thresholds are products of floats (1.5 x 1.2 = 1.7999999999999998): compare with a tolerance so
# that a value exactly at a threshold is treated as exactly at it.


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _gt(a: float, b: float) -> bool:
    return a > b and not _close(a, b)


def _ge(a: float, b: float) -> bool:
    return a >= b or _close(a, b)


def _num(x: float) -> str:
    return format(round(x, 2), ".10g")


def _unit(unit: str) -> str:
    return _UNIT_LABELS.get(unit, unit)


def _when(p: LabPoint) -> str:
    t = p.taken_at
    return t.date().isoformat() if t.time() == dt.time(0) else t.isoformat(sep=" ", timespec="minutes")


def _show(p: LabPoint) -> str:
    """'ALT 250 U/L on 2026-01-05 08:00' with the value as received when it differs."""
    label = _TEST_LABELS.get(p.test, p.test)
    if p.value is None:
        return f"{label} {p.value_text or p.original_value} on {_when(p)}"
    text = f"{label} {_num(p.value)} {_unit(p.unit)}"
    if p.original_unit and p.original_unit != p.unit:
        text += f" (received {p.original_value} {p.original_unit})"
    return f"{text} on {_when(p)}"


def lab_evidence(p: LabPoint) -> dict[str, Any]:
    return {
        "row_id": p.id,
        "table": "lab_result",
        "test": p.test,
        "taken_at": p.taken_at.isoformat(),
        "value": p.value,
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

    @cached_property
    def course(self) -> CourseInfo:
        return analyse_course(self.record, self.as_of)

    def results(self, test: str) -> tuple[LabPoint, ...]:
        return self.record.results(test, self.as_of)

    def latest(self, test: str) -> LabPoint | None:
        return self.record.latest(test, self.as_of)

    def holds(self, code: str) -> Alert | None:
        if code not in self._memo:
            self._memo[code] = RULES[code](self)
        return self._memo[code]

    def uln(self, p: LabPoint) -> tuple[float, bool]:
        return self.profile.uln(p.test, p.ref_high)

    def start_value(self, test: str, course_start: dt.date) -> LabPoint | None:
        """PRODUCT.md §5: the latest result taken on or before the course start date; if none,
        the first taken within the start-value window (days) after it."""
        counted = self.results(test)
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
        evidence = {"as_of": self.as_of.isoformat(), **evidence, "profile": self.profile.summary()}
        message = f"{finding} {recommendation} {NOT_A_DIAGNOSIS}"
        return Alert(code, severity, date, message, evidence, definition.source, recommendation, definition.title)


def _uln_text(uln: float, default: bool, unit: str) -> str:
    return f"ULN {_num(uln)} {_unit(unit)} ({'profile default: the laboratory gave none' if default else 'laboratory'})"


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
    if p is None or p.value is None:
        return None
    uln, default = ctx.uln(p)
    multiple = ctx.profile.value("hepatic_alt_uln_multiple")
    limit = multiple * uln
    if not _gt(p.value, limit):
        return None
    return ctx.alert(
        "HEPATIC_INVOLVEMENT",
        "warning",
        p.taken_at.date(),
        f"Latest {_show(p)} is above {_num(multiple)} × ULN = {_num(limit)} {_unit(p.unit)} "
        f"({_uln_text(uln, default, p.unit)}); {_num(p.value / uln)} × ULN.",
        _organ_recommendation(ctx.profile),
        {
            "latest": lab_evidence(p),
            "uln": uln,
            "uln_is_default": default,
            "limit": limit,
            "thresholds": _threshold_evidence(ctx.profile, "hepatic_alt_uln_multiple"),
        },
    )


def baseline_creatinine(ctx: RuleContext) -> tuple[float, LabPoint | None] | None:
    """PRODUCT.md §5: the recorded baseline; else the lowest creatinine counted as of D (with the
    row it came from, the earliest of equal lows)."""
    recorded = ctx.record.patient.baseline_creatinine_mg_dl
    if recorded is not None and recorded > 0:
        return recorded, None
    lowest: LabPoint | None = None
    for p in ctx.results("creatinine"):
        if p.value is not None and (lowest is None or p.value < lowest.value):  # type: ignore[operator]
            lowest = p
    if lowest is None or lowest.value is None or lowest.value <= 0:
        return None
    return lowest.value, lowest


@rule("RENAL_INVOLVEMENT")
def renal_involvement(ctx: RuleContext) -> Alert | None:
    """Latest creatinine > 1.5 × baseline (recorded baseline, else the lowest counted as of D).

    Source: DRESS treatment guideline summary (product requirement); KDIGO 2012 AKI
    (≥ 1.5 × baseline); the exact RegiSCAR wording is UNCONFIRMED (CLINICAL_REFERENCE.md §3).
    """
    p = ctx.latest("creatinine")
    base = baseline_creatinine(ctx)
    if p is None or p.value is None or base is None:
        return None
    baseline, base_row = base
    multiple = ctx.profile.value("renal_creatinine_baseline_multiple")
    limit = multiple * baseline
    if not _gt(p.value, limit):
        return None
    base_text = (
        f"recorded baseline {_num(baseline)} mg/dL"
        if base_row is None
        else f"baseline {_num(baseline)} mg/dL = lowest creatinine so far ({_when(base_row)}; no baseline recorded)"
    )
    return ctx.alert(
        "RENAL_INVOLVEMENT",
        "warning",
        p.taken_at.date(),
        f"Latest {_show(p)} is above {_num(multiple)} × {base_text} = {_num(limit)} mg/dL "
        f"({_num(p.value / baseline)} × baseline).",
        _organ_recommendation(ctx.profile) + " Review nephrotoxic drugs and fluid balance.",
        {
            "latest": lab_evidence(p),
            "baseline_mg_dl": baseline,
            "baseline_source": "recorded" if base_row is None else "lowest counted result",
            "baseline_row": lab_evidence(base_row) if base_row is not None else None,
            "limit": limit,
            "thresholds": _threshold_evidence(ctx.profile, "renal_creatinine_baseline_multiple"),
        },
    )


@rule("CARDIAC_INVOLVEMENT")
def cardiac_involvement(ctx: RuleContext) -> Alert | None:
    """Latest troponin T or I > its ULN (the row's ref_high, else the profile default).

    Source: PRODUCT.md §5; the assay's 99th-percentile URL (Aw et al., Sci Rep 2018;8:15409); no
    DRESS-specific troponin threshold exists (UNCONFIRMED, CLINICAL_REFERENCE.md §3).
    """
    found: list[tuple[LabPoint, float, bool]] = []
    for test in ("troponin_t", "troponin_i"):
        p = ctx.latest(test)
        if p is None or p.value is None:
            continue
        uln, default = ctx.uln(p)
        if _gt(p.value, uln):
            found.append((p, uln, default))
    if not found:
        return None
    text = "; ".join(f"Latest {_show(p)} is above its {_uln_text(uln, d, p.unit)}" for p, uln, d in found)
    return ctx.alert(
        "CARDIAC_INVOLVEMENT",
        "critical",
        max(p.taken_at.date() for p, _, _ in found),
        text + ".",
        "Cardiac involvement in DRESS can be fatal: ECG, echocardiography and cardiology review; "
        "the guideline counts it as an ICU criterion.",
        {
            "results": [
                {**lab_evidence(p), "uln": uln, "uln_is_default": d} for p, uln, d in found
            ],
        },
    )


@rule("EOSINOPHILIA")
def eosinophilia(ctx: RuleContext) -> Alert | None:
    """Latest eosinophils ≥ 1.5 ×10^9/L.

    Source: RegiSCAR (Kardaun 2007 BJD 156:609; Kardaun 2013 BJD 169:1071).
    """
    p = ctx.latest("eosinophils")
    limit = ctx.profile.value("eosinophils_high")
    if p is None or p.value is None or not _ge(p.value, limit):
        return None
    return ctx.alert(
        "EOSINOPHILIA",
        "warning",
        p.taken_at.date(),
        f"Latest {_show(p)} is at or above {_num(limit)} ×10^9/L.",
        "Follow eosinophils with the organ tests; a rise during the taper can signal a flare.",
        {"latest": lab_evidence(p), "thresholds": _threshold_evidence(ctx.profile, "eosinophils_high")},
    )


@rule("FERRITIN_HIGH")
def ferritin_high(ctx: RuleContext) -> Alert | None:
    """Latest ferritin ≥ 500 ng/mL (warning); critical at ≥ 3000 ng/mL (consider HLH).

    Source: HLH-2004 ferritin ≥ 500 µg/L (Henter et al. 2007); > 3000 ng/mL concerning for HLH
    (Jordan et al., Blood 2011); no DRESS-specific cutoff (UNCONFIRMED, CLINICAL_REFERENCE.md §3).
    """
    p = ctx.latest("ferritin")
    high, critical = ctx.profile.value("ferritin_high"), ctx.profile.value("ferritin_critical")
    if p is None or p.value is None or not _ge(p.value, high):
        return None
    if _ge(p.value, critical):
        severity = "critical"
        finding = f"Latest {_show(p)} is at or above {_num(critical)} ng/mL."
        recommendation = (
            "Consider haemophagocytic lymphohistiocytosis (HLH): check the HLH-2004 criteria "
            "(cytopenias, triglycerides, fibrinogen, splenomegaly, sCD25) and seek haematology advice."
        )
    else:
        severity = "warning"
        finding = f"Latest {_show(p)} is at or above {_num(high)} ng/mL."
        recommendation = "Repeat ferritin; a rise towards 3000 ng/mL raises the question of HLH."
    return ctx.alert(
        "FERRITIN_HIGH",
        severity,
        p.taken_at.date(),
        finding,
        recommendation,
        {"latest": lab_evidence(p), "thresholds": _threshold_evidence(ctx.profile, "ferritin_high", "ferritin_critical")},
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
        creat_limit = multiple * recorded
        creat_text = f"above {_num(multiple)} × the recorded baseline {_num(recorded)} mg/dL = {_num(creat_limit)} mg/dL"
        uln_info: dict[str, Any] = {"basis": "recorded baseline", "baseline_mg_dl": recorded, "limit": creat_limit}
    else:
        uln, default = ctx.uln(creat)
        creat_limit = uln
        creat_text = f"above the {_uln_text(uln, default, creat.unit)} (no baseline recorded)"
        uln_info = {"basis": "ULN", "uln": uln, "uln_is_default": default, "limit": creat_limit}
    ferr_limit = ctx.profile.value("poor_prognosis_ferritin")
    if not (_gt(creat.value, creat_limit) and _ge(ferr.value, ferr_limit)):
        return None
    return ctx.alert(
        "POOR_PROGNOSIS",
        "critical",
        max(creat.taken_at.date(), ferr.taken_at.date()),
        f"First {_show(creat)} is {creat_text}, and first {_show(ferr)} is at or above {_num(ferr_limit)} ng/mL.",
        "Markers of a severe course: monitor closely, consider early ICU review and second-line therapy.",
        {
            "first_creatinine": lab_evidence(creat),
            "creatinine_limit": uln_info,
            "first_ferritin": lab_evidence(ferr),
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
    bsa_limit = ctx.profile.value("icu_bsa_pct")
    bsa = ctx.latest("bsa_pct")
    if bsa is not None and bsa.value is not None and _gt(bsa.value, bsa_limit):
        reasons.append(f"latest {_show(bsa)}, above {_num(bsa_limit)} %")
        evidence["bsa"] = lab_evidence(bsa)
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
    evidence["organ_evidence"] = {c: organs[c].evidence for c in involved}  # type: ignore[union-attr]
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


@rule("STALLED_RESPONSE_DAY7")
def stalled_response_day7(ctx: RuleContext) -> Alert | None:
    """On day ≥ 7 of an ongoing steroid course without IVIG or cyclosporine started within it:
    (a) ALT start value > 2 × ULN and latest ALT ≥ 80 % of it, or (b) eosinophil start value
    ≥ 0.7 ×10^9/L and latest ≥ 80 % of it, or (c) a temperature ≥ 38.5 °C taken on D or D − 1.

    Source: the day-7 line and the 80 % fraction are design choices of this product (no formal
    definition of steroid non-response exists, UNCONFIRMED); anchor: IVIG 1–2 g/kg added a median
    of 7 days after steroids in steroid-hyporesponsive DRESS (Sim, Yu & Koh, Clin Transl Sci 2022).
    """
    course = ctx.course
    if course.course_start is None or not course.ongoing:
        return None
    day_line = ctx.profile.days("stalled_response_day")
    day = (ctx.as_of - course.course_start).days
    if day < day_line or _second_line_in_course(ctx, course.course_start):
        return None
    fraction = ctx.profile.value("stalled_fraction")
    reasons: list[str] = []
    evidence: dict[str, Any] = {"course_start": course.course_start.isoformat(), "day_of_course": day}

    alt_start = ctx.start_value("alt", course.course_start)
    alt_latest = ctx.latest("alt")
    if _numeric(alt_start) and _numeric(alt_latest):
        assert alt_start is not None and alt_latest is not None and alt_start.value is not None
        uln, default = ctx.uln(alt_start)
        multiple = ctx.profile.value("hepatic_alt_uln_multiple")
        if _gt(alt_start.value, multiple * uln) and _ge(alt_latest.value, fraction * alt_start.value):  # type: ignore[arg-type]
            pct = 100 * alt_latest.value / alt_start.value  # type: ignore[operator]
            reasons.append(
                f"ALT has not fallen: start value {_show(alt_start)} (> {_num(multiple)} × {_uln_text(uln, default, alt_start.unit)}), "
                f"latest {_show(alt_latest)} = {_num(pct)} % of it (≥ {_num(100 * fraction)} %)"
            )
            evidence["alt"] = {"start": lab_evidence(alt_start), "latest": lab_evidence(alt_latest), "uln": uln, "percent_of_start": pct}

    eos_start = ctx.start_value("eosinophils", course.course_start)
    eos_latest = ctx.latest("eosinophils")
    eos_floor = ctx.profile.value("eosinophils_moderate")
    if _numeric(eos_start) and _numeric(eos_latest):
        assert eos_start is not None and eos_latest is not None and eos_start.value is not None
        if _ge(eos_start.value, eos_floor) and _ge(eos_latest.value, fraction * eos_start.value):  # type: ignore[arg-type]
            pct = 100 * eos_latest.value / eos_start.value  # type: ignore[operator]
            reasons.append(
                f"eosinophils have not fallen: start value {_show(eos_start)} (≥ {_num(eos_floor)} ×10^9/L), "
                f"latest {_show(eos_latest)} = {_num(pct)} % of it (≥ {_num(100 * fraction)} %)"
            )
            evidence["eosinophils"] = {"start": lab_evidence(eos_start), "latest": lab_evidence(eos_latest), "percent_of_start": pct}

    fever_c = ctx.profile.value("fever_c")
    first_day = ctx.as_of - dt.timedelta(days=ctx.profile.days("fever_lookback_days"))
    fevers = [
        p for p in ctx.results("temperature")
        if p.value is not None and first_day <= p.taken_at.date() <= ctx.as_of and _ge(p.value, fever_c)
    ]
    if fevers:
        top = max(fevers, key=lambda p: (p.value, p.taken_at))
        reasons.append(f"still febrile: {_show(top)} (≥ {_num(fever_c)} °C)")
        evidence["fever"] = [lab_evidence(p) for p in fevers]

    if not reasons:
        return None
    lo, hi = ctx.profile.value("ivig_total_dose_min_g_per_kg"), ctx.profile.value("ivig_total_dose_max_g_per_kg")
    evidence["thresholds"] = _threshold_evidence(
        ctx.profile, "stalled_response_day", "stalled_fraction", "hepatic_alt_uln_multiple", "eosinophils_moderate", "fever_c"
    )
    return ctx.alert(
        "STALLED_RESPONSE_DAY7",
        "warning",
        ctx.as_of,
        f"Day {day} of systemic steroids (course started {course.course_start.isoformat()}, "
        f"{_num(course.current_pred_eq_mg)} mg/day prednisone-equivalent) without IVIG or cyclosporine, and "
        + "; ".join(reasons)
        + ".",
        f"Consider adding IVIG {_num(lo)}–{_num(hi)} g/kg total or cyclosporine. The day-{day_line} line is a "
        f"design choice of this product: no formal definition of steroid non-response exists.",
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


def _pcr_positive(p: LabPoint) -> bool:
    if p.value is not None:
        return p.value > 0
    return parse_detection(p.value_text or p.original_value) is True


def _flare(ctx: RuleContext, test: str, course_start: dt.date) -> tuple[LabPoint, LabPoint] | None:
    """(latest, lowest since course start) when the latest is ≥ the flare multiple of the lowest
    and above the test's floor; None otherwise."""
    since = [p for p in ctx.results(test) if p.value is not None and p.taken_at.date() >= course_start]
    if not since:
        return None
    latest = since[-1]
    lowest = min(since, key=lambda p: (p.value, p.taken_at, p.id))
    multiple = ctx.profile.value("relapse_flare_multiple")
    assert latest.value is not None and lowest.value is not None
    if not _ge(latest.value, multiple * lowest.value):
        return None
    if test == "eosinophils":
        ok = _ge(latest.value, ctx.profile.value("eosinophils_moderate"))
    else:
        uln, _ = ctx.uln(latest)
        ok = _gt(latest.value, ctx.profile.value("hepatic_alt_uln_multiple") * uln)
    return (latest, lowest) if ok else None


@rule("RELAPSE_RISK")
def relapse_risk(ctx: RuleContext) -> Alert | None:
    """Any of: a positive HHV-6, EBV or CMV PCR on or before D; a flare after taper start (taper
    start on or before D, and latest eosinophils ≥ 1.5 × their lowest since course start and
    ≥ 0.7 ×10^9/L, or latest ALT ≥ 1.5 × its lowest since course start and > 2 × ULN);
    PREMATURE_TAPER holds.

    Source: viral reactivation and flares (Tohyama et al., BJD 2007;157:934); relapses after steroid
    reduction, viral reactivation or new drugs (Clin Transl Allergy 2020,
    doi:10.1186/s13601-020-00359-2); flare thresholds UNCONFIRMED (CLINICAL_REFERENCE.md §5).
    """
    factors: list[dict[str, Any]] = []
    texts: list[str] = []
    for test in PCR_TESTS:
        positives = [p for p in ctx.results(test) if _pcr_positive(p)]
        if positives:
            first = positives[0]
            factors.append({"factor": "viral_reactivation", "test": test, "results": [lab_evidence(p) for p in positives]})
            texts.append(f"positive {_show(first)}" + (f" ({len(positives)} positive results)" if len(positives) > 1 else ""))
    course = ctx.course
    if course.course_start is not None and course.taper_start is not None and course.taper_start <= ctx.as_of:
        multiple = ctx.profile.value("relapse_flare_multiple")
        for test in ("eosinophils", "alt"):
            flare = _flare(ctx, test, course.course_start)
            if flare is None:
                continue
            latest, lowest = flare
            factors.append(
                {
                    "factor": f"{test}_flare",
                    "taper_start": course.taper_start.isoformat(),
                    "latest": lab_evidence(latest),
                    "lowest_since_course_start": lab_evidence(lowest),
                }
            )
            texts.append(
                f"{_TEST_LABELS[test]} flare after taper start ({course.taper_start.isoformat()}): latest "
                f"{_show(latest)} ≥ {_num(multiple)} × the lowest since course start ({_show(lowest)})"
            )
    taper = ctx.holds("PREMATURE_TAPER")
    if taper is not None:
        factors.append({"factor": "premature_taper", **{k: taper.evidence[k] for k in ("taper_start", "stop_date", "taper_days")}})
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
        why = _culprit_reason(m, culprits)
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


def _culprit_reason(m: DoseRow, culprits: tuple[str, ...]) -> str | None:
    """Why this schedule row gives a culprit or a drug of its group, or None: the drug as stored and
    as entered are both read by the one resolver (a row stored before a name was known still counts)."""
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
        why = _culprit_reason(m, culprits)
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


# --- evaluation -------------------------------------------------------------------------------


def evaluate(record: PatientRecord, as_of: dt.date, profile: GuidelineProfile | None = None) -> list[Alert]:
    """Every alert that holds for ``record`` as of ``as_of``: critical, then warning, then info
    (table order within a severity)."""
    ctx = RuleContext(record, as_of, profile or load_profile())
    alerts = [a for code in RULES if (a := ctx.holds(code)) is not None]
    order = {code: i for i, code in enumerate(RULES)}
    alerts.sort(key=lambda a: (SEVERITY_ORDER[a.severity], order[a.code]))
    return alerts


def evaluate_many(
    records: list[PatientRecord], as_of: dt.date, profile: GuidelineProfile | None = None
) -> dict[str, list[Alert]]:
    """Alerts per MRN for many patients (the ward overview), with the profile loaded once."""
    prof = profile or load_profile()
    return {r.patient.mrn: evaluate(r, as_of, prof) for r in records}
