"""The Photos page through Streamlit's AppTest: the gallery and the compare view render stored
photographs (thumbnails in the gallery), an upload through the page stores photographs, a refused
file is named and nothing is stored, hiding asks for a reason, and a read-only account cannot write."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from monitoring.db import create_db_engine, session_scope
from monitoring.models import AuditEntry, LabResult, Photo, User
from monitoring.photos import PhotoIn, store_photos
from monitoring.store import MedIn, PatientIn, write_batch
from tests.dashboard.apptest import sign_in
from tests.dashboard.shown import shown

PAGE = str(Path(__file__).resolve().parents[2] / "dashboard" / "views" / "photos.py")
MRN = "PHOTO-T1"
TODAY = dt.date.today()
ONSET = TODAY - dt.timedelta(days=30)


def picture(seed: int, size: tuple[int, int] = (480, 360)) -> bytes:
    im = Image.new("RGB", size, (230, 190, 170))
    draw = ImageDraw.Draw(im)
    for i in range(seed % 7 + 3):
        x = (seed * 37 + i * 53) % size[0]
        y = (seed * 91 + i * 29) % size[1]
        draw.ellipse([x, y, x + 40, y + 30], fill=(200, 60 + seed % 50, 60))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def photo_db(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    url = f"sqlite:///{db_path}"
    monkeypatch.setenv("DATABASE_URL", url)
    eng = create_db_engine(url)
    with session_scope(eng) as s:
        write_batch(
            s,
            patients=[PatientIn(MRN, "Synthetic Photo Page", {"onset_date": ONSET, "weight_kg": 60.0, "synthetic": True})],
            meds=[
                MedIn(MRN, "prednisone", "prednisone", ONSET + dt.timedelta(days=2), 60, "60", "mg"),
                MedIn(MRN, "prednisone", "prednisone", ONSET + dt.timedelta(days=20), 40, "40", "mg"),
            ],
            username="test",
        )
        s.add(User(username="dr.photo", role="clinician"))
        s.add(User(username="viewer.only", role="viewer"))
    with session_scope(eng) as s:
        store_photos(s, MRN, [PhotoIn("chest-1.jpg", picture(1), "chest", bsa_pct=40, taken_on=ONSET + dt.timedelta(days=3))],
                     username="dr.photo", today=TODAY)
        store_photos(s, MRN, [PhotoIn("chest-2.jpg", picture(2), "chest", bsa_pct=25, taken_on=ONSET + dt.timedelta(days=21),
                                      note="fading on the trunk")], username="dr.photo", today=TODAY)
        store_photos(s, MRN, [PhotoIn("face-1.jpg", picture(3), "face", taken_on=ONSET + dt.timedelta(days=21))],
                     username="dr.photo", today=TODAY)
    yield eng
    eng.dispose()


def signed_in(at: AppTest, eng: Engine, username: str) -> AppTest:
    """Seed the session as the sign-in gate does (dashboard.auth.signed_in_state); every page
    checks the account against the database on each run."""
    return sign_in(at, username, eng)


def page(eng: Engine, user: str = "dr.photo") -> AppTest:
    at = signed_in(AppTest.from_file(PAGE, default_timeout=60), eng, user)
    at.session_state["patient_mrn"] = MRN
    return at.run()


def texts(at: AppTest) -> str:
    return shown("\n".join(m.value for m in at.markdown) + "\n".join(c.value for c in at.caption))


def photo_count(eng: Engine) -> int:
    with Session(eng) as s:
        return s.execute(select(func.count()).select_from(Photo)).scalar_one()


def test_gallery_shows_thumbnails_by_date(photo_db: Engine) -> None:
    at = page(photo_db)
    assert not at.exception
    out = texts(at)
    assert "Synthetic Photo Page" in out and "SYNTHETIC" in out
    d1, d2 = (ONSET + dt.timedelta(days=3)).isoformat(), (ONSET + dt.timedelta(days=21)).isoformat()
    assert f"**{d2}** · day 21 since onset · 2 photographs" in out
    assert f"**{d1}** · day 3 since onset · 1 photograph" in out
    captions = [shown(c) for img in at.image for c in img.captions]
    assert sorted(captions) == sorted(["#1 · chest · BSA 40 %", "#2 · chest · BSA 25 %", "#3 · face"])


def test_opening_a_day_shows_its_photographs_and_course(photo_db: Engine) -> None:
    at = page(photo_db)
    day = ONSET + dt.timedelta(days=21)
    at.button(key=f"photos_open_{day.isoformat()}").click().run()
    assert not at.exception
    out = texts(at)
    assert f"Photographs of {day.isoformat()}" in [h.value for h in at.subheader]
    assert "- **day since onset**: 21" in out
    assert "- **prednisone-equivalent**: 40 mg/day (0.67 mg/kg)" in out
    assert "Note: fading on the trunk" in out


def test_compare_view_defaults_to_first_and_latest_of_a_site(photo_db: Engine) -> None:
    at = page(photo_db)
    at.segmented_control(key="photos_view").set_value("Compare").run()
    assert not at.exception
    assert at.selectbox(key="photos_cmp_site").value == "chest"  # the site with two dates
    d1, d2 = ONSET + dt.timedelta(days=3), ONSET + dt.timedelta(days=21)
    assert at.selectbox(key="photos_cmp_a_chest").value == d1
    assert at.selectbox(key="photos_cmp_b_chest").value == d2
    out = texts(at)
    assert f"#### {d1.isoformat()} · chest" in out and f"#### {d2.isoformat()} · chest" in out
    # Under each: day since onset, course day, dose, BSA.
    assert "- **day since onset**: 3" in out and "- **day since onset**: 21" in out
    assert f"- **steroid course**: day 1 of steroids (first dose {(ONSET + dt.timedelta(days=2)).isoformat()})" in out
    assert "- **prednisone-equivalent**: 60 mg/day (1.00 mg/kg)" in out
    assert "- **BSA involved**: 40 %" in out and "- **BSA involved**: 25 %" in out
    assert f"**Chest**, {d1.isoformat()} and {d2.isoformat()}: 18 days apart · BSA 40 % → 25 %" in out
    assert len(at.image) == 2
    # A site photographed once says so.
    at.selectbox(key="photos_cmp_site").set_value("face").run()
    assert any("one date only" in i.value for i in at.info)


def test_upload_through_the_page_stores_photographs_and_bsa(photo_db: Engine) -> None:
    at = page(photo_db)
    at.segmented_control(key="photos_view").set_value("Add photographs").run()
    at.selectbox(key="photos_site_0").set_value("legs")
    at.number_input(key="photos_bsa_0").set_value(35.0)
    at.file_uploader(key="photos_files_0").set_value(
        [("legs-a.jpg", picture(10), "image/jpeg"), ("legs-b.jpg", picture(11), "image/jpeg")]
    )
    at.run()
    at.button(key="photos_store").click().run()
    assert not at.exception
    assert photo_count(photo_db) == 5
    assert any("2 photograph(s) stored" in s.value for s in at.success)
    # The date's origin in words, not the stored code ("date from entered").
    stored_message = shown(next(s.value for s in at.success if "photograph(s) stored" in s.value))
    assert f"legs-a.jpg: legs, taken {TODAY.isoformat()} (date taken as entered)" in stored_message
    assert "date from entered" not in stored_message
    with Session(photo_db) as s:
        bsa = s.execute(select(LabResult.value).where(LabResult.test == "bsa_pct", LabResult.source == "photo")).scalars().all()
        who = s.execute(select(Photo.uploaded_by).where(Photo.body_site == "legs")).scalars().all()
    assert sorted(bsa) == [25.0, 35.0, 35.0, 40.0]
    assert who == ["dr.photo", "dr.photo"]


def test_a_refused_upload_names_the_file_and_stores_nothing(photo_db: Engine) -> None:
    at = page(photo_db)
    at.segmented_control(key="photos_view").set_value("Add photographs").run()
    at.selectbox(key="photos_site_0").set_value("arms")
    at.file_uploader(key="photos_files_0").set_value(
        [("good.jpg", picture(20), "image/jpeg"), ("report.jpg", b"%PDF-1.4 not a photo", "image/jpeg"),
         ("again.jpg", picture(1), "image/jpeg")]
    )
    at.run()
    at.button(key="photos_store").click().run()
    assert not at.exception
    [error] = at.error
    message = shown(error.value)
    assert "Nothing stored: 2 problems" in message
    assert "report.jpg: not a photograph: the file is a PDF document" in message
    assert "again.jpg: duplicate: the same pixels as photograph #1" in message
    assert photo_count(photo_db) == 3


def test_a_read_only_account_sees_photographs_but_no_write_controls(photo_db: Engine) -> None:
    at = page(photo_db, user="viewer.only")
    assert not at.exception
    assert at.segmented_control(key="photos_view").options == ["Gallery", "Compare"]
    assert len(at.image) == 3
    assert not [b for b in at.button if b.key == "photos_hide_go"]


def test_an_unknown_session_sees_nothing(photo_db: Engine) -> None:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["patient_mrn"] = MRN
    at.run()
    assert not at.image and any("Sign in first" in w.value for w in at.warning)


def test_hiding_from_the_page_needs_a_reason_and_is_audited(photo_db: Engine) -> None:
    at = page(photo_db)
    assert not [b for b in at.button if "delete" in b.label.lower()]
    at.selectbox(key="photos_hide_id").set_value(3)
    at.run()
    assert at.button(key="photos_hide_go").disabled  # no reason yet
    at.text_input(key="photos_hide_reason").set_value("wrong patient").run()
    at.button(key="photos_hide_go").click().run()
    assert not at.exception
    with Session(photo_db) as s:
        row = s.get(Photo, 3)
        audit = s.execute(select(AuditEntry).where(AuditEntry.entity == "photo", AuditEntry.action == "hide")).scalar_one()
    assert row is not None and row.hidden and row.hidden_reason == "wrong patient"
    assert audit.username == "dr.photo" and audit.reason == "wrong patient"
    captions = [shown(c) for img in at.image for c in img.captions]
    assert "#3 · face" not in captions and len(captions) == 2


def test_a_link_with_photo_day_opens_that_day(photo_db: Engine) -> None:
    day = ONSET + dt.timedelta(days=3)
    at = signed_in(AppTest.from_file(PAGE, default_timeout=60), photo_db, "dr.photo")
    at.query_params["mrn"] = MRN
    at.query_params["photo_day"] = day.isoformat()
    at.run()
    assert not at.exception
    assert f"Photographs of {day.isoformat()}" in [h.value for h in at.subheader]
    assert "- **BSA involved**: 40 %" in texts(at)


def test_a_photograph_taken_with_the_camera_is_stored(photo_db: Engine) -> None:
    at = page(photo_db)
    at.segmented_control(key="photos_view").set_value("Add photographs").run()
    at.selectbox(key="photos_site_0").set_value("mucosa")
    at.toggle(key="photos_camera_on_0").set_value(True).run()
    at.camera_input(key="photos_camera_0").set_value(("camera.jpg", picture(40), "image/jpeg"))
    at.run()
    at.button(key="photos_store").click().run()
    assert not at.exception
    with Session(photo_db) as s:
        sites = s.execute(select(Photo.body_site, Photo.taken_on).where(Photo.body_site == "mucosa")).all()
    assert sites == [("mucosa", TODAY)]  # no camera date in the file: the date entered (today)


# --- the real server in Chromium (fixtures of tests/dashboard/test_browser.py) -----------------------------------

from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, USER, _no_exception, server  # noqa: E402, F401


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="Debian chromium not installed")
def test_compare_view_in_chromium(server: str) -> None:  # noqa: F811 - the imported fixture
    """Signed in, a demo patient's Photos page: the gallery's thumbnails and then the compare view's
    two photographs are really displayed (decoded by the browser), with their course context."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            page.goto(server + "/", wait_until="domcontentloaded")
            page.get_by_role("textbox", name="User name").fill(USER)
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_selector("table.dm-ward", timeout=90_000)
            page.get_by_role("radio", name=re.compile("Ada Okafor")).first.click()
            page.wait_for_selector("text=NEVER RECHALLENGE", timeout=90_000)
            page.get_by_text("Patient", exact=True).first.click()
            page.get_by_text("Photos", exact=True).first.click()
            page.wait_for_selector("text=All photographs by date", timeout=90_000)
            _no_exception(page)
            # Thumbnails displayed: decoded by the browser (the demo patient has three dates of one site).
            page.wait_for_function(
                "() => [...document.querySelectorAll('[data-testid=\"stMain\"] img')]"
                ".filter(x => x.complete && x.naturalWidth > 0).length >= 3",
                timeout=30_000,
            )
            page.get_by_text("Compare", exact=True).first.click()
            page.wait_for_selector("text=days apart", timeout=90_000)
            page.wait_for_selector("text=prednisone-equivalent", timeout=30_000)
            _no_exception(page)
            # Exactly the two photographs of the compare view, both displayed.
            page.wait_for_function(
                "() => { const i = [...document.querySelectorAll('[data-testid=\"stMain\"] img')];"
                " return i.length === 2 && i.every(x => x.complete && x.naturalWidth > 0); }",
                timeout=30_000,
            )
            assert page.get_by_text("day since onset").count() >= 2
        finally:
            browser.close()
