"""Every limit decided in one place (PRODUCT.md §5, 'Limits in one place').

"Is this result above the line?" is answered here and nowhere else: the alert rules
(monitoring.rules), RegiSCAR's organ items (monitoring.regiscar), the clinic report
(monitoring.report), the ward's "crossed a line" marks and the timeline table's "above" column
(dashboard) all ask this module, so a value exactly at a threshold is at it on every screen.

- ``uln``: the upper limit of normal in force for a result: the laboratory's ref_high on that row
  wins; else the guideline profile's default, flagged as a default (PRODUCT.md §4).
- ``baseline_creatinine``: the patient's recorded baseline; else the lowest creatinine counted as
  of D (PRODUCT.md §5), with the row it came from.
- ``limits_for``: the lines a result of a test is judged against for this patient as of D, each
  with its profile key, label, inclusivity and severity.
- ``decide``: the one comparison. Thresholds are products of floats (1.5 × 1.2 =
  1.7999999999999998): values within the engine's tolerance of a threshold are *at* it. A
  censored result (PRODUCT.md §4: stored with a comparator ``<``, ``<=``, ``>``, ``>=``) is some
  value beyond its number: ``<x`` exceeds no threshold ≥ x, ``>x`` exceeds every threshold ≤ x,
  and where the comparator cannot decide, the answer is ``None`` (not counted; the alert's
  evidence says so). ``None`` never makes a finding hold.

Every number comes from the guideline profile (monitoring.guideline); none is written here.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitoring.guideline import GuidelineProfile
    from monitoring.records import LabPoint, PatientRecord

__all__ = [
    "COMPARATORS",
    "REL_TOL",
    "ABS_TOL",
    "Uln",
    "Baseline",
    "Limit",
    "close",
    "decide",
    "exceeds",
    "uln",
    "baseline_creatinine",
    "hepatic_limits",
    "renal_limit",
    "uln_limit",
    "lln_limit",
    "cardiac_limit",
    "fever_limit",
    "bsa_limit",
    "eosinophil_limits",
    "ferritin_limits",
    "limits_for",
    "is_exact",
    "comparator_of",
    "pcr_detected",
]

# The engine's tolerance. A laboratory reports at most 4-5 significant digits, so a relative
# difference of 1e-9 is float noise, never a clinical difference.
REL_TOL = 1e-9
ABS_TOL = 1e-9

COMPARATORS: tuple[str, ...] = ("<", "<=", ">", ">=")


def close(a: float, b: float) -> bool:
    """``a`` and ``b`` are the same number within the engine's tolerance."""
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def decide(value: float, limit: float, *, inclusive: bool, comparator: str | None = None) -> bool | None:
    """Is ``value`` beyond ``limit``: at or above it (``inclusive``) or strictly above it?

    ``comparator`` is the stored comparator of a censored result (``value`` is then its bound).
    Returns True or False when decided, None when a censored value cannot decide (PRODUCT.md §4).
    """
    at = close(value, limit)
    above = value > limit and not at
    below = value < limit and not at
    if comparator in (None, "", "="):
        return above or (inclusive and at)
    if comparator not in COMPARATORS:
        raise ValueError(f"unknown comparator {comparator!r}: expected one of {', '.join(COMPARATORS)}")
    if comparator == "<":  # true value < bound
        return False if (below or at) else None
    if comparator == "<=":  # true value <= bound
        if below:
            return False
        if at:
            return False if not inclusive else None
        return None
    if comparator == ">":  # true value > bound
        return True if (above or at) else None
    # ">=": true value >= bound
    if above:
        return True
    if at:
        return True if inclusive else None
    return None


def exceeds(decision: bool | None) -> bool:
    """A decision that makes a finding hold: only a decided True (None is not counted)."""
    return decision is True


def comparator_of(point: LabPoint) -> str | None:
    """The stored comparator of a result (None for an exact value)."""
    return point.comparator or None


