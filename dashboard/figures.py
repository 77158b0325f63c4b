"""Figure builders: plain data in, Plotly figure out (testable without a browser).

The patient timeline is ONE figure of stacked panels on a shared time axis (PRODUCT.md §7): liver
enzymes, creatinine, eosinophils, ferritin, the panels drawn only with results (bilirubin and ALP
× ULN, troponin, CRP, temperature), and the steroid dose. Every threshold arrives with the
data, already computed from the guideline profile and the patient's own results by
``dashboard.timeline_model``; nothing here knows a clinical number.

Behaviour copied from the OpenMRS O3 trendline: a threshold that came with the result (the
laboratory's ref_high) is drawn per result as a step line, so each point is judged against its own
reference range; the same data is offered as a table beside the figure.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard import safe
from dashboard.widgets import CRITICAL, INFO, MUTED, SECOND_LINE_COLOUR, SEVERITY_COLOURS, SEVERITY_INK, WARNING
from monitoring import display
from monitoring.severity import rgba as severity_rgba
from monitoring.steroids import dose_lines

# Series colours: chosen apart from the severity colours so a data line is never read as an alert.
SERIES_COLOURS: tuple[str, ...] = ("#1f3b73", "#7b3294", "#00897b", "#5d4037")
# Series in one panel (ALT and AST) also differ by marker and dash, not only by colour (issue 18
# point 6: a colour-blind reader or a grey print tells them apart), as in the PDF's figure
# (monitoring.report: ALT circles on a solid line, AST squares on a dashed one).
# Styles run on across the figure's panels with a legend (ALT, AST, then bilirubin, ALP, ...), so
# no two named series share one; "diamond" stays the amended mark, triangles the censored one.
SERIES_SYMBOLS: tuple[str, ...] = ("circle", "square", "star", "x")
SERIES_DASHES: tuple[str, ...] = ("solid", "longdash", "dot", "dashdot")
DOSE_COLOUR = "#263238"
PLANNED_COLOUR = "#90a4ae"
PHOTO_COLOUR = "#8d6e63"
ALERT_ONSET_COLOUR = "#37474f"  # one colour: the severity is in the words beside it
# Zones: the severity colour key's hues (monitoring.severity), translucent.
ZONE_TINTS: dict[str, str] = {
    "critical": severity_rgba("critical", 0.10),
    "warning": severity_rgba("warning", 0.13),
    "info": severity_rgba("info", 0.06),
}
LINE_DASH: dict[str, str] = {"critical": "solid", "warning": "dash", "info": "dot"}

XMode = str  # "date" (calendar dates) or "day" (days since onset)


@dataclass(frozen=True)
class Point:
    """One result: the value in the unit shown, the canonical value, and what was received."""

    taken_at: dt.datetime
    value: float
    canonical: float
    canonical_unit: str
    received: str  # original value and unit, exactly as received
    amended: bool = False
    reference: str = ""  # the reference range in force for this result, in words
    preliminary: bool = False  # a preliminary result, not yet replaced by its final
    comparator: str | None = None  # a censored result ('<', '<=', '>', '>='): drawn at its limit, shown with it
    # As people read them (monitoring.display: one precision per test, units by label), comparator
    # included: the value in the unit shown ('<30') and canonical ('0.74 mg/dL'). Empty: built here.
    shown: str = ""
    canonical_text: str = ""


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    unit: str
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Threshold:
    """A horizontal threshold: constant (``value``) or following each result (``steps``)."""

    key: str
    label: str  # "2×ULN", "1.5× baseline", ...
    severity: str  # info / warning / critical: line style and zone tint
    value: float | None = None
    steps: tuple[tuple[dt.datetime, float], ...] = ()
    shade_above: bool = False  # the zone above the line is abnormal
    basis: str = ""  # e.g. "laboratory ULN", "default (UNCONFIRMED)"

    def values(self) -> list[float]:
        return [self.value] if self.value is not None else [v for _, v in self.steps]


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    unit: str
    series: tuple[Series, ...]
    thresholds: tuple[Threshold, ...] = ()
    y_min: float | None = None  # None: the axis starts at 0; temperature starts near normal
    optional: bool = False  # drawn (thin) only when it has results; else always, an empty one saying so
    note: str = ""  # words after the panel's title (the liver-injury pattern)


@dataclass(frozen=True)
class DoseStep:
    day: dt.date
    mg: float  # prednisone-equivalent mg/day
    planned: bool


@dataclass(frozen=True)
class DoseTrack:
    steps: tuple[DoseStep, ...]
    second_line: tuple[tuple[str, dt.date], ...] = ()  # (drug, start date): IVIG, cyclosporine
    course_words: str | None = None  # 'day 7 of steroids (first dose 2026-11-25)' (steroids.course_day_words)


@dataclass(frozen=True)
class ExposureBar:
    """One drug's given periods (from, first day not given; None: no stop recorded)."""

    label: str
    periods: tuple[tuple[dt.date, dt.date | None], ...]
    culprit: str = ""  # why it is a culprit or cross-reacts with one (empty: neither)


