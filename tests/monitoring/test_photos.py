"""Clinical photographs (issue 6): metadata stripped, orientation applied, refusals, duplicates,
gallery reads thumbnails only, hide instead of delete, BSA % as an observation, CLI."""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ExifTags, Image, ImageDraw
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitoring import photos
from monitoring.cli import main
from monitoring.db import create_db_engine, session_scope
from monitoring.models import AuditEntry, LabResult, Photo, PhotoImage
from monitoring.photos import (
    PhotoIn,
    PhotoLimits,
    date_source_words,
    hide_photo,
    list_photos,
    load_image,
    restore_photo,
    store_photos,
)
from monitoring.store import BatchRejected, PatientIn, write_batch

TODAY = dt.date(2026, 11, 20)
MRN = "PH-001"


# --- images made in the test ------------------------------------------------------------------


def scene(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    """An RGB image with structure (so pixels differ by seed and orientation is visible)."""
    w, h = size
    im = Image.new("RGB", size, (200, 150, 120))
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, w // 2 - 1, h - 1], fill=(220, 30, 30))  # left half red
    draw.rectangle([w // 2, 0, w - 1, h - 1], fill=(30, 30, 220))  # right half blue
    draw.point([(seed % w, (seed // w) % h)], fill=(seed % 256, 255, 0))
    return im


def jpeg_bytes(im: Image.Image, exif: Image.Exif | None = None, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, exif=exif if exif is not None else b"", **kw)
    return buf.getvalue()


def png_bytes(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **kw)
    return buf.getvalue()


def exif_with_gps(orientation: int | None = None, taken: str | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SecretCam"
    exif[ExifTags.Base.Model] = "Model-X1"
    exif[ExifTags.Base.Artist] = "Dr Who Took It"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (51.0, 30.0, 12.5)
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (0.0, 7.0, 39.0)
    if taken is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = taken
    return exif


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height``: a decompression bomb's signature."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


# --- fixtures -----------------------------------------------------------------------------------


def add_patient(session: Session, mrn: str = MRN) -> None:
    write_batch(
        session,
        patients=[PatientIn(mrn, "Synthetic Photo Patient", {"onset_date": dt.date(2026, 10, 1), "weight_kg": 70.0, "synthetic": True})],
        username="test",
    )
    session.flush()


@pytest.fixture
def patient(session: Session) -> Session:
    add_patient(session)
    session.commit()  # a refused batch rolls back; the patient stays
    return session


def store(session: Session, *items: PhotoIn, limits: PhotoLimits | None = None) -> list[photos.StoredPhoto]:
    return store_photos(session, MRN, list(items), username="dr.test", today=TODAY, limits=limits)


def stored_bytes(session: Session, photo_id: int) -> bytes:
    return load_image(session, photo_id)[0]


def refused(session: Session, *items: PhotoIn, limits: PhotoLimits | None = None) -> list[str]:
    with pytest.raises(BatchRejected) as info:
        store(session, *items, limits=limits)
    session.rollback()
    return [str(p) for p in info.value.problems]


def count(session: Session, model: type) -> int:
    return session.execute(select(func.count()).select_from(model)).scalar_one()


# --- metadata stripped, orientation, thumbnails -------------------------------------------------


def test_gps_and_all_exif_are_gone_from_the_stored_bytes(patient: Session) -> None:
    original = jpeg_bytes(scene((120, 90)), exif_with_gps(taken="2026:11:02 08:15:00"))
    # The test image really carries what must be removed.
    with Image.open(io.BytesIO(original)) as src:
        assert src.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert b"SecretCam" in original

    [saved] = store(patient, PhotoIn("rash.jpg", original, "chest", bsa_pct=12))
    data = stored_bytes(patient, saved.id)
    assert b"Exif" not in data and b"SecretCam" not in data and b"Dr Who" not in data
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG"
        assert dict(im.getexif()) == {}
        assert im.getexif().get_ifd(ExifTags.IFD.GPSInfo) == {}
        assert "exif" not in im.info and "icc_profile" not in im.info
    thumb = patient.execute(select(Photo.thumbnail).where(Photo.id == saved.id)).scalar_one()
    assert b"Exif" not in thumb and b"SecretCam" not in thumb
    # The date came from EXIF DateTimeOriginal, read before stripping.
    assert saved.taken_on == dt.date(2026, 11, 2) and saved.date_source == "exif"


def test_png_text_chunks_are_gone_and_png_stays_png(patient: Session) -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", "Patient Name Here")
    info.add_text("GPS", "51.5,-0.12")
    [saved] = store(patient, PhotoIn("dermoscopy.png", png_bytes(scene(), pnginfo=info), "arms", taken_on=dt.date(2026, 11, 3)))
    data = stored_bytes(patient, saved.id)
    assert b"Patient Name Here" not in data and b"tEXt" not in data
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and im.info == {} or set(im.info) <= {"dpi"}
        # Lossless in, lossless out.
        assert im.convert("RGB").tobytes() == scene().tobytes()
    assert saved.content_type == "image/png" and saved.date_source == "entered"


def test_orientation_is_applied_before_storing(patient: Session) -> None:
    # 80 wide x 40 high, red on the left; EXIF Orientation 6 means "rotate 90 degrees clockwise".
    original = jpeg_bytes(scene((80, 40)), exif_with_gps(orientation=6))
    [saved] = store(patient, PhotoIn("sideways.jpg", original, "back"))
    with Image.open(io.BytesIO(stored_bytes(patient, saved.id))) as im:
        assert im.size == (40, 80)
        assert (saved.width, saved.height) == (40, 80)
        top = im.convert("RGB").getpixel((20, 10))
        bottom = im.convert("RGB").getpixel((20, 70))
    assert top[0] > 150 and top[2] < 100  # the left (red) half is now on top
    assert bottom[2] > 150 and bottom[0] < 100


@pytest.mark.parametrize("size", [(4000, 3000), (1000, 3000), (200, 100)])
def test_thumbnails_are_bounded(patient: Session, size: tuple[int, int]) -> None:
    [saved] = store(patient, PhotoIn("big.jpg", jpeg_bytes(scene(size)), "legs"))
    [meta] = list_photos(patient, MRN)
    assert meta.thumbnail is not None
    with Image.open(io.BytesIO(meta.thumbnail)) as th:
        assert max(th.size) <= photos.THUMBNAIL_MAX_PX
        assert th.size == (meta.thumb_width, meta.thumb_height)
        # Aspect ratio kept (within a pixel of rounding).
        assert abs(th.size[0] / th.size[1] - size[0] / size[1]) < 0.05
        if max(size) <= photos.THUMBNAIL_MAX_PX:
            assert th.size == size  # never enlarged
    assert len(meta.thumbnail) < saved.size_bytes or max(size) <= photos.THUMBNAIL_MAX_PX


def test_icc_profile_is_converted_not_copied(patient: Session) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    [saved] = store(patient, PhotoIn("icc.jpg", jpeg_bytes(scene(), icc_profile=icc), "face"))
    with Image.open(io.BytesIO(stored_bytes(patient, saved.id))) as im:
        assert "icc_profile" not in im.info


# --- dates ----------------------------------------------------------------------------------------


def test_date_taken_exif_then_entered_then_today(patient: Session) -> None:
    a, b, c = store(
        patient,
        PhotoIn("a.jpg", jpeg_bytes(scene(seed=1), exif_with_gps(taken="2026:10:05 10:00:00")), "face", taken_on=dt.date(2026, 11, 1)),
        PhotoIn("b.jpg", jpeg_bytes(scene(seed=2)), "face", taken_on=dt.date(2026, 11, 1)),
        PhotoIn("c.jpg", jpeg_bytes(scene(seed=3)), "face"),
    )
    assert (a.taken_on, a.date_source) == (dt.date(2026, 10, 5), "exif")
    assert (b.taken_on, b.date_source) == (dt.date(2026, 11, 1), "entered")
    assert (c.taken_on, c.date_source) == (TODAY, "upload day")
    # Each origin has its own words for the clinician; none repeats the stored code.
    words = [date_source_words(p.date_source) for p in (a, b, c)]
    assert words == [
        "date from the photograph's EXIF (the camera's date taken)",
        "date taken as entered",
        "no date in the file or entered: the day of upload",
    ]


def test_a_date_after_today_is_refused(patient: Session) -> None:
    problems = refused(patient, PhotoIn("later.jpg", jpeg_bytes(scene()), "face", taken_on=TODAY + dt.timedelta(days=1)))
    assert problems == [
        "later.jpg: column taken_on: value '2026-11-21': the date taken 2026-11-21 is after today (2026-11-20)"
    ]
    problems = refused(patient, PhotoIn("clock.jpg", jpeg_bytes(scene(), exif_with_gps(taken="2027:01:01 00:00:00")), "face"))
    assert "clock.jpg" in problems[0] and "camera's EXIF date taken 2027-01-01 is after today" in problems[0]
    assert count(patient, Photo) == 0


# --- refusals -------------------------------------------------------------------------------------


def test_a_pdf_renamed_jpg_is_refused(patient: Session) -> None:
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"
    assert refused(patient, PhotoIn("scan.jpg", pdf, "face")) == [
        "scan.jpg: not a photograph: the file is a PDF document, whatever its extension"
    ]
    assert refused(patient, PhotoIn("notes.png", b"just some text\n" * 10, "face"))[0].startswith(
        "notes.png: not a photograph: the content is not a JPEG, PNG"
    )
    assert count(patient, Photo) == 0 and count(patient, PhotoImage) == 0


def test_over_the_size_limit_is_refused(patient: Session) -> None:
    data = jpeg_bytes(scene((400, 300)))
    limits = PhotoLimits(max_bytes=len(data) - 1)
    [problem] = refused(patient, PhotoIn("huge.jpg", data, "face"), limits=limits)
    assert problem.startswith("huge.jpg: ") and "over the size limit" in problem
    big = PhotoIn("big.jpg", b"\xff" * (26 * 1024 * 1024), "face")
    assert refused(patient, big) == ["big.jpg: 26 MB is over the size limit of 25 MB for a photograph"]
    assert PhotoLimits().max_bytes == 25 * 1024 * 1024


def test_size_limit_is_configurable_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRESS_PHOTO_MAX_MB", "2.5")
    assert PhotoLimits.from_env().max_bytes == int(2.5 * 1024 * 1024)
    assert PhotoLimits.from_env(10).max_bytes == 10 * 1024 * 1024
    with pytest.raises(ValueError):
        PhotoLimits.from_env(0)


def test_decompression_bombs_are_refused(patient: Session) -> None:
    # Header claims 100 000 x 100 000 pixels: refused before any pixel is decoded.
    [problem] = refused(patient, PhotoIn("bomb.png", png_header_only(100_000, 100_000), "face"))
    assert problem.startswith("bomb.png: refused as a decompression bomb")
    # Just over Pillow's warning threshold (a warning, not an error, in Pillow itself): refused too.
    side = int(photos.DEFAULT_MAX_PIXELS**0.5) + 1
    with pytest.warns(Image.DecompressionBombWarning):
        [problem] = refused(patient, PhotoIn("bomb2.png", png_header_only(side, side), "face"))
    assert "decompression bomb" in problem
    # The pixel limit is configurable.
    [problem] = refused(patient, PhotoIn("small.png", png_bytes(scene((50, 50))), "face"), limits=PhotoLimits(max_pixels=2499))
    assert "50 x 50 = 2,500 pixels is over the limit of 2,499" in problem
    assert count(patient, Photo) == 0


def test_corrupt_and_truncated_files_are_refused(patient: Session) -> None:
    jpeg = jpeg_bytes(scene((300, 200)))
    png = png_bytes(scene((300, 200), seed=5))
    problems = refused(
        patient,
        PhotoIn("cut.jpg", jpeg[: len(jpeg) // 2], "face"),
        PhotoIn("cut.png", png[: len(png) // 2], "face"),
        PhotoIn("garbled.png", png[:40] + b"\x00" * 200, "face"),
    )
    assert len(problems) == 3
    assert problems[0].startswith("cut.jpg: corrupt")
    assert problems[1].startswith("cut.png: corrupt")
    assert problems[2].startswith("garbled.png: ")
    assert count(patient, Photo) == 0


def test_animation_is_refused(patient: Session) -> None:
    buf = io.BytesIO()
    scene(seed=1).save(buf, "PNG", save_all=True, append_images=[scene(seed=2)])
    [problem] = refused(patient, PhotoIn("anim.png", buf.getvalue(), "face"))
    assert "animation or multi-page image (2 frames)" in problem


def test_body_site_and_bsa_are_checked(patient: Session) -> None:
    problems = refused(
        patient,
        PhotoIn("a.jpg", jpeg_bytes(scene(seed=1)), "elbow"),
        PhotoIn("b.jpg", jpeg_bytes(scene(seed=2)), "face", bsa_pct=130),
        PhotoIn("c.jpg", jpeg_bytes(scene(seed=3)), "face", bsa_pct=-1),
    )
    assert problems[0].startswith("a.jpg: column body_site: value 'elbow': not a body site of the list: face, neck")
    assert problems[1].startswith("b.jpg: column bsa_pct: value '130': BSA % must be 0 to 100")
    assert problems[2].startswith("c.jpg: column bsa_pct: value '-1': BSA % must be 0 to 100")


def test_unknown_patient_is_refused(session: Session) -> None:
    with pytest.raises(LookupError):
        store_photos(session, "NOPE", [PhotoIn("a.jpg", jpeg_bytes(scene()), "face")], username="x", today=TODAY)


def test_many_files_are_all_or_nothing_with_every_problem_named(patient: Session) -> None:
    good = PhotoIn("good.jpg", jpeg_bytes(scene(seed=1)), "face", bsa_pct=20)
    problems = refused(
        patient,
        good,
        PhotoIn("scan.jpg", b"%PDF-1.7 nothing", "face"),
        PhotoIn("empty.jpg", b"", "face"),
    )
    assert [p.split(":")[0] for p in problems] == ["scan.jpg", "empty.jpg"]
    assert count(patient, Photo) == 0 and count(patient, PhotoImage) == 0 and count(patient, LabResult) == 0


# --- duplicates -----------------------------------------------------------------------------------


def test_the_same_pixels_again_are_reported_as_a_duplicate(patient: Session) -> None:
    im = scene((90, 60), seed=7)
    [first] = store(patient, PhotoIn("day1.png", png_bytes(im), "hands", taken_on=dt.date(2026, 11, 1)))
    patient.commit()
    # Same pixels, different file: other compression, other metadata, other name and format.
    again = png_bytes(im, compress_level=1)
    assert again != png_bytes(im)
    as_tiff = io.BytesIO()
    im.save(as_tiff, "TIFF")
    [p1] = refused(patient, PhotoIn("copy.png", again, "hands"))
    assert p1 == f"copy.png: duplicate: the same pixels as photograph #{first.id} (hands, 2026-11-01) already stored for patient {MRN}"
    [p2] = refused(patient, PhotoIn("copy.tif", as_tiff.getvalue(), "face"))
    assert "duplicate" in p2
    # The stored image itself, downloaded and sent back (PNG is lossless): still a duplicate.
    [p3] = refused(patient, PhotoIn("roundtrip.png", stored_bytes(patient, first.id), "hands"))
    assert "duplicate" in p3
    # Within one upload.
    other = png_bytes(scene((90, 60), seed=8))
    problems = refused(patient, PhotoIn("x.png", other, "face"), PhotoIn("y.png", other, "face"))
    assert problems == ["y.png: duplicate: the same pixels as x.png in this upload"]
    assert count(patient, Photo) == 1


def test_a_duplicate_of_a_hidden_photograph_says_so(patient: Session) -> None:
    data = jpeg_bytes(scene(seed=11))
    [first] = store(patient, PhotoIn("a.jpg", data, "feet"))
    hide_photo(patient, first.id, reason="wrong patient", username="dr.test")
    [problem] = refused(patient, PhotoIn("a-again.jpg", data, "feet"))
    assert "hidden" in problem and "duplicate" in problem


def test_the_same_photograph_may_belong_to_two_patients(patient: Session) -> None:
    add_patient(patient, "PH-002")
    data = jpeg_bytes(scene(seed=12))
    store(patient, PhotoIn("a.jpg", data, "face"))
    store_photos(patient, "PH-002", [PhotoIn("a.jpg", data, "face")], username="x", today=TODAY)
    assert count(patient, Photo) == 2


# --- BSA % as an observation -------------------------------------------------------------------------


def test_bsa_entered_with_a_photograph_is_a_bsa_observation(patient: Session) -> None:
    [a, b] = store(
        patient,
        PhotoIn("a.jpg", jpeg_bytes(scene(seed=1), exif_with_gps(taken="2026:11:02 08:15:00")), "chest", bsa_pct=35),
        PhotoIn("b.jpg", jpeg_bytes(scene(seed=2)), "back", taken_on=dt.date(2026, 11, 3)),  # no BSA given
    )
    labs = patient.execute(select(LabResult).where(LabResult.test == "bsa_pct")).scalars().all()
    assert len(labs) == 1
    lab = labs[0]
    assert (lab.value, lab.unit, lab.source, lab.source_id) == (35.0, "%", "photo", f"photo/{a.id}")
    assert lab.taken_at == dt.datetime(2026, 11, 2, 8, 15)  # the camera's time when it has one
    assert lab.entered_by == "dr.test"
    [c] = store(patient, PhotoIn("c.jpg", jpeg_bytes(scene(seed=3)), "legs", bsa_pct=41.5, taken_on=dt.date(2026, 11, 4)))
    lab_c = patient.execute(select(LabResult).where(LabResult.source_id == f"photo/{c.id}")).scalar_one()
    assert lab_c.taken_at == dt.datetime(2026, 11, 4, 0, 0) and lab_c.value == 41.5


def test_rules_see_the_bsa_of_a_photograph(patient: Session) -> None:
    """ICU_CRITERIA holds when the latest BSA % > 30 (PRODUCT.md §5): the photo's BSA counts."""
    from monitoring import records, rules
    [saved] = store(patient, PhotoIn("a.jpg", jpeg_bytes(scene(seed=1)), "chest", bsa_pct=45, taken_on=dt.date(2026, 11, 2)))
    patient.commit()
    record = records.load_record(patient, MRN)
    codes = {a.code for a in rules.evaluate(record, TODAY)}
    assert "ICU_CRITERIA" in codes
    assert not {a.code for a in rules.evaluate(record, dt.date(2026, 11, 1))} & {"ICU_CRITERIA"}
    # Hidden with its photograph (e.g. wrong patient), the BSA no longer counts.
    hide_photo(patient, saved.id, reason="wrong patient", username="dr.test")
    patient.commit()
    assert "ICU_CRITERIA" not in {a.code for a in rules.evaluate(records.load_record(patient, MRN), TODAY)}


# --- gallery reads thumbnails only ---------------------------------------------------------------------


def test_gallery_query_never_selects_the_full_size_image(patient: Session, engine: Engine) -> None:
    store(
        patient,
        PhotoIn("a.jpg", jpeg_bytes(scene((800, 600), seed=1)), "face", taken_on=dt.date(2026, 11, 1)),
        PhotoIn("b.jpg", jpeg_bytes(scene((800, 600), seed=2)), "face", taken_on=dt.date(2026, 11, 5)),
        PhotoIn("c.jpg", jpeg_bytes(scene((800, 600), seed=3)), "chest", taken_on=dt.date(2026, 11, 5)),
    )
    patient.commit()
    statements: list[str] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement.lower())

    event.listen(engine, "before_cursor_execute", capture)
    try:
        gallery = list_photos(patient, MRN)
        by_site = list_photos(patient, MRN, body_site="face")
        by_day = list_photos(patient, MRN, taken_on=dt.date(2026, 11, 5))
        gallery_statements = list(statements)
        load_image(patient, gallery[0].id)  # the positive control: this one does read it
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert [p.taken_on for p in gallery] == [dt.date(2026, 11, 1), dt.date(2026, 11, 5), dt.date(2026, 11, 5)]
    assert [p.body_site for p in by_site] == ["face", "face"]
    assert {p.body_site for p in by_day} == {"face", "chest"}
    assert all(p.thumbnail for p in gallery)
    assert gallery_statements and not any("photo_image" in s for s in gallery_statements)
    assert not any("data" in s.split(" from ")[0] for s in gallery_statements)
    assert any("photo_image" in s and "photo_image.data" in s for s in statements[len(gallery_statements) :])


# --- no delete path: hide with a reason, audited -----------------------------------------------------------


def test_photographs_are_hidden_with_a_reason_never_deleted(patient: Session) -> None:
    assert not [name for name in dir(photos) if "delete" in name.lower() or "remove" in name.lower()]
    [a, b] = store(
        patient,
        PhotoIn("a.jpg", jpeg_bytes(scene(seed=1)), "face", bsa_pct=40, taken_on=dt.date(2026, 11, 1)),
        PhotoIn("b.jpg", jpeg_bytes(scene(seed=2)), "face", taken_on=dt.date(2026, 11, 2)),
    )
    with pytest.raises(ValueError, match="reason is required"):
        hide_photo(patient, a.id, reason="  ", username="dr.test")
    hide_photo(patient, a.id, reason="wrong patient", username="dr.test")
    assert [p.id for p in list_photos(patient, MRN)] == [b.id]
    [hidden, _] = list_photos(patient, MRN, include_hidden=True)
    assert hidden.hidden and hidden.hidden_reason == "wrong patient"
    # Still stored, full size included.
    assert stored_bytes(patient, a.id)
    # The BSA entered with it no longer counts.
    lab = patient.execute(select(LabResult).where(LabResult.source_id == f"photo/{a.id}")).scalar_one()
    assert lab.hidden and "wrong patient" in (lab.hidden_reason or "")
    audit = patient.execute(select(AuditEntry).where(AuditEntry.entity == "photo", AuditEntry.action == "hide")).scalar_one()
    assert (audit.entity_id, audit.reason, audit.username) == (str(a.id), "wrong patient", "dr.test")
    assert audit.before == {"hidden": False, "hidden_reason": None}
    restore_photo(patient, a.id, reason="was the right patient after all", username="dr.other")
    assert len(list_photos(patient, MRN)) == 2
    assert not patient.execute(select(LabResult.hidden).where(LabResult.source_id == f"photo/{a.id}")).scalar_one()
    actions = patient.execute(select(AuditEntry.action, AuditEntry.entity).where(AuditEntry.entity.in_(["photo", "lab_result"]))).all()
    assert sorted(actions) == sorted(
        [("create", "photo"), ("create", "photo"), ("hide", "photo"), ("hide", "lab_result"), ("restore", "photo"), ("restore", "lab_result")]
    )
    with pytest.raises(LookupError):
        hide_photo(patient, 99_999, reason="x", username="x")


def test_every_upload_is_audited(patient: Session) -> None:
    [a] = store(patient, PhotoIn("IMG_0001.jpg", jpeg_bytes(scene(), exif_with_gps(taken="2026:11:02 08:15:00")), "neck", bsa_pct=5))
    entry = patient.execute(select(AuditEntry).where(AuditEntry.entity == "photo")).scalar_one()
    assert entry.action == "create" and entry.username == "dr.test" and entry.entity_id == str(a.id)
    assert entry.after is not None
    assert entry.after["filename"] == "IMG_0001.jpg" and entry.after["date_source"] == "exif"
    assert entry.after["exif_taken_at"] == "2026-11-02T08:15:00"
    # The BSA observation went through the shared write path, which audits its batch.
    imports = patient.execute(select(AuditEntry.after).where(AuditEntry.action == "import")).scalars().all()
    assert [a["source"] for a in imports if a] == ["import", "photo"]


# --- photo context (compare view) ------------------------------------------------------------------------


def test_photo_context_gives_day_since_onset_and_course_day(patient: Session) -> None:
    from monitoring import records
    from monitoring.store import MedIn

    write_batch(
        patient,
        meds=[
            MedIn(MRN, "prednisone", "prednisone", dt.date(2026, 10, 3), 70, "70", "mg"),
            MedIn(MRN, "prednisone", "prednisone", dt.date(2026, 10, 20), 50, "50", "mg"),
        ],
        username="t",
    )
    patient.commit()
    record = records.load_record(patient, MRN)
    ctx = photos.photo_context(record, dt.date(2026, 10, 23))
    assert ctx.day_since_onset == 22
    assert ctx.course_start == dt.date(2026, 10, 3) and ctx.day_of_course == 20
    assert ctx.pred_eq_mg == 50
    assert ctx.mg_per_kg == pytest.approx(50 / 70)
    before = photos.photo_context(record, dt.date(2026, 10, 2))
    assert before.day_since_onset == 1 and not before.pred_eq_mg


# --- command line -------------------------------------------------------------------------------------------


@pytest.fixture
def cli_db(db_path: Path) -> str:
    eng = create_db_engine(f"sqlite:///{db_path}")
    with session_scope(eng) as s:
        add_patient(s)
    eng.dispose()
    return str(db_path)


def test_cli_import_and_json_listing(cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = tmp_path / "IMG_1.jpg"
    a.write_bytes(jpeg_bytes(scene(seed=1), exif_with_gps(taken="2026:11:02 08:15:00")))
    b = tmp_path / "IMG_2.png"
    b.write_bytes(png_bytes(scene(seed=2)))
    rc = main(["--db", cli_db, "photos", "import", "--mrn", MRN, "--site", "chest", "--bsa", "22", "--date", "2026-11-03", str(a), str(b)])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "2 photograph(s) stored" in out.out
    # Where each date came from, in words (issue 18 point 12), not the stored code.
    assert "IMG_1.jpg (chest, taken 2026-11-02, date from the photograph's EXIF (the camera's date taken)," in out.out
    assert "IMG_2.png (chest, taken 2026-11-03, date taken as entered," in out.out
    rc = main(["--db", cli_db, "photos", "--mrn", MRN, "--json"])
    listing = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [(p["taken_on"], p["body_site"], p["bsa_pct"], p["content_type"]) for p in listing] == [
        ("2026-11-02", "chest", 22.0, "image/jpeg"),
        ("2026-11-03", "chest", 22.0, "image/png"),
    ]
    assert {"id", "width", "height", "size_bytes", "pixel_sha256", "uploaded_by", "hidden", "note"} <= set(listing[0])
    assert "thumbnail" not in listing[0]
    # Hide through the CLI, then the default listing leaves it out.
    assert main(["--db", cli_db, "photos", "hide", "--id", str(listing[0]["id"]), "--reason", "blurred"]) == 0
    capsys.readouterr()
    main(["--db", cli_db, "photos", "--mrn", MRN, "--json"])
    assert len(json.loads(capsys.readouterr().out)) == 1
    main(["--db", cli_db, "photos", "--mrn", MRN, "--json", "--include-hidden"])
    assert [p["hidden_reason"] for p in json.loads(capsys.readouterr().out)] == ["blurred", None]


def test_cli_refusals_exit_2_with_each_problem_on_its_own_line(cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes(scene(seed=1)))
    pdf = tmp_path / "scan.jpg"
    pdf.write_bytes(b"%PDF-1.5\n%%EOF\n")
    big = tmp_path / "big.jpg"
    big.write_bytes(jpeg_bytes(scene((600, 400), seed=2)))
    missing = tmp_path / "missing.jpg"
    rc = main(["--db", cli_db, "photos", "import", "--mrn", MRN, "--site", "face", "--max-mb", "0.001", str(good), str(pdf), str(big), str(missing)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2
    assert any(line.startswith(f"{big}: ") and "over the size limit of 1 kB for a photograph" in line for line in err)
    assert any(line.startswith(f"{missing}: cannot read the file") for line in err)
    rc = main(["--db", cli_db, "photos", "import", "--mrn", MRN, "--site", "face", str(good), str(pdf)])
    err = capsys.readouterr().err.splitlines()
    assert rc == 2
    assert err == [f"{pdf}: not a photograph: the file is a PDF document, whatever its extension", "nothing stored: 1 problem(s)"]
    # Nothing stored: the good file was not kept either.
    main(["--db", cli_db, "photos", "--mrn", MRN, "--json"])
    assert json.loads(capsys.readouterr().out) == []
    assert main(["--db", cli_db, "photos", "import", "--mrn", "NOPE", "--site", "face", str(good)]) == 2
    assert "unknown MRN" in capsys.readouterr().err
    assert main(["--db", cli_db, "photos", "import", "--mrn", MRN, "--site", "elbow", str(good)]) == 2
    assert "column body_site: value 'elbow'" in capsys.readouterr().err
    assert main(["--db", cli_db, "photos", "--json"]) == 2
    assert main(["--db", cli_db, "photos", "hide", "--id", "12345", "--reason", "x"]) == 2


# --- pixel formats ----------------------------------------------------------------------------------------


def _encoded(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "content_type", "mode", "pixel"),
    [
        # 16-bit greyscale is scaled to 8 bits, not clipped to white.
        ("grey16.png", lambda: _encoded(Image.new("I;16", (40, 30), 30000), "PNG"), "image/png", "L", 117),
        ("grey16.tif", lambda: _encoded(Image.new("I;16", (40, 30), 30000), "TIFF"), "image/jpeg", "L", 117),
        # Transparency is kept in PNG.
        ("alpha.png", lambda: _encoded(Image.new("RGBA", (40, 30), (255, 0, 0, 128)), "PNG"), "image/png", "RGBA", (255, 0, 0, 128)),
        # CMYK (print workflows) and phone MPO files are photographs too.
        ("cmyk.jpg", lambda: _encoded(Image.new("CMYK", (40, 30), (0, 0, 0, 0)), "JPEG"), "image/jpeg", "RGB", None),
        ("phone.jpg", lambda: _encoded(Image.new("RGB", (40, 30), (200, 100, 50)), "MPO", save_all=True,
                                       append_images=[Image.new("RGB", (40, 30))]), "image/jpeg", "RGB", None),
        ("web.webp", lambda: _encoded(Image.new("RGB", (40, 30), (200, 100, 50)), "WEBP"), "image/jpeg", "RGB", None),
    ],
)
def test_pixel_formats_are_stored_faithfully(name: str, make, content_type: str, mode: str, pixel: object) -> None:  # type: ignore[no-untyped-def]
    prepared = photos.prepare_photo(PhotoIn(name, make(), "face"), today=TODAY)
    assert prepared.content_type == content_type
    with Image.open(io.BytesIO(prepared.image)) as im:
        assert im.mode == mode and im.size == (40, 30)
        if pixel is not None:
            assert im.getpixel((5, 5)) == pixel


def test_gif_and_floating_point_images_are_refused() -> None:
    with pytest.raises(photos.PhotoError, match="a GIF image is not accepted"):
        photos.prepare_photo(PhotoIn("a.gif", _encoded(Image.new("RGB", (10, 10)), "GIF"), "face"), today=TODAY)
    with pytest.raises(photos.PhotoError, match="floating-point pixels"):
        photos.prepare_photo(PhotoIn("m.tif", _encoded(Image.new("F", (10, 10), 0.5), "TIFF"), "face"), today=TODAY)


def test_an_unset_camera_clock_is_not_a_date() -> None:
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "0000:00:00 00:00:00"
    prepared = photos.prepare_photo(PhotoIn("a.jpg", jpeg_bytes(scene(), exif), "face", taken_on=dt.date(2026, 11, 3)), today=TODAY)
    assert (prepared.taken_on, prepared.date_source) == (dt.date(2026, 11, 3), "entered")


@settings(max_examples=16, deadline=None)
@given(orientation=st.integers(min_value=1, max_value=8), w=st.integers(min_value=2, max_value=40), h=st.integers(min_value=2, max_value=40))
def test_every_exif_orientation_gives_an_upright_image_and_the_same_hash_as_the_upright_original(orientation: int, w: int, h: int) -> None:
    """Storing a PNG with an EXIF orientation gives the same pixels (and pixel hash) as storing the
    already-upright image: the duplicate check sees through orientation."""
    from PIL import ImageOps

    raw = Image.frombytes("RGB", (w, h), bytes((i * 37) % 251 for i in range(w * h * 3)))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    tagged = _encoded(raw, "PNG", exif=exif)
    with Image.open(io.BytesIO(tagged)) as im:
        upright = ImageOps.exif_transpose(im)
        assert upright is not None
        upright_png = _encoded(upright.convert("RGB"), "PNG")
    a = photos.prepare_photo(PhotoIn("tagged.png", tagged, "face"), today=TODAY)
    b = photos.prepare_photo(PhotoIn("upright.png", upright_png, "face"), today=TODAY)
    assert a.pixel_sha256 == b.pixel_sha256
    assert (a.width, a.height) == ((h, w) if orientation >= 5 else (w, h))
    with Image.open(io.BytesIO(a.image)) as stored:
        assert stored.getexif().get(ExifTags.Base.Orientation) is None


# --- accounts (the dashboard's path) --------------------------------------------------------------------------


def test_the_dashboard_path_refuses_accounts_that_may_not_write(patient: Session) -> None:
    from monitoring.auth import PermissionDenied
    from monitoring.models import User

    patient.add(User(username="reader", role="viewer"))
    patient.add(User(username="writer", role="clinician"))
    patient.commit()
    item = PhotoIn("a.jpg", jpeg_bytes(scene(seed=41)), "face")
    for who in ("reader", "nobody", ""):
        with pytest.raises(PermissionDenied):
            store_photos(patient, MRN, [item], username=who, today=TODAY, check_account=True)
        patient.rollback()
    assert count(patient, Photo) == 0
    # The refusals are audited in their own transaction (they outlive the rollback).
    refused_by = patient.execute(select(AuditEntry.username).where(AuditEntry.entity == "photo")).scalars().all()
    assert {"reader", "nobody"} <= set(refused_by)
    [saved] = store_photos(patient, MRN, [item], username="writer", today=TODAY, check_account=True)
    patient.commit()
    with pytest.raises(PermissionDenied):
        hide_photo(patient, saved.id, reason="x", username="reader", check_account=True)
    patient.rollback()
    hide_photo(patient, saved.id, reason="blurred", username="writer", check_account=True)
    assert list_photos(patient, MRN) == []


def _seed(fmt: str) -> bytes:
    buf = io.BytesIO()
    scene((48, 32), seed=50).save(buf, fmt)
    return buf.getvalue()


_SEEDS = {fmt: _seed(fmt) for fmt in ("JPEG", "PNG", "WEBP", "TIFF", "BMP")}


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(sorted(_SEEDS)),
    cuts=st.lists(st.tuples(st.integers(min_value=0, max_value=4000), st.binary(min_size=1, max_size=6)), min_size=1, max_size=4),
    truncate=st.one_of(st.none(), st.integers(min_value=1, max_value=4000)),
)
@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's TIFF reader warns about the damage it skips
def test_a_damaged_file_is_stored_or_refused_with_its_name_never_a_crash(kind: str, cuts: list[tuple[int, bytes]], truncate: int | None) -> None:
    data = bytearray(_SEEDS[kind])
    for offset, patch in cuts:
        at = offset % len(data)
        data[at : at + len(patch)] = patch
    if truncate is not None:
        data = data[: max(1, truncate % len(data))]
    try:
        prepared = photos.prepare_photo(PhotoIn("damaged.img", bytes(data), "face"), today=TODAY)
    except photos.PhotoError as exc:
        assert str(exc).startswith("damaged.img: ")
    else:
        with Image.open(io.BytesIO(prepared.image)) as im:
            im.load()
