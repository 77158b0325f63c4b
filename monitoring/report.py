"""One-patient clinic report as a PDF, for the clinic letter.

Everything in it comes from the engine as of one date: header facts, the steroid course, a static
timeline figure, the current alerts with their sources, the saved taper plan, the earliest
patch-test date with its reasons, RegiSCAR with its items, the sequelae checklist and viral PCR.
Who prepared it (the signed-in clinician), the unit and a contact line head the first page; the
unit and contact come from ``DRESS_REPORT_UNIT`` and ``DRESS_REPORT_CONTACT`` (``ReportSettings``).

The figure is drawn here with matplotlib (offline, no browser: Plotly's static export needs
kaleido >= 1, which drives a Chrome process) from the same record the dashboard draws; a caller
may pass its own PNG instead (``figure_png``). ``monitoring`` never imports Streamlit or the
dashboard.
"""

from __future__ import annotations

import datetime as dt
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from xml.sax.saxutils import escape

from monitoring import catalogue, display, severity
from monitoring.exposure import drug_exposures
from monitoring.followup import (
    ChecklistItem,
    PatchTestPlan,
    PcrResult,
    patch_test_plan,
    sequelae_checklist,
    viral_pcr_results,
)
from monitoring.guideline import GuidelineProfile, load_profile
from monitoring.limits import (
    Limit,
    baseline_creatinine,
    cardiac_limit,
    close,
    comparator_of,
    eosinophil_limits,
    ferritin_limits,
    fever_limit,
    hepatic_limits,
    renal_limit,
    uln,
)
from monitoring.liver import pattern_words
from monitoring.records import DoseRow, PatientRecord
from monitoring.regiscar import RegiscarResult, score_regiscar
from monitoring.rules import NOT_A_DIAGNOSIS, Alert, evaluate
from monitoring.steroids import CourseInfo, analyse_course, course_day_words, dose_lines
from monitoring.taper import TaperError, load_formulary, saved_plan


@dataclass(frozen=True)
class ReportData:
    record: PatientRecord
    as_of: dt.date
    profile_name: str
    profile_version: str
    course: CourseInfo
    alerts: tuple[Alert, ...]
    plan: tuple[DoseRow, ...]
    patch_test: PatchTestPlan
    regiscar: RegiscarResult
    checklist: tuple[ChecklistItem, ...]
    pcr: tuple[PcrResult, ...]
    latest: tuple[LatestResult, ...] = ()
    figure_panels: tuple[str, ...] = ()  # the titles of the drawn figure's panels (figure_panel_titles)
    liver_pattern: str | None = None  # the liver-injury pattern in words (monitoring.liver.pattern_words)


@dataclass(frozen=True)
class LatestResult:
    """The latest result of one test as of the report's date, as the report prints it: a censored
    result with its comparator ("<30 ng/L", ">1000 ng/mL", PRODUCT.md §4)."""

    label: str
    taken_at: dt.datetime
    shown: str
    as_received: str
    status: str


def latest_results(record: PatientRecord, as_of: dt.date) -> list[LatestResult]:
    """One row per catalogue test with a result counted as of ``as_of``, in catalogue order."""
    out = []
    for test in catalogue.CATALOGUE:
        p = record.latest(test, as_of)
        if p is None:
            continue
        number = p.shown_value
        shown = display.quantity(test, number, p.unit, comparator_of(p)) if number is not None else (p.value_text or "")
        out.append(LatestResult(display.test_label(test), p.taken_at, shown, display.as_received(p.original_value, p.original_unit), p.status))
    return out


def report_data(record: PatientRecord, as_of: dt.date, profile: GuidelineProfile | None = None) -> ReportData:
    """Everything the report shows, computed by the engine as of ``as_of``."""
    prof = profile or load_profile()
    return ReportData(
        record=record,
        as_of=as_of,
        profile_name=prof.name,
        profile_version=prof.version,
        course=analyse_course(record, as_of),
        alerts=tuple(evaluate(record, as_of, prof)),
        plan=saved_plan(record, as_of),
        patch_test=patch_test_plan(record, prof),
        regiscar=score_regiscar(record, as_of, prof),
        checklist=tuple(sequelae_checklist(record, as_of, profile=prof)),
        pcr=tuple(viral_pcr_results(record, as_of)),
        latest=tuple(latest_results(record, as_of)),
        figure_panels=figure_panel_titles(record, as_of),
        liver_pattern=pattern_words(record, prof, as_of),
    )


# --------------------------------------------------------------------------------------------
# Static timeline figure (matplotlib, object API: no global pyplot state, safe in a server)

