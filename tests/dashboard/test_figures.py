"""The timeline figure, asserted on the Plotly object: the lines a clinician reads off it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import plotly.graph_objects as go
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from dashboard import figures, store, timeline_model
from monitoring import auth, services
from monitoring.guideline import load_profile
from monitoring.records import PatientRecord, load_record

USER = "dr.fig"
TODAY = dt.date(2026, 3, 1)
ONSET = dt.date(2026, 2, 10)


@pytest.fixture
def writer(session: Session) -> Iterator[Session]:
    auth.create_user(session, actor="test", username=USER, role=auth.CLINICIAN, password=None)
    services.add_patient(session, username=USER, mrn="P1", name="Pat One", weight_kg=80, onset_date=ONSET,
                         culprit_drugs="carbamazepine")
    yield session


def _lab(s: Session, day: int, test: str, value: float | str, unit: str, ref_high: float | None = None) -> None:
    services.add_lab_result(s, username=USER, mrn="P1", test=test,
                            taken_at=dt.datetime.combine(ONSET + dt.timedelta(days=day), dt.time(7, 30)),
                            value=value, unit=unit, ref_high=ref_high, now=dt.datetime(2026, 3, 2))


def _record(s: Session) -> PatientRecord:
    s.commit()
    return load_record(s, "P1")


def _figure(record: PatientRecord, **kw: object) -> go.Figure:
    tl = timeline_model.timeline(record, load_profile(), TODAY, **kw)  # type: ignore[arg-type]
    return figures.timeline_figure(tl)


def _line(fig: go.Figure, label: str) -> list[float]:
    """y values of the threshold line whose name starts with ``label``."""
    found = [t for t in fig.data if t.meta and "threshold" in t.meta and t.name.startswith(label)]
    assert found, f"no line {label!r} in {[t.name for t in fig.data]}"
    return [float(y) for y in found[0].y]


def test_lab_supplied_uln_of_35_gives_a_70_line(writer: Session) -> None:
    _lab(writer, 2, "alt", 120, "U/L", ref_high=35)
    _lab(writer, 4, "alt", 90, "U/L", ref_high=35)
    fig = _figure(_record(writer))
    assert set(_line(fig, "ALT 2×ULN")) == {70.0}
    assert set(_line(fig, "ALT ULN")) == {35.0}
    labels = [a.text for a in fig.layout.annotations]
    assert "ALT 2×ULN 70" in labels  # labelled, and not marked as a default


def test_without_laboratory_range_the_profile_default_uln_is_used_and_labelled_default(writer: Session) -> None:
    _lab(writer, 2, "alt", 120, "U/L")
    fig = _figure(_record(writer))
    default_uln = load_profile().value("uln_alt")
    assert set(_line(fig, "ALT 2×ULN")) == {2 * default_uln}
    assert f"ALT 2×ULN {2 * default_uln:g} (default)" in [a.text for a in fig.layout.annotations]


def test_uln_line_follows_each_results_own_reference_range(writer: Session) -> None:
    _lab(writer, 2, "alt", 120, "U/L", ref_high=35)
    _lab(writer, 5, "alt", 150, "U/L", ref_high=50)
    fig = _figure(_record(writer))
    ys = _line(fig, "ALT 2×ULN")
    assert ys[0] == 70.0 and ys[-1] == 100.0  # a step at the second result
    zone = [t for t in fig.data if t.meta and t.meta.get("zone") == "alt_ALT 2×ULN"]
    assert zone and zone[0].fill == "toself" and min(zone[0].y) == 70.0


def test_creatinine_lines_from_recorded_baseline_else_lowest_result(writer: Session) -> None:
    _lab(writer, 1, "creatinine", 1.2, "mg/dL")
    _lab(writer, 3, "creatinine", 0.9, "mg/dL")
    _lab(writer, 6, "creatinine", 1.6, "mg/dL")
    fig = _figure(_record(writer))
    assert set(_line(fig, "baseline")) == {0.9}  # no baseline recorded: the lowest result
    assert _line(fig, "1.5× baseline")[0] == pytest.approx(1.35)
    services.update_patient(writer, username=USER, mrn="P1", baseline_creatinine_mg_dl=0.7)
    fig = _figure(_record(writer))
    assert set(_line(fig, "baseline")) == {0.7}
    assert _line(fig, "1.5× baseline")[0] == pytest.approx(1.05)


def test_threshold_labels_and_hover_use_the_display_precision(writer: Session) -> None:
    # 65 µmol/L is 0.73529... mg/dL: its 1.5× baseline line is 1.10294...; the label and the hover
    # read it as a creatinine is shown (0.01 mg/dL, trailing zeros dropped), never '1.103'.
    _lab(writer, 1, "creatinine", 65, "umol/L")
    _lab(writer, 3, "creatinine", 1.3, "mg/dL")
    fig = _figure(_record(writer))
    line = next(t for t in fig.data if t.meta and "threshold" in t.meta and t.name.startswith("1.5× baseline"))
    assert list(line.text) == ["1.1", "1.1"] and "%{text} mg/dL" in line.hovertemplate
    labels = [str(a.text) for a in fig.layout.annotations]
    assert any(t.startswith("1.5× baseline") and t.endswith(" 1.1") for t in labels), labels
    assert not any("1.103" in t for t in labels)


def test_eosinophil_and_ferritin_lines_come_from_the_profile(writer: Session, tmp_path: Path) -> None:
    _lab(writer, 2, "eosinophils", 1.1, "10^9/L")
    _lab(writer, 2, "ferritin", 800, "ng/mL")
    record = _record(writer)
    fig = _figure(record)
    assert set(_line(fig, "RegiSCAR +1")) == {0.7}
    assert set(_line(fig, "eosinophilia")) == {1.5}
    assert set(_line(fig, "high")) == {500.0}
    assert set(_line(fig, "consider HLH")) == {3000.0}
    local = tmp_path / "local.toml"
    local.write_text(
        '[profile]\nname = "local"\nversion = "1"\nextends = "default"\n'
        '[thresholds.ferritin_high]\nvalue = 400\n[thresholds.eosinophils_high]\nvalue = 1.2\n'
    )
    fig = figures.timeline_figure(timeline_model.timeline(record, load_profile(local), TODAY))
    assert set(_line(fig, "high")) == {400.0}
    assert set(_line(fig, "eosinophilia")) == {1.2}


def test_si_units_convert_values_and_thresholds(writer: Session) -> None:
    _lab(writer, 2, "alt", 120, "U/L", ref_high=30)
    _lab(writer, 2, "creatinine", 1.0, "mg/dL")
    fig = _figure(_record(writer), units="SI")
    alt = next(t for t in fig.data if t.name == "ALT")
    assert list(alt.y) == [pytest.approx(2.0)]  # 120 U/L = 2 ukat/L
    assert _line(fig, "ALT 2×ULN") == pytest.approx([1.0, 1.0])
    creat = next(t for t in fig.data if t.name == "Creatinine")
    assert list(creat.y) == [pytest.approx(88.4)]
    assert "Creatinine (µmol/L)" in [a.text for a in fig.layout.annotations]  # the unit's label (monitoring.display)


def test_hover_shows_value_as_received_and_canonical(writer: Session) -> None:
    _lab(writer, 2, "creatinine", "150", "µmol/L")
    fig = _figure(_record(writer))
    creat = next(t for t in fig.data if t.name == "Creatinine")
    when, received, canonical, *_ = creat.customdata[0]
    assert received == "150 µmol/L"
    assert canonical == "1.7 mg/dL"  # 1.6968... at creatinine's display precision (0.01 mg/dL), as on the table
    assert "received" in creat.hovertemplate


def test_dose_panel_given_solid_planned_dashed_second_line_marked(writer: Session) -> None:
    for day, mg in ((1, 80), (12, 60)):
        services.add_dose_change(writer, username=USER, mrn="P1", drug="methylprednisolone",
                                 start_date=ONSET + dt.timedelta(days=day), dose=mg, unit="mg")
    switch = TODAY + dt.timedelta(days=7)  # the plan: a switch to oral prednisone is two rows on one date
    services.add_dose_change(writer, username=USER, mrn="P1", drug="methylprednisolone", start_date=switch, dose=0, unit="mg")
    services.add_dose_change(writer, username=USER, mrn="P1", drug="prednisone", start_date=switch, dose=40, unit="mg")
    services.add_dose_change(writer, username=USER, mrn="P1", drug="IVIG", start_date=ONSET + dt.timedelta(days=9),
                             dose=2, unit="g")
    fig = _figure(_record(writer))
    given = next(t for t in fig.data if t.name == "dose given")
    planned = next(t for t in fig.data if t.name == "dose planned")
    assert given.line.shape == "hv" and given.line.dash is None
    assert planned.line.dash == "dash"
    assert list(given.y[:2]) == [100.0, 75.0]  # methylprednisolone x 1.25 = prednisone-equivalent
    assert list(planned.y) == [75.0, 40.0, 40.0]  # from the last dose given to the planned 40 mg
    ivig = [t for t in fig.data if t.meta and t.meta.get("second_line") == "ivig"]
    assert ivig and ivig[0].text == ("IVIG",)
    texts = [a.text for a in fig.layout.annotations]
    assert f"day 18 of steroids (first dose {(ONSET + dt.timedelta(days=1)).isoformat()})" in texts


def test_days_since_onset_axis(writer: Session) -> None:
    _lab(writer, 3, "ferritin", 700, "ng/mL")
    tl = timeline_model.timeline(_record(writer), load_profile(), TODAY)
    fig = figures.timeline_figure(tl, x_mode="day")
    ferritin = next(t for t in fig.data if t.name == "Ferritin")
    assert float(ferritin.x[0]) == pytest.approx(3 + 7.5 / 24)


def test_range_window_sets_axis(writer: Session) -> None:
    _lab(writer, 3, "ferritin", 700, "ng/mL")
    tl = timeline_model.timeline(_record(writer), load_profile(), TODAY)
    fig = figures.timeline_figure(tl, x_range=(TODAY - dt.timedelta(days=7), TODAY))
    lo, hi = fig.layout.xaxis.range
    assert str(lo).startswith((TODAY - dt.timedelta(days=7)).isoformat())


def test_photo_dates_marked(writer: Session) -> None:
    tl = timeline_model.timeline(_record(writer), load_profile(), TODAY, photos=(ONSET + dt.timedelta(days=4),))
    fig = figures.timeline_figure(tl)
    photos = [t for t in fig.data if t.meta and t.meta.get("photos")]
    assert photos and tuple(photos[0].customdata) == ((ONSET + dt.timedelta(days=4)).isoformat(),)


def test_empty_record_draws_every_panel_with_a_note(engine: Engine, writer: Session) -> None:
    fig = _figure(_record(writer))
    texts = [a.text for a in fig.layout.annotations]
    assert texts.count("no results recorded") == 4
    assert "no systemic steroid recorded" in texts


def test_table_says_in_words_which_line_a_result_is_above(writer: Session) -> None:
    _lab(writer, 2, "alt", 100, "U/L", ref_high=35)
    _lab(writer, 3, "alt", 50, "U/L", ref_high=35)
    _lab(writer, 3, "ferritin", 3100, "ng/mL")
    table = timeline_model.timeline_table(_record(writer), load_profile(), TODAY)
    above = dict(zip(table["as received"], table["above"], strict=True))
    assert above["100 U/L"] == "> 2×ULN"
    assert above["50 U/L"] == "> ULN"
    assert above["3100 ng/mL"] == "≥ 3000"
    assert "ULN 35 (laboratory)" in set(table["reference"])
    csv = store.csv_bytes(table).decode()
    assert csv.splitlines()[0].startswith("taken_at,day since onset,test,value,unit,above")


def _bare_timeline(steps: tuple[figures.DoseStep, ...] = (), photos: tuple[dt.date, ...] = ()) -> figures.Timeline:
    words = f"day 5 of steroids (first dose {steps[0].day.isoformat()})" if steps else None
    return figures.Timeline(onset=ONSET, today=TODAY, panels=(), dose=figures.DoseTrack(steps=steps, course_words=words),
                            photo_dates=photos)


@pytest.mark.parametrize("x_mode", ["date", "day"])
def test_no_lab_panel_at_all_still_draws_the_dose_panel(x_mode: str) -> None:
    """Issue 9: with no lab panel the dose panel is row 1, whose axes are 'x'/'y' (not 'x1')."""
    steps = (figures.DoseStep(ONSET + dt.timedelta(days=3), 60.0, False), figures.DoseStep(TODAY, 40.0, True))
    fig = figures.timeline_figure(_bare_timeline(steps, photos=(ONSET + dt.timedelta(days=4),)), x_mode=x_mode)
    fig.to_json()  # every axis reference resolvable (Plotly validates on serialisation too)
    refs = {a.xref for a in fig.layout.annotations} | {s.xref for s in fig.layout.shapes}
    assert refs <= {"x", "x domain", "paper"}, refs
    assert any(t.name == "dose given" for t in fig.data)
    assert "day 5 of steroids (first dose" in " ".join(a.text for a in fig.layout.annotations)
    empty = figures.timeline_figure(_bare_timeline())
    assert "no systemic steroid recorded" in [a.text for a in empty.layout.annotations]


def test_a_click_on_a_photo_mark_names_its_day_and_other_clicks_do_not(writer: Session) -> None:
    """Issue 4: Streamlit's selection points → the photograph day (only from the photo marks)."""
    _lab(writer, 2, "alt", 120, "U/L", ref_high=35)
    day = ONSET + dt.timedelta(days=4)
    tl = timeline_model.timeline(_record(writer), load_profile(), TODAY, photos=(ONSET + dt.timedelta(days=1), day))
    fig = figures.timeline_figure(tl)
    curve = next(i for i, t in enumerate(fig.data) if t.meta and t.meta.get("photos"))
    alt = next(i for i, t in enumerate(fig.data) if t.name == "ALT")
    assert figures.selected_photo_day(fig, [{"curve_number": curve, "point_index": 1, "customdata": day.isoformat()}]) == day
    assert figures.selected_photo_day(fig, [{"curve_number": alt, "point_index": 0, "customdata": ["x"]}]) is None
    assert figures.selected_photo_day(fig, [{"curve_number": 999, "customdata": day.isoformat()}]) is None
    assert figures.selected_photo_day(fig, []) is None and figures.selected_photo_day(fig, None) is None