@dataclass(frozen=True)
class Timeline:
    onset: dt.date | None
    today: dt.date
    panels: tuple[Panel, ...]
    dose: DoseTrack
    photo_dates: tuple[dt.date, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    # (onset date, words) of each alert episode (monitoring.episodes), closed ones included
    alert_onsets: tuple[tuple[dt.date, str], ...] = ()
    exposures: tuple[ExposureBar, ...] = ()  # drawn above the dose panel, culprits first
    now: dt.datetime | None = None  # where the now line stands (display.as_of_moment); None: end of ``today``

    @property
    def moment(self) -> dt.datetime:
        """The now line: ``now`` when given, else the end of the as-of day (every result of it before)."""
        return self.now if self.now is not None else dt.datetime.combine(self.today + dt.timedelta(days=1), dt.time())


def _x(value: dt.date | dt.datetime, onset: dt.date | None, mode: XMode) -> dt.datetime | float:
    moment = value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())
    if mode == "day" and onset is not None:
        return (moment - dt.datetime.combine(onset, dt.time())).total_seconds() / 86400.0
    return moment


def _span(t: Timeline) -> tuple[dt.datetime, dt.datetime]:
    """The time span the figure covers: onset (or first data) to the end of the plan or today."""
    moments: list[dt.datetime] = [t.moment]
    if t.onset:
        moments.append(dt.datetime.combine(t.onset, dt.time()))
    for panel in t.panels:
        for s in panel.series:
            moments.extend(p.taken_at for p in s.points)
    moments.extend(dt.datetime.combine(s.day, dt.time()) for s in t.dose.steps)
    moments.extend(dt.datetime.combine(d, dt.time()) for d in t.photo_dates)
    # Not the drug exposures: a culprit started months before onset would squeeze every lab panel
    # into a corner; its bar starts at the axis and its hover gives the start date.
    start, end = min(moments), max(moments)
    return start, end + dt.timedelta(days=1)


class _Batch:
    """Collects traces, annotations and shapes and adds them to the figure once.

    Plotly re-validates the whole list on every ``add_annotation``/``add_vline``/``add_trace``, so
    adding them one by one costs time quadratic in their number (over a second for one patient
    with two months of daily results); one assignment at the end costs one validation."""

    def __init__(self) -> None:
        self.traces: list[tuple[go.Scatter, int]] = []
        self.annotations: list[dict[str, object]] = []
        self.shapes: list[dict[str, object]] = []
        self.y_ranges: dict[int, list[float]] = {}
        self.y_ticks: dict[int, tuple[list[float], list[str]]] = {}

    def add_trace(self, trace: go.Scatter, row: int, col: int = 1) -> None:
        self.traces.append((trace, row))

    def add_annotation(self, **kw: object) -> None:
        self.annotations.append(kw)

    def add_vline(self, x: object, line: dict[str, object], row: int, col: int = 1, name: str = "") -> None:
        self.shapes.append(
            {"type": "line", "x0": x, "x1": x, "xref": _axis("x", row), "y0": 0, "y1": 1,
             "yref": f"{_axis('y', row)} domain", "line": line, "layer": "above", **({"name": name} if name else {})}
        )

    def update_yaxes(self, *, range: list[float], row: int, col: int = 1) -> None:  # noqa: A002 - Plotly's name
        self.y_ranges[row] = range

    def flush(self, fig: go.Figure) -> None:
        if self.traces:
            fig.add_traces([t for t, _ in self.traces], rows=[r for _, r in self.traces], cols=[1] * len(self.traces))
        titles = [{**a.to_plotly_json(), "font": {"size": 12}} for a in fig.layout.annotations]  # subplot titles
        fig.layout.annotations = [*titles, *self.annotations]
        fig.layout.shapes = [*fig.layout.shapes, *self.shapes]
        fig.update_layout({f"yaxis{'' if r == 1 else r}": {"range": rng} for r, rng in self.y_ranges.items()})
        # Named on the right, in the margin the threshold labels use: the plot keeps its width.
        fig.update_layout({f"yaxis{'' if r == 1 else r}": {"tickvals": vals, "ticktext": text, "showgrid": False, "side": "right",
                                                          "tickfont": {"size": 10}}
                           for r, (vals, text) in self.y_ticks.items()})


