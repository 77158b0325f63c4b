"""Ward overview: every active patient on one screen, whoever needs attention first.

Per patient: alerts by severity (in words), what is new since yesterday, day since onset, steroid
course day and dose, the latest ALT, creatinine, eosinophils and ferritin with the change since the
previous value. One click on a patient's button opens the timeline.
"""

from __future__ import annotations

import streamlit as st

from dashboard import safe, store, timeline_model, ward_model, widgets
from dashboard.auth import require_signed_in
from monitoring import display

user = require_signed_in()  # every page: a signed-in user only (dashboard/auth.py)

today = store.today()
prof = store.profile()
url = store.database_url()
version = store.data_version()
rows = ward_model.ward(url, version, today, f"{prof.path}:{prof.version}")


# The board refreshes itself: a screen left open shows new results and episodes without a click.
# Every few seconds the fragment reads only the cheap data version; the page reruns when it moved.
@st.fragment(run_every=store.ward_refresh_s())
def _refresh_when_data_change(shown_version: tuple[object, ...]) -> None:
    if store.data_version() != shown_version:
        st.rerun()


_refresh_when_data_change(version)

left, middle, right = st.columns([2.2, 2.6, 3], vertical_alignment="bottom")
left.markdown("### Ward overview")
setting = middle.segmented_control(
    "Setting", ["all", "inpatient", "clinic"], default="all", key="ward_setting", selection_mode="single",
    label_visibility="collapsed",
)
query = right.text_input("Search name or MRN", key="ward_search", placeholder="search name or MRN",
                         label_visibility="collapsed")
shown = [
    r
    for r in rows
    if (setting in (None, "all") or r.setting == setting)
    and (not query or query.strip().lower() in f"{r.name} {r.mrn}".lower())
]
counts = {sev: sum(1 for r in shown if r.worst == sev) for sev in ("critical", "warning")}
# A badge only for a severity some shown patient has: never a red "CRITICAL · 0 patient(s)".
st.markdown(
    "".join(widgets.badge_html(sev, f"{n} patient(s)") for sev, n in counts.items() if n)
    + f'<span style="color:{widgets.MUTED};font-size:0.85rem"> {today.isoformat()} · {len(shown)} of {len(rows)} active '
    f"patients · guideline profile {safe.html(prof.name)} {safe.html(prof.version)} · critical first, then warning. "
    f"{safe.html(widgets.DECISION_SUPPORT_NOTE)}</span>",
    unsafe_allow_html=True,
)

if not shown:
    st.info("No active patient matches." if rows else "No active patients: add one on the Entry page.")
    st.stop()

UNITS = {t: timeline_model.display_unit(t, "conventional") for t in ward_model.WARD_TESTS}




def _open(choice_key: str) -> None:
    """One click opens the patient: remember the choice and clear the buttons for the next visit."""
    st.session_state["ward_open_target"] = st.session_state.get(choice_key)
    st.session_state[choice_key] = None


# Demo patients keep their synthetic label wherever their name is shown.
# Names and MRNs are shortened for display (widgets.shorten): an old 20,005-character name stays
# on one button; the timeline shows it whole.
names = [widgets.shorten(r.name) + widgets.synthetic_label(r.synthetic, r.name) for r in shown]
labels = {
    r.mrn: f"{widgets.SEVERITY_SYMBOLS.get(r.worst, '')} {safe.md(n)}".strip()
    + (f" · {safe.md(widgets.shorten(r.mrn))}" if names.count(n) > 1 else "")
    for r, n in zip(shown, names, strict=True)
}
st.pills(
    "Open a patient (attention order)",
    [r.mrn for r in shown],
    format_func=lambda m: labels[m],
    selection_mode="single",
    key="ward_open",
    on_change=_open,
    args=("ward_open",),
)
if target := st.session_state.pop("ward_open_target", None):
    widgets.select_patient(target)
    st.switch_page("views/timeline.py", query_params={"mrn": target})

HEADERS = [(t, f"{display.test_label(t)} {display.unit_label(timeline_model.display_unit(t, 'conventional'))}")
           for t in ward_model.WARD_TESTS]
st.markdown(widgets.ward_table_html(shown, HEADERS, as_of=today), unsafe_allow_html=True)


def _ward_round_list() -> str:
    """Built only when the button is pressed: the list of the patients shown, in the ward's order."""
    import datetime as dt

    from dashboard.ward_round import ward_round_html

    filters = [f"setting {setting}"] if setting not in (None, "all") else []
    if query:
        filters.append(f"search {query.strip()!r}")
    heading = f"{len(shown)} of {len(rows)} active patients" + (f" ({', '.join(filters)})" if filters else "")
    return ward_round_html(shown, HEADERS, as_of=today, heading=heading, generated_at=dt.datetime.now(),
                           author=user.label)


st.download_button(
    "Ward-round list (print)", _ward_round_list, file_name=f"ward-round-{today.isoformat()}.html", mime="text/html",
    key="ward_round_list", on_click="ignore",
    help="The patients shown, in this order, with their alerts and latest values and the date each was taken: "
         "open the file and print it (A4 landscape).",
)
st.caption(
    "Each result: latest value, then arrow and signed change since the previous result; a line crossed since then "
    "is written under it, and when the value was taken (bold from two days old). A patient's name opens the timeline."
)
