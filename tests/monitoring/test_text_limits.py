"""Every stored free text a clinician types is checked by the intake path (``intake.free_text``):
a photo note, a finding note, the reason of a correction, a removal, a photo removal, a review-list
discard and an acknowledgement. Over its limit or holding a control character it is refused with
the field named and nothing is stored; line breaks in a note are kept."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlmodel import Session

from monitoring import auth, episodes, photos, review, services
from monitoring.intake import NOTE_MAX_CHARS, FieldError, free_text
from monitoring.models import AlertEpisode, AuditEntry, ClinicalFinding, LabResult, Photo
from monitoring.store import BatchRejected

USER = "dr.text"
TODAY = dt.date.today()
LONG = "x" * (NOTE_MAX_CHARS + 1)
BIDI = "wrong patient \u202e"  # a right-to-left override: the text would display in another order


@pytest.fixture
def patient(session: Session) -> Session:
    auth.create_user(session, actor="test", username=USER, role=auth.CLINICIAN, password=None)
    services.add_patient(session, username=USER, mrn="T1", name="Tex Limit", sex="female", birth_date="1970-01-01",
                         weight_kg=60, onset_date=TODAY - dt.timedelta(days=5), culprit_drugs="allopurinol")
    session.commit()
    return session


def _audits(session: Session) -> int:
    return session.execute(select(func.count()).select_from(AuditEntry)).scalar_one()


def _lab(session: Session) -> int:
    lab_id = services.add_lab_result(session, username=USER, mrn="T1", test="eosinophils", value="2.1", unit="10^9/L",
                                     taken_at=dt.datetime.combine(TODAY, dt.time(0, 0)))
    session.commit()
    return lab_id


def test_free_text_trims_keeps_line_breaks_and_names_the_field() -> None:
    assert free_text("note", "  first line\nsecond\tline  ") == "first line\nsecond\tline"
    assert free_text("note", "   ") is None and free_text("note", None) is None
    with pytest.raises(FieldError, match=r"note .*2,001 characters: at most 2,000"):
        free_text("note", LONG)
    with pytest.raises(FieldError, match=r"reason .*U\+202E"):
        free_text("reason", BIDI)
    with pytest.raises(FieldError, match="a reason is required"):
        free_text("reason", " ", required="a reason is required")


@pytest.mark.parametrize("reason", [LONG, BIDI, "wrong\x07patient"])
def test_a_correction_or_removal_reason_is_checked_and_nothing_changes(patient: Session, reason: str) -> None:
    lab_id = _lab(patient)
    before = _audits(patient)
    with pytest.raises(BatchRejected) as exc:
        services.amend_lab_result(patient, username=USER, lab_id=lab_id, value="1.0", unit="10^9/L", reason=reason)
    assert exc.value.problems[0].column == "reason"
    patient.rollback()
    with pytest.raises(BatchRejected) as exc:
        services.hide_record(patient, username=USER, entity="lab_result", record_id=lab_id, reason=reason)
    assert exc.value.problems[0].column == "reason"
    patient.rollback()
    row = patient.get(LabResult, lab_id)
    assert row is not None and row.value == pytest.approx(2.1) and not row.hidden and row.amended_at is None
    assert _audits(patient) == before


def test_a_finding_note_is_checked(patient: Session) -> None:
    with pytest.raises(BatchRejected) as exc:
        services.set_finding(patient, username=USER, mrn="T1", item="lymphadenopathy", value="yes", note=LONG)
    assert exc.value.problems[0].column == "note" and "at most 2,000" in exc.value.problems[0].reason
    patient.rollback()
    assert patient.execute(select(func.count()).select_from(ClinicalFinding)).scalar_one() == 0
    services.set_finding(patient, username=USER, mrn="T1", item="lymphadenopathy", value="yes", note="cervical\naxillary")
    assert patient.execute(select(ClinicalFinding.note)).scalar_one() == "cervical\naxillary"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 150, 120)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_photo_note_and_a_photo_removal_reason_are_checked(patient: Session) -> None:
    item = photos.PhotoIn("rash.png", _png(), photos.BODY_SITES[0], note=LONG)
    with pytest.raises(BatchRejected) as exc:
        photos.store_photos(patient, "T1", [item], username=USER)
    assert [(p.where, p.column) for p in exc.value.problems] == [("rash.png", "note")]
    patient.rollback()
    assert patient.execute(select(func.count()).select_from(Photo)).scalar_one() == 0
    (stored,) = photos.store_photos(patient, "T1", [photos.PhotoIn("rash.png", _png(), photos.BODY_SITES[0], note="trunk")],
                                    username=USER)
    patient.commit()
    photo_id = patient.execute(select(Photo.id)).scalar_one()
    with pytest.raises(ValueError, match=r"reason .*U\+202E"):
        photos.hide_photo(patient, photo_id, reason=BIDI, username=USER)
    patient.rollback()
    photo = patient.get(Photo, photo_id)
    assert photo is not None and not photo.hidden


def test_a_review_discard_reason_is_checked(patient: Session) -> None:
    item_id = review.add_review_item(patient, source="labs.csv", location="row 2", reason="unknown unit", field="unit",
                                     value="parsecs")
    patient.commit()
    with pytest.raises(BatchRejected) as exc:
        review.discard_item(patient, username=USER, item_id=item_id, reason=LONG)
    assert exc.value.problems[0].column == "reason"
    patient.rollback()
    assert review.get_item(patient, item_id).status == review.OPEN


def test_an_acknowledgement_text_is_checked(patient: Session) -> None:
    _lab(patient)
    ep = patient.execute(select(AlertEpisode).where(AlertEpisode.code == "EOSINOPHILIA")).scalar_one()
    assert ep.id is not None
    with pytest.raises(episodes.EpisodeActionRefused, match=r"reason text .*at most 500"):
        episodes.acknowledge(patient, username=USER, episode_id=ep.id, reason="not_relevant", text="y" * 501)
    with pytest.raises(episodes.EpisodeActionRefused, match=r"U\+0007"):
        episodes.acknowledge(patient, username=USER, episode_id=ep.id, reason="not_relevant", text="bell\x07")
    patient.rollback()
    patient.expire_all()
    assert patient.get(AlertEpisode, ep.id).state == episodes.OPEN  # type: ignore[union-attr]  # fetched above
