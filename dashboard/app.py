"""DRESS monitor: the Streamlit entry file.

Run with ``streamlit run dashboard/app.py``. The database is resolved exactly like the command line
(DATABASE_URL, else data/dress_monitor.db) and migrated; an empty database receives the synthetic
demo cohort on first run.

Pages are listed once, in ``PAGES``, grouped by who uses them. To add a page, put its file in
dashboard/views/ and add one ``st.Page`` line to its group. Patient pages share the selected
patient through ``st.session_state["patient_mrn"]`` and the query string ``?mrn=``
(``dashboard.widgets.PATIENT_KEY``).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the project: add the project
# root so that `dashboard` and `monitoring` import as packages.
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402
from streamlit.navigation.page import StreamlitPage  # noqa: E402

from dashboard import auth, store, widgets  # noqa: E402

st.set_page_config(page_title="DRESS monitor", page_icon=widgets.page_icon(), layout="wide", initial_sidebar_state="collapsed")

PAGES: dict[str, list[StreamlitPage]] = {
    "Ward": [
        st.Page("views/ward.py", title="Ward overview", icon=":material/bed:", url_path="ward", default=True),
    ],
    "Patient": [
        st.Page("views/timeline.py", title="Patient timeline", icon=":material/monitoring:", url_path="timeline"),
        st.Page("views/entry.py", title="Entry", icon=":material/edit_note:", url_path="entry"),
        st.Page("views/photos.py", title="Photos", icon=":material/photo_camera:", url_path="photos"),
    ],
    "Clinic": [
        st.Page("views/taper.py", title="Taper planner", icon=":material/trending_down:", url_path="taper"),
        st.Page("views/followup.py", title="Follow-up", icon=":material/event_available:", url_path="followup"),
        st.Page("views/report.py", title="Report", icon=":material/picture_as_pdf:", url_path="report"),
    ],
    "Admin": [
        st.Page("views/audit.py", title="Audit trail", icon=":material/policy:", url_path="audit"),
        st.Page("views/alert_report.py", title="Alert report", icon=":material/notifications_active:", url_path="alert-report"),
    ],
}



def _run() -> None:
    store.engine()  # open (and on first run fill) the database before any page reads it
    # Every page requires a signed-in user: until then the sign-in form stands in for whichever
    # page the address names, and that page opens once signed in (dashboard/auth.py).
    signed_in = auth.gate(store.engine(), PAGES)

    # Compact page: a ward workstation is 1366x768; every pixel of height goes to patients.
    st.markdown(
        "<style>[data-testid='stMainBlockContainer']{padding-top:3.2rem;padding-bottom:1rem}"
        "h1,h2,h3{margin-top:0 !important;padding-top:0.2rem !important}</style>",
        unsafe_allow_html=True,
    )
    st.navigation(auth.visible_pages(PAGES, signed_in), position="top").run()


# A busy, locked or read-only database (or any refusal by the database) is one clear message on
# the page, never Streamlit's crash page with the SQL statement (issue 12).
widgets.guard_database(_run)
