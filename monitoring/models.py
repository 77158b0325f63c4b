"""SQLModel tables: one family per entity of PRODUCT.md §3.

Nothing clinical is ever silently overwritten or hard-deleted: amended rows keep ``amended_at``
and their earlier values live in ``AuditEntry.before``; hidden rows keep ``hidden_reason``.
Times are naive: clinical times (taken_at) as recorded, in the hospital's local time; bookkeeping
times (created_at, audit ``at``) in UTC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DDL, JSON, Column, DateTime, Index, LargeBinary, UniqueConstraint, event, text
from sqlmodel import Field, SQLModel

from monitoring.db import table_of


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Patient(SQLModel, table=True):
    __tablename__ = "patient"

    id: int | None = Field(default=None, primary_key=True)
    mrn: str = Field(index=True, unique=True, max_length=64)
    name: str = Field(max_length=200)
    sex: str | None = Field(default=None, max_length=16)
    birth_date: dt.date | None = None
    weight_kg: float | None = None
    onset_date: dt.date | None = None
    culprit_drugs: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # Each culprit as written ("Bactrim DS"), beside the name it resolved to and its ingredients:
    # [{"as_entered": ..., "drug": ..., "ingredients": [...]}] (intake.patient_fields). Display and
    # audit only: matching uses culprit_drugs. None for patients stored before it was kept.
    culprits_as_entered: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # Drug allergies that are not DRESS culprits (e.g. penicillin urticaria): shown on the header only.
    drug_allergies: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    baseline_creatinine_mg_dl: float | None = None
    resolved_date: dt.date | None = None
    # Where the patient is followed: "inpatient" (ward round) or "clinic" (taper follow-up).
    setting: str = Field(default="inpatient", max_length=16)
    active: bool = Field(default=True)
    synthetic: bool = Field(default=False)  # demo cohort: always labelled synthetic
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)


class LabResult(SQLModel, table=True):
    """A laboratory result or bedside observation; value and unit both as received and canonical."""

    __tablename__ = "lab_result"
    __table_args__ = (
        Index("ix_lab_patient_test_time", "patient_id", "test", "taken_at"),
        Index("ix_lab_patient_time", "patient_id", "taken_at"),
        # Partial, like ux_lab_patient_source: CSV rows (no identifier) cost the index nothing.
        Index(
            "ix_lab_patient_identifier",
            "patient_id",
            "source_identifier",
            sqlite_where=text("source_identifier IS NOT NULL"),
            postgresql_where=text("source_identifier IS NOT NULL"),
        ),
        Index(
            "ux_lab_patient_source",
            "patient_id",
            "source_id",
            unique=True,
            sqlite_where=text("source_id IS NOT NULL"),
            postgresql_where=text("source_id IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", ondelete="RESTRICT")
    test: str = Field(max_length=40)
    loinc: str | None = Field(default=None, max_length=20)
    taken_at: dt.datetime = Field(sa_type=DateTime)  # as recorded, naive local time
    # The UTC offset the time was recorded with, in minutes (None: none was given); taken_at keeps
    # the wall-clock time as recorded (PRODUCT.md §6, edition 2).
    taken_at_offset_minutes: int | None = None
    value: float | None = None  # canonical unit; None only for a qualitative PCR text result
    # A censored result (PRODUCT.md §4): "<", "<=", ">" or ">=" before ``value``; None when exact.
    comparator: str | None = Field(default=None, max_length=2)
    unit: str = Field(max_length=20)  # canonical unit
    value_text: str | None = Field(default=None, max_length=40)  # "detected" / "not detected"
    original_value: str = Field(max_length=64)  # exactly as received
    original_unit: str = Field(default="", max_length=40)
    ref_low: float | None = None  # canonical unit
    ref_high: float | None = None  # canonical unit
    source: str = Field(default="manual", max_length=16)  # csv, fhir, manual, demo
    source_id: str | None = Field(default=None, max_length=128)  # FHIR Observation id; HL7 "hl7:" + order + OBX-3
    # The sender's business identifier of the result (FHIR Observation.identifier, "system|value"):
    # the same result re-sent under a new resource id (another server, a re-export) is found by it
    # (PRODUCT.md §6 edition 2, "Corrections"). None when the sender gives none.
    source_identifier: str | None = Field(default=None, max_length=255)
    # HL7 OBX-8 abnormal flags as sent (H, L, HH, LL, A, ...), several joined by "~"; None when none.
    abnormal_flags: str | None = Field(default=None, max_length=40)
    # Result status (FHIR Observation.status / HL7 OBX-11): final, preliminary, amended, cancelled
    # (intake.RESULT_STATUSES).
    status: str = Field(default="final", max_length=16, sa_column_kwargs={"server_default": "final"})
    entered_by: str | None = Field(default=None, max_length=64)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)
    amended_at: dt.datetime | None = Field(default=None, sa_type=DateTime)
    hidden: bool = Field(default=False)
    hidden_reason: str | None = None


class MedicationRow(SQLModel, table=True):
    """A row of the dose schedule: from start_date the drug is given at daily_dose until the next
    row of the same drug; daily dose 0 means stopped; rows after today are the plan."""

    __tablename__ = "medication_row"
    __table_args__ = (
        UniqueConstraint("patient_id", "drug", "start_date", name="ux_med_patient_drug_start"),
        Index("ix_med_patient_start", "patient_id", "start_date"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", ondelete="RESTRICT")
    drug: str = Field(max_length=80)  # normalised generic name (drugs.normalise_drug)
    drug_as_entered: str = Field(max_length=200)
    start_date: dt.date
    daily_dose_mg: float  # canonical: mg per day (IVIG included: mg, so 2 g/kg at 70 kg = 140000)
    dose_as_entered: str = Field(max_length=64)
    unit_as_entered: str = Field(max_length=16)  # mg, g, mg/kg
    route: str | None = Field(default=None, max_length=40)
    source: str = Field(default="manual", max_length=16)
    source_id: str | None = Field(default=None, max_length=128)
    entered_by: str | None = Field(default=None, max_length=64)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)
    amended_at: dt.datetime | None = Field(default=None, sa_type=DateTime)
    hidden: bool = Field(default=False)
    hidden_reason: str | None = None


class ClinicalFinding(SQLModel, table=True):
    """A finding entered by hand for scoring (RegiSCAR items the data cannot decide).

    The latest row per (patient, item) is in force; earlier rows are kept as history.
    """

    __tablename__ = "clinical_finding"
    __table_args__ = (Index("ix_finding_patient_item", "patient_id", "item", "recorded_at"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", ondelete="RESTRICT")
    item: str = Field(max_length=40)  # e.g. lymphadenopathy, atypical_lymphocytes, rash_suggestive
    value: str = Field(max_length=16)  # yes / no / unknown (or an integer count for organ items)
    note: str | None = None
    recorded_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)
    recorded_by: str | None = Field(default=None, max_length=64)


class Photo(SQLModel, table=True):
    """Photograph metadata and thumbnail. The full-size image lives in ``PhotoImage`` so a gallery
    query never reads it."""

    __tablename__ = "photo"
    __table_args__ = (
        Index("ix_photo_patient_date", "patient_id", "taken_on"),
        UniqueConstraint("patient_id", "pixel_sha256", name="ux_photo_patient_pixels"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", ondelete="RESTRICT")
    taken_on: dt.date
    body_site: str = Field(max_length=20)
    bsa_pct: float | None = None
    note: str | None = None
    thumbnail: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    thumb_width: int = 0
    thumb_height: int = 0
    width: int = 0
    height: int = 0
    content_type: str = Field(default="image/jpeg", max_length=40)
    size_bytes: int = 0
    pixel_sha256: str = Field(max_length=64)
    uploaded_by: str | None = Field(default=None, max_length=64)
    uploaded_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)
    hidden: bool = Field(default=False)
    hidden_reason: str | None = None


class PhotoImage(SQLModel, table=True):
    __tablename__ = "photo_image"

    photo_id: int = Field(foreign_key="photo.id", primary_key=True, ondelete="RESTRICT")
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class User(SQLModel, table=True):
    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(index=True, unique=True, max_length=64)
    password_hash: str | None = Field(default=None, max_length=255)  # None: OIDC-only account
    role: str = Field(default="viewer", max_length=16)  # admin, clinician, viewer
    # How reports and the dashboard name the person (e.g. "Dr A. Mensah, dermatology registrar");
    # None: the user name only. Checked by monitoring.intake.display_name.
    display_name: str | None = Field(default=None, max_length=120)
    disabled: bool = Field(default=False)
    failed_attempts: int = Field(default=0)
    last_failed_at: dt.datetime | None = Field(default=None, sa_type=DateTime)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)


class AuditEntry(SQLModel, table=True):
    """Append-only audit trail: who did what to which record, with values before and after."""

    __tablename__ = "audit_entry"
    __table_args__ = (
        Index("ix_audit_at", "at"),
        Index("ix_audit_patient", "patient_id", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)  # UTC
    username: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=32)  # create, amend, hide, import, sign_in, sign_in_failed, ...
    entity: str = Field(max_length=32)  # table name
    entity_id: str | None = Field(default=None, max_length=64)
    patient_id: int | None = Field(default=None, foreign_key="patient.id", ondelete="RESTRICT")
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    reason: str | None = None


class ReviewItem(SQLModel, table=True):
    """An item of the intake review list: something a file or feed sent that was refused, kept as
    received until a clinician corrects and stores it or discards it with a reason (PRODUCT.md §6
    edition 2, ``import --skip-invalid``; monitoring/review.py)."""

    __tablename__ = "intake_review_item"
    __table_args__ = (Index("ix_review_status_created", "status", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)  # UTC
    source: str = Field(max_length=255)  # the file (or feed message) it came from
    location: str = Field(max_length=255)  # resource or row within it: "Observation/abc (entry[3])", "row 5"
    field: str | None = Field(default=None, max_length=255)  # the element or column that is wrong
    value: str | None = None  # the value as received
    reason: str  # why it was refused
    kind: str = Field(default="other", max_length=16)  # lab, medication, patient, file, other
    mrn: str | None = Field(default=None, max_length=64)  # the patient it names, when known
    record: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))  # the resource or row as received
    status: str = Field(default="open", max_length=16)  # open, stored, discarded
    created_by: str | None = Field(default=None, max_length=64)
    resolved_at: dt.datetime | None = Field(default=None, sa_type=DateTime)
    resolved_by: str | None = Field(default=None, max_length=64)
    resolution: str | None = None  # the discard reason, or what was stored ("lab_result 12")


class Hl7Message(SQLModel, table=True):
    """An HL7 v2 message the listener has answered (PRODUCT.md §9): its control ID (MSH-10) per
    sender, so a message sent again changes nothing and gets the same acknowledgement. Stored in
    the same transaction as the results it carried: a row here means they are stored."""

    __tablename__ = "hl7_message"
    __table_args__ = (UniqueConstraint("sender", "control_id", name="ux_hl7_sender_control"),)

    id: int | None = Field(default=None, primary_key=True)
    received_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)  # UTC
    sender: str = Field(max_length=255)  # MSH-3^MSH-4
    control_id: str = Field(max_length=199)  # MSH-10
    message_type: str = Field(max_length=16)  # ORU^R01, ADT^A08
    sha256: str = Field(max_length=64)  # of the message as received
    ack_code: str = Field(max_length=2)  # AA or AE
    ack_text: str = ""  # MSA-3
    errors: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # ERR: location, reason
    patient_id: int | None = Field(default=None, foreign_key="patient.id", ondelete="RESTRICT")
    results_stored: int = 0
    via: str = Field(default="mllp", max_length=16)  # mllp or folder


class SignInThrottle(SQLModel, table=True):
    """Failed sign-in counters (monitoring/auth.py): one row per key, ``pair:NAME|SOURCE``,
    ``account:NAME``, ``source:ADDRESS`` or ``global``. A name that has no account is counted the
    same way as one that has, so the throttle does not tell them apart."""

    __tablename__ = "sign_in_throttle"

    key: str = Field(primary_key=True, max_length=200)
    failures: int = Field(default=0)
    last_failed_at: dt.datetime | None = Field(default=None, sa_type=DateTime)  # UTC


class UserSession(SQLModel, table=True):
    """A signed-in session kept on the server (monitoring/sessions.py): ended by sign-out (every
    tab of it), by the idle timeout or by its absolute lifetime. Only SHA-256 digests of the tab's
    token and of the browser's cookie are stored, never the secrets themselves."""

    __tablename__ = "user_session"
    __table_args__ = (Index("ix_session_browser", "browser_hash", "ended_at"),)

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(index=True, unique=True, max_length=64)
    browser_hash: str | None = Field(default=None, max_length=64)
    user_id: int = Field(foreign_key="app_user.id", ondelete="RESTRICT", index=True)
    source: str | None = Field(default=None, max_length=64)  # the client address at sign-in
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)  # UTC
    last_seen_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)  # UTC
    ended_at: dt.datetime | None = Field(default=None, sa_type=DateTime)  # UTC
    end_reason: str | None = Field(default=None, max_length=32)  # sign-out, idle, lifetime, account


