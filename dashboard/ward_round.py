"""The printable ward-round list (issue 18 point 15): the ward's patients in the ward's attention
order (``ward_model.sort_ward``, as the overview shows them), one row each with name, MRN,
setting, day since onset and course day, steroid dose and second-line treatment, alerts, the
latest key values each with the date it was taken, what is new since yesterday, and an empty
column for the round's notes.

One self-contained HTML document (no script, no external resource, styles inline) that a browser
prints on A4 landscape. Every piece of stored text (a name, an MRN, a handled-alert reason) is
escaped with ``dashboard.safe.html``: the document holds no markup but our own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from dashboard import safe, widgets
from monitoring import display
from monitoring.drugs import second_line_label

_STYLE = (
    "@page{size:A4 landscape;margin:10mm}"
    "body{font-family:Arial,Helvetica,sans-serif;font-size:9pt;color:#111;margin:0}"
    "h1{font-size:13pt;margin:0 0 2mm 0}p.meta{margin:0 0 3mm 0;color:#444}"
    "table{width:100%;border-collapse:collapse}"
    "th,td{border:1px solid #999;padding:1.5mm;vertical-align:top;text-align:left}"
    "th{background:#eceff1}tr{page-break-inside:avoid}thead{display:table-header-group}"
    "td.notes{width:22%}.sev{font-weight:700}.sub{color:#444;font-size:8pt}"
)


NOTES = ' class="notes"'  # the last column: empty, for the round's handwritten notes


def _lines(*parts: str) -> str:
    """Escaped text, one line each; empty parts left out."""
    return "<br>".join(safe.html(p) for p in parts if p)


def value_line(ch: Any, as_of: dt.date) -> str:
    """A latest value as one line of text with its date: '400 ↑ +20 · ↑ above 2×ULN · yesterday
    06:00'; '—' when there is none."""
    if ch is None:
        return "—"
    parts = [ch.text() + (" preliminary" if ch.preliminary else "")]
    if ch.crossed:
        parts.append(ch.crossed)
    parts.append(display.taken_text(ch.taken_at, as_of, with_date=True))
    return " · ".join(parts)


def ward_round_html(
    rows: Sequence[Any],
    lab_columns: Sequence[tuple[str, str]],
    *,
    as_of: dt.date,
    heading: str,
    generated_at: dt.datetime,
    author: str,
) -> str:
    """The ward-round list of ``rows`` (``ward_model.WardRow``, printed in the order given: the
    ward's order) as an HTML document. ``lab_columns`` are (test key, header) as on the ward;
    ``heading`` says what the list holds (the ward's filter); ``author`` who printed it."""
    head = ["#", "Patient", "Day", "Steroid (pred-eq)", *[h for _, h in lab_columns], "Alerts", "New since yesterday",
            "Notes"]
    out = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{safe.html(f'Ward round {as_of.isoformat()}')}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{safe.html(f'Ward round {as_of.isoformat()}')}</h1>",
        f'<p class="meta">{safe.html(heading)} · printed {safe.html(generated_at.strftime("%Y-%m-%d %H:%M"))} by '
        f"{safe.html(author)} · critical first, then warning, as on the ward overview. "
        f"{safe.html(widgets.DECISION_SUPPORT_NOTE)}</p>",
        "<table><thead><tr>" + "".join(f"<th>{safe.html(h)}</th>" for h in head) + "</tr></thead><tbody>",
    ]
    for n, r in enumerate(rows, start=1):
        severity = f"{widgets.SEVERITY_SYMBOLS[r.worst]} {r.worst.upper()}" if r.worst else "no alerts"
        patient = (
            f'<span class="sev">{safe.html(severity)}</span><br><b>{safe.html(r.name + widgets.synthetic_label(r.synthetic, r.name))}</b>'
            f'<br><span class="sub">{_lines(f"MRN {r.mrn} · {r.setting}")}</span>'
        )
        day, course = widgets.ward_day_texts(r)
        dose, per_kg = widgets.ward_steroid_texts(r)
        second = [f"{second_line_label(kind)} from {start.isoformat()}" for kind, start in r.second_line]
        alerts = _lines(*(f"{s.upper()}: {', '.join(names)}" for s, names in widgets.ward_alert_groups(r))) or "—"
        cells = [
            str(n),
            patient,
            _lines(day, course),
            _lines(dose, per_kg, *second),
            *[safe.html(value_line(r.changes.get(test), as_of)) for test, _ in lab_columns],
            alerts,
            _lines(*r.new) or "—",
            "",
        ]
        out.append(
            f'<tr data-mrn="{safe.html(r.mrn)}">'
            + "".join(f"<td{NOTES if i == len(cells) - 1 else ''}>{c}</td>" for i, c in enumerate(cells))
            + "</tr>"
        )
    if not rows:
        out.append(f'<tr><td colspan="{len(head)}">No patient.</td></tr>')
    out.append("</tbody></table></body></html>")
    return "".join(out)
