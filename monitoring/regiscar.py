"""RegiSCAR DRESS validation score (Kardaun et al., BJD 2007;156:609; BJD 2013;169:1071).

Points and categories exactly as CLINICAL_REFERENCE.md §1 (reproduced consistently in PMC8268599
Table 2, J Mother Child 2020 and PMC11480927): total range -4..9; < 2 no case, 2-3 possible,
4-5 probable, > 5 definite. The points are the published score, not a local threshold, so they
live here; the cut points shared with the alert rules (fever 38.5 °C, eosinophils 0.7 and
1.5 ×10^9/L, 2 × ULN ALT, 1.5 × baseline creatinine) and the score's own cut points (10 % / 20 %
eosinophils when leukocytes < 4.0 ×10^9/L, rash > 50 % BSA) come from the guideline profile.

An item is filled from data where the data can decide (fever from temperatures, eosinophilia from
counts or from percentages when leukocytes are low, organ involvement from the hepatic, renal and
cardiac thresholds, rash extent from BSA, atypical lymphocytes from their percentage), otherwise
from a ClinicalFinding entered by hand (answers yes / no / unknown). A positive answer from the
data wins; a clinician's answer wins over a negative from the data (history the data cannot see,
such as fever before admission); each item reports whether it was filled by 'data', by a
'clinician', or 'not recorded'.

Data-filled items look at every result counted as of D (the episode so far), not only the latest:
the score validates the episode, and a liver that has recovered was still involved.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from monitoring.guideline import GuidelineProfile, load_profile
from monitoring.limits import (
    Limit,
    baseline_creatinine,
    cardiac_limit,
    comparator_of,
    decide,
    eosinophil_limits,
    exceeds,
    fever_limit,
    hepatic_limits,
    renal_limit,
)
from monitoring.records import LabPoint, PatientRecord

__all__ = [
    "REGISCAR_ITEMS",
    "ANSWERS",
    "RegiscarItem",
    "RegiscarResult",
    "score_regiscar",
    "category_for",
]

ANSWERS: tuple[str, ...] = ("yes", "no", "unknown")

# ClinicalFinding.item values entered by hand: key -> (label, allowed answers).
# organ_other counts extra organs the data cannot see (lung, pancreas, muscle, ...): "yes" is one
# organ, or a whole number of organs.
REGISCAR_ITEMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "fever": ("Fever ≥ 38.5 °C (history, when no temperature in the data reaches it)", ANSWERS),
    "lymphadenopathy": ("Enlarged lymph nodes (> 1 cm, ≥ 2 different sites)", ANSWERS),
    "atypical_lymphocytes": ("Atypical lymphocytes on the blood film", ANSWERS),
    "rash_extent": ("Skin rash extent > 50 % BSA (when no BSA is recorded)", ANSWERS),
    "rash_suggestive": (
        "Rash suggesting DRESS (≥ 2 of: oedema/facial oedema, infiltration, purpura other than legs, scaling)",
        ANSWERS,
    ),
    "biopsy": ("Skin biopsy suggesting DRESS", ANSWERS),
    "organ_other": ("Other organ involvement (lung, pancreas, muscle, other), after other causes excluded", (*ANSWERS, "1", "2", "3")),
    "resolution_15_days": ("Resolution in ≥ 15 days", ANSWERS),
    "other_causes_excluded": (
        "Other causes evaluated (ANA, blood culture, HAV/HBV/HCV serology, Chlamydia/Mycoplasma, other): "
        "none positive and ≥ 3 done and negative",
        ANSWERS,
    ),
}

# Points per answer (Kardaun 2007; CLINICAL_REFERENCE.md §1). "not recorded" scores as unknown.
_POINTS: dict[str, dict[str, int]] = {
    "fever": {"yes": 0, "no": -1, "unknown": -1},
    "lymphadenopathy": {"yes": 1, "no": 0, "unknown": 0},
    "atypical_lymphocytes": {"yes": 1, "no": 0, "unknown": 0},
    "rash_extent": {"yes": 1, "no": 0, "unknown": 0},
    "rash_suggestive": {"yes": 1, "no": -1, "unknown": 0},
    "biopsy": {"yes": 0, "no": -1, "unknown": 0},
    "resolution_15_days": {"yes": 0, "no": -1, "unknown": -1},
    "other_causes_excluded": {"yes": 1, "no": 0, "unknown": 0},
}
_EOSINOPHILIA_POINTS = {"none": 0, "moderate": 1, "high": 2}
_ORGAN_POINTS = (0, 1, 2)  # none, one organ, two or more

# Category lower bounds (inclusive) on an integer score: < 2 no case, 2-3 possible, 4-5 probable,
# > 5 definite (PMC8268599 table footnote; PMC11480927).
_CATEGORIES: tuple[tuple[int, str], ...] = ((6, "definite"), (4, "probable"), (2, "possible"))
SCORE_MIN, SCORE_MAX = -4, 9


@dataclass(frozen=True)
class RegiscarItem:
    key: str
    label: str
    answer: str  # yes / no / unknown, or a band for eosinophilia, or an organ count
    points: int
    filled_by: str  # 'data' | 'clinician' | 'not recorded'
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "answer": self.answer,
            "points": self.points,
            "filled_by": self.filled_by,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class RegiscarResult:
    score: int
    category: str
    items: list[RegiscarItem]

    def as_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "category": self.category,
            "score_range": [SCORE_MIN, SCORE_MAX],
            "items": [i.as_dict() for i in self.items],
            "filled_by_data": [i.key for i in self.items if i.filled_by == "data"],
            "filled_by_clinician": [i.key for i in self.items if i.filled_by == "clinician"],
            "not_recorded": [i.key for i in self.items if i.filled_by == "not recorded"],
        }


def category_for(score: int) -> str:
    """< 2 no case; 2-3 possible; 4-5 probable; > 5 definite (Kardaun 2007)."""
    for lower, name in _CATEGORIES:
        if score >= lower:
            return name
    return "no case"


def _hand(record: PatientRecord, key: str) -> str | None:
    value = record.findings.get(key)
    if value is None:
        return None
    v = value.strip().lower()
    return v if v in REGISCAR_ITEMS[key][1] else None


def _ev(p: LabPoint) -> dict[str, Any]:
    return {"row_id": p.id, "test": p.test, "taken_at": p.taken_at.isoformat(), "value": p.value, "unit": p.unit}


def _yes_no_item(
    record: PatientRecord, key: str, data_answer: str | None, data_evidence: dict[str, Any]
) -> RegiscarItem:
    """Precedence: data 'yes' > clinician's answer > data 'no' > not recorded (scored unknown)."""
    label = REGISCAR_ITEMS[key][0]
    hand = _hand(record, key)
    if data_answer == "yes":
        answer, by, ev = "yes", "data", data_evidence
    elif hand is not None:
        answer, by, ev = hand, "clinician", {"finding": key, "value": hand, **({"data": data_evidence} if data_evidence else {})}
    elif data_answer is not None:
        answer, by, ev = data_answer, "data", data_evidence
    else:
        answer, by, ev = "unknown", "not recorded", {}
    return RegiscarItem(key, label, answer, _POINTS[key][answer], by, ev)