def _axis(letter: str, row: int) -> str:
    return letter if row == 1 else f"{letter}{row}"


def _empty_panel_note(fig: go.Figure, row: int, text: str) -> None:
    """Say in words that a panel is empty, in its middle (an empty panel is not a normal one)."""
    fig.add_annotation(
        text=text,
        xref=f"{_axis('x', row)} domain",
        yref=f"{_axis('y', row)} domain",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"color": MUTED},
    )


def timeline_figure(
    t: Timeline,
    *,
    x_mode: XMode = "date",
    x_range: tuple[dt.date, dt.date] | None = None,
    height: int | None = None,
) -> go.Figure:
    """Stacked panels (one per lab group, the drug exposure bars, then the steroid dose) sharing one
    time axis; ``height`` None grows with the panels drawn."""
    mode: XMode = "day" if x_mode == "day" and t.onset is not None else "date"
    # An optional panel (bilirubin and ALP, troponin, CRP, temperature) only when it has results:
    # thin, and no height for a patient without them.
    panels = [p for p in t.panels if not p.optional or any(s.points for s in p.series)]
    heights = [0.6 if p.optional else 1.0 for p in panels]
    # A panel's note (the liver-injury pattern) follows its title: above the panel, never over its data.
    titles = [f"{p.title} ({p.unit})" + (f" · {p.note}" if p.note else "") for p in panels]
    exposure_row = None
    if t.exposures:
        heights.append(max(0.35, 0.14 * len(t.exposures)))
        titles.append("Drug exposure (‼ red: culprit or cross-reacting drug; dotted: planned or no stop recorded)")
        exposure_row = len(heights)
    rows = len(heights) + 1
    titles.append("Systemic steroid, prednisone-equivalent (mg/day)")
    if height is None:
        # 900 px for the four lab panels and the dose (4.9 units); each further panel adds its share.
        height = max(900, round(900 * (sum(heights) + 0.9) / 4.9))
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.035 * 900 / height,  # the same gap in pixels whatever the height
        subplot_titles=titles,
        row_heights=[*heights, 0.9],
    )
    start, end = _span(t)
    x0, x1 = _x(start, t.onset, mode), _x(end, t.onset, mode)

    batch = _Batch()
    style = 0
    for row, panel in enumerate(panels, start=1):
        named = len(panel.series) > 1  # in the legend: its series take the next styles
        _draw_panel(batch, row, panel, t.onset, mode, x0, x1, style if named else 0)
        style += len(panel.series) if named else 0
    if exposure_row is not None:
        _draw_exposures(batch, exposure_row, t, mode, start, end)
    _draw_dose(batch, rows, t, mode, x1)
    _draw_markers(batch, rows, t, mode)
    _draw_alert_onsets(batch, rows, t, mode)
    batch.flush(fig)

    fig.update_layout(
        height=height,
        margin={"l": 60, "r": 150, "t": 60, "b": 40},
        hovermode="closest",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0.0, "font": {"size": 11}},
        plot_bgcolor="white",
        paper_bgcolor="white",
        font={"size": 12},
        uirevision="timeline",
    )
    fig.update_yaxes(gridcolor="#eceff1", zeroline=False, rangemode="tozero")
    fig.update_xaxes(gridcolor="#eceff1", showspikes=True, spikemode="across", spikethickness=1, spikecolor=MUTED)
    if mode == "day":
        fig.update_xaxes(title_text="days since onset", row=rows, col=1, dtick=7 if (x1 - x0) > 21 else 1)  # type: ignore[operator]
    else:
        fig.update_xaxes(tickformat="%Y-%m-%d", row=rows, col=1)
    if x_range is not None:
        lo, hi = (_x(x_range[0], t.onset, mode), _x(x_range[1] + dt.timedelta(days=1), t.onset, mode))
        fig.update_xaxes(range=[lo, hi])
    # Canonical property order: a figure built here and its cached (pickled) copy must serialise to
    # the same JSON, because Streamlit derives the chart's element id from that JSON; otherwise the
    # rerun caused by a click finds a "new" chart and the click's selection is dropped (~20 ms).
    return go.Figure(fig.to_dict())


