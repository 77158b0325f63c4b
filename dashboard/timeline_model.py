"""The timeline model: what the timeline figure and its table show for one patient, in the chosen
unit system.

All clinical judgement comes from ``monitoring`` (limits, steroids, the guideline profile); this
module arranges it for display. Thresholds drawn on the timeline are the profile's numbers applied
to the patient's data (monitoring.limits), never literals.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import streamlit as st

from dashboard import safe
from dashboard.figures import DoseStep, DoseTrack, ExposureBar, Panel, Point, Series, Threshold, Timeline
from dashboard.store import patient_episodes, patient_record, photo_dates, profile
from monitoring import catalogue, display, limits, liver
from monitoring.guideline import GuidelineProfile
from monitoring.models import AlertEpisode
from monitoring.records import LabPoint, PatientRecord

if TYPE_CHECKING:
    import pandas as pd

# Timeline panels: (panel key, title, tests drawn in it).
PANELS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("liver", "ALT and AST", ("alt", "ast")),
    ("kidney", "Creatinine", ("creatinine",)),
    ("eosinophils", "Eosinophils", ("eosinophils",)),
    ("ferritin", "Ferritin", ("ferritin",)),
)
# Drawn only when the patient has results of them (a thin panel each): (key, title, tests, scale).
# Scale "uln": each result as a multiple of its own ULN (monitoring.limits.uln), so bilirubin and ALP
# share one axis and read against the same 1×ULN line, with the liver-injury pattern (R ratio).
OPTIONAL_PANELS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("liver_uln", "Bilirubin and ALP", ("bilirubin", "alp"), "uln"),
    ("troponin", "Troponin", ("troponin_t", "troponin_i"), ""),
    ("crp", "CRP", ("crp",), ""),
    ("temperature", "Temperature", ("temperature",), ""),
)
# The order on the figure, top to bottom (the dose panel comes last).
PANEL_ORDER: tuple[str, ...] = ("liver", "liver_uln", "kidney", "eosinophils", "ferritin", "troponin", "crp", "temperature")
UNIT_SYSTEMS = ("conventional", "SI")
X_ULN = "× ULN"  # the unit of a panel drawn as multiples of each result's ULN
# Tests judged against (or drawn as multiples of) their ULN: the hover says whose ULN it is.
ULN_TESTS = frozenset({"alt", "ast", "alp", "bilirubin", "troponin_t", "troponin_i"})


def alert_onsets(eps: Sequence[AlertEpisode]) -> list[tuple[dt.date, str]]:
    """(onset date, words) of each episode, for the timeline's onset marks."""
    from dashboard.widgets import code_label

    out = []
    for ep in eps:
        words = f"{ep.severity} {code_label(ep.code)} from {ep.onset_date.isoformat()}"
        if ep.closed_at is not None:
            words += f", no longer holding since {ep.closed_at.date().isoformat()} (UTC)"
        out.append((ep.onset_date, words))
    return out


# --- thresholds: the profile's numbers applied to this patient's data -------------------------


def _fmt(test: str, x: float, units: str = "conventional") -> str:
    """A number of ``test`` in the chosen unit system at the test's one display precision."""
    return display.number(test, x, display_unit(test, units))


def baseline_creatinine(
    record: PatientRecord, as_of: dt.date, prof: GuidelineProfile | None = None
) -> tuple[float | None, str]:
    """The baseline creatinine the renal rule uses (monitoring.limits, PRODUCT.md §5), and its origin."""
    found = limits.baseline_creatinine(record, as_of)
    if found is None:
        return None, ""
    return found.value, found.source


