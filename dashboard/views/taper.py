"""Taper planner: from today's dose, propose a schedule (step in mg or %, or a target end date),
see it on the dose panel with the taper length and the PREMATURE_TAPER check before saving, save
it as plan rows in one step, or discard the saved plan.

The arithmetic and the check are monitoring.taper's; the verdict is the engine's own rule."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from dashboard import clinic_figures, safe, store, widgets
from dashboard.auth import can_write, require_signed_in
from monitoring import display
from monitoring.db import session_scope
from monitoring.steroids import course_day_words
from monitoring.store import BatchRejected
from monitoring.taper import (
    FORMULARY_BASIS,
    TaperError,
    check_plan,
    current_steroid_doses,
    default_plan_drug,
    discard_plan,
    load_formulary,
    plannable_drugs,
    planning_dose,
    propose_taper,
    save_plan,
    saved_plan,
)

user = require_signed_in()  # every page: a signed-in user only (dashboard/auth.py)

url = store.database_url()
version = store.data_version()
today = store.today()
prof = store.profile()

signer = user.username  # every change made here is signed by the signed-in account
record = widgets.patient_page_start(
    "Taper planner", store.patient_options(url, version), lambda mrn: store.patient_record(url, version, mrn),
    key="taper_patient", signer=signer,
)

p = record.patient
stored = check_plan(record, None, today, prof)
on_now = current_steroid_doses(record, today)
widgets.patient_header(
    [
        ("MRN", p.mrn),
        ("weight", display.quantity("weight", p.weight_kg, "kg") if p.weight_kg else "not recorded"),
        # "day 9 of steroids (first dose ...)": the count the day-7 rule uses (issue 18 point 7).
        ("course", course_day_words(stored.course.course_start, stored.course.day_of_course) or "no ongoing course"),
        ("today", today.isoformat()),
        ("steroid today", ", ".join(f"{d} {mg:g} mg/day" for d, mg in on_now.items()) or "none"),
        ("prednisone-equivalent", f"{stored.course.current_pred_eq_mg:g} mg/day"),
    ],
    p.name + widgets.synthetic_label(p.synthetic, p.name),
)


def run_write(done: str, fn, **kwargs) -> bool:  # type: ignore[no-untyped-def]
    """One write in one transaction: all of it is stored, or nothing (refusals named)."""
    from monitoring.auth import PermissionDenied

    try:
        with session_scope(store.engine()) as session:
            fn(session, username=signer, mrn=p.mrn, as_of=today, **kwargs)
    except (BatchRejected, TaperError, PermissionDenied) as exc:
        problems = getattr(exc, "problems", None) or [exc]
        st.error("Not stored:\n" + "\n".join(f"- {safe.md(x)}" for x in problems))
        return False
    store.clear_caches()
    st.session_state["taper_done"] = done
    st.rerun()
    return True


if msg := st.session_state.pop("taper_done", None):
    st.success(msg)  # markup-safe: built with safe.md where it is set

# --- the saved plan ---------------------------------------------------------------------------
plan_rows = saved_plan(record, today)
with st.container(border=True):
    st.subheader("Saved plan")
    if plan_rows:
        st.dataframe(
            pd.DataFrame(
                [{"from": m.start_date.isoformat(), "drug": m.drug, "dose (mg/day)": m.daily_dose_mg, "route": m.route or ""}
                 for m in plan_rows]
            ),
            hide_index=True,
            key="taper_saved_table",
        )
        c = stored.course
        line = f"Taper length on the saved schedule: **{c.taper_days:d} days**" if c.taper_days is not None else "No stop on the saved schedule"
        if c.taper_start:
            line += f" (taper start {c.taper_start.isoformat()}, stop {widgets.iso(c.stop_date)})"
        st.markdown(line)
        if stored.premature_taper:
            st.warning(f"PREMATURE_TAPER · {safe.md(stored.premature_taper.message)}")
        st.caption("To edit the plan, propose a new one below and save it: it replaces this one (the rows it does not "
                   "repeat are hidden with the reason 'plan discarded', never deleted).")
        if can_write() and st.button("Discard saved plan", key="taper_discard", icon=":material/delete:"):
            run_write(f"Saved plan discarded ({len(plan_rows)} rows hidden).", discard_plan)
    else:
        st.markdown("No plan saved: no steroid rows dated after today.")

# --- propose a plan ---------------------------------------------------------------------------
st.subheader("Propose a taper")
formulary = load_formulary()
drugs = plannable_drugs(formulary)
c1, c2, c3 = st.columns(3)
drug = c1.selectbox(
    "Drug", drugs, index=drugs.index(default_plan_drug(record, today, drugs)), key=f"taper_drug_{p.mrn}",
    help="The steroid the patient is on today; another drug makes the plan a switch. Doses are rounded to whole "
         "tablets of the formulary.",
)
start_default = today + dt.timedelta(days=1)
current_default = planning_dose(record, today, drug)
current = c2.number_input(
    f"Today's dose ({safe.md(drug)}, mg/day)", min_value=0.0, max_value=2000.0, value=float(current_default), step=1.0,
    key=f"taper_current_{drug}",
    help="From the dose schedule: the patient's own dose of this drug, or the prednisone-equivalent total converted to it.",
)
first = c3.date_input("First reduction on", value=start_default, min_value=start_default, key="taper_start")
m1, m2, m3 = st.columns(3)
method = m1.radio("Reduce", ["by mg", "by %", "to an end date"], key="taper_method", horizontal=True)
interval = m2.number_input("Every (days)", min_value=1, max_value=90, value=7, step=1, key="taper_interval")
step_mg = step_pct = end_date = None
if method == "by mg":
    step_mg = m3.number_input("Step (mg)", min_value=0.5, max_value=500.0, value=10.0, step=0.5, key="taper_step_mg")
elif method == "by %":
    step_pct = m3.number_input("Step (% of the previous dose)", min_value=1.0, max_value=100.0, value=20.0, step=5.0,
                               key="taper_step_pct")
else:
    end_date = m3.date_input("Stop on", value=first + dt.timedelta(days=42), min_value=first, key="taper_end")
st.caption(f"Tablets of {safe.md(drug)}: {safe.md(formulary[drug].describe())}. Dose ladder (by % and to an end date): "
           f"{safe.md(formulary[drug].describe_ladder())} — {safe.md(FORMULARY_BASIS)}.")

try:
    plan = propose_taper(drug=drug, current_dose_mg=float(current), start_date=first, interval_days=int(interval),
                         step_mg=step_mg, step_pct=step_pct, end_date=end_date, formulary=formulary)
    check = check_plan(record, plan, today, prof)
except TaperError as exc:
    st.error(safe.md(exc))
    st.stop()

for note in plan.notes:
    st.info(safe.md(note))

left, right = st.columns([3, 2], gap="medium")
with right:
    a, b = st.columns(2)
    a.metric("Taper length", f"{check.taper_days} days" if check.taper_days is not None else "no stop")
    b.metric("Stop", widgets.iso(check.course.stop_date) or "—")
    th = check.min_taper
    if check.premature_taper is not None:
        st.warning(
            f"**PREMATURE_TAPER: this plan is shorter than {th.value:g} {safe.md(th.unit)}.** {safe.md(check.premature_taper.message)}\n\n"
            f"Guideline: {safe.md(th.label)} ({safe.md(th.basis)}). Source: {safe.md(check.premature_taper.source)}"
        )
    else:
        st.success(f"Taper length {check.taper_days:d} days: at least the guideline's {th.value:g} {safe.md(th.unit)}. "
                   f"Source: {safe.md(th.source)} ({safe.md(th.basis)}).")
    st.caption(f"Taper start {widgets.iso(check.course.taper_start) or '—'} (the course's first reduction after its last "
               "increase; an earlier reduction counts), stop = first day at 0 mg.")
    st.dataframe(
        pd.DataFrame(
            [{"from": s.date.isoformat(), f"{plan.drug} (mg/day)": s.dose_mg, "tablets": s.tablets_text,
              "prednisone-eq (mg/day)": s.pred_eq_mg} for s in plan.steps]
        ),
        hide_index=True,
        key="taper_plan_table",
    )
    others = sorted(d for d in on_now if d != plan.drug)
    if others:
        st.info(f"Saving also stops {safe.md(', '.join(others))} on {plan.first_date.isoformat()} (a switch to {safe.md(plan.drug)}).")
with left:
    saved_points = [s for s in stored.course.schedule if s.planned]
    # The now line to the minute: the chart's spec (its identity to Streamlit) does not change every second.
    st.plotly_chart(clinic_figures.dose_panel(record, check.course, today, saved=saved_points, now=store.now_minute()),
                    key="taper_dose_figure")
    st.caption(f"Plan {safe.md(plan.method)}. Solid: doses given; dashed: the plan as proposed (not yet saved)"
               + ("; dotted: the plan saved now." if saved_points else "."))

ack = True
if check.premature_taper is not None:
    ack = st.checkbox("I have read the premature-taper warning and want to save this plan anyway.", key="taper_ack")
label = "Replace the saved plan" if plan_rows else "Save plan"
if can_write() and st.button(f"{label} ({len(plan.steps)} rows)", key="taper_save", type="primary", disabled=not ack):
    run_write(f"Plan saved: {plan.method}, stop {plan.stop_date.isoformat()}.", save_plan, plan=plan)