# The figure's panels, top to bottom in the dashboard's order (dashboard.timeline_model.PANEL_ORDER):
# (key, tests drawn, scale, optional). An optional panel is drawn (thin) only when the patient has a
# result of one of its tests, as on the dashboard; scale "uln" draws each result as a multiple of
# its own ULN (monitoring.limits.uln), so bilirubin and ALP share one axis and one 1×ULN line.
_PANELS: tuple[tuple[str, tuple[str, ...], str, bool], ...] = (
    ("liver", ("alt", "ast"), "", False),
    ("liver_uln", ("bilirubin", "alp"), "uln", True),
    ("kidney", ("creatinine",), "", False),
    ("eosinophils", ("eosinophils",), "", False),
    ("ferritin", ("ferritin",), "", False),
    ("troponin", ("troponin_t", "troponin_i"), "", True),
    ("crp", ("crp",), "", True),
    ("temperature", ("temperature",), "", False),
)
X_ULN = "× ULN"  # the unit of a panel drawn as multiples of each result's own ULN
# Height of a panel relative to a full one: optional panels are thin; the exposure panel grows per drug.
_THIN = 0.6
_EXPOSURE_PER_DRUG = 0.2
_EXPOSURE_MIN = 0.45
# Inches: a full panel's share of the figure's height (7.4 in for six full panels, as before), and
# the fixed margins above and below the panels.
_INCH_PER_PANEL = 7.4 / 6
_TOP_IN, _BOTTOM_IN = 0.22, 0.37
_EXPOSURE_LABEL_CHARS = 24  # a longer drug label is shortened with "…" (the dashboard's rule)


def _panel_title(tests: tuple[str, ...], scale: str = "") -> str:
    """'ALT / AST (U/L)': the labels and the canonical unit as the catalogue and monitoring.display
    give them (one place for a test's label and unit, issue 15); '(× ULN)' for a ×ULN panel."""
    names = " / ".join(display.test_label(t) for t in tests)
    if scale == "uln":
        return f"{names} ({X_ULN})"
    units = {catalogue.lookup(t).canonical_unit for t in tests}
    if len(units) != 1:
        raise ValueError(f"panel {tests} mixes units {sorted(units)}")
    return f"{names} ({display.unit_label(units.pop())})"


def plain(text: str) -> str:
    """Stored text (a drug name) as plain matplotlib text: a '$' would start mathtext."""
    return text.replace("$", r"\$")

# ALT and AST differ by marker and dash as well as colour (issue 18 point 6): a black-and-white
# print or a colour-blind reader tells them apart. As on the dashboard (dashboard.figures
# SERIES_*), the styles run on across the panels with a legend (ALT, AST, then bilirubin, ALP):
# bilirubin and ALP never look like ALT and AST.
_SERIES_STYLES: tuple[tuple[str, str, str], ...] = (
    ("#1f3b73", "o", "-"), ("#7b3294", "s", "--"), ("#00897b", "*", ":"), ("#5d4037", "x", "-."),
)
# Line colours follow the alert a threshold belongs to (EOSINOPHILIA, HEPATIC and RENAL are
# warnings; ferritin >= 3000 is critical), in the one severity colour key (monitoring.severity:
# INK, the colours that read on white paper); a baseline, which is no limit, is grey-blue.
_REF = "#546e7a"
_MAX_DATE_TICKS = 7
DATE_TICK_FORMAT = "%Y-%m-%d"  # the report's one date format: every tick a whole, unambiguous date


def _figure_panels(
    record: PatientRecord, as_of: dt.date
) -> tuple[dict[str, list[Any]], list[tuple[str, tuple[str, ...], str, bool]]]:
    """The numeric results counted as of ``as_of`` per test (a censored '<30' one too, drawn at its
    bound as on the dashboard), and the panels the figure draws: every
    panel that is not optional, an optional one only when one of its tests has a result."""
    counted = {t: [p for p in record.results(t, as_of) if p.shown_value is not None] for _, tests, _, _ in _PANELS for t in tests}
    panels: list[tuple[str, tuple[str, ...], str, bool]] = []
    for key, tests, scale, optional in _PANELS:
        drawn = tuple(t for t in tests if counted[t])
        if not optional:
            panels.append((key, tests, scale, optional))
        elif drawn:  # titled, as on the dashboard, by the tests it draws ('Troponin T (ng/L)')
            panels.append((key, drawn, scale, optional))
    return counted, panels


DOSE_TITLE = "Systemic steroid, prednisone-equivalent mg/day (solid: given, dashed: planned)"


def figure_panel_titles(record: PatientRecord, as_of: dt.date) -> tuple[str, ...]:
    """The titles of the figure's panels, top to bottom (the report prints them under the figure,
    so the figure's content is also text)."""
    _, panels = _figure_panels(record, as_of)
    titles = [_panel_title(tests, scale) for _, tests, scale, _ in panels]
    return (*titles, *((EXPOSURE_TITLE,) if drug_exposures(record) else ()), DOSE_TITLE)


def _drawn_value(prof: GuidelineProfile, p: Any, scale: str) -> float:
    """A result as drawn: its value (a censored one's bound: ``shown_value``), or (scale "uln")
    that as a multiple of its own ULN."""
    return float(p.shown_value) / uln(prof, p.test, p.ref_high).value if scale == "uln" else float(p.shown_value)