class AlertEpisode(SQLModel, table=True):
    """An alert that holds, as a piece of work (PRODUCT.md §10): opened on the first evaluation where
    it holds, open while it holds, closed when it stops holding. A patient has at most one episode
    per code that is not closed (partial unique index ``ux_episode_open``: two processes evaluating
    at once cannot open two). ``state`` is open, acknowledged, snoozed or closed; new evidence (a
    result or dose row behind the alert that the episode had not seen) puts an acknowledged or
    snoozed episode back to open and counts a reopening."""

    __tablename__ = "alert_episode"
    __table_args__ = (
        Index(
            "ux_episode_open",
            "patient_id",
            "code",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
        Index("ix_episode_patient", "patient_id", "opened_at"),
        Index("ix_episode_code", "code", "opened_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", ondelete="RESTRICT")
    code: str = Field(max_length=40)
    severity: str = Field(max_length=16)  # the latest severity (FERRITIN_HIGH may turn critical)
    state: str = Field(default="open", max_length=16)  # open, acknowledged, snoozed, closed
    opened_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)  # UTC
    # The first as-of date on which it held: the evaluation date, or the day before when the alert
    # already held on yesterday's data the first time it was seen ("new since yesterday" is onset = today).
    onset_date: dt.date
    closed_at: dt.datetime | None = Field(default=None, sa_type=DateTime)  # UTC
    alert_date: dt.date  # the alert's date (its finding) at the latest evaluation
    message: str = ""  # the alert's message at the latest evaluation
    evidence_rows: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # "lab_result:12"
    acknowledged_at: dt.datetime | None = Field(default=None, sa_type=DateTime)
    acknowledged_by: str | None = Field(default=None, max_length=64)
    ack_reason: str | None = Field(default=None, max_length=40)  # a code of monitoring.episodes.ACK_REASONS
    ack_text: str | None = Field(default=None, max_length=500)
    snoozed_until: dt.date | None = None
    reopened_at: dt.datetime | None = Field(default=None, sa_type=DateTime)
    reopen_count: int = Field(default=0)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)


