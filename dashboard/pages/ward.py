"""Ward overview: every active patient on one screen, whoever needs attention first.

Per patient: alerts by severity (in words), what is new since yesterday, day since onset, steroid
course day and dose, the latest ALT, creatinine, eosinophils and ferritin with the change since the
previous value. Select a row to open the patient's timeline.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data, widgets

today = data.today()
prof = data.profile()
url = data.database_url()
rows = data.ward(url, data.data_version(), today, f"{prof.path}:{prof.version}")

st.title("Ward overview")
st.caption(
    f"{today.isoformat()} · guideline profile {prof.name} {prof.version} · sorted critical, then warning, then the rest. "
    + widgets.DECISION_SUPPORT_NOTE
)

left, middle, right = st.columns([2, 3, 3])
setting = left.segmented_control(
    "Setting", ["all", "inpatient", "clinic"], default="all", key="ward_setting", selection_mode="single"
)
query = middle.text_input("Search name or MRN", key="ward_search", placeholder="e.g. Smith or MRN-001")
shown = [
    r
    for r in rows
    if (setting in (None, "all") or r.setting == setting)
    and (not query or query.strip().lower() in f"{r.name} {r.mrn}".lower())
]
counts = {sev: sum(1 for r in shown if r.worst == sev) for sev in ("critical", "warning")}
with right:
    widgets.badges(
        [("critical", f"{counts['critical']} patient(s)"), ("warning", f"{counts['warning']} patient(s)")]
    )
    st.caption(f"{len(shown)} of {len(rows)} active patients shown")

if not shown:
    st.info("No active patient matches." if rows else "No active patients: add one on the Entry page.")
    st.stop()

UNITS = {t: data.display_unit(t, "conventional") for t in data.WARD_TESTS}


def _status(r: data.WardRow) -> str:
    if not r.worst:
        return "no alerts"
    return f"{widgets.SEVERITY_SYMBOLS[r.worst]} {r.worst.upper()}"


table = pd.DataFrame(
    [
        {
            "Status": _status(r),
            "Patient": r.name + widgets.synthetic_label(r.synthetic, r.name),
            "MRN": r.mrn,
            "Setting": r.setting,
            "Day": r.day_since_onset,
            "Course day": r.course_day,
            "Pred-eq mg/day": r.dose_mg,
            "mg/kg": r.dose_mg_per_kg,
            **{
                f"{label} ({UNITS[t]})": (r.changes[t].text() if r.changes[t] else "—")
                for t, label in zip(data.WARD_TESTS, ("ALT", "Creat", "Eos", "Ferritin"), strict=True)
            },
            "Alerts": "; ".join(f"{widgets.SEVERITY_SYMBOLS[s]} {s.upper()} {widgets.code_label(c)}" for s, c in r.alerts)
            or "—",
            "New since yesterday": "; ".join(r.new) or "",
        }
        for r in shown
    ]
)
worst = [r.worst for r in shown]
styled = table.style.apply(
    lambda col: [widgets.severity_cell_style(w) for w in worst], subset=["Status"]
).apply(
    lambda col: ["font-weight: 700" if v else "" for v in col], subset=["New since yesterday"]
).format({"Pred-eq mg/day": "{:.0f}", "mg/kg": "{:.2f}"}, na_rep="—")

event = st.dataframe(
    styled,
    key="ward_table",
    on_select="rerun",
    selection_mode="single-row",
    hide_index=True,
    width="stretch",
    height=min(38 + 35 * len(shown), 640),
    column_config={
        "Status": st.column_config.TextColumn(width="small"),
        "Patient": st.column_config.TextColumn(width="medium"),
        "Day": st.column_config.NumberColumn(help="days since DRESS onset"),
        "Course day": st.column_config.NumberColumn(help="day of the current steroid course (start = day 0)"),
        "Alerts": st.column_config.TextColumn(width="large"),
        "New since yesterday": st.column_config.TextColumn(width="large"),
    },
)
st.caption("Changes are since the previous result: arrow and signed difference. Select a row to open the patient.")

selected = event.selection.rows if event and event.selection else []
if selected:
    mrn = shown[selected[0]].mrn
    widgets.select_patient(mrn)
    st.switch_page("pages/timeline.py", query_params={"mrn": mrn})
