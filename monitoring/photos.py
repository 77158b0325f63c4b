"""Clinical photographs: validation, safe re-encoding, storage, gallery queries, hiding.

Serial photography of the skin tracks the rash through the course (issue 6; PRODUCT.md §3, §7
"Photos", §8 "photographs stripped of EXIF/GPS", "the photo gallery never loads full-size images").

What is stored, and why:

- The image is **re-encoded from its pixels**: orientation applied first (a phone photograph held
  sideways is stored upright), colours converted to sRGB when the file carries an ICC profile, then
  a brand-new image is built from the pixel bytes alone and saved with no metadata at all. No
  EXIF, GPS, XMP, comment or text chunk can survive, because none is ever copied.
- **JPEG stays JPEG** (quality 90, 4:4:4 chroma: erythema is a colour signal, so colour is not
  subsampled); **PNG stays PNG** (lossless in, lossless out: dermoscopy exports and screenshots are
  not degraded). WebP, TIFF and BMP are stored as JPEG.
- A **thumbnail** (JPEG, at most ``THUMBNAIL_MAX_PX`` on its longer side) is stored beside the
  metadata in ``photo``; the full-size bytes live in ``photo_image``, which the gallery query
  never reads.
- The **date taken** is EXIF DateTimeOriginal, read before stripping, when present; else the date
  entered; else today. A date after today is refused.
- ``pixel_sha256`` hashes the decoded, orientation-applied, normalised pixels (mode, size, bytes):
  the same photograph sent again, even re-encoded losslessly or with other metadata, is reported as
  a duplicate.
- BSA % entered with a photograph is also written as a ``bsa_pct`` observation through the shared
  write path (``monitoring.store.write_batch``), so ICU_CRITERIA and RegiSCAR see it.
- Photographs are clinical records: there is no delete path. A photograph is hidden with a reason
  (and may be restored); every write appends an ``AuditEntry``.

Several files in one call are **all-or-nothing**, like ``import`` (PRODUCT.md §6): every problem
with every file is reported and, if there is any, nothing is stored.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import ExifTags, Image, ImageCms, ImageOps, UnidentifiedImageError
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from monitoring import audit
from monitoring.catalogue import BoundsError, check_bounds, lookup
from monitoring.db import table_of
from monitoring.intake import FieldError, free_text, text_limit
from monitoring.models import LabResult, Patient, Photo, PhotoImage, utcnow
from monitoring.store import BatchRejected, LabIn, Problem, touch_patient, write_batch

if TYPE_CHECKING:
    from monitoring.records import PatientRecord

BODY_SITES: tuple[str, ...] = (
    "face",
    "neck",
    "chest",
    "abdomen",
    "back",
    "arms",
    "hands",
    "legs",
    "feet",
    "mucosa",
    "other",
)
THUMBNAIL_MAX_PX = 320
THUMBNAIL_QUALITY = 80
JPEG_QUALITY = 90
MEGABYTE = 1024 * 1024
DEFAULT_MAX_MB = 25.0
# Pillow's own decompression-bomb limit (about 89 megapixels): far above any clinical camera.
DEFAULT_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
# Formats Pillow identifies that are photographs; MPO is how Pillow names many phone JPEGs.
ACCEPTED_FORMATS: dict[str, str] = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "WEBP": "JPEG",
    "TIFF": "JPEG",
    "BMP": "JPEG",
}
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
PHOTO_SOURCE = "photo"  # LabResult.source of the bsa_pct observations written with a photograph

# Well-known signatures of files that are often mistaken for photographs, to name them plainly.
_NOT_IMAGE_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"%PDF", 0, "a PDF document"),
    (b"PK\x03\x04", 0, "a ZIP archive or Office document"),
    (b"ftypheic", 4, "a HEIC image (export it as JPEG first)"),
    (b"ftypheix", 4, "a HEIC image (export it as JPEG first)"),
    (b"ftypmif1", 4, "a HEIF image (export it as JPEG first)"),
    (b"ftypisom", 4, "a video"),
    (b"ftypqt", 4, "a video"),
)


@dataclass(frozen=True)
class PhotoLimits:
    """Refusal limits; the size limit is configurable (env DRESS_PHOTO_MAX_MB, default 25 MB)."""

    max_bytes: int = int(DEFAULT_MAX_MB * MEGABYTE)
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def from_env(cls, max_mb: float | None = None) -> PhotoLimits:
        """Limits from the argument, else DRESS_PHOTO_MAX_MB / DRESS_PHOTO_MAX_PIXELS, else defaults."""
        if max_mb is None:
            raw = os.environ.get("DRESS_PHOTO_MAX_MB")
            max_mb = float(raw) if raw else DEFAULT_MAX_MB
        if not max_mb > 0:
            raise ValueError(f"photo size limit must be positive, got {max_mb} MB")
        raw_px = os.environ.get("DRESS_PHOTO_MAX_PIXELS")
        return cls(max_bytes=int(max_mb * MEGABYTE), max_pixels=int(raw_px) if raw_px else DEFAULT_MAX_PIXELS)


@dataclass(frozen=True)
class PhotoIn:
    """A photograph as received, with what the clinician entered for it."""

    filename: str
    data: bytes
    body_site: str
    bsa_pct: float | None = None
    taken_on: dt.date | None = None  # entered date; EXIF DateTimeOriginal wins when present
    note: str | None = None


@dataclass(frozen=True)
class PreparedPhoto:
    """A photograph that passed every check, re-encoded and ready to store."""

    filename: str
    image: bytes
    content_type: str
    width: int
    height: int
    thumbnail: bytes
    thumb_width: int
    thumb_height: int
    pixel_sha256: str
    taken_on: dt.date
    taken_at: dt.datetime | None  # EXIF DateTimeOriginal, as recorded by the camera
    date_source: str  # "exif", "entered" or "upload day"
    body_site: str
    bsa_pct: float | None
    note: str | None
    received_bytes: int
    received_format: str


# How a photograph's date was found, in the words a clinician reads (the stored value stays the code).
DATE_SOURCE_WORDS = {
    "exif": "date from the photograph's EXIF (the camera's date taken)",
    "entered": "date taken as entered",
    "upload day": "no date in the file or entered: the day of upload",
}


def date_source_words(date_source: str) -> str:
    """The clinician's words for a stored date_source ("exif", "entered", "upload day")."""
    return DATE_SOURCE_WORDS.get(date_source, f"date source {date_source!r}")