def timeline_figure(
    record: PatientRecord, as_of: dt.date, profile: GuidelineProfile | None = None, *, now: dt.datetime | None = None
) -> Any:
    """The patient's timeline as a matplotlib Figure (object API: no global pyplot state, safe in
    a server): liver enzymes with ULN and 2×ULN following each result's own ULN, creatinine with the
    baseline and 1.5× baseline, eosinophils with 0.7 and 1.5 ×10^9/L, ferritin with 500 and
    3000 ng/mL, temperature with the fever line (all from the guideline profile through
    monitoring.limits), and the prednisone-equivalent dose as a step line (given solid up to the
    as-of moment, planned dashed) with IVIG / cyclosporine starts marked.

    When the patient has such results, as on the dashboard, thin panels: bilirubin and ALP as
    multiples of each result's own ULN with the liver-injury pattern (monitoring.liver), troponin
    with each assay's ULN (the CARDIAC_INVOLVEMENT line, monitoring.limits.cardiac_limit), CRP; and
    when the schedule has drugs, one exposure bar per drug (monitoring.exposure), culprits and
    cross-reacting drugs first, red and marked ‼. The figure grows with its panels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import DateFormatter, DayLocator
    from matplotlib.figure import Figure

    prof = profile or load_profile()
    course = analyse_course(record, as_of)
    moment = display.as_of_moment(as_of, now)
    counted, panels = _figure_panels(record, as_of)
    exposures = drug_exposures(record)
    heights = [_THIN if optional else 1.0 for _, _, _, optional in panels]
    if exposures:
        heights.append(max(_EXPOSURE_MIN, _EXPOSURE_PER_DRUG * len(exposures)))
    heights.append(1.0)  # the dose panel
    height_in = _TOP_IN + _BOTTOM_IN + (7.4 - _TOP_IN - _BOTTOM_IN) * sum(heights) / 6
    fig = Figure(figsize=(7.6, height_in), dpi=150)
    FigureCanvasAgg(fig)
    axes = list(fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights}))
    dates = [p.taken_at for pts in counted.values() for p in pts] + [dt.datetime.combine(d.date, dt.time()) for d in course.schedule]
    start = min(dates, default=dt.datetime.combine(as_of - dt.timedelta(days=30), dt.time()))
    if record.patient.onset_date:
        start = min(start, dt.datetime.combine(record.patient.onset_date, dt.time()))
    end = max([*dates, moment]) + dt.timedelta(days=3)
    start -= dt.timedelta(days=2)

    style = 0  # the next style of a panel with a legend
    for ax, (key, tests, scale, _) in zip(axes, panels, strict=False):
        title = _panel_title(tests, scale)
        if key == "liver_uln" and (words := pattern_words(record, prof, as_of, short=True)) is not None:
            title += f"\nliver-injury pattern: {words}"  # the dashboard's words (monitoring.liver)
        ax.set_title(title, fontsize=8, loc="left", pad=2)
        drawn = False
        named = len(tests) > 1  # in a legend: its series take the next styles
        styles = [_SERIES_STYLES[(style + i) % len(_SERIES_STYLES)] if named else _SERIES_STYLES[i] for i in range(len(tests))]
        style += len(tests) if named else 0
        for (colour, marker, dash), test in zip(styles, tests, strict=True):
            pts = counted[test]
            if pts:
                ax.plot([p.taken_at for p in pts], [_drawn_value(prof, p, scale) for p in pts], marker=marker, ms=3.2, lw=1.4,
                        ls=dash, color=colour, label=display.test_label(test))
                drawn = True
                # A censored result ('<30', '>3000') is drawn at its bound, hollow and with its
                # comparator, never as if measured there.
                for p in pts:
                    if (comparator := comparator_of(p)) is not None:
                        y = _drawn_value(prof, p, scale)
                        ax.plot([p.taken_at], [y], marker=marker, ms=5, ls="none", mfc="white", mec=colour, label="_censored")
                        # On a ×ULN axis the bound in its own unit ('<0.2 mg/dL'), else the number.
                        words = (display.quantity(test, float(p.shown_value), p.unit, comparator) if scale == "uln"
                                 else f"{comparator}{display.number(test, float(p.shown_value))}")
                        ax.annotate(words, xy=(p.taken_at, y), xytext=(3, 2), textcoords="offset points", fontsize=5.5, color=colour)
        lines = _thresholds(tests[0], record, as_of, prof, counted)
        for i, line in enumerate(lines):
            if len(line.steps) == 1:
                ax.axhline(line.last, color=line.colour, lw=0.9, ls="--")
            else:
                line_xs = [start, *(when for when, _ in line.steps[1:]), end]
                ys = [v for _, v in line.steps] + [line.last]
                ax.step(line_xs, ys, where="post", color=line.colour, lw=0.9, ls="--")
            # Lower line's label under it, upper line's over it: close lines keep readable labels.
            ax.annotate(line.label, xy=(1.0, line.last), xycoords=("axes fraction", "data"), xytext=(3, 0), textcoords="offset points",
                        fontsize=6.5, color=line.colour, va=("top" if i == 0 and len(lines) > 1 else "bottom"))
        if len(tests) > 1 and drawn:
            ax.legend(fontsize=6.5, loc="best", frameon=True, framealpha=0.85)
        if not drawn:
            ax.text(0.5, 0.5, "no results", transform=ax.transAxes, ha="center", va="center", fontsize=7, color="#777777")
        values = [_drawn_value(prof, p, scale) for t in tests for p in counted[t]] + [v for line in lines for _, v in line.steps]
        if tests[0] == "temperature" and values:
            # An axis from 0 °C would flatten every fever: the readings' own span, with room.
            ax.set_ylim(min(values) - 0.5, max(values) + 0.5)
        else:
            ax.set_ylim(0, max(values, default=1.0) * 1.15 or 1.0)

    dose_ax = axes[-1]
    dose_ax.set_title(DOSE_TITLE, fontsize=8, loc="left", pad=2)
    sched = list(course.schedule)
    if sched:
        # Given solid up to the as-of moment, the plan dashed from there (one rule: steroids.dose_lines).
        given, planned = dose_lines([(s.date, s.pred_eq_mg, s.planned) for s in sched], moment)
        if given:
            dose_ax.step([x for x, _ in given], [mg for _, mg in given], where="post", color="#263238", lw=1.8)
        if planned:
            xs = [x for x, _ in planned]
            ys = [mg for _, mg in planned]
            xs.append(max(xs[-1] + dt.timedelta(days=1), end))
            ys.append(ys[-1])
            dose_ax.step(xs, ys, where="post", color="#607d8b", lw=1.6, ls="--")
            end = max(end, xs[-1])
        top = max(s.pred_eq_mg for s in sched) or 10.0
        dose_ax.set_ylim(0, top * 1.25)
        for drug, day in course.second_line:
            x = dt.datetime.combine(day, dt.time())
            for ax in axes:
                ax.axvline(x, color="#6a1b9a", lw=0.8, ls="-.")
            dose_ax.annotate("IVIG" if drug == "ivig" else plain(drug), xy=(x, top * 1.1), fontsize=6.5, color="#6a1b9a")
    else:
        dose_ax.text(0.5, 0.5, "no systemic steroid recorded", transform=dose_ax.transAxes, ha="center", va="center", fontsize=7,
                     color="#777777")
        dose_ax.set_ylim(0, 10)
    if exposures:
        _draw_exposures(axes[-2], exposures, start, end, moment)
    for ax in axes:
        ax.axvline(moment, color="#9e9e9e", lw=0.8, ls=":")
        ax.tick_params(labelsize=7)
        ax.grid(True, axis="y", lw=0.3, color="#dddddd")
        ax.set_xlim(start, end)
    dose_ax.annotate(f"as of {moment.strftime('%Y-%m-%d %H:%M')}", xy=(moment, 1.0), xycoords=("data", "axes fraction"),
                     xytext=(-3, -3), textcoords="offset points", fontsize=6.5, color="#616161", ha="right", va="top")
    span_days = max(1, (end - start).days)
    dose_ax.xaxis.set_major_locator(DayLocator(interval=max(1, -(-span_days // _MAX_DATE_TICKS))))
    dose_ax.xaxis.set_major_formatter(DateFormatter(DATE_TICK_FORMAT))
    fig.subplots_adjust(left=0.07, right=0.80, top=1 - _TOP_IN / height_in, bottom=_BOTTOM_IN / height_in, hspace=0.5)
    return fig


EXPOSURE_TITLE = "Drug exposure (‼ red: culprit or cross-reacting drug; dotted: planned or no stop recorded)"


def _draw_exposures(ax: Any, exposures: Sequence[Any], first: dt.datetime, end: dt.datetime, moment: dt.datetime) -> None:
    """One bar per drug (monitoring.exposure.drug_exposures: culprits and cross-reacting drugs
    first), as the dashboard draws them: solid where given up to the as-of moment, dotted beyond it
    (the plan, or no stop recorded); a culprit or cross-reacting drug red and marked ‼ in its label
    (never by colour alone); a period begun before the axis starts at its edge with a ◀ mark."""
    ax.set_title(EXPOSURE_TITLE, fontsize=8, loc="left", pad=2)
    n = len(exposures)
    for i, e in enumerate(exposures):
        y = float(n - 1 - i)
        colour = _SEVERITY_COLOURS["critical"] if e.culprit else _SERIES_STYLES[0][0]
        for period in e.periods:
            began = dt.datetime.combine(period.start, dt.time())
            a = max(began, first)
            b = dt.datetime.combine(period.stop, dt.time()) if period.stop is not None else end
            if min(b, moment) > a:
                ax.plot([a, min(b, moment)], [y, y], color=colour, lw=4.5, solid_capstyle="butt", ls="-")
            if b > max(a, moment):
                ax.plot([max(a, moment), b], [y, y], color=colour, lw=1.6, ls=":")
            if began < first:
                ax.plot([first], [y], marker="<", ms=5, color=colour, ls="none", clip_on=False)
        label = e.label if len(e.label) <= _EXPOSURE_LABEL_CHARS else e.label[: _EXPOSURE_LABEL_CHARS - 1] + "…"
        ax.text(1.005, y, plain(f"‼ {label}" if e.culprit else label), transform=ax.get_yaxis_transform(), ha="left", va="center",
                fontsize=6.5, color=colour)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_yticks([])


def timeline_png(
    record: PatientRecord, as_of: dt.date, profile: GuidelineProfile | None = None, *, dpi: int = 150, now: dt.datetime | None = None
) -> bytes:
    """``timeline_figure`` as a PNG."""
    fig = timeline_figure(record, as_of, profile, now=now)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


@dataclass(frozen=True)
class _Line:
    """A threshold line of the static figure: flat, or in steps where the limit changes (each ALT
    result judged against its own ULN, as on the dashboard)."""

    label: str
    steps: tuple[tuple[dt.datetime | None, float], ...]  # (from, value); a flat line has one step from None
    colour: str

    @property
    def last(self) -> float:
        return self.steps[-1][1]


_SEVERITY_COLOURS = severity.INK


def _following(per_point: Sequence[tuple[dt.datetime, Limit]], label: str) -> _Line:
    """A line following each result's own limit: a step where the limit changes; labelled with
    the latest limit, '(default)' when that is the profile's default ULN (no laboratory ULN)."""
    steps: list[tuple[dt.datetime | None, float]] = []
    for when, lim in per_point:
        if not steps or not close(steps[-1][1], lim.value):
            steps.append((when if steps else None, lim.value))
    last = per_point[-1][1]
    tag = " (default)" if last.basis != "laboratory" else ""
    return _Line(f"{label}{tag}", tuple(steps), _SEVERITY_COLOURS[last.severity])


