"""Photographs: add (upload several, or take one with the camera), a gallery by date and body site
that loads thumbnails only, one day's photographs, and the same body site on two dates side by side
with the day since onset, the steroid course day, the dose and the BSA % under each."""

from __future__ import annotations

import datetime as dt
import math

import streamlit as st

from dashboard import photo_widgets as pw
from dashboard import safe, store, widgets
from dashboard.auth import can_write, require_signed_in
from monitoring import display
from monitoring.photos import BODY_SITES, PhotoIn, PhotoLimits, PhotoMeta

require_signed_in()  # every page: a signed-in user only (dashboard/auth.py)

VIEWS = ("Gallery", "Compare", "Add photographs")
READ_VIEWS = ("Gallery", "Compare")
NONCE = "photos_upload_nonce"
FLASH = "photos_flash"
DAY = "photos_day"

url = store.database_url()
version = store.data_version()
today = store.today()

with st.sidebar:
    mrn = widgets.patient_picker(store.patient_options(url, version), key="photos_patient")
record = store.patient_record(url, version, mrn) if mrn else None
if record is None:
    st.title("Photographs")
    st.info("Choose a patient in the sidebar or on the ward overview.")
    st.stop()

p = record.patient
facts = [
    ("MRN", p.mrn),
    ("onset", widgets.iso(p.onset_date) or "not recorded"),
    ("day since onset", str((today - p.onset_date).days) if p.onset_date else "—"),
]
if p.synthetic:
    facts.append(("data", "SYNTHETIC demo patient"))
widgets.patient_header(facts, f"Photographs · {p.name}{widgets.synthetic_label(p.synthetic, p.name)}")
st.caption(
    "Stored re-encoded from the pixels: no EXIF, GPS or other metadata is kept. Photographs are clinical "
    "records: they are never deleted, only hidden with a reason, and every change is in the audit trail."
)

flash = st.session_state.pop(FLASH, None)
if flash:
    st.success(flash)  # markup-safe: built with safe.md where it is set

# A link from the timeline (?photo_day=YYYY-MM-DD) opens that day's photographs.
linked_day = st.query_params.get("photo_day")
if linked_day and linked_day != st.session_state.get("photos_linked_day"):
    st.session_state["photos_linked_day"] = linked_day  # a link is followed once, then the page is free
    try:
        st.session_state[DAY] = dt.date.fromisoformat(str(linked_day))
        st.session_state["photos_goto"] = "Gallery"
    except ValueError:
        st.warning(f"The link's photo_day {safe.md(repr(linked_day))} is not a date YYYY-MM-DD.")

items = pw.gallery(url, version, p.mrn)
goto = st.session_state.pop("photos_goto", None)  # set by a write, before the view widget exists
if goto in VIEWS:
    st.session_state["photos_view"] = goto
# Write controls only for accounts that may write (viewers see the photographs, not the upload).
writer = can_write()
views = VIEWS if writer else READ_VIEWS
if st.session_state.get("photos_view") not in (*views, None):
    st.session_state["photos_view"] = "Gallery"
# A default only on the first run: afterwards the session (or a link, or a write) says which view.
first_view = None if "photos_view" in st.session_state else ("Gallery" if items or not writer else "Add photographs")
view = st.segmented_control("View", views, default=first_view, key="photos_view") or "Gallery"


def _who() -> str | None:
    """The name recorded in the audit trail: the signed-in user, else a name typed here."""
    name = widgets.username()
    if name:
        st.caption(f"Recorded as {safe.md(name)} in the audit trail.")
        return name
    typed = st.text_input("Your name (recorded in the audit trail)", key="photos_user").strip()
    return typed or None


def _context_block(day: dt.date, bsa: float | None) -> None:
    lines = pw.context_lines(pw.context(record, day), bsa)
    st.markdown("\n".join(f"- **{safe.md(label)}**: {safe.md(value)}" for label, value in lines))


def _open_day(day: dt.date) -> None:
    st.session_state[DAY] = day
    st.session_state["photos_view"] = "Gallery"