def _uln_threshold(
    test: str, points: Sequence[LabPoint], prof: GuidelineProfile, multiple: float, label: str, severity: str, shade: bool
) -> Threshold | None:
    """A ULN-based line that follows each result's own ULN (the laboratory's ref_high wins)."""
    if not points:
        uln = limits.uln(prof, test).value
        return Threshold(f"{test}_{label}", f"{label}", severity, value=uln * multiple, shade_above=shade,
                         basis="profile default ULN")
    ulns = [(u.value, u.is_default) for u in (limits.uln(prof, test, p.ref_high) for p in points)]
    defaults = {is_default for _, is_default in ulns}
    if defaults == {True}:
        basis = "profile default ULN"
    elif defaults == {False}:
        basis = "laboratory ULN"
    else:
        basis = "laboratory ULN where given, else profile default"
    values = [u * multiple for u, _ in ulns]
    if len(set(values)) == 1:
        return Threshold(f"{test}_{label}", label, severity, value=values[0], shade_above=shade, basis=basis)
    steps: list[tuple[dt.datetime, float]] = []
    for p, v in zip(points, values, strict=True):
        if not steps or steps[-1][1] != v:
            steps.append((p.taken_at, v))
    return Threshold(f"{test}_{label}", label, severity, steps=tuple(steps), shade_above=shade, basis=basis)


def panel_thresholds(record: PatientRecord, prof: GuidelineProfile, as_of: dt.date) -> dict[str, list[Threshold]]:
    """Threshold lines per panel, in the canonical unit, from the profile and this patient's data."""
    hep = prof.threshold("hepatic_alt_uln_multiple")
    renal = prof.threshold("renal_creatinine_baseline_multiple")
    out: dict[str, list[Threshold]] = {}
    liver: list[Threshold] = []
    alt = [p for p in record.results("alt") if p.value is not None]
    ast = [p for p in record.results("ast") if p.value is not None]
    for test, pts in (("alt", alt), ("ast", ast)):
        if test == "ast" and not pts:
            continue
        name = "ALT" if test == "alt" else "AST"
        uln = _uln_threshold(test, pts, prof, 1.0, f"{name} ULN", "info", False)
        double = _uln_threshold(test, pts, prof, hep.value, f"{name} {hep.value:g}×ULN", "warning", test == "alt")
        if test == "ast" and liver and uln and double and uln.values() == liver[0].values():
            continue  # same limits as ALT: one pair of lines says it
        liver += [t for t in (uln, double) if t is not None]
    out["liver"] = liver
    base, basis = baseline_creatinine(record, as_of, prof)
    kidney: list[Threshold] = []
    if base is not None:
        kidney.append(Threshold("creatinine_baseline", "baseline", "info", value=base, basis=basis))
        kidney.append(
            Threshold(
                "creatinine_renal",
                f"{renal.value:g}× baseline",
                "warning",
                value=base * renal.value,
                shade_above=True,
                basis=renal.basis if renal.basis != "sourced" else "",
            )
        )
    out["kidney"] = kidney
    eos_mod, eos_high = prof.threshold("eosinophils_moderate"), prof.threshold("eosinophils_high")
    out["eosinophils"] = [
        Threshold("eosinophils_moderate", "RegiSCAR +1", "info", value=eos_mod.value, shade_above=False),
        Threshold("eosinophils_high", "eosinophilia", "warning", value=eos_high.value, shade_above=True),
    ]
    fer, fer_crit = prof.threshold("ferritin_high"), prof.threshold("ferritin_critical")
    out["ferritin"] = [
        Threshold("ferritin_high", "high", "warning", value=fer.value, shade_above=True),
        Threshold("ferritin_critical", "consider HLH", "critical", value=fer_crit.value, shade_above=True),
    ]
    # Troponin above its ULN (the assay's 99th percentile) is CARDIAC_INVOLVEMENT (limits.cardiac_limit):
    # the line follows each result's own ULN, per assay.
    troponin: list[Threshold] = []
    for test in ("troponin_t", "troponin_i"):
        pts = [p for p in record.results(test) if p.value is not None]
        if pts:
            line = _uln_threshold(test, pts, prof, 1.0, f"{catalogue.lookup(test).label} ULN", "critical", True)
            if line is not None and not (troponin and line.values() == troponin[0].values()):
                troponin.append(line)
    out["troponin"] = troponin
    # A multiple of each result's own ULN: the ULN itself is 1 on that scale (no clinical number).
    out["liver_uln"] = [Threshold("liver_uln", "ULN", "info", value=1.0, basis="each result's own ULN")]
    fever = limits.fever_limit(prof)
    basis = prof.threshold("fever_c")
    out["temperature"] = [
        Threshold(fever.key, f"fever {fever.symbol}", fever.severity, value=fever.value, shade_above=True,
                  basis=basis.basis if basis.is_confirmed else f"default ({basis.basis})")
    ]
    return out


