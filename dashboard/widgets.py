"""Shared look of every page: severity colours, badges, banners, the patient header.

One meaning of colour across the product (CDS Hooks indicators): critical is red, warning is
amber, info is blue. Colour is never the only signal: every badge also says its severity in words
and carries a symbol, so a colour-blind reader or a black-and-white print loses nothing.

Session state: the selected patient lives under ``PATIENT_KEY`` ("patient_mrn") and in the query
string (``?mrn=...``) so that every patient page, and a bookmarked link, shows the same patient.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import streamlit as st

from dashboard import safe
from monitoring import severity as _severity
from monitoring.records import PatientRecord
from monitoring.severity import Severity
from monitoring.severity import rank as severity_rank
from monitoring.steroids import course_day_words

PATIENT_KEY = "patient_mrn"
"""st.session_state key of the selected patient's MRN, shared by every patient page."""
USERNAME_KEY = "username"
"""st.session_state key of the signed-in user's name (set by the sign-in page when there is one)."""

# The severity colour key is monitoring.severity's (shared with the timeline figure and the report).
CRITICAL = _severity.COLOURS[Severity.CRITICAL]  # red
WARNING = _severity.COLOURS[Severity.WARNING]  # amber
INFO = _severity.COLOURS[Severity.INFO]  # blue
OK = "#2e7d32"  # green: only ever beside the words "no alerts"
MUTED = "#6b7280"
SECOND_LINE_COLOUR = "#6a1b9a"  # IVIG / cyclosporine: the ward's marker and the timeline's start lines

SEVERITY_COLOURS: dict[str, str] = {s.value: _severity.COLOURS[s] for s in Severity}
SEVERITY_TEXT_COLOURS: dict[str, str] = {s.value: _severity.TEXT_ON[s] for s in Severity}
SEVERITY_INK: dict[str, str] = {s.value: _severity.INK[s] for s in Severity}  # text on white
# Order and symbol are the one severity type's (monitoring.severity); colours are keyed by it.
SEVERITY_SYMBOLS: dict[str, str] = {s.value: s.symbol for s in Severity}
# Light tints for table cells and figure zones: same hue, readable text on top.
SEVERITY_TINTS: dict[str, str] = {s.value: _severity.TINTS[s] for s in Severity}

DECISION_SUPPORT_NOTE = (
    "Alerts are decision support, not a diagnosis: they apply the guideline profile's thresholds "
    "to the recorded data. Check each against the patient."
)


def iso(value: dt.date | dt.datetime | None, *, time: bool = False) -> str:
    """ISO 8601 everywhere (PRODUCT.md §7 layout rule); an empty string for a missing date."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M") if time else value.date().isoformat()
    return value.isoformat()


def badge_html(severity: str, text: str) -> str:
    """A severity badge: coloured, with the severity in words and a symbol."""
    sev = severity if severity in SEVERITY_COLOURS else "info"
    return (
        f'<span class="dm-badge" style="background:{SEVERITY_COLOURS[sev]};color:{SEVERITY_TEXT_COLOURS[sev]};'
        'border-radius:0.3rem;padding:0.1rem 0.45rem;margin:0 0.25rem 0.2rem 0;display:inline-block;'
        f'font-size:0.85rem;font-weight:600">{SEVERITY_SYMBOLS[sev]} {sev.upper()} · {safe.html(text)}</span>'
    )


def badges(items: Iterable[tuple[str, str]]) -> None:
    """A row of badges, (severity, text) each, critical first."""
    ordered = sorted(items, key=lambda it: severity_rank(it[0]))
    if ordered:
        st.markdown("".join(badge_html(sev, text) for sev, text in ordered), unsafe_allow_html=True)


class Strong(str):
    """A piece of a banner's text shown in bold (still plain text: escaped like the rest)."""