def test_temperature_panel_with_the_profiles_fever_line(writer: Session, tmp_path: Path) -> None:
    """Issue: fever feeds the stalled-response rule, so the timeline shows temperature with the
    profile's fever_c line (a changed profile moves the line) and only when readings exist."""
    fig = _figure(_record(writer))
    assert not any(t.name and t.name.startswith("fever") for t in fig.data)  # no readings: no panel
    _lab(writer, 1, "temperature", 39.2, "Cel")
    _lab(writer, 2, "temperature", 101.3, "[degF]")  # 38.5 °C: at the line counts as fever
    _lab(writer, 3, "temperature", 37.0, "Cel")
    record = _record(writer)
    fig = _figure(record)
    assert set(_line(fig, "fever")) == {38.5}
    temps = next(t for t in fig.data if t.name == "Temperature")
    assert [round(float(y), 1) for y in temps.y] == [39.2, 38.5, 37.0]
    assert "101.3 °F" in temps.customdata[1][1]
    # 101.3 °F is 38.5 °C (38.500000000000004 stored): the hover reads it at the display precision.
    assert [c[6] for c in temps.customdata] == ["39.2", "38.5", "37"] and "%{customdata[6]} °C" in temps.hovertemplate
    assert any(t.meta and t.meta.get("zone") == "fever_c" for t in fig.data)
    titles = [a.text for a in fig.layout.annotations]
    assert "Temperature (°C)" in titles
    yaxis = fig.layout[f"yaxis{len(timeline_model.PANELS) + 1}"]
    assert yaxis.range[0] <= 37.0 and yaxis.range[1] > 39.2  # not squashed against zero

    src = Path(load_profile().path).read_text()
    changed = tmp_path / "profile.toml"
    changed.write_text(src.replace("[thresholds.fever_c]\nvalue = 38.5", "[thresholds.fever_c]\nvalue = 38.0"))
    from monitoring.guideline import load_profile as load
    tl = timeline_model.timeline(record, load(changed), TODAY)
    assert set(_line(figures.timeline_figure(tl), "fever")) == {38.0}


