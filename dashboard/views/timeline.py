"""Patient timeline: one figure of stacked panels on a shared time axis, the same data as a table,
the alerts with evidence and source, and a never-rechallenge banner naming the culprit drugs."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from dashboard import episode_widgets, figures, safe, store, timeline_model, ward_model, widgets
from dashboard.auth import require_signed_in
from monitoring import display
from monitoring.drugs import group_of

require_signed_in()  # every page: a signed-in user only (dashboard/auth.py)

url = store.database_url()
version = store.data_version()
today = store.today()
prof = store.profile()

title_col, pick = st.columns([3, 2], vertical_alignment="bottom")
with pick:
    mrn = widgets.patient_picker(store.patient_options(url, version), key="timeline_patient")
record = store.patient_record(url, version, mrn) if mrn else None
if record is None:
    st.title("Patient timeline")
    st.info("Choose a patient in the sidebar or on the ward overview.")
    st.stop()

from monitoring.liver import pattern_words  # noqa: E402
from monitoring.rules import evaluate  # noqa: E402
from monitoring.severity import rank as severity_rank  # noqa: E402
from monitoring.steroids import analyse_course, course_day_words  # noqa: E402

p = record.patient


def _evidence_text(value: object) -> str:
    """Evidence as plain words: nested rows as 'key value' pairs."""
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')} {_evidence_text(v)}" for k, v in value.items() if v is not None)
    if isinstance(value, list | tuple):
        return " | ".join(_evidence_text(v) for v in value)
    return str(value)

alerts = evaluate(record, today, prof)
# Each alert's episode (monitoring.episodes): acknowledged and snoozed ones below the others of their severity.
open_episodes = {e.code: e for e in store.patient_episodes(url, version, p.id or 0) if e.closed_at is None}
alerts.sort(key=lambda a: (severity_rank(a.severity),
                           a.code in open_episodes and ward_model.handled_text(open_episodes[a.code], today) is not None))
course = analyse_course(record, today)

# --- header -------------------------------------------------------------------------------
age = None
if p.birth_date:
    age = today.year - p.birth_date.year - ((today.month, today.day) < (p.birth_date.month, p.birth_date.day))
facts = [
    ("MRN", p.mrn),
    ("age", f"{age} y" if age is not None else "not recorded"),
    ("sex", p.sex or "not recorded"),
    ("weight", display.quantity("weight", p.weight_kg, "kg") if p.weight_kg else "not recorded"),
    ("onset", widgets.iso(p.onset_date) or "not recorded"),
    ("day since onset", str((today - p.onset_date).days) if p.onset_date else "—"),
    ("setting", p.setting),
    ("guideline", f"{prof.name} {prof.version}"),
]
if p.drug_allergies:
    facts.append(("drug allergies (not DRESS culprits)", "; ".join(p.drug_allergies)))
if p.synthetic:
    facts.append(("data", "SYNTHETIC demo patient"))
with title_col:
    st.markdown(f"### {safe.md(p.name + widgets.synthetic_label(p.synthetic, p.name))}")
widgets.patient_facts(facts)

if p.culprit_drugs:
    # Plain-text parts, escaped by the banner: a drug name is data, never markup.
    parts: list[str] = ["NEVER RECHALLENGE: culprit drug(s) "]
    for i, drug in enumerate(p.culprit_drugs):
        if i:
            parts.append("; ")
        parts.append(widgets.Strong(drug))
        if written := p.culprit_as_written(drug):
            parts.append(f" (as written: {written})")
        if group := group_of(drug):
            parts.append(f" (and its group: {group})")
    widgets.banner("critical", *parts, ". Do not give these or cross-reacting drugs.")
else:
    widgets.banner("warning", "No culprit drug recorded: record it on the Entry page so rechallenge can be caught.")

# The course day said with its first dose ("day 7 of steroids (first dose ...)"): the count the
# day-7 rule uses (monitoring.steroids.course_day), so nobody is a day off (issue 18 point 7).
course_words = course_day_words(course.course_start, course.day_of_course)
steroid_line = (
    f"{safe.md(course_words[:1].upper() + course_words[1:])}: {course.current_pred_eq_mg:g} mg/day prednisone-equivalent"
    + (f" ({course.current_mg_per_kg:.2f} mg/kg)" if course.current_mg_per_kg is not None else "")
    if course.ongoing and course_words
    else "No systemic steroid today"
)
if course.taper_start:
    steroid_line += f" · taper from {widgets.iso(course.taper_start)}"
if course.stop_date:
    steroid_line += f" · stop {widgets.iso(course.stop_date)} ({course.taper_days:d} days of taper)"
if course.second_line:
    steroid_line += " · " + ", ".join(f"{safe.md(d.upper() if d == 'ivig' else d)} from {widgets.iso(s)}" for d, s in course.second_line)
st.markdown(steroid_line)
pattern = pattern_words(record, prof, today)
if pattern is not None:
    # The liver-injury pattern (monitoring.liver: the profile's cut points, ACG 2014 DILI guideline).
    st.markdown(
        f"Liver-injury pattern: {safe.md(pattern)}; R ≥ {prof.value('r_ratio_hepatocellular'):g} hepatocellular, "
        f"≤ {prof.value('r_ratio_cholestatic'):g} cholestatic, mixed between (ACG 2014 DILI guideline; named when ALT "
        f"or ALP is above {prof.value('r_ratio_injury_uln_multiple'):g}×ULN)"
    )

# --- controls -----------------------------------------------------------------------------
c1, c2, c3 = st.columns([2, 1.6, 3], vertical_alignment="center")
x_mode = c1.segmented_control(
    "Time axis",
    ["date", "day"],
    default="date",
    format_func=lambda m: "calendar dates" if m == "date" else "days since onset",
    key="timeline_xmode",
    disabled=p.onset_date is None,
    label_visibility="collapsed",
) or "date"
units = c2.segmented_control(
    "Units", list(timeline_model.UNIT_SYSTEMS), default="conventional", key="timeline_units",
    format_func=lambda u: f"{u} units", label_visibility="collapsed",
) or "conventional"
window = c3.segmented_control(
    "Show", ["all", "last 7 days", "last 14 days", "last 30 days"], default="all", key="timeline_window",
    label_visibility="collapsed",
)
x_range = None
if window and window != "all":
    days = int(window.split()[1])
    x_range = (today - dt.timedelta(days=days), today)

# --- figure and alerts --------------------------------------------------------------------
# The now line's minute, kept while this view is unchanged: a click on a photograph mark reruns the
# page, and a figure redrawn with a later minute would be a "new" chart that drops the click's
# selection (Streamlit keys a chart by its spec). Any change of patient, data or view moves it on.
now_view = (p.mrn, version, today, units, x_mode, x_range)
if st.session_state.get("timeline_now_view") != now_view:
    st.session_state["timeline_now_view"] = now_view
    st.session_state["timeline_now"] = store.now_minute()
fig_col, alert_col = st.columns([3, 1.25], gap="medium")
with fig_col:
    figure = timeline_model.timeline_figure(url, version, p.mrn, today, units, x_mode, x_range, f"{prof.path}:{prof.version}",
                                            st.session_state["timeline_now"])
    event = st.plotly_chart(
        figure,
        key="timeline_figure",
        on_select="rerun",  # a click on a photograph mark opens that day's photographs
        selection_mode="points",
        config={"displaylogo": False, "toImageButtonOptions": {"filename": f"timeline-{p.mrn}"}},
    )
    clicked = figures.selected_photo_day(figure, event.selection.points if event else None)
    opened = (p.mrn, clicked.isoformat()) if clicked else None
    # A selection outlives the rerun: follow it once, not again on every later rerun of this page.
    if opened is None:
        st.session_state.pop("timeline_photo_opened", None)
    elif st.session_state.get("timeline_photo_opened") != opened:
        st.session_state["timeline_photo_opened"] = opened
        st.switch_page("views/photos.py", query_params={"mrn": p.mrn, "photo_day": opened[1]})
    photo_days = store.photo_dates(url, version, p.id) if p.id is not None else ()
    if photo_days:
        # The same links without a mouse: every photograph date as a link (keyboard, screen reader).
        with st.container(horizontal=True, gap="small", key="timeline_photo_links"):
            st.markdown("**Photographs:**")
            for day in photo_days:
                st.page_link(
                    "views/photos.py",
                    label=f"Photographs of {day.isoformat()}",
                    icon=":material/photo_camera:",
                    query_params={"mrn": p.mrn, "photo_day": day.isoformat()},
                )
with alert_col:
    st.markdown(f"#### Alerts as of {today.isoformat()}")
    episode_widgets.show_done()
    st.caption(widgets.DECISION_SUPPORT_NOTE)
    if len(alerts) > 3:  # every alert named at a glance; details below scroll
        widgets.badges([(a.severity, a.title or widgets.code_label(a.code)) for a in alerts])
    # As tall as the figure and scrolling inside: the results table stays right under the figure.
    alert_box = st.container(height=640 if len(alerts) > 3 else "content", border=False)
with alert_box:
    if not alerts:
        st.markdown("No alert holds today.")
    for a in alerts:
        widgets.badges([(a.severity, a.title or widgets.code_label(a.code))])
        st.markdown(safe.md(a.finding))
        if a.recommendation:
            st.markdown(f"**Recommendation:** {safe.md(a.recommendation)}")
        with st.expander("Evidence and source"):
            quoted = timeline_model.quoted_results(a)
            if quoted:
                st.dataframe(quoted, hide_index=True, width="stretch")
            for k, v in a.evidence.items():
                if k == "profile":
                    continue
                if k == "not_counted":  # censored results the rule could not decide, each by name
                    for note in v:
                        st.markdown(f"- **not counted**: {safe.md(note['text'])}")
                    continue
                st.markdown(f"- **{safe.md(k.replace('_', ' '))}**: {safe.md(_evidence_text(v))}")
            st.caption(f"Source: {safe.md(a.source)}")
        episode_widgets.episode_controls(open_episodes.get(a.code), a.title or widgets.code_label(a.code), today, prof,
                                         key=f"timeline_episode_{a.code}")
    episode_widgets.open_dialog(today, prof)

# --- the same data as a table -------------------------------------------------------------
table = timeline_model.timeline_table(record, prof, today, units=units)
st.subheader("Results")
if table.empty:
    st.info("No results recorded for this patient.")
else:
    st.dataframe(table.iloc[::-1], hide_index=True, width="stretch", height=320, key="timeline_table")
    st.download_button(
        "Download results (CSV)",
        data=store.csv_bytes(table),
        file_name=f"results-{p.mrn}-{today.isoformat()}.csv",
        mime="text/csv",
        key="timeline_download",
    )


def _fhir_bundle_bytes(mrn: str = p.mrn) -> bytes:
    """The patient's FHIR R4 Bundle, built only when the button is pressed (Streamlit calls this on
    the download request, not on every rerun of the page)."""
    from sqlmodel import Session

    from monitoring.fhir_export import export_patient_json

    with Session(store.engine()) as session:
        return export_patient_json(session, mrn)


st.download_button(
    "Download FHIR bundle (JSON)",
    data=_fhir_bundle_bytes,
    file_name=f"{p.mrn}_fhir_{today.isoformat()}.json",
    mime="application/fhir+json",
    on_click="ignore",  # downloading changes nothing on the page: no rerun
    key="timeline_fhir_download",
    help="Patient, results, doses, findings and photograph metadata as one FHIR R4 Bundle.",
)

with st.expander(f"Guideline profile in force: {safe.md(prof.name)} {safe.md(prof.version)}"):
    st.caption(f"File: {safe.md(prof.path)}. Numbers not marked 'sourced' or 'product requirement' are configurable defaults.")
    st.dataframe(
        [
            {"threshold": t.label, "value": t.value, "unit": t.unit, "basis": t.basis, "source": t.source}
            for t in prof.thresholds.values()
        ],
        hide_index=True,
        width="stretch",
    )