@dataclass(frozen=True)
class StoredPhoto:
    id: int
    filename: str
    taken_on: dt.date
    date_source: str
    body_site: str
    bsa_pct: float | None
    width: int
    height: int
    size_bytes: int
    content_type: str


@dataclass(frozen=True)
class PhotoMeta:
    """One gallery entry: metadata and (optionally) the thumbnail, never the full-size image."""

    id: int
    taken_on: dt.date
    body_site: str
    bsa_pct: float | None
    note: str | None
    width: int
    height: int
    content_type: str
    size_bytes: int
    pixel_sha256: str
    uploaded_by: str | None
    uploaded_at: dt.datetime
    hidden: bool
    hidden_reason: str | None
    thumbnail: bytes | None = None
    thumb_width: int = 0
    thumb_height: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready metadata (the thumbnail bytes are left out)."""
        return {
            "id": self.id,
            "taken_on": self.taken_on.isoformat(),
            "body_site": self.body_site,
            "bsa_pct": self.bsa_pct,
            "note": self.note,
            "width": self.width,
            "height": self.height,
            "content_type": self.content_type,
            "size_bytes": self.size_bytes,
            "pixel_sha256": self.pixel_sha256,
            "uploaded_by": self.uploaded_by,
            "uploaded_at": self.uploaded_at.isoformat(timespec="seconds"),
            "hidden": self.hidden,
            "hidden_reason": self.hidden_reason,
        }


class PhotoError(ValueError):
    """One photograph refused; ``problem`` names the file and the reason."""

    def __init__(self, problem: Problem):
        self.problem = problem
        super().__init__(str(problem))


# --------------------------------------------------------------------------------------------
# Validation and re-encoding (no database)
# --------------------------------------------------------------------------------------------


def _refuse(filename: str, reason: str, column: str | None = None, value: Any = None) -> PhotoError:
    return PhotoError(Problem(filename, column, value, reason))


def _describe_not_image(data: bytes) -> str:
    for signature, offset, what in _NOT_IMAGE_SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return f"not a photograph: the file is {what}, whatever its extension"
    return "not a photograph: the content is not a JPEG, PNG, WebP, TIFF or BMP image, whatever its extension"


def _exif_taken_at(im: Image.Image) -> dt.datetime | None:
    """EXIF DateTimeOriginal ("YYYY:MM:DD HH:MM:SS"), read before the metadata is dropped."""
    try:
        exif = im.getexif()
        raw = exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.DateTimeOriginal)
    except Exception:  # noqa: BLE001 - unreadable EXIF is treated as absent, never as a date
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace")
    if not isinstance(raw, str):
        return None
    text = raw.strip().strip("\x00")
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M"):
        try:
            return dt.datetime.strptime(text[:19] if fmt.endswith("%S") else text[:16], fmt)
        except ValueError:
            continue
    return None  # e.g. "0000:00:00 00:00:00" from a camera whose clock was never set


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)


def _to_srgb(im: Image.Image) -> Image.Image:
    """Convert pixels described by an embedded ICC profile to sRGB, so the profile can be dropped
    without changing the colours a clinician sees."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "L", "CMYK"):
        return im
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.createProfile("sRGB")
        out = ImageCms.profileToProfile(im, src, dst, outputMode="RGBA" if im.mode == "RGBA" else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im  # a broken profile: keep the pixels as they are
    return out if out is not None else im


def _to_8bit(im: Image.Image) -> Image.Image:
    """16- and 32-bit integer greyscale scaled to 8 bits (a plain conversion would clip everything
    above 255 to white); floating-point pixels are measurements, not photographs."""
    if im.mode == "F":
        raise ValueError("floating-point pixels are a measurement image, not a photograph")
    if im.mode.startswith("I;16") or im.mode == "I":
        # Read as 16-bit data (what cameras and scanners write): the top 8 bits are kept.
        return im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    return im


def _normalise_mode(im: Image.Image, out_format: str) -> Image.Image:
    """Pixels in a mode the output format stores faithfully (alpha kept in PNG, flattened on white
    for JPEG)."""
    im = _to_8bit(im)
    if out_format == "PNG":
        if im.mode in ("RGB", "RGBA", "L", "LA"):
            return im
        return im.convert("RGBA" if _has_alpha(im) else "RGB")
    if im.mode in ("RGB", "L"):
        return im
    if _has_alpha(im):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return im.convert("RGB")


def _encode(im: Image.Image, out_format: str) -> bytes:
    buf = io.BytesIO()
    if out_format == "PNG":
        im.save(buf, "PNG", optimize=False, compress_level=6)
    else:
        im.save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=0 if im.mode == "RGB" else -1)
    return buf.getvalue()