def test_figure_serialises_like_its_cached_copy(writer: Session) -> None:
    """Streamlit keys a chart's selection state by its JSON spec: the figure built on a cache miss
    and the pickled copy served on the next rerun (the one a click causes) must be identical, or
    a click on a photograph mark is lost (found in Chromium on the demo)."""
    import pickle

    import plotly.io as pio

    _lab(writer, 2, "alt", 120, "U/L", ref_high=35)
    tl = timeline_model.timeline(_record(writer), load_profile(), TODAY, photos=(ONSET + dt.timedelta(days=4),))
    fig = figures.timeline_figure(tl)
    assert pio.to_json(fig, validate=False) == pio.to_json(pickle.loads(pickle.dumps(fig)), validate=False)


def test_alt_and_ast_differ_by_marker_and_dash_not_only_colour(writer: Session) -> None:
    """Issue 18 point 6: a colour-blind reader or a grey print tells ALT from AST."""
    _lab(writer, 2, "alt", 120, "U/L", ref_high=35)
    _lab(writer, 2, "ast", 90, "U/L", ref_high=35)
    _lab(writer, 4, "alt", 100, "U/L", ref_high=35)
    _lab(writer, 4, "ast", 80, "U/L", ref_high=35)
    fig = _figure(_record(writer))
    alt = next(t for t in fig.data if t.name == "ALT")
    ast = next(t for t in fig.data if t.name == "AST")
    assert set(alt.marker.symbol) == {"circle"} and set(ast.marker.symbol) == {"square"}
    _lab(writer, 2, "alp", 240, "U/L", ref_high=120)
    _lab(writer, 2, "bilirubin", 2.0, "mg/dL")
    named = [t for t in _figure(_record(writer)).data if t.showlegend and t.name in ("ALT", "AST", "ALP", "Bilirubin (total)")]
    styles = [(t.marker.symbol[0], t.line.dash, t.line.color) for t in named]
    assert len(named) == 4 and len(set(styles)) == 4  # no two named series look alike
    assert alt.line.dash == "solid" and ast.line.dash not in (None, "solid")
    assert alt.line.color != ast.line.color
    assert alt.showlegend and ast.showlegend  # named in the legend with their marker and dash