def banner(severity: str, *parts: str) -> None:
    """A full-width banner for something that must not be missed (e.g. never rechallenge).

    ``parts`` are plain text, joined as given; a ``Strong`` part is shown in bold. Every part is
    escaped (a culprit drug named ``<iframe srcdoc=...>`` is shown as those characters)."""
    sev = severity if severity in SEVERITY_COLOURS else "info"
    text = "".join(f"<b>{safe.html(p)}</b>" if isinstance(p, Strong) else safe.html(p) for p in parts)
    st.markdown(
        f'<div class="dm-banner dm-{sev}" role="alert" style="background:{SEVERITY_TINTS[sev]};'
        f'border-left:0.4rem solid {SEVERITY_COLOURS[sev]};padding:0.5rem 0.8rem;margin:0.2rem 0 0.6rem 0;'
        f'border-radius:0.25rem;color:#111"><b>{SEVERITY_SYMBOLS[sev]} {sev.upper()}</b> · {text}</div>',
        unsafe_allow_html=True,
    )  # markup-safe: sev is a key of SEVERITY_COLOURS, text is escaped above


def synthetic_label(synthetic: bool, name: str = "") -> str:
    """' (synthetic)' for demo patients, unless the name already says so."""
    return " (synthetic)" if synthetic and "synthetic" not in name.lower() else ""


def patient_header(facts: Sequence[tuple[str, str]], title: str) -> None:
    """The patient's name line and a compact row of facts (label, value)."""
    st.markdown(f"### {safe.md(title)}")
    patient_facts(facts)


def patient_facts(facts: Sequence[tuple[str, str]]) -> None:
    """A compact row of facts about the patient (label, value)."""
    cells = " &nbsp;·&nbsp; ".join(
        f'<span style="color:{MUTED}">{safe.html(label)}</span> <b>{safe.html(value)}</b>' for label, value in facts
    )
    st.markdown(f'<div style="line-height:1.7">{cells}</div>', unsafe_allow_html=True)


def current_patient() -> str | None:
    """The selected patient's MRN: the query string wins (a shared link), else session state."""
    from_query = st.query_params.get("mrn")
    if from_query:
        st.session_state[PATIENT_KEY] = from_query
        return str(from_query)
    mrn = st.session_state.get(PATIENT_KEY)
    if mrn:
        st.query_params["mrn"] = mrn
    return str(mrn) if mrn else None


def select_patient(mrn: str) -> None:
    st.session_state[PATIENT_KEY] = mrn
    st.query_params["mrn"] = mrn


def patient_picker(options: Sequence[tuple[str, str]], *, key: str) -> str | None:
    """A select box of (mrn, label) that keeps the shared selected patient in step."""
    if not options:
        st.info("No patients yet: add one on the Entry page or import a file.")
        return None
    mrns = [m for m, _ in options]
    labels = dict(options)
    current = current_patient()
    unknown = bool(current) and current not in mrns
    if unknown:
        # Never show another patient in place of the one asked for: say so and let the user choose.
        st.warning(f"No patient with MRN {safe.md(repr(current))}: choose one.")
        current = None
    elif current and st.session_state.get(key, current) != current:
        st.session_state[key] = current  # opened from another page: the shared selection wins
    index = None if unknown else (mrns.index(current) if current in mrns else 0)
    chosen = st.selectbox("Patient", mrns, index=index, format_func=lambda m: labels[m], key=key,
                          placeholder="Choose a patient", on_change=_picked, args=(key,))
    if chosen and chosen != current:
        select_patient(chosen)  # first visit: the default becomes the shared selection
    return chosen


def _picked(key: str) -> None:
    """The user chose a patient in a picker: that choice becomes the shared selection before the
    page runs again, so it is never mistaken for a stale value."""
    mrn = st.session_state.get(key)
    if mrn:
        select_patient(str(mrn))


def username() -> str | None:
    """Who is signing changes: the signed-in user, else the name typed on the Entry page."""
    name = st.session_state.get(USERNAME_KEY)
    return str(name) if name else None