def point_limits(
    test: str, point: LabPoint, record: PatientRecord, prof: GuidelineProfile, as_of: dt.date
) -> tuple[limits.Limit, ...]:
    """The lines this result is judged against, in the canonical unit: monitoring.limits, the same
    lines and the same comparison the rules use."""
    return limits.limits_for(test, point, record, prof, as_of)


def flags(test: str, point: LabPoint, record: PatientRecord, prof: GuidelineProfile, as_of: dt.date) -> str:
    """Words for the table: the highest line this result is beyond ('> 2×ULN', '≥ 1.5'), so colour
    is never needed; a censored value that cannot be decided says so."""
    if point.shown_value is None:  # a text result; a '<x' result is judged by its bound (limits)
        return point.value_text or ""
    beyond = ""
    undecided: list[str] = []
    for lim in point_limits(test, point, record, prof, as_of):
        decision = lim.judge(point)
        if decision is True:
            beyond = f"{lim.symbol} {lim.label}"
        elif decision is None:
            undecided.append(lim.label)
    if undecided:
        return (beyond + "; " if beyond else "") + f"censored: cannot tell against {', '.join(undecided)}"
    return beyond


# --- units ------------------------------------------------------------------------------------


def display_unit(test: str, units: str) -> str:
    t = catalogue.lookup(test)
    return t.si_unit if units == "SI" and t.si_unit else t.canonical_unit


def to_display(test: str, value: float, units: str) -> float:
    t = catalogue.lookup(test)
    if units == "SI" and t.si_unit:
        return catalogue.from_canonical(t, value, t.si_unit)
    return value


# --- timeline ---------------------------------------------------------------------------------


def timeline(
    record: PatientRecord, prof: GuidelineProfile, as_of: dt.date, *, units: str = "conventional",
    photos: Sequence[dt.date] = (),
    alert_onsets: Sequence[tuple[dt.date, str]] = (),
    now: dt.datetime | None = None,
) -> Timeline:
    """Everything the timeline figure draws for one patient, in the chosen unit system. The now
    line stands at ``now`` when ``as_of`` is its date, else at the end of ``as_of``
    (monitoring.display.as_of_moment, as in the PDF)."""
    from monitoring.steroids import analyse_course, course_day_words

    thresholds = panel_thresholds(record, prof, as_of)
    patterns = {lp.day: lp for lp in liver.liver_patterns(record, prof, as_of)}
    built: dict[str, Panel] = {}
    layouts = [(key, title, tests, "", False) for key, title, tests in PANELS]
    layouts += [(key, title, tests, scale, True) for key, title, tests, scale in OPTIONAL_PANELS]
    for key, title, tests, scale, optional in layouts:
        unit = X_ULN if scale == "uln" else display.unit_label(display_unit(tests[0], units))
        series: list[Series] = []
        for test in tests:
            pts = _points(test, record, prof, as_of, units, per_uln=scale == "uln", patterns=patterns)
            if pts or test == tests[0]:
                series.append(Series(test, catalogue.lookup(test).label, unit, pts))
        lines = thresholds.get(key, [])
        converted = tuple(lines if scale == "uln" else (_convert_threshold(th, tests[0], units) for th in lines))
        drawn = [s.label for s in series if s.points]
        note = ""
        if key == "liver_uln" and (words := liver.pattern_words(record, prof, as_of, short=True)) is not None:
            note = f"liver-injury pattern: {words}"  # in full in the page header
        built[key] = Panel(key, " and ".join(drawn) if drawn else title, unit, tuple(series), converted,
                           y_min=36.0 if key == "temperature" else None, optional=optional, note=note)
    panels = [built[key] for key in PANEL_ORDER]
    course = analyse_course(record, as_of)
    steps = tuple(DoseStep(p.date, p.pred_eq_mg, p.planned) for p in course.schedule)
    dose = DoseTrack(
        steps=steps,
        second_line=tuple(course.second_line),
        course_words=course_day_words(course.course_start, course.day_of_course),
    )
    return Timeline(onset=record.patient.onset_date, today=as_of, panels=tuple(panels), dose=dose, photo_dates=tuple(photos),
                    alert_onsets=tuple(alert_onsets), now=display.as_of_moment(as_of, now), exposures=exposure_bars(record))