def _shape_x(fig: go.Figure, name: str) -> set[dt.datetime]:
    return {dt.datetime.fromisoformat(str(s.x0)) for s in fig.layout.shapes if s.name == name}


def test_now_line_at_the_current_time_and_the_given_dose_stops_there(writer: Session) -> None:
    """Issue 18 point 11: this morning's 07:30 result is before the now line (09:30), not after a
    midnight 'today'; the dose given stops at now and the plan (dashed) starts there."""
    now = dt.datetime.combine(TODAY, dt.time(9, 30))
    services.add_lab_result(writer, username=USER, mrn="P1", test="alt", taken_at=dt.datetime.combine(TODAY, dt.time(7, 30)),
                            value=90, unit="U/L", ref_high=35, now=now)
    services.add_dose_change(writer, username=USER, mrn="P1", drug="prednisone", start_date=TODAY - dt.timedelta(days=5),
                             dose=60, unit="mg")
    services.add_dose_change(writer, username=USER, mrn="P1", drug="prednisone", start_date=TODAY + dt.timedelta(days=3),
                             dose=40, unit="mg")
    record = _record(writer)
    fig = figures.timeline_figure(timeline_model.timeline(record, load_profile(), TODAY, now=now))
    assert _shape_x(fig, "now") == {now}  # one moment, through every panel
    assert len([s for s in fig.layout.shapes if s.name == "now"]) == len(timeline_model.PANELS) + 2  # + exposure, dose
    assert "now 09:30" in [a.text for a in fig.layout.annotations]
    alt = next(t for t in fig.data if t.name == "ALT")
    assert dt.datetime.fromisoformat(str(alt.x[0])) < now
    given = next(t for t in fig.data if t.name == "dose given")
    planned = next(t for t in fig.data if t.name == "dose planned")
    given_x = [dt.datetime.fromisoformat(str(x)) for x in given.x]
    planned_x = [dt.datetime.fromisoformat(str(x)) for x in planned.x]
    assert max(given_x) == now  # not on to the plan's start three days later
    assert planned_x[0] == now and list(planned.y[:2]) == [60.0, 40.0]  # dashed from now: no overlap
    assert min(planned_x) >= max(given_x)


