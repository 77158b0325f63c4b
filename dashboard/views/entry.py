"""Entry: add and correct lab results, dose changes, clinical findings and patient details; upload
CSV or FHIR files with a row-by-row error report.

Every change is signed and audited; a correction is an amendment that keeps the earlier value (a
reason is required); nothing is ever deleted, only hidden with a reason. A refused entry names the
field and the value, and nothing is stored.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

import streamlit as st

from dashboard import safe, store, widgets
from dashboard.auth import require_signed_in
from monitoring import catalogue, display, services
from monitoring.auth import PermissionDenied, authorise_write
from monitoring.db import session_scope
from monitoring.importers.caps import MAX_IMPORT_BYTES
from monitoring.store import BatchRejected

require_signed_in("write")  # a signed-in user who may write (dashboard/auth.py)

url = store.database_url()
version = store.data_version()

st.markdown("### Entry")


def _json_text(record: Any) -> str:
    import json

    return json.dumps(record, indent=1, ensure_ascii=False)[:20000]


def _number(value: float | None) -> str:
    """A stored limit as the form shows it: 35.0 -> '35'."""
    return "" if value is None else f"{value:g}"


def _unit_options(t: catalogue.TestDef) -> list[str]:
    """The units a result of ``t`` may be typed in, canonical first, one per label people read
    (monitoring.display: 'Cel' and '°C' are one choice, '°C')."""
    by_label: dict[str, str] = {}
    for unit in [t.canonical_unit, *([t.si_unit] if t.si_unit else []), *catalogue.accepted_units(t)]:
        by_label.setdefault(display.unit_label(unit), unit)
    return list(by_label.values())


def write(done: str, fn: Callable[..., Any], **kwargs: Any) -> bool:
    """Run one write service in its own transaction; report refusal field by field."""
    signer = widgets.username()
    if not signer:
        st.error("Sign in first: every change is signed. Nothing was stored.")
        return False
    try:
        with session_scope(store.engine()) as session:
            fn(session, username=signer, **kwargs)
    except BatchRejected as exc:
        st.error("Not stored:\n" + "\n".join(f"- {safe.md(p)}" for p in exc.problems))
        return False
    except PermissionDenied as exc:
        st.error(f"Not stored: {safe.md(exc)}.")
        return False
    store.clear_caches()
    st.success(done)  # markup-safe: every caller builds it from literals and safe.md
    return True


top_left, top_right = st.columns([3, 2], vertical_alignment="bottom")
with top_left:
    mrn = widgets.patient_picker(store.patient_options(url, version), key="entry_patient")
with top_right:
    st.markdown(f"Changes are signed **{safe.md(widgets.username() or 'nobody: sign in first')}** and audited.")

review_list = store.review_items(url, version)
tab_labs, tab_doses, tab_findings, tab_patient, tab_upload, tab_review = st.tabs(
    ["Lab results", "Doses", "Clinical findings", "Patient details", "Upload CSV / FHIR",
     f"Review list ({len(review_list)})"]
)

# --- lab results --------------------------------------------------------------------------
with tab_labs:
    if not mrn:
        st.info("Choose or register a patient first.")
    else:
        st.markdown("**Add a result** (value and unit as on the laboratory report)")
        tests = list(catalogue.CATALOGUE)
        c1, c2, c3, c4, c5 = st.columns([2, 1.3, 1, 1.2, 1.3])
        test = c1.selectbox("Test", tests, format_func=lambda k: catalogue.CATALOGUE[k].label, key="entry_lab_test")
        day = c2.date_input("Date taken", value=dt.date.today(), max_value=dt.date.today(), format="YYYY-MM-DD",
                            key="entry_lab_date")
        now = dt.datetime.now()
        # Morning bloods by default; before 06:00 the current time, so a default is never in the future.
        default_time = dt.time(6, 0) if now.time() >= dt.time(6, 0) else now.time().replace(second=0, microsecond=0)
        time = c3.time_input("Time", value=default_time, key="entry_lab_time", step=300)
        value = c4.text_input("Value", key="entry_lab_value", help="a number; for a PCR also 'detected' / 'not detected'")
        t = catalogue.CATALOGUE[test]
        unit_options = _unit_options(t)
        unit = c5.selectbox("Unit", unit_options, format_func=display.unit_label, key=f"entry_lab_unit_{test}")
        labs = store.patient_rows(url, store.data_version(), mrn)["labs"]
        # The range of this patient's latest result of the test, pre-filled in its (canonical) unit.
        last_low, last_high = store.last_reference(labs, test) if unit == t.canonical_unit else (None, None)
        r1, r2, r3 = st.columns([1, 1, 3])
        ref_low = r1.text_input("Reference low (optional)", value=_number(last_low), key=f"entry_lab_ref_low_{mrn}_{test}_{unit}")
        ref_high = r2.text_input("Reference high / ULN (optional)", value=_number(last_high),
                                 key=f"entry_lab_ref_high_{mrn}_{test}_{unit}")
        if last_high is not None:
            r3.caption(f"Reference range pre-filled from this patient's last {safe.md(t.label)} result.")
        default_uln = store.profile().default_uln(test)
        if not ref_high.strip() and default_uln is not None:
            st.info(f"No ULN given: this {safe.md(t.label)} result will be judged against the profile's default ULN "
                    f"{safe.md(display.quantity(test, default_uln, t.canonical_unit))}.")
        if st.button("Save result", type="primary", key="entry_lab_save"):
            write(
                f"Stored {t.label} {value} {display.unit_label(unit)} of {day.isoformat()} {time.strftime('%H:%M')}.",
                services.add_lab_result,
                mrn=mrn,
                test=test,
                taken_at=dt.datetime.combine(day, time),
                value=value,
                unit=unit,
                ref_low=ref_low or None,
                ref_high=ref_high or None,
            )

        st.divider()
        st.markdown("**Correct or remove a stored result** (the earlier value is kept in the audit trail)")
        if labs.empty:
            st.caption("No results stored.")
        else:
            st.dataframe(labs, hide_index=True, width="stretch", height=220, key="entry_lab_table",
                         column_order=store.ENTRY_LAB_COLUMNS)
            # The table's display text (monitoring.display: '36.9 °C', never '36.888888888888886 Cel').
            choice = st.selectbox(
                "Result",
                labs["id"].tolist(),
                format_func=lambda i: "{taken_at} · {test} · {value} {unit} (received {as received})".format(
                    **labs.set_index("id").loc[i].to_dict()
                ),
                key="entry_amend_lab",
            )
            row = labs.set_index("id").loc[choice]
            a1, a2, a3 = st.columns([1, 1, 3])
            new_value = a1.text_input("Corrected value", key="entry_amend_value")
            amend_test = catalogue.lookup(str(row["test_key"]))
            amend_units = _unit_options(amend_test)
            new_unit = a2.selectbox("Unit", amend_units, format_func=display.unit_label, key=f"entry_amend_unit_{amend_test.key}")
            reason = a3.text_input("Reason (required)", key="entry_amend_reason")
            b1, b2, _ = st.columns([1, 1, 3])
            if b1.button("Save correction", key="entry_amend_save"):
                write(f"Result {choice} corrected.", services.amend_lab_result, lab_id=int(choice), value=new_value,
                      unit=new_unit, reason=reason)
            if b2.button("Remove (hide) result", key="entry_hide_lab"):
                write(f"Result {choice} removed from view (kept with its reason).", services.hide_record,
                      entity="lab_result", record_id=int(choice), reason=reason)

# --- doses --------------------------------------------------------------------------------
with tab_doses:
    if not mrn:
        st.info("Choose or register a patient first.")
    else:
        st.markdown("**Dose change**: from the start date the drug is given at this daily dose until its next row; "
                    "0 means stopped; a date after today is the plan.")
        d1, d2, d3, d4, d5 = st.columns([2, 1.3, 1, 1, 1.3])
        drug = d1.text_input("Drug (generic or brand name)", key="entry_dose_drug")
        start = d2.date_input("From", value=dt.date.today(), format="YYYY-MM-DD", key="entry_dose_start")
        dose = d3.text_input("Daily dose", key="entry_dose_amount")
        dose_unit = d4.selectbox("Unit", list(services.DOSE_UNITS), key="entry_dose_unit")
        route = d5.selectbox("Route", ["oral", "intravenous", "subcutaneous", "topical", "other"], key="entry_dose_route")
        if st.button("Save dose change", type="primary", key="entry_dose_save"):
            write(f"Stored {safe.md(drug)} {safe.md(dose)} {dose_unit}/day from {start.isoformat()}.", services.add_dose_change,
                  mrn=mrn, drug=drug, start_date=start, dose=dose, unit=dose_unit, route=route)

        st.divider()
        meds = store.patient_rows(url, store.data_version(), mrn)["meds"]
        if meds.empty:
            st.caption("No dose rows stored.")
        else:
            st.dataframe(meds, hide_index=True, width="stretch", height=220, key="entry_dose_table")
            med_choice = st.selectbox(
                "Dose row",
                meds["id"].tolist(),
                format_func=lambda i: "{start_date} · {drug} · {as entered}".format(**meds.set_index("id").loc[i].to_dict()),
                key="entry_amend_med",
            )
            e1, e2, e3 = st.columns([1, 1, 3])
            med_dose = e1.text_input("Corrected daily dose", key="entry_amend_dose")
            med_unit = e2.selectbox("Unit", list(services.DOSE_UNITS), key="entry_amend_dose_unit")
            med_reason = e3.text_input("Reason (required)", key="entry_amend_dose_reason")
            f1, f2, _ = st.columns([1, 1, 3])
            if f1.button("Save dose correction", key="entry_amend_dose_save"):
                write(f"Dose row {med_choice} corrected.", services.amend_dose, med_id=int(med_choice), dose=med_dose,
                      unit=med_unit, reason=med_reason)
            if f2.button("Remove (hide) dose row", key="entry_hide_dose"):
                write(f"Dose row {med_choice} removed from view (kept with its reason).", services.hide_record,
                      entity="medication_row", record_id=int(med_choice), reason=med_reason)

# --- clinical findings --------------------------------------------------------------------
with tab_findings:
    if not mrn:
        st.info("Choose or register a patient first.")
    else:
        st.markdown("**RegiSCAR items entered by hand** (the latest answer per item is in force; earlier answers are kept)")
        record = store.patient_record(url, version, mrn)
        current = record.findings if record else {}
        answers = services.finding_answers()
        from monitoring.regiscar import REGISCAR_ITEMS

        with st.form("entry_findings_form"):
            chosen: dict[str, str] = {}
            grid = st.columns(3)
            for i, (item, allowed) in enumerate(answers.items()):
                options = ["(not recorded)", *allowed]
                now = current.get(item)
                index = options.index(now) if now in options else 0
                label = str(REGISCAR_ITEMS[item][0]) if item in REGISCAR_ITEMS else item.replace("_", " ")
                chosen[item] = grid[i % 3].selectbox(safe.md(label), options, index=index, key=f"entry_finding_{item}")
            submitted = st.form_submit_button("Save findings", type="primary")
        if submitted:
            changed = {k: v for k, v in chosen.items() if v != "(not recorded)" and v != current.get(k)}
            if not changed:
                st.info("No finding changed.")
            for item, answer in changed.items():
                write(f"{item}: {answer} recorded.", services.set_finding, mrn=mrn, item=item, value=answer)

# --- patient details ----------------------------------------------------------------------
SEX_OPTIONS = ["", *services.SEXES]


def patient_form(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    c1, c2, c3 = st.columns(3)
    out: dict[str, Any] = {
        "name": c1.text_input("Name", value=values.get("name", ""), key=f"{prefix}_name"),
        "sex": c2.selectbox("Sex", SEX_OPTIONS, index=SEX_OPTIONS.index(values.get("sex") or ""), key=f"{prefix}_sex"),
        "birth_date": c3.date_input("Birth date", value=values.get("birth_date"), min_value=dt.date(1900, 1, 1),
                                    max_value=dt.date.today(), format="YYYY-MM-DD", key=f"{prefix}_birth"),
        "weight_kg": c1.number_input("Weight (kg)", value=values.get("weight_kg"), min_value=0.0, max_value=500.0,
                                     step=0.5, key=f"{prefix}_weight"),
        "onset_date": c2.date_input("DRESS onset date", value=values.get("onset_date"), max_value=dt.date.today(),
                                    format="YYYY-MM-DD", key=f"{prefix}_onset"),
        "culprit_drugs": c3.text_input("Culprit drug(s), separated by ;", value="; ".join(values.get("culprit_drugs", ())),
                                       key=f"{prefix}_culprits"),
        "baseline_creatinine_mg_dl": c1.number_input("Baseline creatinine (mg/dL, optional)",
                                                     value=values.get("baseline_creatinine_mg_dl"), min_value=0.0,
                                                     max_value=30.0, step=0.1, key=f"{prefix}_baseline"),
        "resolved_date": c2.date_input("Resolution date (optional)", value=values.get("resolved_date"),
                                       format="YYYY-MM-DD", key=f"{prefix}_resolved"),
        "setting": c3.selectbox("Followed as", list(services.SETTINGS),
                                index=list(services.SETTINGS).index(values.get("setting", "inpatient")), key=f"{prefix}_setting"),
    }
    return out


with tab_patient:
    record = store.patient_record(url, version, mrn) if mrn else None
    if record is not None:
        st.markdown(f"**Details of {safe.md(record.patient.name)}** ({safe.md(record.patient.mrn)})")
        info = record.patient
        with st.form("entry_patient_form"):
            fields = patient_form("entry_pt", {**info.__dict__, "culprit_drugs": info.culprit_drugs})
            fields["active"] = st.checkbox("Active (shown on the ward overview)", value=info.active, key="entry_pt_active")
            why = st.text_input("Reason for the change", key="entry_pt_reason")
            if st.form_submit_button("Save details", type="primary"):
                write("Details saved.", services.update_patient, mrn=info.mrn, reason=why, **fields)
    with st.expander("Register a new patient", expanded=record is None):
        with st.form("entry_new_patient_form"):
            new_mrn = st.text_input("MRN", key="entry_new_mrn")
            fields = patient_form("entry_new", {})
            if st.form_submit_button("Register patient"):
                name = fields.pop("name")
                if write(f"Patient {safe.md(new_mrn)} registered.", services.add_patient, mrn=new_mrn, name=name, **fields):
                    widgets.select_patient(new_mrn.strip())

# --- upload -------------------------------------------------------------------------------
with tab_upload:
    st.markdown(
        "CSV files (patients, labs or medications, recognised by their header) and FHIR R4 Bundle JSON files. "
        "All files are imported in one transaction: if any row has a problem, **nothing** is stored and every "
        "problem is listed below."
    )
    files: Any = None
    try:
        # The import's own cap (DRESS_MAX_IMPORT_BYTES) is the browser's limit too: a larger file is
        # refused before it is sent, never held in the server's memory first (Streamlit: 200 MB).
        upload_mb = math.ceil(MAX_IMPORT_BYTES.value() / (1024 * 1024))
    except ValueError as exc:
        st.error(f"Import is switched off until the setting is fixed: {safe.md(str(exc))}")
    else:
        files = st.file_uploader("Files", type=["csv", "json"], accept_multiple_files=True, key="entry_upload",
                                 max_upload_size=upload_mb)
    skip_invalid = st.checkbox(
        "Import the rest when some rows are refused (each refused row goes to the review list)",
        key="entry_skip_invalid",
    )
    if st.button("Import", type="primary", key="entry_import", disabled=not files):
        signer = widgets.username()
        if not signer:
            st.error("Sign in first: every import is signed. Nothing was imported.")
        else:
            from monitoring.importers import import_uploads

            report = None
            try:
                with session_scope(store.engine()) as session:
                    authorise_write(session, username=signer, action="import", entity="batch")
                    report = import_uploads(session, [(f.name, f.getvalue()) for f in files or []], username=signer,
                                            skip_invalid=skip_invalid)
            except PermissionDenied as exc:
                st.error(f"Nothing was imported: {safe.md(exc)}.")
            if report is None:
                pass
            elif report.ok:
                store.clear_caches()
                refused = f" {len(report.refused)} refused item(s) are in the review list." if report.refused else ""
                st.success("Imported." + refused)
                st.code("\n".join(report.summary_lines()), language=None)  # file names and values: text only
            else:
                st.error(f"Nothing was imported: {int(report.problem_count)} problem(s).")
                st.dataframe(
                    [{"file": p.where, "column": p.column or "", "value": "" if p.value is None else str(p.value),
                      "problem": p.reason} for p in report.problems],
                    hide_index=True,
                    width="stretch",
                    key="entry_import_problems",
                )
                st.code("\n".join(report.problem_lines()), language=None)

# --- intake review list -------------------------------------------------------------------
with tab_review:
    from monitoring import review

    st.markdown(
        "Items an import with *Import the rest* (or the lab feed) refused, kept as received. Correct one and store "
        "it (the same checks as any entry), or discard it with a reason. Both are signed and audited."
    )
    if not review_list:
        st.info("The review list is empty.")
    else:
        st.dataframe(
            [{"#": i["id"], "source": i["source"], "resource or row": i["location"], "field": i["field"],
              "value": i["value"], "reason": i["reason"]} for i in review_list],
            hide_index=True, width="stretch", key="entry_review_table",
        )
        by_id = {i["id"]: i for i in review_list}
        chosen = st.selectbox("Item", list(by_id), key="entry_review_item",
                              format_func=lambda k: f"#{k} {by_id[k]['location']} ({by_id[k]['kind']})")
        item = by_id[chosen]
        st.caption("As received")
        st.code(item["value"] if item["record"] is None else _json_text(item["record"]), language=None)
        d = item["defaults"]
        k = f"entry_review_{chosen}"
        if item["kind"] == "lab":
            c1, c2, c3, c4, c5 = st.columns(5)
            fields = {"mrn": c1.text_input("MRN", d.get("mrn", ""), key=f"{k}_mrn"),
                      "test": c2.text_input("Test (key or LOINC)", d.get("test", ""), key=f"{k}_test"),
                      "taken_at": c3.text_input("Taken at", d.get("taken_at", ""), key=f"{k}_time"),
                      "value": c4.text_input("Value", d.get("value", ""), key=f"{k}_value"),
                      "unit": c5.text_input("Unit", d.get("unit", ""), key=f"{k}_unit")}
            if st.button("Store the correction", key=f"{k}_store", type="primary"):
                write("Stored; the item is closed.", review.store_lab_correction, item_id=chosen, **fields)
        elif item["kind"] == "medication":
            c1, c2, c3, c4, c5 = st.columns(5)
            fields = {"mrn": c1.text_input("MRN", d.get("mrn", ""), key=f"{k}_mrn"),
                      "drug": c2.text_input("Drug", d.get("drug", ""), key=f"{k}_drug"),
                      "start_date": c3.text_input("From", d.get("start_date", ""), key=f"{k}_start"),
                      "dose": c4.text_input("Daily dose", d.get("daily_dose", ""), key=f"{k}_dose"),
                      "unit": c5.selectbox("Unit", services.DOSE_UNITS, key=f"{k}_unit")}
            if st.button("Store the correction", key=f"{k}_store", type="primary"):
                write("Stored; the item is closed.", review.store_dose_correction, item_id=chosen, **fields)
        elif item["kind"] == "patient":
            c1, c2 = st.columns(2)
            fields = {"mrn": c1.text_input("MRN", d.get("mrn", ""), key=f"{k}_mrn"),
                      "name": c2.text_input("Name", d.get("name", ""), key=f"{k}_name")}
            if st.button("Store the correction", key=f"{k}_store", type="primary"):
                write("Stored; the item is closed.", review.store_patient_correction, item_id=chosen, **fields)
        why = st.text_input("Reason to discard", key=f"{k}_why")
        if st.button("Discard", key=f"{k}_discard"):
            write("Discarded; the item is kept with its reason.", review.discard_item, item_id=chosen, reason=why)