def pcr_detected(point: LabPoint) -> bool:
    """A viral PCR detected (PRODUCT.md §4): a load above 0 by the one comparison (a censored
    '<50' is not detected, '>0' is), or a text saying detected/positive. RELAPSE_RISK and the
    follow-up's PCR table both ask this."""
    from monitoring.catalogue import parse_detection

    if point.value is not None:
        return exceeds(decide(point.value, 0.0, inclusive=False, comparator=comparator_of(point)))
    return parse_detection(point.value_text or point.original_value) is True


def is_exact(point: LabPoint) -> bool:
    """A numeric, uncensored result: usable as the base of a ratio (start value, lowest, baseline),
    where a censored number would make a limit up."""
    return point.value is not None and comparator_of(point) is None


# --- the ULN of a result -------------------------------------------------------------------------


@dataclass(frozen=True)
class Uln:
    """The upper limit of normal in force for one result."""

    value: float
    is_default: bool  # True: the profile's default (the laboratory sent none)

    @property
    def basis(self) -> str:
        return "profile default: the laboratory gave none" if self.is_default else "laboratory"


def uln(profile: GuidelineProfile, test: str, ref_high: float | None = None) -> Uln:
    """The ULN for a result of ``test``: the laboratory's ref_high on that row wins; else the
    profile's default, flagged as a default (PRODUCT.md §4). KeyError for a test the profile has
    no default for and whose row gives none."""
    if ref_high is not None and ref_high > 0 and math.isfinite(ref_high):
        return Uln(float(ref_high), False)
    default = profile.default_uln(test)
    if default is None:
        raise KeyError(f"guideline profile has no default upper limit of normal for test {test!r}")
    return Uln(default, True)


# --- baseline creatinine -------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """Baseline creatinine in mg/dL and where it came from."""

    value: float
    row: LabPoint | None  # the lowest counted result; None for a recorded baseline

    @property
    def recorded(self) -> bool:
        return self.row is None

    @property
    def source(self) -> str:
        if self.row is None:
            return "recorded baseline"
        return f"lowest result, {self.row.taken_at.date().isoformat()} (no baseline recorded)"


def baseline_creatinine(record: PatientRecord, as_of: dt.date) -> Baseline | None:
    """PRODUCT.md §5: the patient's recorded baseline; else the lowest creatinine counted as of D
    (the earliest of equal lows). A censored creatinine (``<0.3``) is no baseline: it would make a
    limit up. None when neither exists."""
    recorded = record.patient.baseline_creatinine_mg_dl
    if recorded is not None and recorded > 0:
        return Baseline(float(recorded), None)
    lowest: LabPoint | None = None
    lowest_value = 0.0  # the value of ``lowest`` once it is set (an exact result has a value)
    for p in record.results("creatinine", as_of):
        value = p.value
        if value is not None and is_exact(p) and (lowest is None or value < lowest_value):
            lowest, lowest_value = p, value
    if lowest is None or lowest_value <= 0:
        return None
    return Baseline(lowest_value, lowest)


# --- the lines a result is judged against --------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """One line: a result is beyond it when strictly above (or at, if ``inclusive``) ``value``."""

    key: str  # the guideline profile key it comes from
    label: str  # '2×ULN', '1.5× baseline', '1.5'
    value: float  # canonical unit of the test
    inclusive: bool
    severity: str  # the severity of the alert the line belongs to ('info': a reference line)
    basis: str = ""  # 'laboratory', 'profile default: ...', 'recorded baseline', ...

    @property
    def symbol(self) -> str:
        return "≥" if self.inclusive else ">"

    def decide(self, value: float, comparator: str | None = None) -> bool | None:
        return decide(value, self.value, inclusive=self.inclusive, comparator=comparator)

    def judge(self, point: LabPoint) -> bool | None:
        """The decision for a stored result; None for a text result or an undecidable censored one.

        A '<x' result reaches the rules with no number (monitoring.records keeps x as its
        ``censored_value``): it is judged by its bound and comparator, so '<0.03' under a ULN of
        0.04 is decided below it and '<0.05' is undecidable (None, named so on the timeline table);
        neither can ever make a finding hold (PRODUCT.md §4)."""
        number = point.shown_value
        if number is None:
            return None
        return self.decide(number, comparator_of(point))


