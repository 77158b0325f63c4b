"""Alert report (administrators): per alert code, how often it fired, how it was acknowledged and
with which reasons, how long it waited for an acknowledgement, how often it was snoozed and
reopened by new evidence: the numbers a unit needs to tune its guideline profile."""

from __future__ import annotations

import datetime as dt

import streamlit as st
from sqlmodel import Session

from dashboard import auth, store, widgets
from monitoring import episode_report

auth.require_signed_in()
if not auth.is_admin():
    st.error("Admins only: the alert report is for administrators.")
    st.stop()

st.markdown("### Alert report")
st.caption("Episodes opened in the period (UTC). Acknowledgements, snoozes and reopenings come from the audit trail.")
today = dt.datetime.now(dt.UTC).date()
period = st.date_input("Opened from – to (UTC)", value=(today - dt.timedelta(days=90), today), max_value=today,
                       key="alert_report_period")
start, end = (period if isinstance(period, tuple) and len(period) == 2 else (today - dt.timedelta(days=90), today))
with Session(store.engine()) as session:
    rows = episode_report.code_stats(
        session,
        since=dt.datetime.combine(start, dt.time()),
        until=dt.datetime.combine(end + dt.timedelta(days=1), dt.time()),
    )
if not rows:
    st.info("No alert episode opened in this period.")
    st.stop()
st.dataframe(
    [
        {
            "alert": widgets.code_label(r.code),
            "code": r.code,
            "fired": r.fired,
            "acknowledged": r.acknowledged,
            "acknowledged by reason": r.reasons_text(),
            "median hours to acknowledgement": None if r.median_hours_to_ack is None else round(r.median_hours_to_ack, 1),
            "snoozed": r.snoozed,
            "reopened": r.reopened,
            "open, unacknowledged": r.open_unacknowledged,
        }
        for r in rows
    ],
    hide_index=True,
    width="stretch",
    key="alert_report_table",
)
st.download_button(
    "Download (CSV)",
    data=episode_report.to_csv(rows).encode("utf-8"),
    file_name=f"alert-report-{start.isoformat()}-{end.isoformat()}.csv",
    mime="text/csv",
    key="alert_report_download",
)
