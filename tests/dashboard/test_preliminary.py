"""A preliminary result is shown as preliminary on the ward, the timeline hover and the table, and
no longer once its final replaces it (PRODUCT.md §6 edition 2, "Corrections")."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from sqlmodel import Session

from dashboard import figures, timeline_model, ward_model, widgets
from monitoring.guideline import load_profile
from monitoring.importers import import_files
from monitoring.records import load_record

TODAY = dt.date.today()
WHEN = dt.datetime.combine(TODAY - dt.timedelta(days=1), dt.time(7, 30))


def _bundle(value: float, status: str) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "id": "p1", "identifier": [{"type": {"coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}, "value": "PRE-1"}],
        "name": [{"family": "Prelim", "given": ["Pat"]}]}
    obs = {"resourceType": "Observation", "id": "alt-1", "status": status,
           "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
           "subject": {"reference": "Patient/p1"}, "effectiveDateTime": WHEN.isoformat() + "+01:00",
           "valueQuantity": {"value": value, "unit": "U/L", "system": "http://unitsofmeasure.org", "code": "U/L"}}
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient}, {"resource": obs}]}


def _send(session: Session, tmp_path: Path, value: float, status: str) -> None:
    path = tmp_path / f"{status}-{value}.json"
    path.write_text(json.dumps(_bundle(value, status)), encoding="utf-8")
    report = import_files(session, [path], username="lab", as_of=TODAY)
    assert report.ok, report.problem_lines()


def _shown(session: Session) -> tuple[str, str, str, str]:
    session.expire_all()
    record = load_record(session, "PRE-1")
    prof = load_profile()
    row = ward_model.ward_row(record, prof, TODAY, [])
    ward_html = widgets.ward_table_html([row], [("alt", "ALT")], as_of=TODAY)
    fig = figures.timeline_figure(timeline_model.timeline(record, prof, TODAY))
    alt = next(t for t in fig.data if t.name and t.name.startswith("ALT") and t.customdata is not None)
    hover = " ".join(str(x) for x in alt.customdata[0])
    table = timeline_model.timeline_table(record, prof, TODAY)
    return row.changes["alt"].text() if row.changes["alt"] else "", ward_html, hover, str(table.loc[0, "status"])


def test_preliminary_is_shown_until_its_final_replaces_it(session: Session, tmp_path: Path) -> None:
    _send(session, tmp_path, 180, "preliminary")
    change, ward_html, hover, status = _shown(session)
    assert change == "180 (first)"
    assert "<b>180</b> <span" in ward_html and ">preliminary</span>" in ward_html
    assert "preliminary" in hover
    assert status == "preliminary"

    _send(session, tmp_path, 210, "final")
    change, ward_html, hover, status = _shown(session)
    assert change == "210 (first)" and "<b>210</b>" in ward_html and "preliminary" not in ward_html
    assert "preliminary" not in hover and "amended" in hover
    assert status == "final"