def test_now_line_for_a_past_date_is_the_end_of_that_day(writer: Session) -> None:
    _lab(writer, 3, "alt", 90, "U/L", ref_high=35)
    services.add_dose_change(writer, username=USER, mrn="P1", drug="prednisone", start_date=ONSET, dose=60, unit="mg")
    as_of = ONSET + dt.timedelta(days=3)
    tl = timeline_model.timeline(_record(writer), load_profile(), as_of, now=dt.datetime.combine(TODAY, dt.time(9, 30)))
    fig = figures.timeline_figure(tl)
    end = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())
    assert _shape_x(fig, "now") == {end}
    assert f"end of {as_of.isoformat()}" in [a.text for a in fig.layout.annotations]
    given = next(t for t in fig.data if t.name == "dose given")
    assert max(dt.datetime.fromisoformat(str(x)) for x in given.x) == end


def test_now_line_in_days_since_onset(writer: Session) -> None:
    now = dt.datetime.combine(TODAY, dt.time(12, 0))
    fig = figures.timeline_figure(timeline_model.timeline(_record(writer), load_profile(), TODAY, now=now), x_mode="day")
    xs = {float(s.x0) for s in fig.layout.shapes if s.name == "now"}
    assert len(xs) == 1 and xs.pop() == pytest.approx((TODAY - ONSET).days + 0.5)