# --- gallery ------------------------------------------------------------------------------------
def show_gallery() -> None:
    if not items:
        st.info("No photographs for this patient yet: add some under “Add photographs”.")
        return
    c1, c2 = st.columns([3, 1])
    present = [s for s in BODY_SITES if any(ph.body_site == s for ph in items)]
    sites = c1.multiselect("Body sites", present, default=present, key="photos_sites")
    show_hidden = c2.toggle("Show hidden", key="photos_show_hidden")
    shown = pw.gallery(url, version, p.mrn, include_hidden=True) if show_hidden else items
    shown = [ph for ph in shown if ph.body_site in sites]
    groups = pw.by_date(shown)
    dates = sorted(groups, reverse=True)

    day = st.session_state.get(DAY)
    options: list[dt.date | None] = [None, *sorted(pw.by_date(items), reverse=True)]
    if day not in options:
        day = None
    picked = st.selectbox(
        "Open the photographs of a day",
        options,
        index=options.index(day),
        format_func=lambda d: "— choose a date —" if d is None else d.isoformat(),
        key=f"photos_day_pick_{day}",
    )
    if picked != day:
        st.session_state[DAY] = picked
        st.rerun()
    if picked is not None:
        show_day(picked)
        st.divider()

    st.subheader("All photographs by date")
    for d in dates:
        group = groups[d]
        onset = f" · day {(d - p.onset_date).days:d} since onset" if p.onset_date else ""
        head, button = st.columns([5, 1])
        head.markdown(f"**{d.isoformat()}**{onset} · {len(group)} photograph{'s' if len(group) > 1 else ''}")
        button.button("Open day", key=f"photos_open_{d.isoformat()}", on_click=_open_day, args=(d,))
        cols = st.columns(6)
        for i, ph in enumerate(group):
            with cols[i % 6]:
                st.image(ph.thumbnail, caption=safe.md(pw.caption(ph)), width="stretch")
    if writer:
        hide_controls(shown)


def show_day(day: dt.date) -> None:
    todays = [ph for ph in items if ph.taken_on == day]
    st.subheader(f"Photographs of {day.isoformat()}")
    bsa_values = [ph.bsa_pct for ph in todays if ph.bsa_pct is not None]
    _context_block(day, bsa_values[-1] if bsa_values else None)
    cols = st.columns(2)
    for i, ph in enumerate(todays):
        with cols[i % 2]:
            st.image(pw.screen_image(url, ph.id), caption=safe.md(pw.caption(ph)), width="stretch")
            if ph.note:
                st.caption(f"Note: {safe.md(ph.note)}")


def hide_controls(shown: list[PhotoMeta]) -> None:
    if not can_write():
        return  # read-only account: no hide or restore
    with st.expander("Hide or restore a photograph (there is no delete)"):
        st.caption("A hidden photograph, and the BSA % entered with it, leaves the gallery, the timeline and the alerts; it stays stored and can be restored.")
        if not shown:
            st.write("No photograph shown.")
            return
        by_id = {ph.id: ph for ph in shown}
        pid = st.selectbox(
            "Photograph",
            list(by_id),
            format_func=lambda i: f"{by_id[i].taken_on.isoformat()} · {pw.caption(by_id[i])}",
            key="photos_hide_id",
        )
        reason = st.text_input("Reason (kept in the audit trail)", key="photos_hide_reason").strip()
        who = _who()
        target = by_id[pid]
        button_label = "Restore photograph" if target.hidden else "Hide photograph"
        if st.button(button_label, key="photos_hide_go", disabled=not (reason and who)):
            from monitoring.auth import PermissionDenied
            from monitoring.db import session_scope
            from monitoring.photos import hide_photo, restore_photo

            action = restore_photo if target.hidden else hide_photo
            try:
                with session_scope(store.engine()) as s:
                    action(s, pid, reason=reason, username=who, check_account=True)
            except PermissionDenied as exc:
                st.error(f"Not changed: {safe.md(exc)}")
                return
            store.clear_caches()
            st.session_state[FLASH] = f"Photograph #{pid} {'restored' if target.hidden else 'hidden'}: {safe.md(reason)}"
            st.rerun()


# --- compare ------------------------------------------------------------------------------------
def _between(site: str, first: dt.date, second: dt.date) -> str:
    """One line over the pair: how far apart, and the BSA % recorded with each."""
    def bsa(day: dt.date) -> str:
        values = [ph.bsa_pct for ph in items if ph.body_site == site and ph.taken_on == day and ph.bsa_pct is not None]
        return safe.md(display.quantity("bsa_pct", values[-1], "%")) if values else "not recorded"

    gap = abs((second - first).days)
    return f"**{safe.md(site.capitalize())}**, {first.isoformat()} and {second.isoformat()}: {gap} day{'s' if gap != 1 else ''} apart · BSA {bsa(first)} → {bsa(second)}"