def _thresholds(
    test: str, record: PatientRecord, as_of: dt.date, prof: GuidelineProfile, counted: dict[str, list[Any]]
) -> list[_Line]:
    """Threshold lines of the panel whose first test is ``test``, from monitoring.limits (the
    numbers and comparisons the rules use): ALT's ULN and 2×ULN and each troponin assay's ULN follow each result's own ULN;
    creatinine's baseline is the rules'; a ×ULN panel's line is 1 (each result's own ULN)."""
    if test == "alt":
        pts = counted["alt"]
        if not pts:
            return []
        per_point = [(p.taken_at, hepatic_limits(prof, p)) for p in pts]
        return [
            _following([(when, lims[i]) for when, lims in per_point],
                       f"{per_point[-1][1][i].label} {display.number('alt', per_point[-1][1][i].value)}")
            for i in range(2)
        ]
    if test in ("bilirubin", "alp"):  # the ×ULN panel
        return [_Line("ULN (each result's own)", ((None, 1.0),), _SEVERITY_COLOURS["info"])]
    if test in ("troponin_t", "troponin_i"):
        # Above its ULN (the assay's 99th percentile) is CARDIAC_INVOLVEMENT: one line per assay.
        out: list[_Line] = []
        for assay in ("troponin_t", "troponin_i"):
            if counted.get(assay):
                last = cardiac_limit(prof, counted[assay][-1])
                out.append(_following([(p.taken_at, cardiac_limit(prof, p)) for p in counted[assay]],
                                      f"{display.test_label(assay)} {last.label} {display.number(assay, last.value)}"))
        return out
    if test == "creatinine":
        base = baseline_creatinine(record, as_of)
        if base is None:
            return []
        lim = renal_limit(prof, base)
        basis = "recorded" if base.recorded else "lowest"
        return [
            _Line(f"baseline {display.number('creatinine', base.value)} ({basis})", ((None, base.value),), _REF),
            _Line(f"{lim.label} {display.number('creatinine', lim.value)}", ((None, lim.value),), _SEVERITY_COLOURS[lim.severity]),
        ]
    if test == "eosinophils":
        return [_Line(lim.label, ((None, lim.value),), _SEVERITY_COLOURS[lim.severity]) for lim in eosinophil_limits(prof)]
    if test == "ferritin":
        return [_Line(lim.label, ((None, lim.value),), _SEVERITY_COLOURS[lim.severity]) for lim in ferritin_limits(prof)]
    if test == "temperature":
        fever = fever_limit(prof)
        return [_Line(f"fever {fever.symbol} {fever.label} °C", ((None, fever.value),), _SEVERITY_COLOURS[fever.severity])]
    return []


