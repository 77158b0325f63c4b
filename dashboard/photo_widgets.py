"""Cached reads for the Photos page: the gallery reads metadata and thumbnails only, a full-size
image is read one at a time, scaled for the screen, when a day or the compare view opens it.

Keys follow dashboard.store: (database URL, data version, ...) so a write anywhere refreshes them;
an image's bytes never change once stored, so its cache is keyed on the photograph id alone.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import streamlit as st
from sqlmodel import Session

from dashboard import store
from monitoring import display, photos
from monitoring.photos import PhotoContext, PhotoMeta
from monitoring.records import PatientRecord
from monitoring.steroids import course_day_words

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "tif", "tiff", "bmp"]
DISPLAY_MAX_PX = 1600


@st.cache_data(show_spinner=False, max_entries=32)
def gallery(url: str, version: tuple[Any, ...], mrn: str, include_hidden: bool = False) -> list[PhotoMeta]:
    """A patient's photographs: metadata and thumbnails (never the full-size images)."""
    with Session(store._engine(url)) as s:
        try:
            return photos.list_photos(s, mrn, with_thumbnails=True, include_hidden=include_hidden)
        except LookupError:
            return []


@st.cache_data(show_spinner="Loading the photograph…", max_entries=24)
def screen_image(url: str, photo_id: int, max_px: int = DISPLAY_MAX_PX) -> bytes:
    """One photograph scaled for the screen."""
    with Session(store._engine(url)) as s:
        return photos.display_image(s, photo_id, max_px)


def full_image(url: str, photo_id: int) -> tuple[bytes, str]:
    """The stored full-size image, for download (not cached: read on demand only)."""
    with Session(store._engine(url)) as s:
        return photos.load_image(s, photo_id)


def by_date(items: list[PhotoMeta]) -> dict[dt.date, list[PhotoMeta]]:
    out: dict[dt.date, list[PhotoMeta]] = defaultdict(list)
    for p in items:
        out[p.taken_on].append(p)
    return dict(out)


def context(record: PatientRecord, day: dt.date) -> PhotoContext:
    return photos.photo_context(record, day)


def context_lines(ctx: PhotoContext, bsa_pct: float | None) -> list[tuple[str, str]]:
    """(label, value) under a photograph: date, day since onset, course day, dose, BSA %."""
    course = course_day_words(ctx.course_start, ctx.day_of_course) or "no steroid course that day"
    if ctx.pred_eq_mg:
        dose = f"{ctx.pred_eq_mg:g} mg/day" + (f" ({ctx.mg_per_kg:.2f} mg/kg)" if ctx.mg_per_kg is not None else "")
    else:
        dose = "none"
    return [
        ("date", ctx.taken_on.isoformat()),
        ("day since onset", str(ctx.day_since_onset) if ctx.day_since_onset is not None else "onset not recorded"),
        ("steroid course", course),
        ("prednisone-equivalent", dose),
        ("BSA involved", display.quantity("bsa_pct", bsa_pct, "%") if bsa_pct is not None else "not recorded"),
    ]


def caption(p: PhotoMeta) -> str:
    bsa = f" · BSA {display.quantity('bsa_pct', p.bsa_pct, '%')}" if p.bsa_pct is not None else ""
    hidden = f" · HIDDEN ({p.hidden_reason})" if p.hidden else ""
    return f"#{p.id} · {p.body_site}{bsa}{hidden}"