def show_compare() -> None:
    if not items:
        st.info("No photographs for this patient yet.")
        return
    dates_by_site = {s: sorted({ph.taken_on for ph in items if ph.body_site == s}) for s in BODY_SITES}
    dates_by_site = {s: ds for s, ds in dates_by_site.items() if ds}
    sites = list(dates_by_site)
    # Default: the site photographed on the most dates, so there is something to compare.
    best = max(sites, key=lambda s: (len(dates_by_site[s]), -sites.index(s)))
    c1, c2, c3 = st.columns(3)
    site = c1.selectbox("Body site", sites, index=sites.index(best), key="photos_cmp_site",
                        format_func=lambda s: f"{s} ({len(dates_by_site[s])} date{'s' if len(dates_by_site[s]) > 1 else ''})")
    ds = dates_by_site[site]
    fmt = dt.date.isoformat
    first = c2.selectbox("Earlier date", ds, index=0, format_func=fmt, key=f"photos_cmp_a_{site}")
    second = c3.selectbox("Later date", ds, index=len(ds) - 1, format_func=fmt, key=f"photos_cmp_b_{site}")
    if len(ds) < 2:
        st.info(f"The {safe.md(site)} was photographed on one date only: a second date is needed to compare.")
    else:
        st.markdown(_between(site, first, second))
    left, right = st.columns(2, gap="medium")
    for col, day, side in ((left, first, "a"), (right, second, "b")):
        with col:
            shots = [ph for ph in items if ph.body_site == site and ph.taken_on == day]
            shot = shots[0]
            if len(shots) > 1:
                by_id = {ph.id: ph for ph in shots}
                chosen = st.radio(
                    f"{len(shots)} photographs of the {safe.md(site)} that day",
                    list(by_id),
                    format_func=lambda i: f"#{i:d}",
                    horizontal=True,
                    key=f"photos_cmp_pick_{side}_{site}_{day.isoformat()}",
                )
                shot = by_id[chosen]
            st.image(pw.screen_image(url, shot.id), width="stretch")
            st.markdown(f"#### {day.isoformat()} · {safe.md(site)}")
            _context_block(day, shot.bsa_pct)
            if shot.note:
                st.caption(f"Note: {safe.md(shot.note)}")
    if first > second:
        st.warning("The earlier date is after the later one: the left photograph is the more recent.")


# --- add ----------------------------------------------------------------------------------------
def show_add() -> None:
    if not can_write():
        st.info("Read-only account: adding photographs needs a clinician account.")
        return
    nonce = st.session_state.setdefault(NONCE, 0)
    limits = PhotoLimits.from_env()
    st.caption(
        f"JPEG, PNG, WebP, TIFF or BMP, up to {limits.max_bytes / (1024 * 1024):g} MB each. The date taken is read from "
        "the camera (EXIF) when the file has it; otherwise the date below is used. All the files of one upload are "
        "stored together or, if any is refused, none is."
    )
    c1, c2, c3 = st.columns(3)
    site = c1.selectbox("Body site", BODY_SITES, index=None, placeholder="choose the body site", key=f"photos_site_{nonce}")
    bsa = c2.number_input("BSA % involved (whole body, optional)", min_value=0.0, max_value=100.0, value=None, step=1.0,
                          key=f"photos_bsa_{nonce}", help="Also recorded as a BSA % observation: the ICU criteria and RegiSCAR use it.")
    taken = c3.date_input("Date taken (when the file has no camera date)", value=today, max_value=today, key=f"photos_date_{nonce}",
                          format="YYYY-MM-DD")
    note = st.text_input("Note (optional)", key=f"photos_note_{nonce}")
    files = st.file_uploader("Photographs", type=pw.UPLOAD_TYPES, accept_multiple_files=True, key=f"photos_files_{nonce}",
                             max_upload_size=math.ceil(limits.max_bytes / (1024 * 1024)))
    shot = None
    if st.toggle("Take a photograph with the camera", key=f"photos_camera_on_{nonce}"):
        shot = st.camera_input("Camera", key=f"photos_camera_{nonce}")
    who = _who()
    uploads = list(files or []) + ([shot] if shot is not None else [])
    missing = [what for what, ok in (("a body site", site), ("a photograph", uploads), ("your name", who)) if not ok]
    if missing:
        st.caption("To store: choose " + ", ".join(missing) + ".")  # markup-safe: literals only
    if st.button("Store photographs", type="primary", disabled=bool(missing), key="photos_store"):
        from monitoring.auth import PermissionDenied
        from monitoring.db import session_scope
        from monitoring.photos import date_source_words, store_photos
        from monitoring.store import BatchRejected

        batch = [
            PhotoIn(filename=f.name, data=f.getvalue(), body_site=str(site), bsa_pct=bsa, taken_on=taken, note=note or None)
            for f in uploads
        ]
        try:
            with st.spinner(f"Checking and storing {len(batch)} photograph(s)…"), session_scope(store.engine()) as s:
                stored = store_photos(s, p.mrn, batch, username=who, today=today, limits=limits, check_account=True)
        except PermissionDenied as exc:
            st.error(f"Nothing stored: {safe.md(exc)}")
            return
        except BatchRejected as exc:
            st.error(
                f"Nothing stored: {len(exc.problems)} problem{'s' if len(exc.problems) > 1 else ''}.\n\n"
                + "\n".join(f"- {safe.md(problem)}" for problem in exc.problems)
            )
            return
        store.clear_caches()
        lines = [safe.md(f"{s.filename}: {s.body_site}, taken {s.taken_on.isoformat()} ({date_source_words(s.date_source)})") for s in stored]
        st.session_state[FLASH] = f"{len(stored)} photograph(s) stored for {safe.md(p.mrn)}:\n\n" + "\n".join(f"- {line}" for line in lines)
        st.session_state[NONCE] = nonce + 1
        st.session_state["photos_goto"] = "Gallery"
        st.rerun()


if view == "Compare":
    show_compare()
elif view == "Add photographs" and writer:
    show_add()
else:
    show_gallery()
