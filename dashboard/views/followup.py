"""Follow-up in clinic: the earliest patch-test date with both reasons and what is unknown,
RegiSCAR item by item (with a form for the items a person must answer), the sequelae checklist
after resolution, and viral PCR results over time. All of it from monitoring."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import clinic_figures, safe, store, widgets
from dashboard.auth import can_write, require_signed_in
from monitoring.db import session_scope
from monitoring.followup import (
    FollowupConfigError,
    checklist_rows,
    patch_test_plan,
    sequelae_checklist,
    viral_pcr_results,
)
from monitoring.regiscar import REGISCAR_ITEMS, score_regiscar
from monitoring.store import BatchRejected

user = require_signed_in()  # every page: a signed-in user only (dashboard/auth.py)

url = store.database_url()
version = store.data_version()
today = store.today()
prof = store.profile()
NO_CHANGE = "— keep —"

signer = user.username  # every change made here is signed by the signed-in account
record = widgets.patient_page_start(
    "Follow-up", store.patient_options(url, version), lambda mrn: store.patient_record(url, version, mrn),
    key="followup_patient", signer=signer,
)
p = record.patient
widgets.patient_header(
    [
        ("MRN", p.mrn),
        ("onset", widgets.iso(p.onset_date) or "not recorded"),
        ("day since onset", str((today - p.onset_date).days) if p.onset_date else "—"),
        ("resolution", widgets.iso(p.resolved_date) or "not recorded"),
        ("culprit", ", ".join(p.culprit_drugs) or "not recorded"),
        ("as of", today.isoformat()),
    ],
    p.name + widgets.synthetic_label(p.synthetic, p.name),
)
if msg := st.session_state.pop("followup_done", None):
    st.success(msg)  # markup-safe: built with safe.md where it is set

# --- patch test ---------------------------------------------------------------------------------
patch = patch_test_plan(record, prof)
with st.container(border=True):
    st.subheader("Earliest patch-test date")
    st.metric("Earliest patch test", widgets.iso(patch.earliest) or "not yet known")
    for reason in patch.reasons:
        st.markdown(f"- {safe.md(reason)}")
    for unknown in patch.unknowns:
        st.warning(safe.md(unknown))
    st.caption(f"The later of the two dates; the plan counts. Source: {safe.md(patch.source)}")

# --- RegiSCAR -----------------------------------------------------------------------------------
regiscar = score_regiscar(record, today, prof)
st.subheader("RegiSCAR")
a, b, c = st.columns([1, 1, 3])
a.metric("RegiSCAR score", regiscar.score)
b.metric("Category", regiscar.category)
c.caption("Categories: < 2 no case, 2–3 possible, 4–5 probable, > 5 definite (Kardaun 2007, BJD 156:609; "
          "Kardaun 2013, BJD 169:1071). Items filled from data use every result so far; a clinician's answer "
          "wins over a negative from the data.")
st.dataframe(
    pd.DataFrame(
        [{"key": i.key, "item": i.label, "answer": i.answer, "points": i.points, "filled by": i.filled_by} for i in regiscar.items]
    ),
    hide_index=True,
    key="followup_regiscar_table",
    column_config={"key": None},
)
submitted = False
if can_write():  # read-only accounts see the answers, not the form
    with st.form("followup_regiscar_form"):
        st.markdown("**Items a person answers** (the latest answer is in force; earlier answers are kept)")
        cols = st.columns(3)
        for n, (item, (label, answers)) in enumerate(REGISCAR_ITEMS.items()):
            current = record.findings.get(item)
            cols[n % 3].selectbox(
                label, [NO_CHANGE, *answers], key=f"followup_item_{item}",
                help=f"Recorded now: {safe.md(current)}" if current else "Not recorded yet",
            )
        submitted = st.form_submit_button("Record answers")
if submitted:
    from monitoring import services
    from monitoring.auth import PermissionDenied

    changes = {item: st.session_state[f"followup_item_{item}"] for item in REGISCAR_ITEMS}
    changes = {k: v for k, v in changes.items() if v != NO_CHANGE and v != record.findings.get(k)}
    if not changes:
        st.info("No answer changed.")
    else:
        try:
            with session_scope(store.engine()) as session:  # all answers in one transaction
                for item, value in changes.items():
                    services.set_finding(session, username=signer, mrn=p.mrn, item=item, value=value)
        except (BatchRejected, PermissionDenied) as exc:
            problems = getattr(exc, "problems", None) or [exc]
            st.error("Not stored:\n" + "\n".join(f"- {safe.md(x)}" for x in problems))
        else:
            store.clear_caches()
            for item in REGISCAR_ITEMS:
                st.session_state.pop(f"followup_item_{item}", None)
            st.session_state["followup_done"] = f"Recorded: {safe.md(', '.join(f'{k} = {v}' for k, v in changes.items()))}."
            st.rerun()

# --- sequelae checklist -------------------------------------------------------------------------
st.subheader("Sequelae follow-up: thyroid and glucose after resolution")
try:
    items = sequelae_checklist(record, today, profile=prof)
except FollowupConfigError as exc:  # a unit's edited schedule file: say what is wrong in it
    st.error(f"The follow-up schedule cannot be used:\n\n{safe.md(exc)}")
    st.stop()
if not items:
    st.info("The checklist counts from the resolution date: record it on the Entry page (patient details) once the "
            "reaction has resolved.")
else:
    counts = {s: sum(1 for i in items if i.status == s) for s in ("overdue", "due", "done", "upcoming")}
    outside = [i for i in items if i.outside_range]
    widgets.badges(
        # An overdue check is a task for the clinic, not an emergency: warning at most.
        [("warning" if counts["overdue"] else "info", f"{counts['overdue']} overdue"),
         ("info", f"{counts['due']} due now"),
         ("info", f"{counts['done']} done"), ("info", f"{counts['upcoming']} upcoming")]
        + ([("warning", f"{len(outside)} outside range")] if outside else [])
    )
    if outside:
        # Done is not normal: a TSH of 5.2 then 6.4 above the laboratory's 4.5 is said in words.
        st.warning(
            "Outside the reference range: "
            + "; ".join(
                safe.md(f"{i.test_label} month {i.check.month}: {i.result.original_value} {i.result.original_unit} on "
                        f"{i.result.taken_at.date().isoformat()} {i.range_text}")
                for i in outside if i.result is not None
            )
        )
    st.dataframe(
        pd.DataFrame(checklist_rows(items)),
        hide_index=True,
        key="followup_checklist",
        # The result and its range flag wide enough to read whole at 1366 px (looked at: 'ABOVE' was cut).
        column_config={"result": st.column_config.TextColumn("result", width="medium"),
                       "range": st.column_config.TextColumn("range", width="large"),
                       "source": st.column_config.TextColumn("source", width="large")},
    )
    st.caption("DONE = a result of the test is stored within the check's window; OVERDUE = the window closed without "
               "one. RANGE: the result against its reference range: the laboratory's upper limit (else the guideline "
               "profile's default, said so) and the laboratory's lower limit; no limit is assumed where none is known. Schedule: monitoring/followup.toml. 'sourced' checks follow Cutis/MDedge (monthly glucose, TSH and "
               "free T4 for 3 months); the 6- and 12-month TSH are a default (UNCONFIRMED); 18 and 24 months cover "
               "'at least 2 years' (interval a design choice). Free T4 is not in the catalogue: order it with the TSH.")

# --- viral PCR ----------------------------------------------------------------------------------
st.subheader("Viral PCR (HHV-6, EBV, CMV)")
pcr = viral_pcr_results(record, today)
if not pcr:
    st.info("No viral PCR results. HHV-6 reactivates 2–3 weeks after onset, then EBV and CMV; repeat testing is "
            "needed (HHV-6 Foundation; Martinez-Cabriales et al., WJCC 2019;7:705; Kano & Shiohara 2004/2006).")
else:
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(clinic_figures.pcr_figure(pcr), key="followup_pcr_figure")
    with right:
        st.dataframe(
            pd.DataFrame(
                [{"taken": r.taken_at.strftime("%Y-%m-%d %H:%M"), "day": r.day_since_onset, "test": r.label,
                  "result": "DETECTED" if r.detected else "not detected", "as received": r.as_received} for r in pcr]
            ),
            hide_index=True,
            key="followup_pcr_table",
        )