# --------------------------------------------------------------------------------------------
# PDF (reportlab)

UNIT_ENV = "DRESS_REPORT_UNIT"
CONTACT_ENV = "DRESS_REPORT_CONTACT"


@dataclass(frozen=True)
class ReportSettings:
    """Who the report comes from, printed under the title: the unit (``DRESS_REPORT_UNIT``, e.g.
    'Dermatology, St Elsewhere Hospital') and a contact line (``DRESS_REPORT_CONTACT``, e.g.
    'DRESS team bleep 4321 · derm.dress@hospital.example'). Unset, the report says so."""

    unit: str = ""
    contact: str = ""

    @classmethod
    def from_environment(cls, environ: Any = None) -> ReportSettings:
        env = os.environ if environ is None else environ
        return cls(unit=" ".join(str(env.get(UNIT_ENV, "")).split()), contact=" ".join(str(env.get(CONTACT_ENV, "")).split()))



@lru_cache(maxsize=1)
def _fonts() -> tuple[str, str]:
    """DejaVu Sans (shipped with matplotlib) so that ≥, ×, µ and accents print; Helvetica if absent."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    try:
        import matplotlib

        base = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
        pdfmetrics.registerFont(TTFont("DejaVuSans", os.path.join(base, "DejaVuSans.ttf")))
        pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", os.path.join(base, "DejaVuSans-Bold.ttf")))
        return "DejaVuSans", "DejaVuSans-Bold"
    except (ImportError, OSError):  # pragma: no cover - matplotlib is a pinned requirement
        return "Helvetica", "Helvetica-Bold"


def _p(text: Any) -> str:
    return escape("" if text is None else str(text))


def _fmt_date(d: dt.date | None) -> str:
    return d.isoformat() if d else "—"


def _mg(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}g}"


def prepared_line(author: str | None, settings: ReportSettings, generated: dt.datetime) -> str:
    """The line under the report's title (plain text): who prepared it, the unit, the contact."""
    by = f"Prepared by {author}" if author else "Prepared by: not recorded"
    unit = settings.unit or f"not set ({UNIT_ENV})"
    contact = settings.contact or f"not set ({CONTACT_ENV})"
    return f"{by} · Unit: {unit} · Contact: {contact} · generated {generated.isoformat(sep=' ', timespec='minutes')}"


