"""The liver-injury pattern by the R ratio (CLINICAL_REFERENCE.md §3, Liver).

R = (ALT / ALT's ULN) ÷ (ALP / ALP's ULN), from an ALT and an ALP of the same day: R ≥ 5 is
hepatocellular, 2 < R < 5 mixed, R ≤ 2 cholestatic. Source: ACG 2014 DILI guideline (Chalasani et
al., Am J Gastroenterol 2014;109:950), as tabulated at
<https://empendium.com/mcmtextbook/table/031_4013>. In DRESS the initial pattern was cholestatic in
37.1 %, mixed in 27.4 %, hepatocellular in 19.4 % (Lin et al., JAAD 2015;72:984).

R names the pattern of a liver injury, so it is given only when ALT or ALP is above
``r_ratio_injury_uln_multiple`` (2) × its ULN (the hepatic rule's line; RegiSCAR: transaminases
> 2×ULN; DILI expert group: ALP ≥ 2×ULN): near-normal tests (ALT 1.1×ULN, ALP normal: R 1.4)
would otherwise be called "cholestatic". The pattern is read at presentation (the first R) and
follows the course (the latest).

The cut points are the guideline profile's ``r_ratio_hepatocellular`` and ``r_ratio_cholestatic``;
each ULN is the result's own (the laboratory's ref_high, else the profile's default, flagged:
monitoring.limits.uln), and the comparisons are monitoring.limits.decide. A censored ALT or ALP
gives no R (a ratio of a bound is no number). The pattern describes; it raises no alert.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from monitoring import display
from monitoring.limits import Uln, decide, is_exact, uln

if TYPE_CHECKING:
    from monitoring.guideline import GuidelineProfile
    from monitoring.records import LabPoint, PatientRecord

__all__ = ["PATTERNS", "LiverPattern", "r_ratio", "liver_patterns", "latest_pattern", "pattern_words"]

PATTERNS: tuple[str, ...] = ("hepatocellular", "mixed", "cholestatic")


@dataclass(frozen=True)
class LiverPattern:
    """The R ratio of one day's ALT and ALP, and the pattern it names."""

    r: float
    pattern: str  # one of PATTERNS
    alt: LabPoint
    alp: LabPoint
    alt_uln: Uln
    alp_uln: Uln
    alt_x_uln: float  # ALT as a multiple of its ULN
    alp_x_uln: float  # ALP as a multiple of its ULN

    @property
    def day(self) -> dt.date:
        return self.alt.taken_at.date()


    def short(self) -> str:
        """'R 7.1 hepatocellular (2026-11-22)'."""
        return f"R {self.r:.1f} {self.pattern} ({self.day.isoformat()})"

    def words(self) -> str:
        """'R 6.2, hepatocellular (2026-11-30: ALT 400 / ULN 35 ÷ ALP 150 / ULN 120)'; a profile
        default ULN is marked '(default)'."""

        def part(test: str, p: LabPoint, u: Uln) -> str:
            return (f"{display.test_label(test)} {display.number(test, p.value or 0.0)} / ULN "
                    f"{display.number(test, u.value)}" + (" (default)" if u.is_default else ""))

        return (f"R {self.r:.1f}, {self.pattern} ({self.day.isoformat()}: "
                f"{part('alt', self.alt, self.alt_uln)} ÷ {part('alp', self.alp, self.alp_uln)})")


def r_ratio(alt: LabPoint, alp: LabPoint, profile: GuidelineProfile) -> LiverPattern | None:
    """The R ratio of an ALT and an ALP and its pattern; None when either is censored or not a
    number, the ALP is 0 (no ratio), or neither is above ``r_ratio_injury_uln_multiple`` × its
    ULN (no liver injury to name a pattern of). Thresholds: the profile's r_ratio_hepatocellular
    (R at or above it: hepatocellular) and r_ratio_cholestatic (R at or below it: cholestatic);
    ACG 2014 DILI guideline (Chalasani et al.), CLINICAL_REFERENCE.md §3."""
    if not (is_exact(alt) and is_exact(alp)) or alt.value is None or alp.value is None or alp.value <= 0:
        return None
    alt_u, alp_u = uln(profile, "alt", alt.ref_high), uln(profile, "alp", alp.ref_high)
    alt_x, alp_x = alt.value / alt_u.value, alp.value / alp_u.value
    injury = profile.value("r_ratio_injury_uln_multiple")
    if not (decide(alt_x, injury, inclusive=False) or decide(alp_x, injury, inclusive=False)):
        return None
    r = alt_x / alp_x
    if decide(r, profile.value("r_ratio_hepatocellular"), inclusive=True):
        pattern = "hepatocellular"
    elif decide(r, profile.value("r_ratio_cholestatic"), inclusive=False):
        pattern = "mixed"
    else:
        pattern = "cholestatic"
    return LiverPattern(r, pattern, alt, alp, alt_u, alp_u, alt_x, alp_x)


def liver_patterns(record: PatientRecord, profile: GuidelineProfile, as_of: dt.date | None = None) -> list[LiverPattern]:
    """One R ratio per day with an exact ALT and an exact ALP (counted as of ``as_of``), oldest
    first: of that day's results, the ALT and ALP closest in time (the same draw; a tie goes to the
    later pair)."""
    alts: dict[dt.date, list[LabPoint]] = {}
    for p in record.results("alt", as_of):
        if is_exact(p):
            alts.setdefault(p.taken_at.date(), []).append(p)
    out: list[LiverPattern] = []
    alps: dict[dt.date, list[LabPoint]] = {}
    for p in record.results("alp", as_of):
        if is_exact(p):
            alps.setdefault(p.taken_at.date(), []).append(p)
    for day in sorted(alts.keys() & alps.keys()):
        pairs = [(a, b) for a in alts[day] for b in alps[day]]
        # Closest in time; among equals the latest (max of the later time).
        a, b = min(pairs, key=lambda ab: (abs((ab[0].taken_at - ab[1].taken_at).total_seconds()),
                                           -max(ab[0].taken_at, ab[1].taken_at).timestamp()))
        found = r_ratio(a, b, profile)
        if found is not None:
            out.append(found)
    return out


def latest_pattern(record: PatientRecord, profile: GuidelineProfile, as_of: dt.date) -> LiverPattern | None:
    """The most recent day's R ratio as of ``as_of``, or None."""
    found = liver_patterns(record, profile, as_of)
    return found[-1] if found else None


def pattern_words(record: PatientRecord, profile: GuidelineProfile, as_of: dt.date, *, short: bool = False) -> str | None:
    """The pattern at presentation (the first R) and, when it differs, the latest: 'R 11.4,
    hepatocellular (2026-11-22: ...); latest R 2.6, mixed (2026-12-02: ...)' (``short``: 'R 11.4
    hepatocellular (2026-11-22); latest R 2.6 mixed (2026-12-02)'); None without an R."""
    found = liver_patterns(record, profile, as_of)
    if not found:
        return None
    first, last = found[0], found[-1]
    text = (lambda lp: lp.short()) if short else (lambda lp: lp.words())
    if last is first:
        return text(first)
    return f"first {text(first)}; latest {text(last)}"