def patient_page_start(
    title: str,
    options: Sequence[tuple[str, str]],
    load: Callable[[str], PatientRecord | None],
    *,
    key: str,
    signer: str,
) -> PatientRecord:
    """A patient page's top: its title, the shared patient picker and who signs the changes made
    here. Stops the page, asking for a patient, until one is chosen."""
    st.title(safe.md(title))
    pick, sign = st.columns([3, 2])
    with pick:
        mrn = patient_picker(options, key=key)
    with sign:
        st.markdown(f"Signed by **{safe.md(signer)}**")
    record = load(mrn) if mrn else None
    if record is None:
        st.info("Choose a patient.")
        st.stop()
        raise AssertionError("unreachable: st.stop() ends the run")
    return record

def severity_cell_style(severity: str | None) -> str:
    """CSS for a table cell by severity (pandas Styler)."""
    if severity in SEVERITY_TINTS:
        return f"background-color: {SEVERITY_TINTS[severity]}; color: #111; font-weight: 600"
    return ""


def alert_text(alerts: Iterable[Any]) -> str:
    """Alerts as words for a table cell: 'CRITICAL ICU criteria; WARNING Hepatic involvement'."""
    return "; ".join(f"{SEVERITY_SYMBOLS.get(a.severity, '')} {a.severity.upper()} {code_label(a.code)}" for a in alerts)


def code_label(code: str) -> str:
    """ICU_CRITERIA -> 'ICU criteria'; HEPATIC_INVOLVEMENT -> 'Hepatic involvement'."""
    words = code.lower().split("_")
    keep_upper = {"icu", "hlh", "gi", "pcr", "hhv6", "ebv", "cmv"}
    out = [w.upper() if w in keep_upper else w for w in words]
    if out and out[0] == out[0].lower():
        out[0] = out[0].capitalize()
    return " ".join(out)


# Ward cells show at most this many characters of a stored text (a name, an MRN): an old row may
# hold a 20,005-character name (written before the intake limits), which would otherwise push every
# patient's values off screen. The full value is on the timeline, as escaped text. A display choice.
WARD_TEXT_CHARS = 60