def _fever(record: PatientRecord, as_of: dt.date, profile: GuidelineProfile) -> RegiscarItem:
    temps = [p for p in record.results("temperature", as_of) if p.value is not None]
    limit = profile.value("fever_c")
    if not temps:
        return _yes_no_item(record, "fever", None, {})
    top = max(temps, key=lambda p: (p.value, p.taken_at))
    answer = "yes" if exceeds(fever_limit(profile).judge(top)) else "no"
    return _yes_no_item(record, "fever", answer, {"highest": _ev(top), "threshold_c": limit})


def _eosinophilia(record: PatientRecord, as_of: dt.date, profile: GuidelineProfile) -> RegiscarItem:
    moderate, high = profile.value("eosinophils_moderate"), profile.value("eosinophils_high")
    pct_low, pct_high = profile.value("regiscar_eos_pct_low"), profile.value("regiscar_eos_pct_high")
    low_wbc = profile.value("regiscar_low_wbc")
    label = (
        f"Eosinophilia: {moderate:g} to < {high:g} ×10^9/L (+1), ≥ {high:g} ×10^9/L (+2); or {pct_low:g} to < {pct_high:g} % (+1), "
        f"≥ {pct_high:g} % (+2) if leukocytes < {low_wbc:g} ×10^9/L"
    )
    counts = [p for p in record.results("eosinophils", as_of) if p.value is not None]
    pcts = [p for p in record.results("eosinophils_pct", as_of) if p.value is not None]
    if not counts and not pcts:
        return RegiscarItem("eosinophilia", label, "unknown", 0, "not recorded", {})
    moderate_line, high_line = eosinophil_limits(profile)

    def count_points(p: LabPoint) -> int:
        return 2 if exceeds(high_line.judge(p)) else 1 if exceeds(moderate_line.judge(p)) else 0

    best_points = 0
    best_ev: dict[str, Any] = {}
    if counts:
        peak = _peak(counts)
        best_points, best_ev = count_points(peak), {"count": _ev(peak)}
    # Percentages count only when leukocytes taken the same day are < 4.0 ×10^9/L.
    wbc_by_day: dict[dt.date, list[LabPoint]] = {}
    for w in record.results("wbc", as_of):
        if w.value is not None:
            wbc_by_day.setdefault(w.taken_at.date(), []).append(w)
    for p in pcts:
        same_day = wbc_by_day.get(p.taken_at.date(), [])
        exact = [w for w in same_day if w.taken_at == p.taken_at]
        wbc = (exact or same_day)[-1] if (exact or same_day) else None
        if wbc is None or wbc.value is None or decide(wbc.value, low_wbc, inclusive=True, comparator=comparator_of(wbc)) is not False:
            continue
        pct_high_line = Limit("regiscar_eos_pct_high", f"{pct_high:g}", pct_high, True, "info")
        pct_low_line = Limit("regiscar_eos_pct_low", f"{pct_low:g}", pct_low, True, "info")
        pts = 2 if exceeds(pct_high_line.judge(p)) else 1 if exceeds(pct_low_line.judge(p)) else 0
        if pts > best_points:
            best_points, best_ev = pts, {"percent": _ev(p), "leukocytes": _ev(wbc)}
    band = {0: "none", 1: "moderate", 2: "high"}[best_points]
    if not best_ev:
        best_ev = {"percent": _ev(_peak(pcts)), "note": f"a percentage scores only when leukocytes taken the same day are < {low_wbc:g} ×10^9/L"}
    return RegiscarItem("eosinophilia", label, band, _EOSINOPHILIA_POINTS[band], "data", best_ev)