def exposure_bars(record: PatientRecord) -> tuple[ExposureBar, ...]:
    """Each drug's given periods, culprits and cross-reacting drugs first (monitoring.exposure)."""
    from monitoring.exposure import drug_exposures

    return tuple(
        ExposureBar(e.label, tuple((p.start, p.stop) for p in e.periods), e.culprit or "") for e in drug_exposures(record)
    )


def _reference(test: str, p: LabPoint, record: PatientRecord, prof: GuidelineProfile, as_of: dt.date, units: str) -> str:
    """The lines a result is judged against, in words for its hover: '2×ULN 70, ULN 35 (laboratory)',
    '≥ 1.5' for a line that is a number; the laboratory's ULN for a test the profile has no line for."""
    parts = []
    for lim in point_limits(test, p, record, prof, as_of):
        number = _fmt(test, to_display(test, lim.value, units), units)
        parts.append(f"{lim.label} {number}" if any(c.isalpha() for c in lim.label) else f"{lim.symbol} {number}")
    ref = ", ".join(parts)
    if test in ULN_TESTS:
        u = limits.uln(prof, test, p.ref_high)
        if not parts:
            ref = f"ULN {_fmt(test, to_display(test, u.value, units), units)}"
        ref += " (profile default)" if u.is_default else " (laboratory)"
    elif not parts and p.ref_high is not None:
        ref = f"ULN {_fmt(test, to_display(test, p.ref_high, units), units)} (laboratory)"
    return ref


def _points(
    test: str, record: PatientRecord, prof: GuidelineProfile, as_of: dt.date, units: str, *, per_uln: bool = False,
    patterns: dict[dt.date, liver.LiverPattern] | None = None,
) -> tuple[Point, ...]:
    """The drawn results of ``test``: in the chosen unit system, or (``per_uln``) as multiples of
    each result's own ULN (monitoring.limits.uln); an ALP's hover names that day's R ratio."""
    out = []
    unit_shown = display_unit(test, units)
    for p in record.results(test):
        number = p.shown_value  # a censored result is drawn at its bound, its comparator in the hover
        if number is None:
            continue
        ref = _reference(test, p, record, prof, as_of, units)
        if per_uln:
            value = number / limits.uln(prof, test, p.ref_high).value
            if test == "alp" and patterns and (lp := patterns.get(p.taken_at.date())) is not None and lp.alp is p:
                ref += f" · R {lp.r:.1f}, {lp.pattern}"
        else:
            value = to_display(test, number, units)
        out.append(
            Point(
                taken_at=p.taken_at,
                value=value,
                canonical=number,
                canonical_unit=p.unit,
                # As received (stored text): escaped for Plotly, which reads tags in hover text.
                received=safe.plot(display.as_received(p.original_value, p.original_unit)
                                   + (f" (laboratory flag {p.abnormal_flags})" if p.abnormal_flags else "")),
                amended=p.amended,
                preliminary=p.status == "preliminary",
                reference=ref,
                comparator=limits.comparator_of(p),
                # As people read them (monitoring.display): the ×ULN multiple keeps two decimals.
                shown=(f"{limits.comparator_of(p) or ''}{value:.2f}" if per_uln
                       else display.value_text(test, value, unit_shown, limits.comparator_of(p))),
                canonical_text=display.quantity(test, number, p.unit, limits.comparator_of(p)),
            )
        )
    return tuple(out)


@st.cache_data(show_spinner=False, max_entries=32)
def timeline_figure(
    url: str,
    version: tuple[Any, ...],
    mrn: str,
    as_of: dt.date,
    units: str,
    x_mode: str,
    x_range: tuple[dt.date, dt.date] | None,
    profile_key: str = "",
    now: dt.datetime | None = None,
) -> Any:
    """The patient's timeline figure, built once per data version, view and ``now`` (the page
    passes the current minute, so the now line moves on; a few hundred ms for months of daily
    results): reruns that change nothing on the figure reuse it."""
    from dashboard.figures import timeline_figure as build

    record = patient_record(url, version, mrn)
    if record is None:
        raise LookupError(f"unknown MRN {mrn!r}")
    photos = photo_dates(url, version, record.patient.id)
    onsets = alert_onsets(patient_episodes(url, version, record.patient.id or 0))
    tl = timeline(record, profile(), as_of, units=units, photos=photos, alert_onsets=onsets, now=now)
    return build(tl, x_mode=x_mode, x_range=x_range)