def shorten(text: str, limit: int = WARD_TEXT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the cut marked by an ellipsis (…); short text unchanged."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _cell(text: str, sub: str = "", *, strong: bool = False) -> str:
    main = f"<b>{safe.html(text)}</b>" if strong else safe.html(text)
    if sub:
        main += f'<br><span style="font-size:0.78rem;color:{MUTED}">{safe.html(sub)}</span>'
    return main


def timeline_href(mrn: str) -> str:
    """The address of a patient's timeline, relative to the page (``timeline?mrn=...``), the MRN
    URL-encoded; escape it (safe.html) before putting it in an attribute. The timeline reads the
    MRN from the query string (``current_patient``)."""
    from urllib.parse import quote

    return f"timeline?mrn={quote(mrn, safe='')}"


def patient_link_html(name: str, mrn: str, style: str = "") -> str:
    """A patient's name as a link to that patient's timeline, name and address escaped. The link
    opens in the same tab; the page load starts a new Streamlit session, which finds the user's
    sign-in again through the browser's cookie (dashboard/server.py, ``make run``)."""
    style_attr = f' style="{style}"' if style else ""
    return f'<a href="{safe.html(timeline_href(mrn))}" target="_self"{style_attr}>{safe.html(name)}</a>'


def taken_html(taken_at: dt.datetime, as_of: dt.date) -> str:
    """When a ward value was taken, small, under the value: muted for today's and yesterday's
    results, dark amber and bold from two days old (the words say it either way)."""
    from monitoring.display import taken_text

    old = (as_of - taken_at.date()).days >= 2
    colour = f"{SEVERITY_INK['warning']};font-weight:700" if old else MUTED
    return f'<span class="dm-taken" style="font-size:0.74rem;white-space:nowrap;color:{colour}">{safe.html(taken_text(taken_at, as_of))}</span>'


def second_line_html(kind: str, start: dt.date) -> str:
    """The ward's marker of a second-line treatment (IVIG, cyclosporine) and its start date, in the
    timeline figure's colour for these starts, written in words."""
    from monitoring.drugs import second_line_label

    return (
        f'<span class="dm-second-line" style="font-size:0.74rem;font-weight:700;color:{SECOND_LINE_COLOUR};white-space:nowrap">'
        f"{safe.html(second_line_label(kind))} from {safe.html(start.isoformat())}</span>"
    )


def ward_day_texts(r: Any) -> tuple[str, str]:
    """A ward row's day since onset and steroid course day, in words ('day 10', 'day 8 of steroids
    (first dose 2026-11-24)')."""
    return (
        f"day {r.day_since_onset}" if r.day_since_onset is not None else "onset ?",
        # "day 7 of steroids (first dose ...)": the count the day-7 rule uses (issue 18 point 7).
        course_day_words(r.course_start, r.course_day) or "",
    )


def ward_steroid_texts(r: Any) -> tuple[str, str]:
    """A ward row's prednisone-equivalent dose today and per kg ('100 mg/day', '1.43 mg/kg')."""
    if r.dose_mg is None:
        return "none today", ""
    return f"{r.dose_mg:.0f} mg/day", f"{r.dose_mg_per_kg:.2f} mg/kg" if r.dose_mg_per_kg is not None else "mg/kg: no weight"


def ward_alert_groups(r: Any) -> list[tuple[str, list[str]]]:
    """A ward row's alerts by severity, most severe first: (severity, alert names). Acknowledged and
    snoozed alerts stay named, marked so ('Hepatic involvement (✓ acknowledged: IVIG ordered)')."""
    grouped: dict[str, list[str]] = {}
    for s, c in r.alerts:
        mark = f" (✓ {r.handled[c]})" if c in r.handled else ""
        grouped.setdefault(s, []).append(code_label(c) + mark)
    return sorted(grouped.items(), key=lambda kv: severity_rank(kv[0]))


def ward_table_html(rows: Sequence[Any], lab_columns: Sequence[tuple[str, str]], *, as_of: dt.date) -> str:
    """The ward overview as one HTML table: text wraps (alerts and news stay visible at 1366 px),
    severity is written and coloured. Each value says when it was taken, as read on ``as_of``
    ('today 06:10', '4 d ago'); each name links to the patient's timeline.

    ``rows`` are ``dashboard.ward_model.WardRow``; ``lab_columns`` are (test key, header)."""
    head = ["Patient", "Day", "Steroid (pred-eq)", *[h for _, h in lab_columns], "Alerts", "New since yesterday"]
    out = [
        '<table class="dm-ward" style="width:100%;border-collapse:collapse;font-size:0.84rem;line-height:1.22">',
        "<thead><tr>"
        + "".join(
            f'<th style="text-align:left;padding:4px 6px;border-bottom:2px solid #cfd8dc;white-space:nowrap'
            f'{";min-width:160px" if h == "Patient" else ""}{";min-width:230px" if h == "Alerts" else ""}">{safe.html(h)}</th>'
            for h in head
        )
        + "</tr></thead><tbody>",
    ]
    for r in rows:
        sev = r.worst
        tint = SEVERITY_TINTS.get(sev, "#ffffff")
        edge = SEVERITY_COLOURS.get(sev, "#cfd8dc")
        status = (
            f'<span style="color:{SEVERITY_INK[sev]};font-weight:700;font-size:0.74rem">'
            f"{SEVERITY_SYMBOLS[sev]} {sev.upper()}</span>"
            if sev
            else f'<span style="color:{MUTED}">no alerts</span>'
        )
        patient = (
            f"{status}<br>"
            + patient_link_html(shorten(r.name) + synthetic_label(r.synthetic, r.name), r.mrn,
                                "font-weight:700;color:#0d3b66")
            + f'<br><span style="font-size:0.78rem;color:{MUTED}">{safe.html(shorten(r.mrn))} · {safe.html(r.setting)}</span>'
        )
        day_text, course_text = ward_day_texts(r)
        day = _cell(day_text)
        # "day 7 of steroids" and "(first dose ...)" on two unbroken lines: the column widens to them
        # (broken anywhere, the words took five lines and cost a row at 1366×768).
        count, _, first_dose = course_text.partition(" (")
        day += "".join(f'<br><span style="font-size:0.78rem;color:{MUTED};white-space:nowrap">{safe.html(part)}</span>'
                       for part in (count, f"({first_dose}" if first_dose else "") if part)
        steroid = _cell(*ward_steroid_texts(r))
        steroid += "".join(f"<br>{second_line_html(kind, start)}" for kind, start in r.second_line)
        labs = []
        for test, _ in lab_columns:
            ch = r.changes.get(test)
            if ch is None:
                labs.append(f'<span style="color:{MUTED}">—</span>')
                continue
            text = ch.text()
            value, _, change = text.partition(" ")
            cell = f"<b>{safe.html(value)}</b>"
            if ch.preliminary:
                # Not yet the laboratory's final result (PRODUCT.md §6 edition 2): said in words.
                cell += ' <span style="font-size:0.76rem;font-style:italic">preliminary</span>'
            if change:
                cell += f'<br><span style="font-size:0.8rem">{safe.html(change)}</span>'
            if ch.crossed:
                colour = CRITICAL if ch.crossed.startswith("↑") else OK
                cell += f'<br><span style="font-size:0.76rem;font-weight:700;color:{colour}">{safe.html(ch.crossed)}</span>'
            cell += "<br>" + taken_html(ch.taken_at, as_of)
            labs.append(cell)
        # One badge per severity naming its alerts: the row stays short enough for nine patients
        # on a 768-pixel screen.
        alerts = "".join(
            badge_html(s, ", ".join(names)).replace("font-size:0.85rem", "font-size:0.74rem")
            for s, names in ward_alert_groups(r)
        ) or f'<span style="color:{MUTED}">—</span>'
        new = "<br>".join(f"<b>{safe.html(n)}</b>" for n in r.new)
        row_cells = [patient, day, steroid, *labs, alerts, new]
        out.append(
            f'<tr class="dm-row dm-{sev or "none"}" data-mrn="{safe.html(r.mrn)}" style="background:{tint if sev in ("critical", "warning") else "#fff"};'
            f'border-left:5px solid {edge}">'
            # Only the patient cell may break inside a word (a long stored name); the other columns
            # keep their words whole ("course day 5", not "cours/e day 5").
            # The day column stays on one line ('day 122' had wrapped to 'day / 122' at 1366 px).
            + "".join(f'<td style="padding:3px 6px;border-bottom:1px solid #e0e0e0;vertical-align:top;'
                      f'overflow-wrap:{"anywhere" if i == 0 else "break-word"}{";white-space:nowrap" if i == 1 else ""}">{c}</td>'
                      for i, c in enumerate(row_cells))
            + "</tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def guard_database(run: Callable[[], None]) -> None:
    """Run ``run``; a database error becomes one message on the page (``monitoring.db``: "database
    busy / read-only: nothing was stored, try again" for a busy, locked or read-only database) and
    one log line without SQL or parameters, instead of Streamlit's crash page (issue 12)."""
    import logging
    import sqlite3

    from sqlalchemy.exc import SQLAlchemyError

    from monitoring.db import database_fault, describe_error

    try:
        run()
    except (SQLAlchemyError, sqlite3.Error) as exc:
        logging.getLogger("dashboard").warning("database error: %s (%s)", database_fault(exc) or "refused", type(exc).__name__)
        st.error(safe.md(describe_error(exc)))


@functools.cache
def page_icon() -> str:
    """The browser-tab icon, drawn here, as a ``data:`` URL: a ``:material/...:`` page icon makes
    the browser fetch an SVG from fonts.gstatic.com (Streamlit 1.67), which a hospital intranet
    cannot reach and which tells an outside server who uses the app; an image object would be
    served under ``/media/``, which dashboard/server.py closes to a browser not signed in (the
    sign-in page would have no icon). The data URL needs no request at all."""
    import base64
    import io

    from PIL import Image, ImageDraw

    icon = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    draw.rounded_rectangle((2, 2, 62, 62), radius=12, fill=CRITICAL)
    draw.rectangle((26, 12, 38, 52), fill="#ffffff")
    draw.rectangle((12, 26, 52, 38), fill="#ffffff")
    out = io.BytesIO()
    icon.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")