def _thumbnail(im: Image.Image) -> tuple[bytes, int, int]:
    th = _normalise_mode(im, "JPEG").copy()
    th.thumbnail((THUMBNAIL_MAX_PX, THUMBNAIL_MAX_PX), Image.Resampling.LANCZOS, reducing_gap=3.0)
    buf = io.BytesIO()
    th.save(buf, "JPEG", quality=THUMBNAIL_QUALITY)
    return buf.getvalue(), th.width, th.height


def _human_size(nbytes: int) -> str:
    if nbytes >= MEGABYTE:
        return f"{nbytes / MEGABYTE:.1f} MB".replace(".0 MB", " MB")
    return f"{max(1, round(nbytes / 1024))} kB"


def size_problem(filename: str, size: int, limits: PhotoLimits) -> Problem | None:
    """The refusal for a file of ``size`` bytes, if any: checkable before the file is read."""
    if size == 0:
        return Problem(filename, None, None, "empty file: not a photograph")
    if size > limits.max_bytes:
        return Problem(
            filename,
            None,
            None,
            f"{_human_size(size)} is over the size limit of {_human_size(limits.max_bytes)} for a photograph",
        )
    return None


def _check_entered(item: PhotoIn) -> list[Problem]:
    problems: list[Problem] = []
    if item.body_site not in BODY_SITES:
        problems.append(
            Problem(item.filename, "body_site", item.body_site, f"not a body site of the list: {', '.join(BODY_SITES)}")
        )
    if item.bsa_pct is not None:
        try:
            check_bounds(lookup("bsa_pct"), float(item.bsa_pct))
        except (BoundsError, TypeError, ValueError) as exc:
            problems.append(Problem(item.filename, "bsa_pct", item.bsa_pct, f"BSA % must be 0 to 100: {exc}"))
    try:
        free_text("note", item.note, limit=text_limit("photo", "note"))
    except FieldError as exc:
        problems.append(Problem(item.filename, exc.column, exc.value, exc.reason))
    return problems


