"""The clinic report: a PDF that opens, names the patient, holds the figure, and says what the
engine says (alerts with sources, the saved plan, patch-test date, RegiSCAR)."""

from __future__ import annotations

import datetime as dt
import io
import re
import shutil
import subprocess
from collections.abc import Sequence
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


# --- issue 18 point 10: what a clinician reading the printed report checks ------------------------

from matplotlib.dates import num2date  # noqa: E402

from monitoring.guideline import load_profile  # noqa: E402
from monitoring.report import DATE_TICK_FORMAT, ReportSettings, timeline_figure  # noqa: E402


def _pdf_text(pdf: bytes) -> str:
    return " ".join("\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages).split())


def test_pdf_cites_real_sources_and_says_who_prepared_it(session: Session, patient: str) -> None:
    settings = ReportSettings(unit="Dermatology, St Elsewhere Hospital", contact="DRESS team bleep 4321")
    pdf = patient_report_pdf(load_record(session, patient), AS_OF, generated_at=dt.datetime(2026, 2, 1, 9, 30), author=USER,
                             settings=settings)
    flat = _pdf_text(pdf)
    assert f"Prepared by {USER}" in flat
    assert "Unit: Dermatology, St Elsewhere Hospital" in flat and "Contact: DRESS team bleep 4321" in flat
    assert PdfReader(io.BytesIO(pdf)).metadata.author == USER
    # The alerts, patch-test and follow-up sources name guidelines and papers, never the product's files.
    assert ".md" not in flat and "PRODUCT" not in flat and "CLINICAL_REFERENCE" not in flat
    assert "DRESS treatment guideline summary (product requirement)" in flat
    assert "Kardaun" in flat  # RegiSCAR's paper
    assert "Tohyama" in flat  # RELAPSE_RISK's source (HHV-6 detected)
    # The course day with its first dose, as on the dashboard (issue 18 point 7).
    assert f"day {(AS_OF - dt.date(2026, 1, 4)).days} of steroids (first dose 2026-01-04)" in flat


def test_every_printable_source_is_a_real_one() -> None:
    """Whatever the patient, the PDF prints an alert's source and the follow-up checks' sources:
    none of them may point at an internal file."""
    from monitoring.followup import load_followup_schedule

    prof = load_profile()
    for code, alert in prof.alerts.items():
        assert ".md" not in alert.source, code
    for check in load_followup_schedule():
        assert ".md" not in check.source, check.key


def test_pdf_without_unit_settings_says_where_to_set_them(session: Session, patient: str) -> None:
    pdf = patient_report_pdf(load_record(session, patient), AS_OF, settings=ReportSettings.from_environment({}))
    flat = _pdf_text(pdf)
    assert "Prepared by: not recorded" in flat
    assert "Unit: not set (DRESS_REPORT_UNIT)" in flat and "Contact: not set (DRESS_REPORT_CONTACT)" in flat
    env = {"DRESS_REPORT_UNIT": "  Ward 7  ", "DRESS_REPORT_CONTACT": "ext 1234"}
    assert ReportSettings.from_environment(env) == ReportSettings(unit="Ward 7", contact="ext 1234")


def _patient_with(session: Session, mrn: str, name: str, culprit: str, rows: Sequence[tuple[str, str, float, str, float | None]]) -> str:
    """A patient with onset 2026-01-02, ``culprit`` and results (taken, test, value, unit, the laboratory's ULN)."""
    auth.create_user(session, actor="test", username=USER, role=auth.CLINICIAN, password=None)
    services.add_patient(session, username=USER, mrn=mrn, name=name, onset_date=dt.date(2026, 1, 2), culprit_drugs=[culprit])
    for when, test, value, unit, uln in rows:
        services.add_lab_result(session, username=USER, mrn=mrn, test=test, taken_at=when, value=value, unit=unit, ref_high=uln)
    return mrn


@pytest.fixture
def figure_patient(session: Session) -> str:
    """ALT from two laboratories (ULN 35, then 50), AST, temperatures with a fever, prednisone."""
    mrn = _patient_with(session, "F-1", "Figure Patient", "allopurinol", (
        ("2026-01-03 08:00", "alt", 240, "U/L", 35),
        ("2026-01-10 08:00", "alt", 120, "U/L", 50),
        ("2026-01-30 08:00", "alt", 60, "U/L", 50),
        ("2026-01-03 08:00", "ast", 180, "U/L", 40),
        ("2026-01-30 08:00", "ast", 45, "U/L", 40),
        ("2026-01-03 08:00", "temperature", 39.2, "Cel", None),
        ("2026-01-12 08:00", "temperature", 37.0, "Cel", None),
        ("2026-01-03 08:00", "creatinine", 0.7, "mg/dL", None),
    ))
    services.add_dose_change(session, username=USER, mrn=mrn, drug="prednisone", start_date="2026-01-04", dose=60)
    session.commit()
    return mrn


def _when(x: object) -> dt.datetime:
    """An x value of a line as a naive datetime (matplotlib keeps datetimes or date numbers)."""
    return x if isinstance(x, dt.datetime) else num2date(float(x)).replace(tzinfo=None)  # type: ignore[arg-type]


def _axes(fig: object) -> dict[str, object]:
    return {ax.get_title(loc="left"): ax for ax in fig.axes}  # type: ignore[attr-defined]


def test_figure_panel_titles_and_limit_colours_come_from_the_one_key(session: Session, figure_patient: str) -> None:
    """Issue 15: the panels' labels and units are the catalogue's (monitoring.display) and a limit
    line's colour is its severity's in monitoring.severity (INK: readable on paper)."""
    from matplotlib.colors import to_hex

    from monitoring import severity

    fig = timeline_figure(load_record(session, figure_patient), AS_OF)
    axes = _axes(fig)
    assert {"ALT / AST (U/L)", "Creatinine (mg/dL)", "Eosinophils (×10^9/L)", "Ferritin (ng/mL)", "Temperature (°C)"} <= set(axes)
    limit_colours = {
        to_hex(line.get_color()) for ax in axes.values() for line in ax.get_lines()  # type: ignore[attr-defined]
        if line.get_linestyle() == "--" and line.get_label() not in ("ALT", "AST")  # limits, not the series
    }
    assert severity.INK["warning"] in limit_colours and severity.INK["critical"] in limit_colours
    assert limit_colours <= {*severity.INK.values(), "#546e7a"}  # INK, or the creatinine baseline's grey-blue


def test_figure_alt_limit_follows_each_results_uln_and_alt_ast_differ(session: Session, figure_patient: str) -> None:
    fig = timeline_figure(load_record(session, figure_patient), AS_OF)
    ax = _axes(fig)["ALT / AST (U/L)"]
    series = {line.get_label(): line for line in ax.get_lines() if line.get_label() in ("ALT", "AST")}
    assert series["ALT"].get_marker() != series["AST"].get_marker()
    assert series["ALT"].get_linestyle() != series["AST"].get_linestyle()
    # The ULN line steps from the first laboratory's 35 to the second's 50, not flat at the default.
    levels = [sorted({float(y) for y in line.get_ydata()}) for line in ax.get_lines() if line.get_label() not in ("ALT", "AST")]
    assert [35.0, 50.0] in levels and [70.0, 100.0] in levels


def test_figure_has_a_temperature_panel_with_the_profiles_fever_line(session: Session, figure_patient: str) -> None:
    fig = timeline_figure(load_record(session, figure_patient), AS_OF)
    ax = _axes(fig)["Temperature (°C)"]
    ys = [float(y) for line in ax.get_lines() for y in line.get_ydata()]
    assert 39.2 in ys and 37.0 in ys
    fever = load_profile().value("fever_c")
    assert any(text.get_text() == f"fever ≥ {fever:g} °C" for text in ax.texts)
    low, high = ax.get_ylim()
    assert low > 30 and high < 45  # readable: not an axis from 0 °C


def test_figure_dates_are_whole_and_no_label_is_clipped(session: Session, figure_patient: str) -> None:
    fig = timeline_figure(load_record(session, figure_patient), AS_OF)
    renderer = fig.canvas.get_renderer()
    fig.canvas.draw()
    dose_ax = fig.axes[-1]
    labels = [t.get_text() for t in dose_ax.get_xticklabels() if t.get_text()]
    assert 3 <= len(labels) <= 8
    for label in labels:
        dt.datetime.strptime(label, DATE_TICK_FORMAT)  # '2026-01-05', never '08' or 'Jan' alone
    assert len(set(labels)) == len(labels)
    box = fig.bbox
    for ax in fig.axes:
        for text in [*ax.texts, ax.title, ax._left_title, *ax.get_xticklabels(), *ax.get_yticklabels()]:  # noqa: SLF001
            if not text.get_visible() or not text.get_text():
                continue
            ext = text.get_window_extent(renderer)
            assert ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1 and ext.y0 >= box.y0 - 1 and ext.y1 <= box.y1 + 1, text.get_text()


def test_figure_as_of_line_is_now_and_the_given_dose_stops_there(session: Session, figure_patient: str) -> None:
    now = dt.datetime(2026, 2, 1, 9, 30)
    record = load_record(session, figure_patient)
    fig = timeline_figure(record, now.date(), now=now)
    dose_ax = fig.axes[-1]
    given = [line for line in dose_ax.get_lines() if line.get_linestyle() == "-" and len(line.get_xdata()) > 1]
    assert given
    assert max(_when(x) for x in given[0].get_xdata()) == now
    vlines = [line for line in dose_ax.get_lines() if line.get_linestyle() == ":"]
    assert [_when(line.get_xdata()[0]) for line in vlines] == [now]
    # A report of a past date: the line at the end of that day, after its 08:00 results.
    past = timeline_figure(record, dt.date(2026, 1, 30), now=now)
    vx = [_when(line.get_xdata()[0]) for line in past.axes[-1].get_lines() if line.get_linestyle() == ":"]
    assert vx == [dt.datetime(2026, 1, 31)]


def test_pdf_checklist_marks_a_result_above_the_laboratorys_range(session: Session, patient: str) -> None:
    """Issue 18 point 5: the report's checklist says what the Follow-up page says."""
    services.add_lab_result(session, username=USER, mrn=patient, test="tsh", taken_at="2026-02-25 09:00", value=6.4,
                            unit="mIU/L", ref_high=4.5)
    services.add_lab_result(session, username=USER, mrn=patient, test="glucose", taken_at="2026-02-25 09:00", value=5.1,
                            unit="mmol/L", ref_high=7.8)
    session.commit()
    flat = _pdf_text(patient_report_pdf(load_record(session, patient), dt.date(2026, 4, 1), generated_at=dt.datetime(2026, 4, 1, 9),
                                        author=USER))
    assert "6.4 mIU/L on 2026-02-25 · ABOVE RANGE (> 4.5 mIU/L, laboratory)" in flat
    assert flat.count("ABOVE RANGE") == 1 and "within range" not in flat  # only the results above are marked


def test_pdf_names_the_clinician_by_display_name_with_the_account_as_plain_text(session: Session, patient: str) -> None:
    """Issue 18 point 10: "Prepared by" names the person ("Display Name (username)"); the name is
    stored text, so reportlab markup in it is printed, never obeyed."""
    auth.set_display_name(session, actor="test", username=USER, display_name="Dr A. Mensah <b>&amp; registrar</b>")
    session.commit()
    user = auth.get_user(session, USER)
    assert user is not None
    label = auth.signed_in_as(user).label
    assert label == f"Dr A. Mensah <b>&amp; registrar</b> ({USER})"
    pdf = patient_report_pdf(load_record(session, patient), AS_OF, generated_at=dt.datetime(2026, 2, 1, 9, 30), author=label,
                             settings=ReportSettings(unit="Dermatology", contact="bleep 4321"))
    flat = _pdf_text(pdf)
    assert f"Prepared by Dr A. Mensah <b>&amp; registrar</b> ({USER}) · Unit: Dermatology" in flat
    assert "09:30:00 by Dr A. Mensah <b>&amp;" in flat  # the footer (shortened to fit: see below)
    assert PdfReader(io.BytesIO(pdf)).metadata.author == label


def test_a_long_display_name_is_shortened_in_the_footer_never_the_page_number(session: Session, patient: str) -> None:
    """The footer is one line per page: a display name of the full 120 characters would push the
    page number and the SYNTHETIC mark off the page; it is shortened there (page 1 names it in full)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.pdfbase.pdfmetrics import stringWidth

    from monitoring.report import _fonts, footer_line

    regular, _ = _fonts()
    label = auth.person_label(USER, ("Dr Abena Mensah-Owusu, dermatology registrar, St Elsewhere " * 3)[:120])
    head = "Zoë Ångström-Report · MRN R-17 · as of 2026-02-01 · generated 2026-02-01 09:30:00"
    room = A4[0] - 30 * mm
    line = footer_line(head, label, " · page 12 · SYNTHETIC", lambda t: stringWidth(t, regular, 7), room)
    assert line.startswith(head + " by Dr Abena Mensah-Owusu") and line.endswith("… · page 12 · SYNTHETIC")
    assert stringWidth(line, regular, 7) <= room < stringWidth(f"{head} by {label} · page 12 · SYNTHETIC", regular, 7)
    short = footer_line(head, USER, " · page 1", lambda t: stringWidth(t, regular, 7), room)
    assert short == f"{head} by {USER} · page 1"  # what fits is left whole
    assert footer_line(head, None, " · page 1", len, room) == head + " · page 1"
    pdf = patient_report_pdf(load_record(session, patient), AS_OF, generated_at=dt.datetime(2026, 2, 1, 9, 30), author=label,
                             settings=ReportSettings(unit="Dermatology", contact="bleep 4321"))
    flat = _pdf_text(pdf)
    assert f"Prepared by {label} · Unit: Dermatology" in flat  # in full under the title
    assert "… · page 1" in flat


# --- issue 18 point 15: the dashboard's optional panels and exposure bars in the PDF -------------

from monitoring import severity  # noqa: E402
from monitoring.report import EXPOSURE_TITLE, plain  # noqa: E402

LIVER_ULN_TITLE = "Bilirubin (total) / ALP (× ULN)"
TROPONIN_TITLE = "Troponin T (ng/L)"  # titled by the assays it draws (only T here)
CRP_TITLE = "CRP (mg/L)"


@pytest.fixture
def wide_patient(session: Session) -> str:
    """ALT with ALP (R 8.0 hepatocellular, then R 0.8 cholestatic), bilirubin, troponin T from two
    laboratories (ULN 14, then 15), CRP; allopurinol (the culprit) stopped at onset, omeprazole
    with no stop, prednisone."""
    mrn = _patient_with(session, "W-1", "Wide Patient", "allopurinol", (
        ("2026-01-03 08:00", "alt", 400, "U/L", 40),
        ("2026-01-03 08:00", "alp", 150, "U/L", 120),
        ("2026-01-03 08:00", "ast", 300, "U/L", 40),
        ("2026-01-12 08:00", "alt", 100, "U/L", 40),
        ("2026-01-12 08:00", "alp", 360, "U/L", 120),
        ("2026-01-03 08:00", "bilirubin", 2.4, "mg/dL", 1.2),
        ("2026-01-03 08:00", "troponin_t", 30, "ng/L", 14),
        ("2026-01-12 08:00", "troponin_t", 10, "ng/L", 15),
        ("2026-01-03 08:00", "crp", 85, "mg/L", None),
    ))
    for drug, start, dose in (("omeprazole", "2025-12-20", 20), ("allopurinol", "2025-11-20", 300), ("allopurinol", "2026-01-02", 0),
                              ("prednisone", "2026-01-04", 60)):
        services.add_dose_change(session, username=USER, mrn=mrn, drug=drug, start_date=start, dose=dose)
    session.commit()
    return mrn


def _titles(fig: object) -> list[str]:
    return [ax.get_title(loc="left").split("\n")[0] for ax in fig.axes]  # type: ignore[attr-defined]


def test_figure_draws_the_optional_panels_and_exposure_bars_when_the_patient_has_them(session: Session, wide_patient: str) -> None:
    fig = timeline_figure(load_record(session, wide_patient), AS_OF)
    titles = _titles(fig)
    # The dashboard's order (dashboard.timeline_model.PANEL_ORDER), exposure above the dose panel.
    assert titles == ["ALT / AST (U/L)", LIVER_ULN_TITLE, "Creatinine (mg/dL)", "Eosinophils (×10^9/L)", "Ferritin (ng/mL)",
                      TROPONIN_TITLE, CRP_TITLE, "Temperature (°C)", EXPOSURE_TITLE, titles[-1]]
    axes = {t: ax for t, ax in zip(titles, fig.axes, strict=True)}
    # Thin panels, and the figure grows with them (six full panels are 7.4 in).
    assert axes[CRP_TITLE].get_position().height < 0.7 * axes["Ferritin (ng/mL)"].get_position().height
    assert fig.get_figheight() > 7.4 + 1.5
    uln_ax = axes[LIVER_ULN_TITLE]
    full_title = uln_ax.get_title(loc="left")
    assert "hepatocellular" in full_title and "cholestatic" in full_title  # the liver-injury pattern, first and latest
    series = {line.get_label(): [float(y) for y in line.get_ydata()] for line in uln_ax.get_lines()}
    assert series["ALP"] == [1.25, 3.0] and series["Bilirubin (total)"] == [2.0]  # multiples of each result's own ULN
    liver = {line.get_label(): line for line in axes["ALT / AST (U/L)"].get_lines()}
    styles = {(ln.get_marker(), ln.get_linestyle(), ln.get_color()) for ln in (liver["ALT"], liver["AST"])}
    for name in ("Bilirubin (total)", "ALP"):  # never drawn like ALT or AST (the dashboard's rule)
        line = next(ln for ln in uln_ax.get_lines() if ln.get_label() == name)
        assert (line.get_marker(), line.get_linestyle(), line.get_color()) not in styles
        assert line.get_marker() not in {s[0] for s in styles}
    assert any(ys and set(ys) == {1.0} for label, ys in series.items() if label.startswith("_"))  # the 1×ULN line
    tro = axes[TROPONIN_TITLE]
    levels = [sorted({float(y) for y in line.get_ydata()}) for line in tro.get_lines() if line.get_linestyle() == "--"]
    assert [14.0, 15.0] in levels  # the ULN follows each result's own ULN, not the default 14 flat
    assert any(t.get_text() == "Troponin T ULN 15" for t in tro.texts)
    ex = axes[EXPOSURE_TITLE]
    labels = [t.get_text() for t in ex.texts]
    assert labels == ["‼ allopurinol", "omeprazole", "prednisone"]  # culprit first, marked ‼
    from matplotlib.colors import to_hex

    bars = [line for line in ex.get_lines() if line.get_linestyle() == "-"]
    assert to_hex(bars[0].get_color()) == severity.INK["critical"]
    assert {to_hex(b.get_color()) for b in bars[1:]} == {"#1f3b73"}


def test_figure_without_those_results_has_no_optional_panels(session: Session, figure_patient: str) -> None:
    titles = _titles(timeline_figure(load_record(session, figure_patient), AS_OF))
    assert not {LIVER_ULN_TITLE, TROPONIN_TITLE, CRP_TITLE} & set(titles)
    assert len(titles) == 7 and titles[-2] == EXPOSURE_TITLE  # five panels, prednisone's bar, the dose


def test_figure_of_a_patient_with_nothing_has_the_fixed_panels_only(session: Session) -> None:
    auth.create_user(session, actor="test", username=USER, role=auth.CLINICIAN, password=None)
    services.add_patient(session, username=USER, mrn="EMPTY", name="Nobody Yet")
    session.commit()
    fig = timeline_figure(load_record(session, "EMPTY"), AS_OF)
    assert len(fig.axes) == 6 and EXPOSURE_TITLE not in _titles(fig)
    assert fig.get_figheight() == pytest.approx(7.4)


def test_pdf_names_the_panels_and_the_liver_injury_pattern(session: Session, wide_patient: str) -> None:
    flat = _pdf_text(patient_report_pdf(load_record(session, wide_patient), AS_OF, generated_at=dt.datetime(2026, 2, 1, 9, 30)))
    for title in (LIVER_ULN_TITLE, TROPONIN_TITLE, CRP_TITLE, EXPOSURE_TITLE):
        assert title in flat, title
    assert "Liver-injury pattern (R ratio, ACG 2014 DILI guideline): first R 8.0, hepatocellular (2026-01-03" in flat
    assert "latest R 0.8, cholestatic (2026-01-12" in flat


def test_pdf_without_those_results_names_no_such_panel(session: Session, figure_patient: str) -> None:
    flat = _pdf_text(patient_report_pdf(load_record(session, figure_patient), AS_OF))
    assert "Panels, top to bottom: ALT / AST (U/L)" in flat
    assert LIVER_ULN_TITLE not in flat and TROPONIN_TITLE not in flat and "Liver-injury pattern" not in flat


def test_wide_figure_labels_stay_on_the_figure(session: Session, wide_patient: str) -> None:
    fig = timeline_figure(load_record(session, wide_patient), AS_OF)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    for ax in fig.axes:
        for text in [*ax.texts, ax._left_title, *ax.get_yticklabels()]:  # noqa: SLF001
            if text.get_visible() and text.get_text():
                ext = text.get_window_extent(renderer)
                assert ext.x0 >= box.x0 - 1 and ext.x1 <= box.x1 + 1, text.get_text()


def test_a_drug_name_is_plain_text_in_the_figure() -> None:
    """A stored name with '$' is no mathtext (matplotlib would typeset '$x$' as math)."""
    from matplotlib.figure import Figure

    text = Figure().text(0, 0, plain("Dr $5$ pill"))
    assert text._preprocess_math(text.get_text()) == ("Dr $5$ pill", False)  # noqa: SLF001


def test_only_censored_troponin_still_draws_its_panel_at_the_bound_marked(session: Session) -> None:
    """As on the dashboard, a '<0.03 ng/mL' troponin I is a result: its panel is drawn, the point
    at its bound (30 ng/L), hollow and labelled '<30', never as if measured there; a '>3000'
    ferritin likewise (it was missing from the PDF's ferritin panel)."""
    mrn = _patient_with(session, "C-1", "Censored Only", "allopurinol", (
        ("2026-01-03 08:00", "troponin_i", "<0.03", "ng/mL", None),
        ("2026-01-03 08:00", "ferritin", ">3000", "ng/mL", None),
    ))
    session.commit()
    fig = timeline_figure(load_record(session, mrn), AS_OF)
    titles = _titles(fig)
    assert "Troponin I (ng/L)" in titles and not any("Troponin T" in t for t in titles)  # titled by the assay it draws
    axes = dict(zip(titles, fig.axes, strict=True))
    for title, bound, words in (("Troponin I (ng/L)", 30.0, "<30"), ("Ferritin (ng/mL)", 3000.0, ">3000")):
        ax = axes[title]
        hollow = [line for line in ax.get_lines() if line.get_label() == "_censored"]
        assert [float(y) for line in hollow for y in line.get_ydata()] == [bound] and hollow[0].get_markerfacecolor() == "white"
        assert words in [t.get_text() for t in ax.texts]
    assert any(t.get_text() == "Troponin I ULN 26 (default)" for t in axes["Troponin I (ng/L)"].texts)


def test_a_figure_with_every_panel_and_many_drugs_fits_the_page(session: Session, wide_patient: str) -> None:
    """The tallest figure (all optional panels, a dozen drugs) is never taller than a page: the
    PDF builds (reportlab refuses a flowable taller than its frame) and the image fits in A4."""
    from reportlab.lib.pagesizes import A4

    drugs = ("carbamazepine", "oxcarbazepine", "phenytoin", "phenobarbital", "lamotrigine", "sulfasalazine", "dapsone",
             "vancomycin", "minocycline", "abacavir")
    for i, drug in enumerate(drugs):
        services.add_dose_change(session, username=USER, mrn=wide_patient, drug=drug, start_date=f"2026-01-{i + 3:02d}", dose=10)
    services.add_lab_result(session, username=USER, mrn=wide_patient, test="temperature", taken_at="2026-01-05 08:00", value=38.9,
                            unit="Cel")
    session.commit()
    record = load_record(session, wide_patient)
    fig = timeline_figure(record, AS_OF)
    assert len(fig.axes) == 10 and fig.get_figheight() > 11  # every panel; 13 drugs
    pdf = patient_report_pdf(record, AS_OF)
    reader = PdfReader(io.BytesIO(pdf))
    page = next(p for p in reader.pages if p.images)
    # The image as reportlab draws it ('1 0 0 1 x y cm q w 0 0 h 0 0 cm /FormXob Do'): within the
    # page's margins (13 mm top, 15 mm bottom).
    drawn = re.search(rb"1 0 0 1 ([\d.]+) ([\d.]+) cm\s*q\s*([\d.]+) 0 0 ([\d.]+) 0 0 cm\s*/[\w.]+ Do",
                      page.get_contents().get_data())
    assert drawn is not None
    _, y, _, height = (float(v) for v in drawn.groups())
    mm = 72 / 25.4
    assert y >= 15 * mm - 1 and y + height <= A4[1] - 13 * mm + 1
    flat = _pdf_text(pdf)
    assert "Panels, top to bottom:" in flat and "Liver-injury pattern" in flat