def _convert_threshold(th: Threshold, test: str, units: str) -> Threshold:
    if units != "SI" or not catalogue.lookup(test).si_unit:
        return th
    return Threshold(
        th.key,
        th.label,
        th.severity,
        value=None if th.value is None else to_display(test, th.value, units),
        steps=tuple((when, to_display(test, v, units)) for when, v in th.steps),
        shade_above=th.shade_above,
        basis=th.basis,
    )


TABLE_TESTS: tuple[str, ...] = (
    "alt", "ast", "alp", "ggt", "bilirubin", "creatinine", "eosinophils", "eosinophils_pct", "wbc",
    "atypical_lymphocytes_pct", "ferritin", "troponin_t", "troponin_i", "crp", "temperature", "bsa_pct",
    "hhv6_pcr", "ebv_pcr", "cmv_pcr", "tsh", "glucose", "weight",
)


def timeline_table(record: PatientRecord, prof: GuidelineProfile, as_of: dt.date, *, units: str = "conventional") -> pd.DataFrame:
    """The same data as the figure, one row per result, oldest first: value as shown, as received,
    canonical, the reference in force and the lines it is above, in words."""
    import pandas as pd

    onset = record.patient.onset_date
    rows: list[dict[str, Any]] = []
    for p in record.labs:
        t = catalogue.lookup(p.test)
        ref_high = p.ref_high
        # The test's one display precision: a converted value must not pretend to more than it had.
        number = p.shown_value  # a '<x' result shows its bound with its comparator
        shown = None if number is None else display.value_text(
            p.test, to_display(p.test, number, units), display_unit(p.test, units), limits.comparator_of(p)
        )
        if prof.default_uln(p.test) is not None:
            u = limits.uln(prof, p.test, ref_high)
            reference = f"ULN {_fmt(p.test, to_display(p.test, u.value, units), units)}" + (
                " (profile default)" if u.is_default else " (laboratory)"
            )
        elif ref_high is not None:
            reference = f"ULN {_fmt(p.test, to_display(p.test, ref_high, units), units)} (laboratory)"
        else:
            reference = ""
        rows.append(
            {
                "taken_at": p.taken_at.strftime("%Y-%m-%d %H:%M"),
                "day since onset": (p.taken_at.date() - onset).days if onset else None,
                "test": t.label,
                "value": shown,
                "unit": display.unit_label(display_unit(p.test, units)),
                "above": flags(p.test, p, record, prof, as_of),
                "as received": display.as_received(p.original_value, p.original_unit),
                "laboratory flag": p.abnormal_flags or "",
                "canonical": (
                    display.quantity(p.test, number, p.unit, limits.comparator_of(p)) if number is not None else (p.value_text or "")
                ),
                "reference": reference,
                "source": p.source,
                "amended": "amended" if p.amended else "",
                "status": p.status,  # final, preliminary (until its final replaces it), amended
            }
        )
    return pd.DataFrame(rows)


def quoted_results(alert: Any) -> list[dict[str, Any]]:
    """The results an alert quotes, as table rows a clinician can trace: row id, test, value with
    its comparator and unit at the test's display precision, date and age in days as of the
    evaluation date (PRODUCT.md §5, age of the evidence)."""
    rows = []
    for q in alert.quoted:
        value = (
            display.quantity(q["test"], q["value"], q["unit"], q.get("comparator"))
            if q["value"] is not None
            else (q.get("value_text") or q.get("original_value") or "")
        )
        rows.append(
            {"row": q["row_id"], "test": display.test_label(q["test"]), "value": value, "taken": q["taken_at"].replace("T", " ")[:16],
             "age (days)": q["age_days"]}
        )
    return rows