class AlertNotification(SQLModel, table=True):
    """One notification of an episode on one channel; ``key`` is unique so that it is sent once
    whatever the number of notifier processes. Holds no patient data beyond the episode's id."""

    __tablename__ = "alert_notification"
    __table_args__ = (Index("ix_notification_status", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=120, unique=True)  # episode:kind:generation:channel
    episode_id: int = Field(foreign_key="alert_episode.id", ondelete="RESTRICT")
    kind: str = Field(max_length=32)  # critical, warning_unacknowledged
    channel: str = Field(max_length=16)  # email, webhook
    status: str = Field(default="pending", max_length=16)  # pending, sending, sent, failed
    attempts: int = Field(default=0)
    next_attempt_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)
    claimed_at: dt.datetime | None = Field(default=None, sa_type=DateTime)
    sent_at: dt.datetime | None = Field(default=None, sa_type=DateTime)
    last_error: str | None = Field(default=None, max_length=300)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=DateTime)


TABLES = (
    Patient,
    LabResult,
    MedicationRow,
    ClinicalFinding,
    Photo,
    PhotoImage,
    User,
    AuditEntry,
    ReviewItem,
    Hl7Message,
    SignInThrottle,
    UserSession,
    AlertEpisode,
    AlertNotification,
)


# The audit trail is append-only at database level too (issue 7): the triggers of migration 0002,
# attached here as well so that databases built by create_all (tests) refuse UPDATE and DELETE.
for _statement in (
    "CREATE TRIGGER IF NOT EXISTS audit_entry_no_update BEFORE UPDATE ON audit_entry "
    "BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only: UPDATE refused'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_entry_no_delete BEFORE DELETE ON audit_entry "
    "BEGIN SELECT RAISE(ABORT, 'audit_entry is append-only: DELETE refused'); END",
):
    event.listen(table_of(AuditEntry), "after_create", DDL(_statement).execute_if(dialect="sqlite"))
for _statement in (
    "CREATE OR REPLACE FUNCTION audit_entry_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$ "
    "BEGIN RAISE EXCEPTION USING MESSAGE = 'audit_entry is append-only: ' || TG_OP || ' refused'; END $fn$",
    "CREATE TRIGGER audit_entry_no_change BEFORE UPDATE OR DELETE ON audit_entry "
    "FOR EACH ROW EXECUTE FUNCTION audit_entry_append_only()",
    "CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_entry "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_append_only()",
):
    event.listen(table_of(AuditEntry), "after_create", DDL(_statement).execute_if(dialect="postgresql"))