def _top(panel: Panel) -> float:
    values = [p.value for s in panel.series for p in s.points]
    values += [v for th in panel.thresholds for v in th.values()]
    if panel.y_min is not None:
        highest = max(values or [panel.y_min + 1.0])
        return highest + (highest - panel.y_min) * 0.15
    return max(values or [1.0]) * 1.12


def _draw_panel(
    fig: _Batch, row: int, panel: Panel, onset: dt.date | None, mode: XMode, x0: object, x1: object, style: int = 0
) -> None:
    top = _top(panel)
    has_data = any(s.points for s in panel.series)
    for th in panel.thresholds:
        # Without results an abnormal zone would colour an empty panel: lines only.
        drawn = th if has_data or not th.shade_above else Threshold(
            th.key, th.label, th.severity, th.value, th.steps, False, th.basis
        )
        _draw_threshold(fig, row, panel, drawn, onset, mode, x0, x1, top)
    for i, s in enumerate(panel.series, start=style):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        symbol = SERIES_SYMBOLS[i % len(SERIES_SYMBOLS)]
        xs = [_x(p.taken_at, onset, mode) for p in s.points]
        custom = [
            [
                p.taken_at.strftime("%Y-%m-%d %H:%M"),
                p.received,
                p.canonical_text or f"{p.comparator or ''}{p.canonical:g} {display.unit_label(p.canonical_unit)}",
                p.reference or "no reference range",
                (" · preliminary" if p.preliminary else "") + (" · amended" if p.amended else ""),
                p.comparator or "",
                p.shown or f"{p.comparator or ''}{p.value:.4g}",
            ]
            for p in s.points
        ]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[p.value for p in s.points],
                name=s.label,
                legendgroup=s.key,
                showlegend=len(panel.series) > 1,  # a single series is named by its panel title
                mode="lines+markers",
                line={"color": colour, "width": 2, "dash": SERIES_DASHES[i % len(SERIES_DASHES)]},
                marker={"size": 7, "symbol": [
                    # A censored result is a triangle pointing where the true value lies.
                    "triangle-down" if p.comparator in ("<", "<=") else "triangle-up" if p.comparator in (">", ">=")
                    else f"{symbol}-open" if p.preliminary else "diamond" if p.amended else symbol for p in s.points]},
                customdata=custom,
                hovertemplate=(
                    f"<b>{s.label}</b> %{{customdata[6]}} {display.unit_label(s.unit)}<br>%{{customdata[0]}}<br>"
                    "received: %{customdata[1]}<br>canonical: %{customdata[2]}<br>"
                    "reference: %{customdata[3]}%{customdata[4]}<extra></extra>"
                ),
            ),
            row=row,
            col=1,
        )
    if not has_data:
        _empty_panel_note(fig, row, "no results recorded")
    bottom = panel.y_min if panel.y_min is not None else 0.0
    lowest = min([p.value for s in panel.series for p in s.points] or [bottom])
    fig.update_yaxes(range=[min(bottom, lowest - 0.2), top], row=row, col=1)


