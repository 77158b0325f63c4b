"""Report: a printable one-patient summary for the clinic letter (PDF), previewed here.

The PDF is made by monitoring.report from the engine's data; this page only shows and offers it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import streamlit as st

from dashboard import store, widgets
from dashboard.auth import require_signed_in

user = require_signed_in()  # every page: a signed-in user only (dashboard/auth.py)

url = store.database_url()
version = store.data_version()
today = store.today()


@st.cache_data(show_spinner="Drawing the report…", max_entries=16, ttl=60)
def _report(url: str, version: tuple[Any, ...], mrn: str, as_of: dt.date, author: str) -> tuple[bytes, bytes, str]:
    """(figure PNG, PDF, its "prepared by" line) for one patient as of a date, prepared by
    ``author``; a write changes ``version`` and redraws (and at most a minute later, so the "as of"
    line of today follows the clock)."""
    from monitoring.report import ReportSettings, patient_report_pdf, prepared_line, timeline_png

    record = store.patient_record(url, version, mrn)
    assert record is not None
    prof = store.profile()
    now = dt.datetime.now().replace(microsecond=0)
    settings = ReportSettings.from_environment()
    png = timeline_png(record, as_of, prof, now=now)
    pdf = patient_report_pdf(record, as_of, prof, figure_png=png, generated_at=now, author=author, settings=settings)
    return png, pdf, prepared_line(author, settings, now)


st.title("Clinic report")
pick, when = st.columns([3, 2])
with pick:
    mrn = widgets.patient_picker(store.patient_options(url, version), key="report_patient")
with when:
    as_of = st.date_input("As of", value=today, max_value=today, key="report_as_of")
record = store.patient_record(url, version, mrn) if mrn else None
if record is None:
    st.info("Choose a patient.")
    st.stop()

from monitoring.followup import patch_test_plan  # noqa: E402
from monitoring.rules import evaluate  # noqa: E402

p = record.patient
png, pdf, prepared = _report(url, version, p.mrn, as_of, user.label)
st.download_button(
    "Download the PDF",
    data=pdf,
    file_name=f"dress-clinic-summary-{p.mrn}-{as_of.isoformat()}.pdf",
    mime="application/pdf",
    icon=":material/download:",
    type="primary",
    key="report_download",
)
st.caption(f"PDF ready: {len(pdf) // 1024} kB, A4. Header facts, the steroid course, the figure below, current alerts "
           "with their sources, the saved taper plan, the patch-test date, RegiSCAR, sequelae checklist and viral PCR.")

st.text(prepared)  # stored settings and a display name: plain text, never markup

left, right = st.columns([3, 2], gap="medium")
with left:
    st.image(png, caption=f"Timeline as printed (as of {as_of.isoformat()})")
with right:
    widgets.patient_header(
        [("MRN", p.mrn), ("onset", widgets.iso(p.onset_date) or "—"), ("resolution", widgets.iso(p.resolved_date) or "—")],
        p.name + widgets.synthetic_label(p.synthetic, p.name),
    )
    alerts = evaluate(record, as_of, store.profile())
    st.markdown(f"**Alerts in the report ({len(alerts)})**")
    if alerts:
        widgets.badges([(a.severity, a.title or a.code) for a in alerts])
    else:
        st.markdown("None as of this date.")
    st.caption(widgets.DECISION_SUPPORT_NOTE)
    patch = patch_test_plan(record, store.profile())
    st.markdown(f"**Earliest patch test:** {widgets.iso(patch.earliest) or 'not yet known'}")