def hepatic_limits(profile: GuidelineProfile, point: LabPoint) -> tuple[Limit, Limit]:
    """ULN and the hepatic multiple of it (ALT, AST), from this result's own ULN."""
    u = uln(profile, point.test, point.ref_high)
    m = profile.value("hepatic_alt_uln_multiple")
    return (
        Limit(f"uln_{point.test}", "ULN", u.value, False, "info", u.basis),
        Limit("hepatic_alt_uln_multiple", f"{m:g}×ULN", m * u.value, False, "warning", u.basis),
    )


def renal_limit(profile: GuidelineProfile, baseline: Baseline) -> Limit:
    m = profile.value("renal_creatinine_baseline_multiple")
    return Limit("renal_creatinine_baseline_multiple", f"{m:g}× baseline", m * baseline.value, False, "warning", baseline.source)


def uln_limit(profile: GuidelineProfile, point: LabPoint, severity: str = "info") -> Limit:
    """The result's own ULN as a line (strictly above it is above)."""
    u = uln(profile, point.test, point.ref_high)
    return Limit(f"uln_{point.test}", "ULN", u.value, False, severity, u.basis)


def lln_limit(point: LabPoint) -> Limit | None:
    """The laboratory's lower limit of normal on the row (ref_low) as a line a result is at or
    above (inclusive): ``judge`` False means below the range. None when the row gives none: no
    profile has a default lower limit, and none is made up."""
    low = point.ref_low
    if low is None or not math.isfinite(low) or low <= 0:
        return None
    return Limit(f"lln_{point.test}", "LLN", float(low), True, "info", "laboratory")


def cardiac_limit(profile: GuidelineProfile, point: LabPoint) -> Limit:
    """Troponin above its ULN (the assay's 99th percentile): CARDIAC_INVOLVEMENT."""
    return uln_limit(profile, point, "critical")


def fever_limit(profile: GuidelineProfile) -> Limit:
    fever = profile.value("fever_c")
    return Limit("fever_c", f"{fever:g}", fever, True, "warning")


def bsa_limit(profile: GuidelineProfile) -> Limit:
    bsa = profile.value("icu_bsa_pct")
    return Limit("icu_bsa_pct", f"{bsa:g}", bsa, False, "critical")


def eosinophil_limits(profile: GuidelineProfile) -> tuple[Limit, Limit]:
    mod, high = profile.value("eosinophils_moderate"), profile.value("eosinophils_high")
    return (
        Limit("eosinophils_moderate", f"{mod:g}", mod, True, "info"),
        Limit("eosinophils_high", f"{high:g}", high, True, "warning"),
    )


def ferritin_limits(profile: GuidelineProfile) -> tuple[Limit, Limit]:
    high, critical = profile.value("ferritin_high"), profile.value("ferritin_critical")
    return (
        Limit("ferritin_high", f"{high:g}", high, True, "warning"),
        Limit("ferritin_critical", f"{critical:g}", critical, True, "critical"),
    )


def limits_for(
    test: str, point: LabPoint, record: PatientRecord, profile: GuidelineProfile, as_of: dt.date
) -> tuple[Limit, ...]:
    """The lines a result of ``test`` is judged against for this patient as of ``as_of``, lowest
    first: the same numbers the rules use."""
    if test in ("alt", "ast"):
        return hepatic_limits(profile, point)
    if test == "creatinine":
        base = baseline_creatinine(record, as_of)
        return () if base is None else (renal_limit(profile, base),)
    if test in ("troponin_t", "troponin_i"):
        return (cardiac_limit(profile, point),)
    if test == "eosinophils":
        return eosinophil_limits(profile)
    if test == "ferritin":
        return ferritin_limits(profile)
    if test == "temperature":
        return (fever_limit(profile),)
    if test == "bsa_pct":
        return (bsa_limit(profile),)
    return ()