def _draw_threshold(
    fig: _Batch,
    row: int,
    panel: Panel,
    th: Threshold,
    onset: dt.date | None,
    mode: XMode,
    x0: object,
    x1: object,
    top: float,
) -> None:
    colour = SEVERITY_COLOURS.get(th.severity, INFO)
    if th.value is not None:
        xs: list[object] = [x0, x1]
        ys = [th.value, th.value]
    else:
        # Each result's own reference limit holds from that result until the next one.
        xs = [_x(when, onset, mode) for when, _ in th.steps] + [x1]
        ys = [v for _, v in th.steps] + [th.steps[-1][1]]
    name = f"{th.label} ({panel.title})"
    # The line's numbers as the results are shown (monitoring.display: the precision of the panel's
    # test in the panel's unit), never a float's digits ('1.1' for 1.5 × 0.7353, not '1.103').
    test = panel.series[0].key if panel.series else panel.key
    numbers = [display.number(test, float(y), panel.unit) for y in ys]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            name=name,
            legendgroup=f"{panel.key}-thresholds",
            showlegend=False,
            mode="lines",
            line={"color": colour, "width": 1.3, "dash": LINE_DASH.get(th.severity, "dot"), "shape": "hv"},
            text=numbers,  # not customdata: that is the results' (figure readers look for it there); mode lines: not drawn
            hovertemplate=f"{th.label}: %{{text}} {display.unit_label(panel.unit)}" + (f" ({th.basis})" if th.basis else "") + "<extra></extra>",
            meta={"threshold": th.key, "severity": th.severity},
        ),
        row=row,
        col=1,
    )
    if th.shade_above:
        # The abnormal zone as one closed polygon following the line's steps up to the panel top.
        px: list[object] = []
        py: list[float] = []
        for i in range(len(xs) - 1):
            px += [xs[i], xs[i + 1]]
            py += [ys[i], ys[i]]
        px += [xs[-1], xs[0], xs[0]]
        py += [top, top, ys[0]]
        fig.add_trace(
            go.Scatter(
                x=px,
                y=py,
                name=f"{name} zone",
                showlegend=False,
                mode="lines",
                line={"width": 0},
                fill="toself",
                fillcolor=ZONE_TINTS.get(th.severity, ZONE_TINTS["info"]),
                hoverinfo="skip",
                meta={"zone": th.key},
            ),
            row=row,
            col=1,
        )
    last = ys[-1]
    label = f"{th.label} {numbers[-1]}" + (" (default)" if "default" in th.basis.lower() else "")
    fig.add_annotation(
        text=label,
        x=1.0,
        xanchor="left",
        xref=f"{_axis('x', row)} domain",
        y=last,
        yref=_axis("y", row),
        showarrow=False,
        font={"size": 10, "color": SEVERITY_INK.get(th.severity, colour)},
        align="left",
    )


def _draw_dose(fig: _Batch, row: int, t: Timeline, mode: XMode, x1: object) -> None:
    steps = list(t.dose.steps)
    # Given solid up to the now line, the plan dashed from there: never one over the other
    # (issue 18 point 11; the one rule for both figures: monitoring.steroids.dose_lines).
    given, planned = dose_lines([(s.day, s.mg, s.planned) for s in steps], t.moment)
    if given:
        fig.add_trace(
            go.Scatter(
                x=[_x(when, t.onset, mode) for when, _ in given],
                y=[mg for _, mg in given],
                name="dose given",
                mode="lines+markers",
                line={"color": DOSE_COLOUR, "width": 2.5, "shape": "hv"},
                marker={"size": [6] * (len(given) - 1) + [0]},
                customdata=[when.date().isoformat() for when, _ in given[:-1]] + [""],
                hovertemplate="given from %{customdata}: %{y:.4g} mg/day<extra></extra>",
            ),
            row=row,
            col=1,
        )
    if planned:
        xs = [_x(when, t.onset, mode) for when, _ in planned]
        ys = [mg for _, mg in planned]
        if ys[-1] > 0:
            xs.append(x1)
            ys.append(ys[-1])
        else:
            xs.append(_x(planned[-1][0] + dt.timedelta(days=1), t.onset, mode))
            ys.append(0.0)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                name="dose planned",
                mode="lines",
                line={"color": PLANNED_COLOUR, "width": 2, "dash": "dash", "shape": "hv"},
                hovertemplate="planned: %{y:.4g} mg/day<extra></extra>",
            ),
            row=row,
            col=1,
        )
    if not steps:
        _empty_panel_note(fig, row, "no systemic steroid recorded")
    top = max([s.mg for s in steps] or [10.0]) * 1.3
    fig.update_yaxes(range=[0, top], row=row, col=1)
    for drug, start in t.dose.second_line:
        x = _x(start, t.onset, mode)
        fig.add_trace(
            go.Scatter(
                x=[x],
                y=[top * 0.55],
                name=drug.upper() if drug == "ivig" else drug,
                mode="markers+text",
                marker={"symbol": "triangle-down", "size": 12, "color": SECOND_LINE_COLOUR},
                text=[drug.upper() if drug == "ivig" else drug],
                textposition="middle right",
                textfont={"color": SECOND_LINE_COLOUR, "size": 11},
                hovertemplate=f"{drug} started {start.isoformat()}<extra></extra>",
                showlegend=False,
                meta={"second_line": drug},
            ),
            row=row,
            col=1,
        )
    if t.dose.course_words:
        fig.add_annotation(
            text=t.dose.course_words,
            x=0.005,
            xref=f"{_axis('x', row)} domain",
            y=1.0,
            yref=f"{_axis('y', row)} domain",
            showarrow=False,
            xanchor="left",
            yanchor="top",
            font={"size": 11, "color": DOSE_COLOUR},
            bgcolor="rgba(255,255,255,0.8)",
        )