def footer_line(head: str, author: str | None, tail: str, width_of: Callable[[str], float], room: float) -> str:
    """Each page's footer: ``head`` (patient, MRN, dates), " by ``author``", ``tail`` (page number,
    SYNTHETIC). An author too long for the line (a long display name: the full one heads page 1)
    is shortened with "…" so that the page number and the SYNTHETIC mark stay on the page."""
    if not author:
        return head + tail
    text = f"{head} by {author}{tail}"
    if width_of(text) <= room:
        return text
    cut = len(author)
    while cut > 1 and width_of(f"{head} by {author[:cut].rstrip()}…{tail}") > room:
        cut -= 1
    return f"{head} by {author[:cut].rstrip()}…{tail}"


FIGURE_MIN_SCALE = 0.8  # the figure shrinks to fit the page it starts on down to this, else takes the next page


def _fitting_image(png: bytes, width: float, height: float, reserve: float = 0.0) -> Any:
    """The figure as a reportlab Image that shrinks to the room left on its page (less
    ``reserve`` points for the captions under it) when it fits there at no less than
    ``FIGURE_MIN_SCALE`` of its size (a tall figure follows the header instead of leaving the
    first page blank), else takes its size on the next page."""
    from reportlab.platypus import Image

    class FittingImage(Image):
        def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
            scale = min(1.0, avail_width / width, max(0.0, avail_height - reserve) / height)
            if scale < FIGURE_MIN_SCALE:
                scale = min(1.0, avail_width / width)
            self.drawWidth, self.drawHeight = width * scale, height * scale
            return self.drawWidth, self.drawHeight

    return FittingImage(io.BytesIO(png), width=width, height=height)