def _decode(name: str, data: bytes, limits: PhotoLimits) -> tuple[str, Image.Image, dt.datetime | None]:
    """Open, check and decode: (format, upright pixels, EXIF date taken). Raises PhotoError."""
    try:
        im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise _refuse(name, _describe_not_image(data)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _refuse(name, "refused as a decompression bomb: too many pixels for a photograph") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise _refuse(name, f"corrupt image file: {exc}") from None
    with im:
        fmt = (im.format or "").upper()
        if fmt not in ACCEPTED_FORMATS:
            raise _refuse(name, f"a {fmt or 'unknown'} image is not accepted as a photograph (JPEG, PNG, WebP, TIFF, BMP)")
        width, height = im.size
        # Checked from the header before any pixel is decoded: a bomb never reaches memory.
        if width * height > limits.max_pixels:
            raise _refuse(
                name,
                f"refused as a decompression bomb: {width} x {height} = {width * height:,} pixels is over the limit "
                f"of {limits.max_pixels:,}",
            )
        frames = getattr(im, "n_frames", 1)
        if frames > 1 and fmt != "MPO":  # MPO's extra frames are the camera's previews
            raise _refuse(name, f"an animation or multi-page image ({frames} frames) is not a photograph")
        taken_at = _exif_taken_at(im)
        try:
            im.load()
            upright = ImageOps.exif_transpose(im)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _refuse(name, "refused as a decompression bomb: too many pixels for a photograph") from None
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise _refuse(name, f"corrupt or truncated image: {exc}") from None
        upright.info.setdefault("icc_profile", im.info.get("icc_profile"))
    return fmt, upright, taken_at


def prepare_photo(item: PhotoIn, *, today: dt.date | None = None, limits: PhotoLimits | None = None) -> PreparedPhoto:
    """Check one photograph and re-encode it without metadata. Raises PhotoError naming the file.

    Refused: an empty file, a file over the size limit, anything that is not an image whatever its
    extension, an image over the pixel limit (decompression bomb), a corrupt or truncated image,
    an animation or multi-page file, a date taken after today.
    """
    today = today or dt.date.today()
    limits = limits or PhotoLimits.from_env()
    name = item.filename
    entered = _check_entered(item)
    if entered:
        raise PhotoError(entered[0])
    size = len(item.data)
    too_big = size_problem(name, size, limits)
    if too_big is not None:
        raise PhotoError(too_big)
    try:
        fmt, upright, taken_at = _decode(name, item.data, limits)
    except PhotoError:
        raise
    except MemoryError:
        raise _refuse(name, "too large to decode in memory") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds of error on malformed files
        raise _refuse(name, f"corrupt image file: {type(exc).__name__}: {exc}") from None
    out_format = ACCEPTED_FORMATS[fmt]
    try:
        pixels = _normalise_mode(_to_srgb(upright), out_format)
        raw = pixels.tobytes()
    except (OSError, ValueError) as exc:
        raise _refuse(name, f"unsupported pixel format {upright.mode}: {exc}") from None
    digest = hashlib.sha256()
    digest.update(f"{pixels.mode}:{pixels.width}x{pixels.height}:".encode())
    digest.update(raw)
    # A brand-new image holding nothing but the pixels: no EXIF, GPS, XMP, ICC or text survives.
    clean = Image.frombytes(pixels.mode, pixels.size, raw)
    del raw
    image_bytes = _encode(clean, out_format)
    thumb, tw, th = _thumbnail(clean)

    if taken_at is not None:
        taken_on, date_source = taken_at.date(), "exif"
    elif item.taken_on is not None:
        taken_on, date_source = item.taken_on, "entered"
    else:
        taken_on, date_source = today, "upload day"
    if taken_on > today:
        where = "the camera's EXIF date taken" if date_source == "exif" else "the date taken"
        raise _refuse(name, f"{where} {taken_on.isoformat()} is after today ({today.isoformat()})", "taken_on", taken_on.isoformat())
    return PreparedPhoto(
        filename=name,
        image=image_bytes,
        content_type=CONTENT_TYPES[out_format],
        width=clean.width,
        height=clean.height,
        thumbnail=thumb,
        thumb_width=tw,
        thumb_height=th,
        pixel_sha256=digest.hexdigest(),
        taken_on=taken_on,
        taken_at=taken_at,
        date_source=date_source,
        body_site=item.body_site,
        bsa_pct=float(item.bsa_pct) if item.bsa_pct is not None else None,
        note=(item.note or "").strip() or None,
        received_bytes=size,
        received_format=fmt,
    )


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------


def _patient(session: Session, mrn: str) -> Patient:
    row = session.execute(select(Patient).where(col(Patient.mrn) == mrn)).scalar_one_or_none()
    if row is None:
        raise LookupError(f"unknown MRN {mrn!r}")
    return row


def store_photos(
    session: Session,
    mrn: str,
    items: Sequence[PhotoIn],
    *,
    username: str | None,
    today: dt.date | None = None,
    limits: PhotoLimits | None = None,
    check_account: bool = False,
) -> list[StoredPhoto]:
    """Check and store photographs of one patient inside the caller's transaction.

    All-or-nothing: raises ``BatchRejected`` listing every refused file (not a photograph, too
    large, bomb, corrupt, future date, duplicate of a stored photograph or of another file of the
    same call) and writes nothing. Raises LookupError for an unknown MRN.

    ``check_account``: the dashboard's path; ``username`` must be an account allowed to write
    (monitoring.auth.authorise_write: viewers are refused, and the refusal is audited).
    """
    patient = _patient(session, mrn)
    assert patient.id is not None
    if check_account:
        _authorise(session, username, "upload", patient.id, {"files": str(len(items))})
    today = today or dt.date.today()
    limits = limits or PhotoLimits.from_env()
    problems: list[Problem] = []
    prepared: list[PreparedPhoto] = []
    for item in items:
        extra = _check_entered(item)
        if extra:
            problems.extend(extra)
            continue
        try:
            prepared.append(prepare_photo(item, today=today, limits=limits))
        except PhotoError as exc:
            problems.append(exc.problem)

    # Duplicates: the same pixels as a stored photograph of this patient, or as another file here.
    pt = table_of(Photo)
    hashes = [p.pixel_sha256 for p in prepared]
    stored: dict[str, tuple[int, dt.date, str, bool]] = {}
    if hashes:
        for pid, sha, taken_on, site, hidden in session.execute(
            select(pt.c.id, pt.c.pixel_sha256, pt.c.taken_on, pt.c.body_site, pt.c.hidden).where(
                pt.c.patient_id == patient.id, pt.c.pixel_sha256.in_(hashes)
            )
        ):
            stored[sha] = (pid, taken_on, site, hidden)
    seen: dict[str, str] = {}
    unique: list[PreparedPhoto] = []
    for p in prepared:
        if p.pixel_sha256 in stored:
            pid, taken_on, site, hidden = stored[p.pixel_sha256]
            state = ", hidden" if hidden else ""
            problems.append(
                Problem(
                    p.filename,
                    None,
                    None,
                    f"duplicate: the same pixels as photograph #{pid} ({site}, {taken_on.isoformat()}{state}) "
                    f"already stored for patient {mrn}",
                )
            )
        elif p.pixel_sha256 in seen:
            problems.append(Problem(p.filename, None, None, f"duplicate: the same pixels as {seen[p.pixel_sha256]} in this upload"))
        else:
            seen[p.pixel_sha256] = p.filename
            unique.append(p)
    if problems:
        raise BatchRejected(problems)

    out: list[StoredPhoto] = []
    now = utcnow()
    try:
        rows: list[tuple[PreparedPhoto, Photo]] = []
        for p in unique:
            row = Photo(
                patient_id=patient.id,
                taken_on=p.taken_on,
                body_site=p.body_site,
                bsa_pct=p.bsa_pct,
                note=p.note,
                thumbnail=p.thumbnail,
                thumb_width=p.thumb_width,
                thumb_height=p.thumb_height,
                width=p.width,
                height=p.height,
                content_type=p.content_type,
                size_bytes=len(p.image),
                pixel_sha256=p.pixel_sha256,
                uploaded_by=username,
                uploaded_at=now,
            )
            session.add(row)
            rows.append((p, row))
        session.flush()
        for p, row in rows:
            assert row.id is not None
            session.add(PhotoImage(photo_id=row.id, data=p.image))
        session.flush()
    except IntegrityError:
        # Another upload stored the same pixels between our check and our insert.
        raise BatchRejected(
            [Problem(p.filename, None, None, f"duplicate: stored for patient {mrn} by a concurrent upload") for p in unique]
        ) from None

    labs: list[LabIn] = []
    for p, row in rows:
        assert row.id is not None
        audit.record(
            session,
            username=username,
            action="create",
            entity="photo",
            entity_id=str(row.id),
            patient_id=patient.id,
            after={
                "filename": p.filename,
                "taken_on": p.taken_on.isoformat(),
                "date_source": p.date_source,
                "exif_taken_at": p.taken_at.isoformat() if p.taken_at else None,
                "body_site": p.body_site,
                "bsa_pct": p.bsa_pct,
                "note": p.note,
                "received_format": p.received_format,
                "received_bytes": p.received_bytes,
                "stored_bytes": len(p.image),
                "content_type": p.content_type,
                "pixel_sha256": p.pixel_sha256,
            },
            reason="photograph uploaded; metadata stripped by re-encoding",
        )
        if p.bsa_pct is not None:
            labs.append(
                LabIn(
                    mrn=mrn,
                    test="bsa_pct",
                    taken_at=p.taken_at or dt.datetime.combine(p.taken_on, dt.time()),
                    value=p.bsa_pct,
                    unit="%",
                    original_value=f"{p.bsa_pct:g}",
                    original_unit="%",
                    source=PHOTO_SOURCE,
                    source_id=photo_source_id(row.id),
                    where=p.filename,
                )
            )
        out.append(
            StoredPhoto(
                id=row.id,
                filename=p.filename,
                taken_on=p.taken_on,
                date_source=p.date_source,
                body_site=p.body_site,
                bsa_pct=p.bsa_pct,
                width=p.width,
                height=p.height,
                size_bytes=len(p.image),
                content_type=p.content_type,
            )
        )
    if labs:
        write_batch(session, labs=labs, username=username, source=PHOTO_SOURCE, description="BSA % entered with photographs")
    touch_patient(session, patient.id)
    session.flush()
    return out


def photo_source_id(photo_id: int) -> str:
    """The LabResult.source_id of the bsa_pct observation entered with a photograph."""
    return f"photo/{photo_id}"


# Columns a gallery reads: metadata and thumbnail. PhotoImage.data is never among them.
_META_COLUMNS = (
    "id",
    "taken_on",
    "body_site",
    "bsa_pct",
    "note",
    "width",
    "height",
    "content_type",
    "size_bytes",
    "pixel_sha256",
    "uploaded_by",
    "uploaded_at",
    "hidden",
    "hidden_reason",
)


def list_photos(
    session: Session,
    mrn: str,
    *,
    with_thumbnails: bool = True,
    include_hidden: bool = False,
    body_site: str | None = None,
    taken_on: dt.date | None = None,
) -> list[PhotoMeta]:
    """A patient's photographs, oldest first (date, then upload order): metadata and thumbnails.

    One query on ``photo`` alone; the full-size image table is never read.
    """
    patient = _patient(session, mrn)
    pt = table_of(Photo)
    cols = [pt.c[name] for name in _META_COLUMNS]
    if with_thumbnails:
        cols += [pt.c.thumbnail, pt.c.thumb_width, pt.c.thumb_height]
    stmt = select(*cols).where(pt.c.patient_id == patient.id)
    if not include_hidden:
        stmt = stmt.where(pt.c.hidden.is_(False))
    if body_site is not None:
        stmt = stmt.where(pt.c.body_site == body_site)
    if taken_on is not None:
        stmt = stmt.where(pt.c.taken_on == taken_on)
    stmt = stmt.order_by(pt.c.taken_on, pt.c.id)
    out = []
    for row in session.execute(stmt).mappings():
        out.append(PhotoMeta(**{k: row[k] for k in row.keys()}))  # noqa: SIM118 - RowMapping
    return out


def load_image(session: Session, photo_id: int) -> tuple[bytes, str]:
    """The full-size image of one photograph and its content type (for the compare view)."""
    pt = table_of(Photo)
    it = table_of(PhotoImage)
    row = session.execute(
        select(it.c.data, pt.c.content_type).join(pt, pt.c.id == it.c.photo_id).where(it.c.photo_id == photo_id)
    ).first()
    if row is None:
        raise LookupError(f"no photograph #{photo_id}")
    return bytes(row[0]), row[1]


def display_image(session: Session, photo_id: int, max_px: int = 1600) -> bytes:
    """The photograph scaled down to at most ``max_px`` on its longer side (JPEG), for viewing on
    screen: a 12-megapixel original is several megabytes a browser does not need."""
    data, _ = load_image(session, photo_id)
    with Image.open(io.BytesIO(data)) as im:
        if max(im.size) <= max_px and im.format == "JPEG":
            return data
        im.draft("RGB", (max_px, max_px))  # JPEG: decode at a reduced scale directly
        view = _normalise_mode(im, "JPEG")
        view.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        view.save(buf, "JPEG", quality=88)
        return buf.getvalue()


def _authorise(session: Session, username: str | None, action: str, patient_id: int, detail: dict[str, str]) -> None:
    from monitoring.auth import PermissionDenied, authorise_write

    if not (username or "").strip():
        raise PermissionDenied("every change is signed: a user name is required")
    authorise_write(session, username=str(username), action=action, entity="photo", patient_id=patient_id, detail=detail)


def _set_hidden(
    session: Session, photo_id: int, *, hidden: bool, reason: str, username: str | None, check_account: bool = False
) -> None:
    try:
        reason = free_text(
            "reason", reason, required="a reason is required to hide or restore a photograph (it is kept in the audit trail)"
        ) or ""
    except FieldError as exc:
        raise ValueError(exc.message) from None
    row = session.get(Photo, photo_id)
    if row is None:
        raise LookupError(f"no photograph #{photo_id}")
    if check_account:
        _authorise(session, username, "hide" if hidden else "restore", row.patient_id, {"id": str(photo_id)})
    if row.hidden == hidden:
        return
    before = {"hidden": row.hidden, "hidden_reason": row.hidden_reason}
    row.hidden = hidden
    row.hidden_reason = reason if hidden else None
    session.add(row)
    audit.record(
        session,
        username=username,
        action="hide" if hidden else "restore",
        entity="photo",
        entity_id=str(photo_id),
        patient_id=row.patient_id,
        before=before,
        after={"hidden": row.hidden, "hidden_reason": row.hidden_reason},
        reason=reason,
    )
    # The BSA % entered with this photograph goes and comes back with it: a photograph hidden as
    # "wrong patient" must not leave its BSA feeding ICU_CRITERIA.
    lt = table_of(LabResult)
    lab = session.execute(
        select(lt.c.id, lt.c.hidden, lt.c.hidden_reason).where(
            lt.c.patient_id == row.patient_id, lt.c.source_id == photo_source_id(photo_id)
        )
    ).first()
    if lab is not None and bool(lab.hidden) != hidden:
        session.execute(
            update(lt).where(lt.c.id == lab.id).values(hidden=hidden, hidden_reason=(f"photograph #{photo_id} hidden: {reason}" if hidden else None))
        )
        audit.record(
            session,
            username=username,
            action="hide" if hidden else "restore",
            entity="lab_result",
            entity_id=str(lab.id),
            patient_id=row.patient_id,
            before={"hidden": bool(lab.hidden), "hidden_reason": lab.hidden_reason},
            after={"hidden": hidden},
            reason=f"with photograph #{photo_id}: {reason}",
        )
    touch_patient(session, row.patient_id)
    session.flush()


def hide_photo(session: Session, photo_id: int, *, reason: str, username: str | None, check_account: bool = False) -> None:
    """Hide a photograph (and the BSA % entered with it) with a reason; audited, never deleted."""
    _set_hidden(session, photo_id, hidden=True, reason=reason, username=username, check_account=check_account)


def restore_photo(session: Session, photo_id: int, *, reason: str, username: str | None, check_account: bool = False) -> None:
    """Show a hidden photograph again; audited."""
    _set_hidden(session, photo_id, hidden=False, reason=reason, username=username, check_account=check_account)


# --------------------------------------------------------------------------------------------
# Context shown under a photograph in the compare view
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoContext:
    """Where a photograph's day sits in the illness and the steroid course."""

    taken_on: dt.date
    day_since_onset: int | None
    course_start: dt.date | None
    day_of_course: int | None
    pred_eq_mg: float | None  # systemic prednisone-equivalent mg/day on that day
    mg_per_kg: float | None


def photo_context(record: PatientRecord, day: dt.date) -> PhotoContext:
    """Day since onset and the steroid course as of ``day`` (monitoring.steroids.analyse_course,
    PRODUCT.md §5 definitions of course and systemic corticosteroid daily dose)."""
    from monitoring.steroids import analyse_course

    onset = record.patient.onset_date
    course = analyse_course(record, day)
    return PhotoContext(
        taken_on=day,
        day_since_onset=(day - onset).days if onset else None,
        course_start=course.course_start,
        day_of_course=course.day_of_course,
        pred_eq_mg=course.current_pred_eq_mg,
        mg_per_kg=course.current_mg_per_kg,
    )