def _peak(points: list[LabPoint]) -> LabPoint:
    return max(points, key=lambda p: (p.value, p.taken_at))


def _organs(record: PatientRecord, as_of: dt.date, profile: GuidelineProfile) -> RegiscarItem:
    label = "Internal organ involvement (liver, kidney, heart, lung, pancreas, muscle, other): 1 organ +1, ≥ 2 organs +2"
    organs: dict[str, dict[str, Any]] = {}
    any_data = False
    alt = [p for p in record.results("alt", as_of) if p.value is not None]
    any_data |= bool(alt)
    for p in alt:
        uln_line, limit = hepatic_limits(profile, p)
        if exceeds(limit.judge(p)):
            organs["liver"] = {"by": "data", "result": _ev(p), "uln": uln_line.value}
            break
    creat = [p for p in record.results("creatinine", as_of) if p.value is not None]
    any_data |= bool(creat)
    baseline = baseline_creatinine(record, as_of)
    if baseline is not None:
        renal = renal_limit(profile, baseline)
        for p in creat:
            if exceeds(renal.judge(p)):
                organs["kidney"] = {"by": "data", "result": _ev(p), "baseline_mg_dl": baseline.value}
                break
    for test in ("troponin_t", "troponin_i"):
        trop = [p for p in record.results(test, as_of) if p.value is not None]
        any_data |= bool(trop)
        for p in trop:
            line = cardiac_limit(profile, p)
            if exceeds(line.judge(p)) and "heart" not in organs:
                organs["heart"] = {"by": "data", "result": _ev(p), "uln": line.value}
    hand = (record.findings.get("organ_other") or "").strip().lower()
    extra = 0
    if hand == "yes":
        extra = 1
    elif hand.isdigit():
        extra = int(hand)
    data_count = len(organs)
    total = data_count + extra
    points = _ORGAN_POINTS[min(total, 2)]
    evidence: dict[str, Any] = {"organs_from_data": organs}
    if hand:
        evidence["organ_other"] = {"finding": "organ_other", "value": hand, "organs": extra}
    if data_count:
        by = "data"
    elif hand:
        by = "clinician"
    elif any_data:
        by = "data"
    else:
        by = "not recorded"
    return RegiscarItem("organ_involvement", label, str(total), points, by, evidence)


def score_regiscar(record: PatientRecord, as_of: dt.date, profile: GuidelineProfile | None = None) -> RegiscarResult:
    """The RegiSCAR score as of ``as_of`` with each item's answer, points and origin."""
    prof = profile or load_profile()
    items: list[RegiscarItem] = [_fever(record, as_of, prof)]
    items.append(_yes_no_item(record, "lymphadenopathy", None, {}))
    items.append(_eosinophilia(record, as_of, prof))

    atyp = [p for p in record.results("atypical_lymphocytes_pct", as_of) if p.value is not None]
    if atyp:
        # Any atypical lymphocytes: above 0 by the one comparison ('>0 %' is above, '0' is not).
        positive = [
            p for p in atyp if p.value is not None and exceeds(decide(p.value, 0.0, inclusive=False, comparator=comparator_of(p)))
        ]
        shown = (positive or atyp)[-1]
        items.append(_yes_no_item(record, "atypical_lymphocytes", "yes" if positive else "no", {"result": _ev(shown)}))
    else:
        items.append(_yes_no_item(record, "atypical_lymphocytes", None, {}))

    rash_bsa = prof.value("regiscar_rash_bsa_pct")
    bsa_points = [(p.value, p) for p in record.results("bsa_pct", as_of) if p.value is not None]
    if bsa_points:
        top = max(bsa_points, key=lambda vp: vp[0])[1]  # the first of equal largest, as before
        extent = Limit("regiscar_rash_bsa_pct", f"{rash_bsa:g}", rash_bsa, False, "info")
        items.append(
            _yes_no_item(record, "rash_extent", "yes" if exceeds(extent.judge(top)) else "no",
                         {"largest_bsa": _ev(top), "threshold_pct": rash_bsa})
        )
    else:
        items.append(_yes_no_item(record, "rash_extent", None, {}))

    items.append(_yes_no_item(record, "rash_suggestive", None, {}))
    items.append(_yes_no_item(record, "biopsy", None, {}))
    items.append(_organs(record, as_of, prof))
    items.append(_yes_no_item(record, "resolution_15_days", None, {}))
    items.append(_yes_no_item(record, "other_causes_excluded", None, {}))
    score = sum(i.points for i in items)
    return RegiscarResult(score, category_for(score), items)