def _titles(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def test_bilirubin_and_alp_as_multiples_of_each_results_uln_with_the_r_ratio(writer: Session) -> None:
    """Issue 18 point 15: bilirubin and ALP on one ×ULN axis (each result over its own ULN: the
    laboratory's, else the profile default), the 1×ULN line, and the liver-injury pattern."""
    fig = _figure(_record(writer))
    assert not any(t.startswith("Bilirubin") or t.startswith("ALP") for t in _titles(fig))  # no results: no panel
    _lab(writer, 2, "alt", 400, "U/L", ref_high=35)
    _lab(writer, 2, "alp", 240, "U/L", ref_high=120)  # 2×ULN; R = (400/35)/2 = 5.7
    _lab(writer, 2, "bilirubin", 2.4, "mg/dL")  # no laboratory ULN: the profile's 1.2
    _lab(writer, 5, "alt", 100, "U/L", ref_high=35)
    _lab(writer, 5, "alp", 360, "U/L", ref_high=120)  # R = (100/35)/3 = 0.95: cholestatic
    fig = _figure(_record(writer))
    assert any(t.startswith("Bilirubin (total) and ALP (× ULN)") for t in _titles(fig))
    alp = next(t for t in fig.data if t.name == "ALP")
    bili = next(t for t in fig.data if t.name == "Bilirubin (total)")
    assert list(alp.y) == [pytest.approx(2.0), pytest.approx(3.0)]
    assert list(bili.y) == [pytest.approx(2.4 / load_profile().value("uln_bilirubin"))]
    assert alp.customdata[0][1] == "240 U/L"  # as received, beside the multiple
    assert "ULN 120 (laboratory) · R 5.7, hepatocellular" in alp.customdata[0][3]
    assert "R 1.0, cholestatic" in alp.customdata[1][3]
    assert "(profile default)" in bili.customdata[0][3]
    assert set(_line(fig, "ULN (Bilirubin")) == {1.0}
    # At presentation and the latest (the pattern moves as the injury evolves), after the panel's
    # title: above the panel, not over its data.
    d2, d5 = ((ONSET + dt.timedelta(days=n)).isoformat() for n in (2, 5))
    assert (f"Bilirubin (total) and ALP (× ULN) · liver-injury pattern: first R 5.7 hepatocellular ({d2}); "
            f"latest R 1.0 cholestatic ({d5})") in _titles(fig)
    si = _figure(_record(writer), units="SI")  # a multiple has no unit to convert
    assert list(next(t for t in si.data if t.name == "ALP").y) == [pytest.approx(2.0), pytest.approx(3.0)]


def test_troponin_panel_with_each_assays_uln_and_a_crp_panel(writer: Session) -> None:
    """Issue 18 point 15: the cardiac alert's own input drawn, with the line it is judged against
    (limits.cardiac_limit: above the result's ULN), and CRP; neither panel without results."""
    fig = _figure(_record(writer))
    assert not any(t.startswith(("Troponin", "CRP")) for t in _titles(fig))
    _lab(writer, 2, "troponin_t", 40, "ng/L")  # profile default ULN 14
    _lab(writer, 4, "troponin_t", 30, "ng/L", ref_high=15)
    _lab(writer, 3, "crp", 85, "mg/L")
    fig = _figure(_record(writer))
    assert "Troponin T (ng/L)" in _titles(fig) and "CRP (mg/L)" in _titles(fig)
    trop = next(t for t in fig.data if t.name == "Troponin T")
    assert [float(y) for y in trop.y] == [40.0, 30.0]
    assert _line(fig, "Troponin T ULN") == [load_profile().value("uln_troponin_t"), 15.0, 15.0]  # each result's own
    line = next(t for t in fig.data if t.meta and t.meta.get("threshold") == "troponin_t_Troponin T ULN")
    assert line.meta["severity"] == "critical"
    assert any(t.meta and t.meta.get("zone") == "troponin_t_Troponin T ULN" for t in fig.data)
    crp = next(t for t in fig.data if t.name == "CRP")
    assert [float(y) for y in crp.y] == [85.0]


def test_optional_panels_keep_the_figure_order(writer: Session) -> None:
    _lab(writer, 1, "temperature", 39.0, "Cel")
    _lab(writer, 1, "crp", 20, "mg/L")
    _lab(writer, 1, "alp", 200, "U/L")
    titles = [t for t in _titles(_figure(_record(writer))) if t.endswith(")") and "(" in t and "×ULN" not in t]
    order = [t.split(" (")[0] for t in titles]
    assert order[:7] == ["ALT and AST", "ALP", "Creatinine", "Eosinophils", "Ferritin", "CRP", "Temperature"]


def test_the_fever_line_is_limits_fever_limit(writer: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 18: the figure builders know no clinical number; the fever line is the one the rules
    judge against (monitoring.limits.fever_limit), whatever it says."""
    from monitoring import limits

    _lab(writer, 1, "temperature", 38.2, "Cel")
    record = _record(writer)
    assert set(_line(_figure(record), "fever")) == {38.5}
    monkeypatch.setattr(limits, "fever_limit", lambda prof: limits.Limit("fever_c", "38.1", 38.1, True, "warning"))
    assert set(_line(_figure(record), "fever")) == {38.1}
    assert not hasattr(figures, "temperature_panel")  # no clinical logic left in the figure builders



def test_drug_exposure_bars_with_the_culprit_marked_in_words(writer: Session) -> None:
    """Issue 18 point 15: each drug's given periods as bars; the culprit (carbamazepine, entered as
    Tegretol, started before onset) first, red and labelled, solid up to its stop; a drug with no
    stop recorded is solid up to now and dotted beyond."""
    now = dt.datetime.combine(TODAY, dt.time(9, 0))
    fig = _figure(_record(writer))
    assert not any(t.meta and "exposure" in t.meta for t in fig.data)  # no drugs: no bars, no panel
    services.add_dose_change(writer, username=USER, mrn="P1", drug="omeprazole", start_date=ONSET + dt.timedelta(days=2),
                             dose=40, unit="mg")
    services.add_dose_change(writer, username=USER, mrn="P1", drug="Tegretol", start_date=ONSET - dt.timedelta(days=30),
                             dose=400, unit="mg")
    services.add_dose_change(writer, username=USER, mrn="P1", drug="Tegretol", start_date=ONSET, dose=0, unit="mg")
    services.add_dose_change(writer, username=USER, mrn="P1", drug="phenytoin", start_date=ONSET + dt.timedelta(days=3),
                             dose=300, unit="mg")  # a rechallenge: same group, after onset
    services.add_dose_change(writer, username=USER, mrn="P1", drug="phenytoin", start_date=ONSET + dt.timedelta(days=6),
                             dose=0, unit="mg")
    fig = figures.timeline_figure(timeline_model.timeline(_record(writer), load_profile(), TODAY, now=now))
    bars = [t for t in fig.data if t.meta and "exposure" in t.meta]
    culprit = [t for t in bars if t.meta["exposure"] == "Tegretol (carbamazepine)"]
    # Given for 30 days before onset, stopped at onset (the axis start): a ◀ mark at the axis edge,
    # red, its hover giving the dates; the lab panels are not squeezed by a month without results.
    assert [t.meta["part"] for t in culprit] == ["before"]
    assert culprit[0].marker.color == figures.CRITICAL and culprit[0].marker.symbol == "triangle-left"
    assert dt.datetime.fromisoformat(str(culprit[0].x[0])) == dt.datetime.combine(ONSET, dt.time())
    assert "is the culprit drug carbamazepine" in culprit[0].customdata[0]
    assert f"from {(ONSET - dt.timedelta(days=30)).isoformat()}, not given from {ONSET.isoformat()}" in culprit[0].customdata[0]
    ppi = {t.meta["part"]: t for t in bars if t.meta["exposure"] == "omeprazole"}
    assert set(ppi) == {"given", "planned"} and ppi["planned"].line.dash == "dot"
    assert max(dt.datetime.fromisoformat(str(x)) for x in ppi["given"].x if x is not None) == now
    assert "no stop recorded" in ppi["given"].customdata[0]
    row = next(i for i, a in enumerate(fig.layout.annotations) if str(a.text).startswith("Drug exposure")) + 1
    yaxis = fig.layout[f"yaxis{row}"]
    assert list(yaxis.ticktext) == ["‼ Tegretol (carbamazepine)", "‼ phenytoin", "omeprazole"]
    assert "‼ red: culprit or cross-reacting drug" in fig.layout.annotations[row - 1].text
    assert [float(y) for y in yaxis.tickvals] == [2.0, 1.0, 0.0]  # culprits on top
    rechallenge = next(t for t in bars if t.meta["exposure"] == "phenytoin")
    assert rechallenge.meta == {"exposure": "phenytoin", "culprit": True, "part": "given"}
    assert [dt.datetime.fromisoformat(str(x)) for x in rechallenge.x if x is not None] == [
        dt.datetime.combine(ONSET + dt.timedelta(days=3), dt.time()), dt.datetime.combine(ONSET + dt.timedelta(days=6), dt.time())]
    assert "same cross-reactivity group" in rechallenge.customdata[0]


def test_the_figure_grows_with_its_panels(writer: Session) -> None:
    base = _figure(_record(writer)).layout.height
    _lab(writer, 1, "crp", 20, "mg/L")
    _lab(writer, 1, "troponin_t", 20, "ng/L")
    assert base == 900 and _figure(_record(writer)).layout.height > base


def test_hover_names_each_line_once(writer: Session) -> None:
    """A line that is a number reads '≥ 1.5' in the hover (it read '1.5 1.5'); a ULN line keeps its
    name and says whose ULN it is."""
    _lab(writer, 2, "eosinophils", 1.1, "10^9/L")
    _lab(writer, 2, "alt", 120, "U/L", ref_high=35)
    fig = _figure(_record(writer))
    eos = next(t for t in fig.data if t.name == "Eosinophils")
    assert eos.customdata[0][3] == "≥ 0.7, ≥ 1.5"
    alt = next(t for t in fig.data if t.name == "ALT")
    assert alt.customdata[0][3] == "ULN 35, 2×ULN 70 (laboratory)"


def test_taper_planner_dose_panel_given_stops_at_now_and_the_plan_starts_there(writer: Session) -> None:
    """Issue 18 point 11 on the planner's dose panel (the same rule, steroids.dose_lines)."""
    from dashboard import clinic_figures
    from monitoring.steroids import analyse_course

    now = dt.datetime.combine(TODAY, dt.time(8, 15))
    services.add_dose_change(writer, username=USER, mrn="P1", drug="prednisone", start_date=TODAY - dt.timedelta(days=9),
                             dose=60, unit="mg")
    services.add_dose_change(writer, username=USER, mrn="P1", drug="prednisone", start_date=TODAY + dt.timedelta(days=2),
                             dose=50, unit="mg")
    record = _record(writer)
    fig = clinic_figures.dose_panel(record, analyse_course(record, TODAY), TODAY, now=now)
    given = next(t for t in fig.data if t.name == "dose given")
    planned = next(t for t in fig.data if t.name == "dose planned (proposed)")
    assert max(dt.datetime.fromisoformat(str(x)) for x in given.x) == now
    assert dt.datetime.fromisoformat(str(planned.x[0])) == now and list(planned.y[:2]) == [60.0, 50.0]
    assert [s.x0 for s in fig.layout.shapes] == [now.timestamp() * 1000]
    assert "now 08:15" in [a.text for a in fig.layout.annotations]


def test_stored_text_in_the_figure_is_escaped_for_plotly(writer: Session) -> None:
    """Plotly reads <b>, <a href>, <span style> and character references in tick labels and hover
    text: a drug name is data, shown as its characters (safe.plot), never as markup."""
    drug = '<a href="http://evil.example/">x</a><b>bold</b> & co'
    services.add_dose_change(writer, username=USER, mrn="P1", drug=drug, start_date=ONSET + dt.timedelta(days=1),
                             dose=10, unit="mg")
    fig = _figure(_record(writer))
    bars = [t for t in fig.data if t.meta and "exposure" in t.meta]
    assert bars
    row = next(i for i, a in enumerate(fig.layout.annotations) if str(a.text).startswith("Drug exposure")) + 1
    ticks = list(fig.layout[f"yaxis{row}"].ticktext)
    texts = ticks + [str(c) for t in bars for c in t.customdata if c] + [t.name for t in bars]
    assert all("<" not in x and ">" not in x for x in texts), texts
    assert any("&lt;a href=" in x for x in texts) and any("&amp; co" in x for x in texts)