def _draw_exposures(fig: _Batch, row: int, t: Timeline, mode: XMode, first: dt.datetime, end: dt.datetime) -> None:
    """One horizontal bar per drug, culprits first: solid where given up to the now line, dotted
    beyond it (the plan, or a drug with no stop recorded). A culprit or cross-reacting drug is red
    and marked ‼ in its label (the panel title says what ‼ means), never by colour alone. A period that began before
    the axis (``first``) starts at its edge with a ◀ mark there (hover: its real dates), so a
    culprit stopped at onset after weeks of exposure is still seen."""
    moment = t.moment
    n = len(t.exposures)
    ticks: list[float] = []
    labels: list[str] = []
    for i, bar in enumerate(t.exposures):
        y = float(n - 1 - i)
        colour = CRITICAL if bar.culprit else SERIES_COLOURS[0]
        parts: dict[str, tuple[list[object], list[object], list[object]]] = {"given": ([], [], []), "planned": ([], [], [])}
        earlier: list[str] = []
        for start, stop in bar.periods:
            a = max(dt.datetime.combine(start, dt.time()), first)
            b = dt.datetime.combine(stop, dt.time()) if stop is not None else end
            # A drug name is stored data: Plotly reads tags in its text, so it is escaped (safe.plot).
            words = safe.plot(f"{bar.label}: from {start.isoformat()}" + (
                f", not given from {stop.isoformat()}" if stop is not None else ", no stop recorded"
            ) + (f" · {bar.culprit}" if bar.culprit else ""))
            if dt.datetime.combine(start, dt.time()) < first:
                earlier.append(words)
            for part, lo, hi in (("given", a, min(b, moment)), ("planned", max(a, moment), b)):
                if hi <= lo:
                    continue
                xs, ys, custom = parts[part]
                xs += [_x(lo, t.onset, mode), _x(hi, t.onset, mode), None]
                ys += [y, y, None]
                custom += [words, words, None]
        for part, (xs, ys, custom) in parts.items():
            if not xs:
                continue
            fig.add_trace(
                go.Scatter(
                    x=xs, y=ys, name=safe.plot(bar.label), mode="lines", showlegend=False, customdata=custom,
                    line={"color": colour, "width": 9 if part == "given" else 3, "dash": "solid" if part == "given" else "dot"},
                    hovertemplate="%{customdata}<extra></extra>",
                    meta={"exposure": bar.label, "culprit": bool(bar.culprit), "part": part},
                ),
                row=row,
                col=1,
            )
        if earlier:
            fig.add_trace(
                go.Scatter(
                    x=[_x(first, t.onset, mode)], y=[y], name=safe.plot(bar.label), mode="markers", showlegend=False,
                    marker={"symbol": "triangle-left", "size": 11, "color": colour}, cliponaxis=False,
                    customdata=["given before this axis: " + " | ".join(earlier)], hovertemplate="%{customdata}<extra></extra>",
                    meta={"exposure": bar.label, "culprit": bool(bar.culprit), "part": "before"},
                ),
                row=row,
                col=1,
            )
        ticks.append(y)
        short = bar.label if len(bar.label) <= 24 else bar.label[:23] + "…"  # whole in the hover
        labels.append(safe.plot(f"‼ {short}" if bar.culprit else short))
    fig.update_yaxes(range=[-0.6, n - 0.4], row=row, col=1)
    fig.y_ticks[row] = (ticks, labels)


