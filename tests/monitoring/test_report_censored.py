"""The PDF report prints a censored result with its comparator (PRODUCT.md §4): troponin I
'<0.03 ng/mL' as '<30 ng/L', ferritin '>3000' as '>3000 ng/mL', in the latest results and in the
alert it raises; never the bare number (read from the PDF's text with pypdf)."""

from __future__ import annotations

import datetime as dt
import io
import re

from pypdf import PdfReader
from sqlmodel import Session

from monitoring import auth, services
from monitoring.records import load_record
from monitoring.report import patient_report_pdf

TODAY = dt.date.today()


def test_the_pdf_prints_censored_results_with_their_comparator(session: Session) -> None:
    auth.create_user(session, actor="test", username="dr.pdf", role=auth.CLINICIAN, password=None)
    services.add_patient(session, username="dr.pdf", mrn="PDF-1", name="Cen Sored", sex="female", birth_date="1970-01-01",
                         weight_kg=60, onset_date=TODAY - dt.timedelta(days=9), culprit_drugs="allopurinol")
    for days, test, value in ((3, "ferritin", "900"), (1, "ferritin", ">3000"), (1, "troponin_i", "<0.03")):
        services.add_lab_result(session, username="dr.pdf", mrn="PDF-1", test=test, value=value, unit="ng/mL",
                                taken_at=dt.datetime.combine(TODAY - dt.timedelta(days=days), dt.time(6, 0)))
    session.commit()
    pdf = patient_report_pdf(load_record(session, "PDF-1"), TODAY)
    text = re.sub(r"\s+", " ", " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages))
    assert "Latest results" in text
    assert "<30 ng/L" in text and ">3000 ng/mL" in text, text
    assert "Ferritin >3000 ng/mL" in text  # the FERRITIN_HIGH alert quotes it with its comparator
    assert not re.search(r"(?<![<>\d.])3000 ng/mL on", text)  # never the bare bound as a measured value
