"""Entry page → Review list: the refused items of an import with --skip-invalid shown as text (never
Markdown/HTML), corrected and stored through the entry service, or discarded with a reason."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select
from sqlmodel import Session

from monitoring.importers import import_files
from monitoring.models import LabResult, Patient, ReviewItem
from monitoring.schema import open_database
from tests.dashboard.test_app import _app, _entry, db_url_with_cohort  # noqa: F401  (fixture)

HOSTILE = "<img src=x onerror=alert(1)>**bold**"


def _seed(tmp_path: Path) -> None:
    labs = tmp_path / "labs.csv"
    labs.write_text(
        "mrn,taken_at,test,value,unit\n"
        "CALM-1,2026-01-12T08:00,creatinine,130,parsecs\n"
        f"CALM-1,2026-01-12T09:00,alt,{HOSTILE},U/L\n",
        encoding="utf-8",
    )
    with Session(open_database(os.environ["DATABASE_URL"])) as s:
        report = import_files(s, [labs], skip_invalid=True)
        assert len(report.review_items) == 2


def _items() -> list[ReviewItem]:
    with Session(open_database(os.environ["DATABASE_URL"])) as s:
        return list(s.execute(select(ReviewItem).order_by(ReviewItem.id)).scalars())


def test_the_review_list_shows_items_as_text_and_a_correction_is_stored(db_url_with_cohort: str, tmp_path: Path) -> None:  # noqa: F811 (the fixture)
    _seed(tmp_path)
    at = _entry(_app(), "CALM-1")
    table = next(d.value for d in at.dataframe if "reason" in d.value.columns)
    assert list(table["resource or row"]) == ["row 2", "row 3"] and HOSTILE in list(table["value"])
    assert not any(HOSTILE in m.value for m in at.markdown)  # never rendered as Markdown/HTML
    first = _items()[0].id
    at.selectbox(key="entry_review_item").set_value(first).run()
    assert at.text_input(key=f"entry_review_{first}_unit").value == "parsecs"
    at.text_input(key=f"entry_review_{first}_unit").input("umol/L")
    at.button(key=f"entry_review_{first}_store").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    items = _items()
    assert (items[0].status, items[1].status) == ("stored", "open")
    with Session(open_database(os.environ["DATABASE_URL"])) as s:
        pid = s.execute(select(Patient.id).where(Patient.mrn == "CALM-1")).scalar_one()
        row = s.execute(select(LabResult).where(LabResult.patient_id == pid, LabResult.test == "creatinine",
                                                LabResult.original_unit == "umol/L")).scalar_one()
        assert row.original_value == "130"


def test_discarding_needs_a_reason_and_keeps_the_item(db_url_with_cohort: str, tmp_path: Path) -> None:  # noqa: F811 (the fixture)
    _seed(tmp_path)
    at = _entry(_app(), "CALM-1")
    second = _items()[1].id
    at.selectbox(key="entry_review_item").set_value(second).run()
    at.button(key=f"entry_review_{second}_discard").click().run()
    assert at.error and _items()[1].status == "open"
    at.text_input(key=f"entry_review_{second}_why").input("test value typed by mistake")
    at.button(key=f"entry_review_{second}_discard").click().run()
    assert not at.error
    kept = _items()[1]
    assert (kept.status, kept.resolution, kept.value) == ("discarded", "test value typed by mistake", HOSTILE)
