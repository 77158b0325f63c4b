"""Audit trail (administrators): who changed what and when, with values before and after.

Filters by time (UTC), user, action, record type and patient; the table shows the newest entries
first; the CSV export holds every entry that matches the filters. The trail is append-only: this
page reads it and nothing else can change it.
"""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import streamlit as st
from sqlmodel import Session

from dashboard import auth, safe, store
from monitoring import audit
from monitoring import auth as accounts
from monitoring.store import patient_ids_by_mrn

SHOWN = 500  # rows drawn on the page; the export has all

auth.require_signed_in(accounts.VIEW_AUDIT)
engine = store.engine()

st.markdown("### Audit trail")
st.caption("Times are UTC. Entries cannot be changed or deleted, by this product or at the database.")

with Session(engine) as session:
    choices = audit.distinct_values(session)

today = dt.datetime.now(dt.UTC).date()
c1, c2, c3, c4, c5 = st.columns([2.2, 1.4, 1.4, 1.4, 1.4])
period = c1.date_input("From – to (UTC)", value=(today - dt.timedelta(days=30), today), key="audit_period", max_value=today)
user = c2.selectbox("User", ["(all)", *choices["username"]], key="audit_user")
action = c3.selectbox("Action", ["(all)", *choices["action"]], key="audit_action")
entity = c4.selectbox("Record type", ["(all)", *choices["entity"]], key="audit_entity")
mrn = c5.text_input("Patient MRN", key="audit_mrn").strip()

since = until = None
if isinstance(period, tuple | list) and len(period) == 2:
    since = dt.datetime.combine(period[0], dt.time())
    until = dt.datetime.combine(period[1] + dt.timedelta(days=1), dt.time())
elif isinstance(period, tuple | list) and len(period) == 1:
    since = dt.datetime.combine(period[0], dt.time())

patient_id: int | None = None
with Session(engine) as session:
    if mrn:
        found = patient_ids_by_mrn(session, [mrn])
        if mrn not in found:
            st.warning(f"No patient with MRN {safe.md(repr(mrn))}.")
            st.stop()
        patient_id = found[mrn]
    flt = audit.AuditFilter(
        since=since,
        until=until,
        username=None if user == "(all)" else user,
        action=None if action == "(all)" else action,
        entity=None if entity == "(all)" else entity,
        patient_id=patient_id,
    )
    total = audit.count(session, flt)
    entries = audit.query(session, flt, limit=SHOWN)
    mrns = audit.mrns_for(session, entries)


def _json(value: object) -> str:
    return "" if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)


table = pd.DataFrame(
    [
        {
            "at (UTC)": e.at,
            "user": e.username or "",
            "action": e.action,
            "record": f"{e.entity} {e.entity_id}" if e.entity_id else e.entity,
            "patient": mrns.get(e.patient_id, "") if e.patient_id is not None else "",
            "before": _json(e.before),
            "after": _json(e.after),
            "reason": e.reason or "",
        }
        for e in entries
    ],
    columns=["at (UTC)", "user", "action", "record", "patient", "before", "after", "reason"],
)
shown_note = f"the newest {SHOWN} shown" if total > SHOWN else "all shown"
st.markdown(f"**{total:d}** entr{'y' if total == 1 else 'ies'} match ({shown_note}).")
st.dataframe(
    table,
    hide_index=True,
    width="stretch",
    column_config={"at (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")},
)


def export_csv() -> str:
    """Every matching entry, built only when the button is pressed (deferred download data)."""
    with Session(engine) as s:
        rows = audit.query(s, flt, limit=None)
        return audit.to_csv(rows, audit.mrns_for(s, rows))


st.download_button(
    "Export CSV (all matching entries)",
    export_csv,
    file_name=f"audit-{today.isoformat()}.csv",
    mime="text/csv",
    key="audit_download",
    on_click="ignore",
)

# --- sign-in throttle ---------------------------------------------------------------------
# Live: read at each run, not through a cached query (sign-in attempts do not clear the caches).
st.markdown("#### Sign-in attempts counted now")
with Session(engine) as session:
    counters = accounts.throttle_status(session)
if not counters:
    st.caption("No failed sign-in is being counted: nobody is slowed down.")
else:
    st.caption(
        "Failed sign-ins still counted, per user name at one address, per user name, per address and for the whole "
        "server; after the free attempts each further one waits longer. A successful sign-in clears its name's "
        "counters, and so does `users set-password`. Times are UTC."
    )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "counts": accounts.THROTTLE_KINDS.get(c["kind"], c["kind"]),
                    "user name": c["username"] if c["username"] is not None else "",
                    "address": c["source"] if c["source"] is not None else "",
                    "failures": c["failures"],
                    "free": c["free"],
                    "last failure (UTC)": c["last_failed_at"],
                    "locked until (UTC)": c["locked_until"],
                }
                for c in counters
            ]
        ),
        hide_index=True,
        width="stretch",
        column_config={
            "last failure (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
            "locked until (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
        },
    )
