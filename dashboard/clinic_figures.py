"""Figures of the clinic pages (taper planner, follow-up): data in, Plotly figure out.

The dose panel is drawn in the timeline's style and colours (``dashboard.figures``): given doses
solid, planned doses dashed, so a proposed plan looks as the timeline will draw it once saved.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import plotly.graph_objects as go

from dashboard.figures import DOSE_COLOUR, PLANNED_COLOUR, SECOND_LINE_COLOUR
from dashboard.widgets import MUTED
from monitoring.display import as_of_moment
from monitoring.followup import PcrResult
from monitoring.records import PatientRecord
from monitoring.steroids import CourseInfo, DosePoint, dose_lines


def dose_panel(
    record: PatientRecord, course: CourseInfo, today: dt.date, *, saved: Sequence[DosePoint] = (), height: int = 360,
    now: dt.datetime | None = None,
) -> go.Figure:
    """The steroid dose panel for ``course`` (schedule with the proposed plan): doses given as a
    solid step line up to now, the plan dashed from there (never one over the other: the timeline's
    rule, monitoring.steroids.dose_lines), and the currently saved plan (``saved``, when it
    differs) dotted, in the timeline's colours. Prednisone-equivalent mg/day. The now line stands
    at ``now`` (monitoring.display.as_of_moment: the current time as of today)."""
    fig = go.Figure()
    steps = list(course.schedule)
    moment = as_of_moment(today, now)
    given, planned = dose_lines([(s.date, s.pred_eq_mg, s.planned) for s in steps], moment)
    end = dt.datetime.combine(max([today, *(s.date for s in steps)]) + dt.timedelta(days=3), dt.time())
    if given:
        fig.add_trace(go.Scatter(x=[x for x, _ in given], y=[mg for _, mg in given], name="dose given", mode="lines+markers",
                                 line={"color": DOSE_COLOUR, "width": 2.5, "shape": "hv"},
                                 marker={"size": [6] * (len(given) - 1) + [0]},
                                 hovertemplate="from %{x|%Y-%m-%d}: %{y:.4g} mg/day<extra>given</extra>"))
    if planned:
        xs = [x for x, _ in planned] + [end]
        ys = [mg for _, mg in planned] + [planned[-1][1]]
        anchor = 1 if given else 0  # the plan's first point continues the dose given at now
        fig.add_trace(go.Scatter(x=xs, y=ys, name="dose planned (proposed)", mode="lines+markers",
                                 line={"color": PLANNED_COLOUR, "width": 2.5, "dash": "dash", "shape": "hv"},
                                 marker={"size": [0] * anchor + [7] * (len(planned) - anchor) + [0], "color": PLANNED_COLOUR},
                                 hovertemplate="from %{x|%Y-%m-%d}: %{y:.4g} mg/day<extra>planned</extra>"))
    if saved:
        xs = [s.date for s in saved] + [end]
        ys = [s.pred_eq_mg for s in saved] + [saved[-1].pred_eq_mg]
        fig.add_trace(go.Scatter(x=xs, y=ys, name="saved plan (now)", mode="lines", line={"color": "#8d6e63", "width": 1.5, "dash": "dot", "shape": "hv"},
                                 hovertemplate="from %{x|%Y-%m-%d}: %{y:.4g} mg/day<extra>saved plan</extra>"))
    for drug, start in course.second_line:
        fig.add_vline(x=dt.datetime.combine(start, dt.time()).timestamp() * 1000, line={"color": SECOND_LINE_COLOUR, "dash": "dashdot", "width": 1},
                      annotation_text="IVIG" if drug == "ivig" else drug, annotation_font_color=SECOND_LINE_COLOUR)
    fig.add_vline(x=moment.timestamp() * 1000, line={"color": MUTED, "dash": "dot", "width": 1},
                  annotation_text=f"now {moment:%H:%M}" if moment.date() == today else f"end of {today.isoformat()}",
                  annotation_font_color=MUTED)
    if not steps:
        fig.add_annotation(text="no systemic steroid recorded", xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False, font={"color": MUTED})
    top = max([s.pred_eq_mg for s in steps] or [10.0]) * 1.2
    start = min([s.date for s in steps] or [today - dt.timedelta(days=14)]) - dt.timedelta(days=2)
    if record.patient.onset_date:
        start = min(start, record.patient.onset_date)
    fig.update_layout(
        title={"text": "Systemic steroid, prednisone-equivalent (mg/day)", "font": {"size": 14}},
        height=height, margin={"l": 60, "r": 30, "t": 60, "b": 40}, plot_bgcolor="white", paper_bgcolor="white",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0.0}, hovermode="closest",
    )
    fig.update_yaxes(range=[0, top], gridcolor="#eceff1", title_text="mg/day")
    fig.update_xaxes(range=[start, end], tickformat="%Y-%m-%d", gridcolor="#eceff1")
    return fig


def pcr_figure(results: Sequence[PcrResult], *, height: int = 260) -> go.Figure:
    """Viral PCR over time: one row per virus; filled red = detected, open = not detected (the
    symbol and the hover text say it too: colour is never the only signal)."""
    fig = go.Figure()
    for detected, name, symbol, colour in ((True, "detected", "circle", "#b71c1c"), (False, "not detected", "circle-open", "#455a64")):
        pts = [r for r in results if r.detected is detected]
        if not pts:
            continue
        fig.add_trace(
            go.Scatter(
                x=[r.taken_at for r in pts],
                y=[r.label for r in pts],
                mode="markers+text",
                name=name,
                marker={"symbol": symbol, "size": 13, "color": colour, "line": {"width": 2, "color": colour}},
                text=["+" if detected else "−" for _ in pts],
                textposition="top center",
                customdata=[[r.as_received or name, r.day_since_onset if r.day_since_onset is not None else "—"] for r in pts],
                hovertemplate="%{y} %{x|%Y-%m-%d %H:%M}<br>" + name + ": %{customdata[0]}<br>day %{customdata[1]} since onset<extra></extra>",
            )
        )
    fig.update_layout(
        height=height,
        margin={"l": 90, "r": 20, "t": 30, "b": 40},
        plot_bgcolor="white",
        legend={"orientation": "h", "y": 1.12},
        yaxis={"categoryorder": "array", "categoryarray": ["CMV PCR", "EBV PCR", "HHV-6 PCR"]},
        xaxis={"tickformat": "%Y-%m-%d", "gridcolor": "#eceff1"},
    )
    return fig