def render_pdf(
    data: ReportData,
    figure_png: bytes | None,
    *,
    generated_at: dt.datetime | None = None,
    author: str | None = None,
    settings: ReportSettings | None = None,
) -> bytes:
    """The report as PDF bytes (A4). ``author`` is the clinician who asked for it (the signed-in
    user); ``settings`` the unit and contact line (from the environment when not given)."""
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_LEFT
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    regular, bold = _fonts()
    base = ParagraphStyle("base", fontName=regular, fontSize=8.5, leading=10.5, alignment=TA_LEFT)
    small = ParagraphStyle("small", parent=base, fontSize=7.2, leading=8.8, textColor=colors.HexColor("#424242"))
    note = ParagraphStyle("note", parent=small, keepWithNext=1)
    h1 = ParagraphStyle("h1", parent=base, fontName=bold, fontSize=14, leading=17, spaceAfter=2)
    h2 = ParagraphStyle("h2", parent=base, fontName=bold, fontSize=10.5, leading=13, spaceBefore=7, spaceAfter=3,
                        textColor=colors.HexColor("#1f3b73"), keepWithNext=1)
    cell = ParagraphStyle("cell", parent=base, fontSize=7.6, leading=9.2)
    cell_b = ParagraphStyle("cellb", parent=cell, fontName=bold)

    rec = data.record
    p = rec.patient
    generated = generated_at or dt.datetime.now().replace(microsecond=0)
    story: list[Any] = []
    width = A4[0] - 30 * mm

    def table(rows: Sequence[Sequence[Any]], widths: Sequence[float], header: bool = True) -> Table:
        body = [[c if not isinstance(c, str) else Paragraph(c, cell_b if header and i == 0 else cell) for c in row]
                for i, row in enumerate(rows)]
        t = Table(body, colWidths=list(widths), repeatRows=1 if header else 0)
        style = [
            ("GRID", (0, 0), (-1, -1), 0.3, colors.HexColor("#b0bec5")),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
            ("TOPPADDING", (0, 0), (-1, -1), 1.5),
            ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
        ]
        if header:
            style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eceff1")))
        t.setStyle(TableStyle(style))
        return t

    # --- header ------------------------------------------------------------------------------
    title = f"{_p(p.name)} — DRESS clinic summary"
    if p.synthetic and "SYNTHETIC" not in p.name.upper():
        title += " (SYNTHETIC demo patient)"
    story.append(Paragraph(title, h1))
    story.append(Paragraph(_p(prepared_line(author, settings or ReportSettings.from_environment(), generated)), small))
    story.append(Spacer(1, 3))
    age = ""
    if p.birth_date:
        years = data.as_of.year - p.birth_date.year - ((data.as_of.month, data.as_of.day) < (p.birth_date.month, p.birth_date.day))
        age = f" ({years} y)"
    day_since_onset = (data.as_of - p.onset_date).days if p.onset_date else None
    facts = [
        ["MRN", _p(p.mrn), "As of", _fmt_date(data.as_of)],
        ["Sex", _p(p.sex or "—"), "Birth date", _fmt_date(p.birth_date) + age],
        ["Weight", f"{_mg(p.weight_kg)} kg" if p.weight_kg else "—", "DRESS onset", _fmt_date(p.onset_date) +
         (f" (day {day_since_onset})" if day_since_onset is not None else "")],
        ["Culprit drug(s)", _p(", ".join(p.culprit_drugs) or "not recorded"), "Resolution", _fmt_date(p.resolved_date)],
    ]
    story.append(table(facts, [28 * mm, 62 * mm, 26 * mm, width - 116 * mm], header=False))
    if p.culprit_drugs:
        story.append(Spacer(1, 3))
        banner = Table([[Paragraph(f"NEVER RECHALLENGE: {_p(', '.join(p.culprit_drugs))} and drugs of the same "
                                   "cross-reactivity group.", ParagraphStyle("ban", parent=cell_b, textColor=colors.white))]],
                       colWidths=[width])
        banner.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor(severity.COLOURS["critical"]))]))
        story.append(banner)

    # --- steroid course -----------------------------------------------------------------------
    c = data.course
    story.append(Paragraph("Steroid course (prednisone-equivalent; taper figures include the plan)", h2))
    kg = f" ({c.current_mg_per_kg:.2f} mg/kg)" if c.current_mg_per_kg is not None else ""
    story.append(table(
        [["Course start", "Course day", "Current dose", "Taper start", "Stop", "Taper length"],
         # 'day 7 of steroids (first dose ...)': the count the day-7 rule uses, said so (issue 18 point 7).
         [_fmt_date(c.course_start), _p(course_day_words(c.course_start, c.day_of_course) or "—"),
          f"{_mg(c.current_pred_eq_mg)} mg/day{kg}", _fmt_date(c.taper_start), _fmt_date(c.stop_date),
          f"{c.taper_days} days" if c.taper_days is not None else "no stop planned"]],
        [width / 6] * 6,
    ))

    # --- figure -------------------------------------------------------------------------------
    captions: list[Any] = []
    if figure_png and data.figure_panels:
        captions.append(Paragraph(_p("Panels, top to bottom: " + " · ".join(data.figure_panels)), small))
    if data.liver_pattern:
        # In full under the figure (the panel's title has the short words): ACG 2014 DILI R ratio.
        captions.append(Paragraph(_p(f"Liver-injury pattern (R ratio, ACG 2014 DILI guideline): {data.liver_pattern}"), small))
    # The captions' height, kept free under the figure so that they stay on its page.
    reserve = sum(c.wrap(width, A4[1])[1] for c in captions)
    if figure_png:
        from reportlab.lib.utils import ImageReader

        iw, ih = ImageReader(io.BytesIO(figure_png)).getSize()
        # A figure with many panels is as tall as the page allows, never taller (reportlab would
        # refuse a flowable taller than its frame): the frame less its 6 pt paddings, a margin
        # and the captions.
        room = A4[1] - 13 * mm - 15 * mm - 12 - 6 * mm - reserve
        w = min(width * 0.92, room * iw / ih)
        story.append(Spacer(1, 4))
        story.append(_fitting_image(figure_png, w, w * ih / iw, reserve))
    story.extend(captions)

    # --- alerts -------------------------------------------------------------------------------
    heading = [
        Paragraph(f"Current alerts ({len(data.alerts)})", h2),
        Paragraph(_p(f"{NOT_A_DIAGNOSIS} Guideline profile {data.profile_name} {data.profile_version}."), note),
    ]
    if data.alerts:
        rows: list[list[Any]] = [["Severity", "Alert", "What was found and what the guideline recommends", "Source"]]
        for a in data.alerts:
            # What was found, then what the guideline recommends: the alert's own fields.
            text = _p(a.finding) + (f"<br/><i>{_p(a.recommendation)}</i>" if a.recommendation else "")
            rows.append([f"{severity.symbol(a.severity)} {severity.word(a.severity)}",
                         f"<b>{_p(a.title or a.code)}</b><br/><font size=6>{_p(a.code)}</font><br/>{_fmt_date(a.date)}",
                         text, _p(a.source)])
        alert_table = table(rows, [17 * mm, 36 * mm, width - 103 * mm, 50 * mm])
        story.extend([*heading, alert_table])
    else:
        story.extend([*heading, Paragraph("No alert holds as of this date.", base)])

    # --- taper plan ---------------------------------------------------------------------------
    plan_rows: list[list[Any]] = [["From", "Drug", "Daily dose", "Tablets", "Route"]]
    formulary = load_formulary()
    for m in data.plan:
        tablets = "stop" if m.daily_dose_mg == 0 else ""
        if m.daily_dose_mg > 0 and m.drug in formulary:
            try:
                tablets = " + ".join(f"{n} × {s:g} mg" for s, n in formulary[m.drug].breakdown(m.daily_dose_mg))
            except TaperError:
                tablets = "not a whole number of tablets"
        plan_rows.append([_fmt_date(m.start_date), _p(m.drug), f"{_mg(m.daily_dose_mg)} mg/day", _p(tablets), _p(m.route or "")])
    block: list[Any] = [Paragraph("Taper plan (saved rows after the as-of date)", h2)]
    if data.plan:
        block.append(table(plan_rows, [24 * mm, 34 * mm, 26 * mm, width - 110 * mm, 26 * mm]))
    else:
        block.append(Paragraph("No plan saved.", base))
    story.append(KeepTogether(block))

    # --- patch test ---------------------------------------------------------------------------
    pt = data.patch_test
    block = [Paragraph("Earliest patch-test date", h2)]
    block.append(Paragraph(f"<b>{_fmt_date(pt.earliest) if pt.earliest else 'Not yet known'}</b>", base))
    for r in pt.reasons:
        block.append(Paragraph("• " + _p(r), base))
    for u in pt.unknowns:
        block.append(Paragraph("• Unknown: " + _p(u), base))
    block.append(Paragraph("Source: " + _p(pt.source), small))
    story.append(KeepTogether(block))

    # --- RegiSCAR -----------------------------------------------------------------------------
    rs = data.regiscar
    reg_rows: list[list[Any]] = [["Item", "Answer", "Points", "Filled by"]]
    for it in rs.items:
        reg_rows.append([_p(it.label), _p(it.answer), f"{it.points:+d}", _p(it.filled_by)])
    story.append(KeepTogether([
        Paragraph(f"RegiSCAR score {rs.score} — {rs.category}", h2),
        table(reg_rows, [width - 62 * mm, 22 * mm, 15 * mm, 25 * mm]),
        Paragraph("Categories: < 2 no case, 2–3 possible, 4–5 probable, > 5 definite (Kardaun 2007, BJD 156:609).", small),
    ]))

    # --- sequelae and viral PCR ---------------------------------------------------------------
    block = [Paragraph(f"Latest results as of {data.as_of.isoformat()}", h2)]
    if data.latest:
        latest_rows: list[list[Any]] = [["Test", "Taken", "Value", "As received", "Status"]]
        for lr in data.latest:
            latest_rows.append([_p(lr.label), lr.taken_at.strftime("%Y-%m-%d %H:%M"), _p(lr.shown), _p(lr.as_received), _p(lr.status)])
        block.append(table(latest_rows, [36 * mm, 30 * mm, 34 * mm, width - 124 * mm, 24 * mm]))
    else:
        block.append(Paragraph("No results.", base))
    story.append(KeepTogether(block))

    block = [Paragraph("Sequelae follow-up (thyroid and glucose after resolution)", h2)]
    if data.checklist:
        ck_rows: list[list[Any]] = [["Due", "Check", "Status", "Result", "Basis"]]
        for ck in data.checklist:
            res = f"{_p(ck.result.original_value)} {_p(ck.result.original_unit)} on {ck.result.taken_at.date().isoformat()}" if ck.result else ""
            if ck.outside_range:  # the same flag as the Follow-up page (monitoring.followup.range_check)
                res += f" · {_p(ck.range_text)}"
            ck_rows.append([_fmt_date(ck.due), f"{_p(ck.test_label)} (month {ck.check.month})", ck.status.upper(), res,
                            _p(ck.check.basis)])
        block.append(table(ck_rows, [22 * mm, 42 * mm, 20 * mm, width - 124 * mm, 40 * mm]))
    else:
        block.append(Paragraph("Starts at the recorded resolution date: none recorded yet.", base))
    story.append(KeepTogether(block))

    block = [Paragraph("Viral PCR", h2)]
    if data.pcr:
        pcr_rows: list[list[Any]] = [["Taken", "Day", "Test", "Result", "As received"]]
        for pr in data.pcr:
            pcr_rows.append([pr.taken_at.strftime("%Y-%m-%d %H:%M"), _p(pr.day_since_onset if pr.day_since_onset is not None else "—"),
                             _p(pr.label), "DETECTED" if pr.detected else "not detected", _p(pr.as_received)])
        block.append(table(pcr_rows, [30 * mm, 14 * mm, 28 * mm, 30 * mm, width - 102 * mm]))
    else:
        block.append(Paragraph("No viral PCR results.", base))
    story.append(KeepTogether(block))

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(regular, 7)
        canvas.setFillColor(colors.HexColor("#616161"))
        head = f"{p.name} · MRN {p.mrn} · as of {data.as_of.isoformat()} · generated {generated.isoformat(sep=' ')}"
        tail = f" · page {doc.page}" + (" · SYNTHETIC" if p.synthetic else "")
        text = footer_line(head, author, tail, lambda t: canvas.stringWidth(t, regular, 7), A4[0] - 30 * mm)
        canvas.drawString(15 * mm, 9 * mm, text)
        canvas.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=13 * mm, bottomMargin=15 * mm,
        title=f"DRESS clinic summary: {p.name}", author=author or "DRESS monitor", creator="DRESS monitor", subject=f"MRN {p.mrn}, as of {data.as_of.isoformat()}",
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()


def patient_report_pdf(
    record: PatientRecord,
    as_of: dt.date,
    profile: GuidelineProfile | None = None,
    *,
    figure_png: bytes | None = None,
    generated_at: dt.datetime | None = None,
    author: str | None = None,
    settings: ReportSettings | None = None,
) -> bytes:
    """The clinic report of one patient as PDF bytes; the figure is drawn from the record unless
    ``figure_png`` is given."""
    prof = profile or load_profile()
    data = report_data(record, as_of, prof)
    png = figure_png if figure_png is not None else timeline_png(record, as_of, prof, now=generated_at)
    return render_pdf(data, png, generated_at=generated_at, author=author, settings=settings)
