"""The clinic report: a PDF that opens, names the patient, holds the figure, and says what the
engine says (alerts with sources, the saved plan, patch-test date, RegiSCAR)."""

from __future__ import annotations

import datetime as dt
import io
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader
from sqlmodel import Session

from monitoring import auth, services
from monitoring.records import load_record
from monitoring.report import patient_report_pdf, report_data, timeline_png
from monitoring.taper import propose_taper, save_plan

USER = "dr.report"
AS_OF = dt.date(2026, 2, 1)


@pytest.fixture
def patient(session: Session) -> str:
    auth.create_user(session, actor="test", username=USER, role=auth.CLINICIAN, password=None)
    services.add_patient(
        session, username=USER, mrn="R-17", name="Zoë Ångström-Report", sex="female", birth_date=dt.date(1970, 5, 2),
        weight_kg=64, onset_date=dt.date(2026, 1, 2), culprit_drugs=["lamotrigine"], resolved_date=dt.date(2026, 1, 25),
    )
    for when, test, value, unit in (
        ("2026-01-03 08:00", "alt", 240, "U/L"),
        ("2026-01-10 08:00", "alt", 120, "U/L"),
        ("2026-01-30 08:00", "alt", 95, "U/L"),
        ("2026-01-03 08:00", "eosinophils", 1900, "/uL"),
        ("2026-01-30 08:00", "eosinophils", 0.4, "10^9/L"),
        ("2026-01-03 08:00", "creatinine", 80, "umol/L"),
        ("2026-01-03 08:00", "ferritin", 650, "ng/mL"),
        ("2026-01-20 08:00", "hhv6_pcr", "detected", ""),
    ):
        services.add_lab_result(session, username=USER, mrn="R-17", test=test, taken_at=when, value=value, unit=unit)
    services.add_dose_change(session, username=USER, mrn="R-17", drug="prednisone", start_date="2026-01-04", dose=60)
    services.add_dose_change(session, username=USER, mrn="R-17", drug="ivig", start_date="2026-01-11", dose=2, unit="g")
    session.commit()
    plan = propose_taper(drug="prednisone", current_dose_mg=60, start_date=AS_OF + dt.timedelta(days=1), interval_days=4, step_mg=15)
    save_plan(session, username=USER, mrn="R-17", plan=plan, as_of=AS_OF)
    session.commit()
    return "R-17"


def test_report_data_is_the_engines(session: Session, patient: str) -> None:
    data = report_data(load_record(session, patient), AS_OF)
    codes = {a.code for a in data.alerts}
    assert {"HEPATIC_INVOLVEMENT", "PREMATURE_TAPER", "RELAPSE_RISK"} <= codes  # 16-day planned taper, HHV-6 detected
    assert [m.daily_dose_mg for m in data.plan] == [45, 30, 15, 0]
    assert data.course.taper_days == 12
    assert data.patch_test.earliest == dt.date(2026, 7, 25)  # resolution + 6 months is the later reason
    assert [r.test for r in data.pcr] == ["hhv6_pcr"]


def test_timeline_png_is_an_image_of_the_record(session: Session, patient: str) -> None:
    png = timeline_png(load_record(session, patient), AS_OF)
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.width > 800 and img.height > 600
    # Not blank: a drawn figure has many colours (lines, thresholds, text).
    assert len(img.convert("RGB").getcolors(maxcolors=100_000) or []) > 50


def test_pdf_opens_names_the_patient_and_holds_the_figure(session: Session, patient: str, tmp_path: Path) -> None:
    pdf = patient_report_pdf(load_record(session, patient), AS_OF, generated_at=dt.datetime(2026, 2, 1, 9, 30))
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    assert 1 <= len(reader.pages) <= 4
    text = "\n".join(page.extract_text() for page in reader.pages)
    flat = " ".join(text.split())
    assert "Zoë Ångström-Report" in flat  # non-ASCII names print (embedded DejaVu Sans)
    assert "R-17" in flat
    assert "NEVER RECHALLENGE: lamotrigine" in flat
    assert "Premature steroid taper" in flat and "minimum 4-week taper" in flat  # alert with its source
    assert "2026-02-02" in flat and "45 mg/day" in flat and "2 × 20 mg + 1 × 5 mg" in flat  # the plan with tablets
    assert "2026-07-25" in flat  # patch-test date
    assert "RegiSCAR score" in flat
    assert "Decision support, not a diagnosis." in flat
    images = [img for page in reader.pages for img in page.images]
    assert images, "the timeline figure is embedded"
    assert images[0].image.width > 800
    if shutil.which("pdftoppm"):  # poppler renders it: the file is a valid PDF for a real viewer
        out = tmp_path / "page"
        (tmp_path / "r.pdf").write_bytes(pdf)
        subprocess.run(["pdftoppm", "-r", "40", "-png", "-f", "1", "-l", "1", str(tmp_path / "r.pdf"), str(out)], check=True)
        rendered = next(tmp_path.glob("page*.png"))
        assert Image.open(rendered).width > 200


def test_caller_may_supply_the_figure(session: Session, patient: str) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (400, 200), (200, 30, 30)).save(buf, format="PNG")
    pdf = patient_report_pdf(load_record(session, patient), AS_OF, figure_png=buf.getvalue())
    images = [img for page in PdfReader(io.BytesIO(pdf)).pages for img in page.images]
    assert [(i.image.width, i.image.height) for i in images] == [(400, 200)]


def test_report_of_a_patient_with_no_data(session: Session) -> None:
    auth.create_user(session, actor="test", username=USER, role=auth.CLINICIAN, password=None)
    services.add_patient(session, username=USER, mrn="EMPTY", name="Nobody Yet")
    session.commit()
    pdf = patient_report_pdf(load_record(session, "EMPTY"), AS_OF)
    flat = " ".join("\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())
    assert "Nobody Yet" in flat and "No plan saved." in flat and "No alert holds as of this date." in flat
    assert "Not yet known" in flat