def _draw_markers(fig: _Batch, rows: int, t: Timeline, mode: XMode) -> None:
    """Vertical marks through every panel: now, second-line starts, photograph dates."""
    # The now line at the current time (issue 18 point 11: at midnight, this morning's results
    # were drawn after "today"); for a past as-of date, at the end of that day.
    moment = t.moment
    now_x = _x(moment, t.onset, mode)
    for r in range(1, rows + 1):
        fig.add_vline(x=now_x, line={"color": MUTED, "width": 1, "dash": "dot"}, row=r, col=1, name="now")
    words = f"now {moment:%H:%M}" if moment.date() == t.today else f"end of {t.today.isoformat()}"
    # At the foot of the dose panel: at the top it would sit on the first panel's title.
    fig.add_annotation(text=words, x=now_x, xref=_axis("x", rows), y=0.0, yref=f"{_axis('y', rows)} domain", showarrow=False,
                       yanchor="bottom", xanchor="left", font={"size": 10, "color": MUTED})
    for _drug, start in t.dose.second_line:
        for r in range(1, rows + 1):
            fig.add_vline(x=_x(start, t.onset, mode), line={"color": SECOND_LINE_COLOUR, "width": 1, "dash": "dashdot"},
                          row=r, col=1)
    if t.photo_dates:
        xs = [_x(d, t.onset, mode) for d in t.photo_dates]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=[0.0] * len(xs),
                name="photograph",
                mode="markers",
                marker={"symbol": "square", "size": 11, "color": PHOTO_COLOUR, "line": {"color": "white", "width": 1}},
                cliponaxis=False,  # on the axis line: whole, not half a mark, and easy to click
                customdata=[d.isoformat() for d in t.photo_dates],
                hovertemplate="photographs of %{customdata}: click to open<extra></extra>",
                meta={"photos": True},
            ),
            row=rows,
            col=1,
        )


def _draw_alert_onsets(fig: _Batch, rows: int, t: Timeline, mode: XMode) -> None:
    """A mark on the dose panel's axis for the day each alert episode began (hover: which)."""
    if not t.alert_onsets:
        return
    fig.add_trace(
        go.Scatter(
            x=[_x(d, t.onset, mode) for d, _ in t.alert_onsets],
            y=[0.0] * len(t.alert_onsets),
            name="alert onset",
            mode="markers",
            marker={"symbol": "triangle-up", "size": 11, "color": ALERT_ONSET_COLOUR, "line": {"color": "white", "width": 1}},
            cliponaxis=False,
            customdata=[words for _, words in t.alert_onsets],
            hovertemplate="%{customdata}<extra></extra>",
            meta={"alert_onsets": True},
        ),
        row=rows,
        col=1,
    )


def selected_photo_day(fig: go.Figure, points: list[dict[str, object]] | None) -> dt.date | None:
    """The photograph date of a clicked photo mark, from Streamlit's selection points.

    A point belongs to the photo marks when its ``curve_number`` names the trace marked
    ``meta={"photos": True}``; its ``customdata`` is the ISO date. Clicks on any other trace
    (a result, a dose step) are not a photograph and give None."""
    for point in points or []:
        curve = point.get("curve_number")
        if not isinstance(curve, int) or not 0 <= curve < len(fig.data):
            continue
        meta = fig.data[curve].meta
        if not (isinstance(meta, dict) and meta.get("photos")):
            continue
        custom = point.get("customdata")
        if isinstance(custom, list | tuple):
            custom = custom[0] if custom else None
        try:
            return dt.date.fromisoformat(str(custom))
        except ValueError:
            continue
    return None


__all__ = [
    "CRITICAL",
    "WARNING",
    "DoseStep",
    "DoseTrack",
    "ExposureBar",
    "Panel",
    "Point",
    "Series",
    "Threshold",
    "Timeline",
    "selected_photo_day",
    "timeline_figure",
]
