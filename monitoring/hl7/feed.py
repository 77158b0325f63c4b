"""One HL7 v2 message into the database, in one transaction, and the acknowledgement it earns.

Every value goes through the product's one intake path (``monitoring.intake.reading``
for a result: number and comparator, time, future check, unit, bounds, PCR text, reference range;
the patient-field checks of ``monitoring.services`` for PID) and the one write path
(``monitoring.store.write_batch``), exactly as a CSV or FHIR import. This module only decides
what HL7 means (PRODUCT.md §9, §6 edition 2):

- MSH-10 idempotence: the control ID is stored with the results, per sender. The same message
  again changes nothing and gets the same ACK; the same control ID with other content is refused.
- Identity of a result: filler order number (OBR-3, else placer OBR-2) + OBX-3 + OBX-4, stored as
  ``source_id``. OBX-11 C (corrected) and a final F after a preliminary P are amendments of that
  result (the earlier value kept in the audit trail); X (cannot be obtained), D (deleted) and W
  (wrong) hide it with the reason; I, O, S, N carry no result yet and are skipped.
- A result message (ORU) names a known patient; ADT^A01/A04/A08 create or update one from PID. An
  ORU for an unknown MRN stores nothing and sends its results to the review list (AE).
- An OBX whose code is neither a catalogue LOINC code nor in the code map is not a test the product
  follows: it is counted in the ACK text and skipped. An OBX of a catalogue test that the intake
  path refuses goes to the intake review list (``monitoring.review``) and the ACK is AE naming it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select
from sqlmodel import Session, col

from monitoring import catalogue, intake
from monitoring.db import table_of
from monitoring.hl7.ack import AckError
from monitoring.hl7.codes import LOINC_SYSTEMS, CodeMap
from monitoring.hl7.message import Observation, ParsedMessage, Unreadable, hl7_datetime, parse_message, reference_range
from monitoring.models import Hl7Message, LabResult, Patient, utcnow
from monitoring.review import add_review_item
from monitoring.store import BatchRejected, LabIn, PatientIn, touch_patient, write_batch

__all__ = ["Outcome", "store_message"]

SOURCE = "hl7"
# OBX-11 result statuses (HL7 table 0085) -> the stored status (intake.RESULT_STATUSES): C
# (corrected) is the product's "amended", P and R (not verified) are preliminary.
RESULT_STATUSES = {"F": "final", "C": "amended", "P": "preliminary", "R": "preliminary", "U": "final"}
CANCELLED = {
    "X": "the laboratory could not obtain the result (OBX-11 X)",
    "D": "the laboratory deleted the result (OBX-11 D)",
    "W": "the laboratory withdrew the result as wrong (OBX-11 W)",
}
NO_RESULT_YET = frozenset({"I", "O", "S", "N"})
# HL7 table 0001 (administrative sex) to the product's sexes.
SEXES = {"F": "female", "M": "male", "O": "other", "A": "other", "N": "other", "U": "unknown"}
# The OBX field behind each intake-path column, so the review list and the ACK name the field as sent.
_FIELD_OF = {"value": "OBX-5", "unit": "OBX-6", "ref_low": "OBX-7", "ref_high": "OBX-7", "taken_at": "OBX-14", "test": "OBX-3"}


@dataclass
class Outcome:
    """What the listener answers, and what was done."""

    code: str  # AA, AE, AR
    text: str
    errors: list[AckError] = field(default_factory=list)
    control_id: str = ""
    stored: int = 0
    amended: int = 0
    hidden: int = 0
    unchanged: int = 0
    not_used: int = 0
    duplicate: bool = False
    patient: str = ""  # ADT: "patient created" / "patient updated"


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _user(msg: ParsedMessage) -> str:
    return f"hl7:{msg.sender or 'unknown sender'}"[:64]


def _identity(msg: ParsedMessage, obs: Observation) -> str:
    """The result's identity across messages (a correction names the same one)."""
    code = obs.codes[0][0] if obs.codes else ""
    if obs.order_id:
        key = f"{obs.order_id}|{code}|{obs.sub_id}"
    else:
        # No order number: the result can only be known within this message.
        key = f"MSH-10 {msg.control_id}|{obs.set_id or obs.index}|{code}|{obs.sub_id}"
    text = f"hl7:{msg.sender}|{key}"
    return text if len(text) <= 128 else "hl7:" + hashlib.sha256(text.encode()).hexdigest()


def _same(row: LabResult | LabIn, lab: LabIn) -> bool:
    def eq(a: float | None, b: float | None) -> bool:
        return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12))

    return (
        row.test == lab.test
        and row.taken_at == lab.taken_at
        and eq(row.value, lab.value)
        and row.taken_at_offset_minutes == lab.taken_at_offset_minutes
        and row.comparator == lab.comparator
        and row.value_text == lab.value_text
        and eq(row.ref_low, lab.ref_low)
        and eq(row.ref_high, lab.ref_high)
        and row.original_value == lab.original_value
        and row.original_unit == lab.original_unit
    )


def _lab_snapshot(row: LabResult) -> dict[str, Any]:
    from monitoring.services import _lab_snapshot as snapshot  # the one snapshot of a result for the audit trail

    return snapshot(row)


class _Message:
    """The work on one parsed message: refusals collected, then written together."""

    def __init__(self, session: Session, msg: ParsedMessage, codes: CodeMap, raw: bytes, via: str, as_of: Any):
        self.session = session
        self.msg = msg
        self.codes = codes
        self.raw = raw
        self.via = via
        self.as_of = as_of
        self.user = _user(msg)
        self.source = f"HL7 {msg.kind} from {msg.sender or 'unknown sender'} (MSH-10 {msg.control_id})"
        self.errors: list[AckError] = []
        self.outcome = Outcome("AA", "", control_id=msg.control_id)
        self.facility = msg.sender.split("^", 1)[1] if "^" in msg.sender else ""
        self.patient_id: int | None = None

    def refuse(self, obs: Observation | None, where_field: str, value: Any, reason: str, *, kind: str = "lab") -> None:
        location = obs.where if obs is not None else "PID"
        record: dict[str, Any] = {"segment": "PID"}
        if obs is not None:
            record = {
                "OBX-1": obs.set_id,
                "OBX-2": obs.value_type,
                "OBX-3": ["^".join(c) for c in obs.codes],
                "OBX-4": obs.sub_id,
                "OBX-5": obs.value,
                "OBX-6": obs.units,
                "OBX-7": obs.reference_range,
                "OBX-8": list(obs.abnormal_flags),
                "OBX-11": obs.status,
                "OBX-14": obs.observed_at,
                "OBR-7": obs.order_observed_at,
                "order": obs.order_id,
            }
        add_review_item(
            self.session,
            source=self.source,
            location=location,
            field=where_field,
            value=value,
            reason=reason,
            kind=kind,
            mrn=self.msg.patient.mrn if self.msg.patient else None,
            record=record,
            username=self.user,
        )
        label = f"OBX^{obs.index}" if obs is not None else "PID^1"
        self.errors.append(AckError(f"{label}^{where_field.split('-')[-1]}" if "-" in where_field else label, f"{where_field}: {reason}"))

    # --- patient -----------------------------------------------------------------------------
    def patient_in(self) -> tuple[PatientIn | None, bool]:
        """(the PID fields to write, whether the patient exists already)."""
        from monitoring.services import _patient_values  # the patient-field checks of every entry

        p = self.msg.patient
        assert p is not None and p.mrn is not None
        self.patient_id = self.session.execute(_PATIENT_ID, {"mrn": p.mrn}).scalar_one_or_none()
        exists = self.patient_id is not None
        is_adt = self.msg.message_type == "ADT"
        if not is_adt:
            # A result message never creates or rewrites a patient: ADT^A01/A04/A08 do (§9).
            return None, exists
        raw = {"sex": SEXES.get((p.sex or "").upper()) if p.sex else None, "birth_date": p.birth_date}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if value is None:
                continue
            try:
                values.update(_patient_values({key: value}))
            except BatchRejected as exc:
                pid_field = {"sex": "PID-8", "birth_date": "PID-7"}[key]
                self.refuse(None, pid_field, value, exc.problems[0].reason, kind="patient")
        if not exists and not p.name:
            self.refuse(None, "PID-5", "", f"new patient {p.mrn} needs a name (PID-5 is empty)", kind="patient")
            return None, False
        return PatientIn(p.mrn, p.name, values, where=f"{self.source}: PID"), exists

    # --- results -----------------------------------------------------------------------------
    def lab_in(self, obs: Observation, test: catalogue.TestDef) -> LabIn | None:
        p = self.msg.patient
        assert p is not None and p.mrn is not None
        if obs.value_problem:
            self.refuse(obs, obs.value_problem_field, obs.value, obs.value_problem)
            return None
        if not obs.time:
            self.refuse(obs, "OBX-14", "", "no time of the observation: OBX-14 and OBR-7 are both empty")
            return None
        time_field = "OBX-14" if obs.observed_at else "OBR-7"
        try:
            taken = hl7_datetime(obs.time, what=time_field)
        except ValueError as exc:
            self.refuse(obs, time_field, obs.time, str(exc).split(": ", 1)[-1])
            return None
        low, high = reference_range(obs.reference_range)
        unit = obs.units
        if not unit and test.qualitative and not obs.value.replace(".", "", 1).isdigit():
            unit = test.canonical_unit  # a PCR reported as text (Detected) carries no unit
        given = next((c[0] for c in obs.codes if c[2] in LOINC_SYSTEMS and c[0] in test.loinc), test.key)
        try:
            lab = intake.reading(
                mrn=p.mrn,
                test=given,
                taken_at=taken,
                value=obs.value,
                unit=unit,
                ref_low=low,
                ref_high=high,
                source=SOURCE,
                status=RESULT_STATUSES[obs.status or "F"],
                source_id=_identity(self.msg, obs),
                where=f"{self.source}: {obs.where}",
                as_of=self.as_of,
            )
            lab.abnormal_flags = "~".join(obs.abnormal_flags)[:40] or None
            return lab
        except intake.Refused as refused:
            for err in refused.errors:
                where_field = _FIELD_OF.get(err.column, err.column)
                if err.column == "taken_at":
                    where_field = time_field
                self.refuse(obs, where_field, err.value, err.reason)
            return None

    def run(self) -> Outcome:
        msg, session = self.msg, self.session
        p = msg.patient
        assert p is not None
        observations = [(obs, self.codes.test_for(obs.codes, self.facility)) for obs in msg.observations]
        used = [(obs, t) for obs, t in observations if t is not None]
        self.outcome.not_used = len(observations) - len(used)
        if p.mrn is None:
            for obs, _t in used:
                self.refuse(obs, "PID-3", None, p.mrn_problem or "no MRN")
            if not used:
                self.refuse(None, "PID-3", None, p.mrn_problem or "no MRN", kind="patient")
            return self.finish(None)
        patient, exists = self.patient_in()
        if patient is None and not exists:
            if msg.message_type != "ADT":
                for obs, _t in used:
                    self.refuse(
                        obs,
                        "PID-3",
                        p.mrn,
                        "unknown MRN: not in the database (an ADT^A01/A04 message or the dashboard adds the patient)",
                    )
            return self.finish(None)
        identities = {obs.index: _identity(msg, obs) for obs, _t in used}
        stored: dict[str, LabResult] = {}
        pid = self.patient_id
        if pid is not None and identities:
            for row in session.execute(_RESULTS_OF, {"pid": pid, "ids": sorted(set(identities.values()))}).scalars():
                if row.source_id is not None:
                    stored[row.source_id] = row
        new: dict[str, tuple[Observation, LabIn]] = {}  # by identity: one result once per message
        amend: list[tuple[Observation, LabResult, LabIn]] = []
        for obs, test in used:
            assert test is not None
            status = obs.status or "F"
            identity = identities[obs.index]
            row = stored.get(identity)
            if status in NO_RESULT_YET:
                continue
            if status in CANCELLED:
                if row is not None and not row.hidden:
                    self.hide(row, CANCELLED[status])
                continue
            if status not in RESULT_STATUSES:
                self.refuse(obs, "OBX-11", obs.status, "unknown result status (HL7 table 0085: F, C, P, R, U, X, D, W, I, O, S, N)")
                continue
            lab = self.lab_in(obs, test)
            if lab is None:
                continue
            if row is None:
                self.add_new(new, identity, obs, lab)
            elif row.hidden:
                self.refuse(obs, "OBX-11", obs.status, "this result was cancelled or removed earlier; a person decides whether it stands again")
            else:
                decision, why = intake.resent_result(row.status, lab.status, _same(row, lab))
                if decision == "unchanged":
                    self.outcome.unchanged += 1
                elif decision == "amend":
                    amend.append((obs, row, lab))
                else:  # a person decides: nothing is changed, the OBX waits in the review list
                    self.refuse(obs, "OBX-11", obs.status or "F", f"{why} (OBX-11 C sends a correction)")
        ids = self.write_new(patient, list(new.values()))
        for obs, row, lab in amend:
            self.amend(obs, row, lab)
        if ids is None:
            ids = pid
        return self.finish(ids)

    def add_new(self, new: dict[str, tuple[Observation, LabIn]], identity: str, obs: Observation, lab: LabIn) -> None:
        """A new result of this message; the same identity again in the message (a preliminary and
        its final, a repeated OBX) is decided by the one rule of re-sent results
        (``intake.resent_result``), the later OBX against the earlier: it replaces it, is the same
        again, or waits in the review list. Never two rows, never one silently dropped."""
        earlier = new.get(identity)
        if earlier is None:
            new[identity] = (obs, lab)
            return
        decision, why = intake.resent_result(earlier[1].status, lab.status, _same(earlier[1], lab))
        if decision == "amend":
            new[identity] = (obs, lab)
        elif decision == "unchanged":
            self.outcome.unchanged += 1
        else:
            self.refuse(obs, "OBX-11", obs.status or "F", f"the same result as OBX {earlier[0].index} of this message: {why}")

    def write_new(self, patient: PatientIn | None, new: list[tuple[Observation, LabIn]]) -> int | None:
        """Insert the new results (and the patient from PID); a refused one goes to the review list."""
        pending = list(new)
        for _attempt in range(2):
            try:
                result = write_batch(
                    self.session,
                    patients=[patient] if patient is not None else [],
                    labs=[lab for _obs, lab in pending],
                    username=self.user,
                    source=SOURCE,
                    description=self.source,
                )
                if result.patients_created:
                    self.outcome.patient = "patient created"
                elif result.patients_updated:
                    self.outcome.patient = "patient updated"
                break
            except BatchRejected as exc:
                refused = {pr.where: pr for pr in exc.problems}
                keep = []
                for obs, lab in pending:
                    pr = refused.get(lab.where)
                    if pr is None:
                        keep.append((obs, lab))
                    else:
                        self.refuse(obs, _FIELD_OF.get(pr.column or "", pr.column or "OBX-5"), pr.value, pr.reason)
                if len(keep) == len(pending):
                    # Not a result's problem (the patient's): every result waits in the review list.
                    for obs, _lab in pending:
                        self.refuse(obs, "PID", None, "; ".join(pr.reason for pr in exc.problems))
                    pending = []
                    patient = None
                else:
                    pending = keep
        self.outcome.stored = len(pending)
        pid = self.patient_id
        if pid is None and (result_patient := self.msg.patient) is not None:
            pid = self.session.execute(_PATIENT_ID, {"mrn": result_patient.mrn}).scalar_one_or_none()
        if pid is not None and pending:
            touch_patient(self.session, pid)
        return pid

    def amend(self, obs: Observation, row: LabResult, lab: LabIn) -> None:
        from monitoring.services import amend_from_source  # the one amendment of a re-sent result (FHIR too)

        status = obs.status or "F"
        why = {
            "C": "corrected by the laboratory (OBX-11 C)",
            "F": "final result replaces the preliminary one (OBX-11 F)",
            "U": "final result replaces the preliminary one (OBX-11 U)",
            "P": "preliminary result updated by the laboratory (OBX-11 P)",
            "R": "unverified result updated by the laboratory (OBX-11 R)",
        }[status]
        row.abnormal_flags = "~".join(obs.abnormal_flags)[:40] or None
        amend_from_source(self.session, row, lab, user=self.user, why=f"{why}: {self.source}")
        self.outcome.amended += 1

    def hide(self, row: LabResult, reason: str) -> None:
        from monitoring.services import void_from_source  # the one removal of a withdrawn result (FHIR too)

        void_from_source(self.session, row, user=self.user, reason=f"{reason}: {self.source}")
        self.outcome.hidden += 1

    def finish(self, patient_id: int | None) -> Outcome:
        o = self.outcome
        o.errors = self.errors
        o.code = "AE" if self.errors else "AA"
        parts = []
        if self.msg.message_type == "ADT":
            parts.append(o.patient or "patient unchanged")
        if o.stored or not (o.amended or o.hidden or o.unchanged or self.msg.message_type == "ADT"):
            parts.append(f"stored {o.stored}")
        if o.amended:
            parts.append(f"amended {o.amended}")
        if o.hidden:
            parts.append(f"cancelled {o.hidden}")
        if o.unchanged:
            parts.append(f"unchanged {o.unchanged}")
        if self.errors:
            parts.append(f"{len(self.errors)} to review")
        if o.not_used:
            parts.append(f"{o.not_used} OBX not followed")
        o.text = "; ".join(parts)
        # One INSERT, now (no ORM object: nothing reads it back in this session but the next
        # message's MSH-10 query); a control ID stored meanwhile by another listener fails here.
        self.session.flush()
        self.session.execute(
            _INSERT_MESSAGE,
            {
                "received_at": utcnow(),
                "sender": self.msg.sender,
                "control_id": self.msg.control_id,
                "message_type": self.msg.kind,
                "sha256": _sha(self.raw),
                "ack_code": o.code,
                "ack_text": o.text,
                "errors": [{"location": e.location, "reason": e.reason} for e in self.errors],
                "patient_id": patient_id,
                "results_stored": o.stored + o.amended,
                "via": self.via,
            },
        )
        return o


# The statements of every message, built once (building one cost more than running it).
_INSERT_MESSAGE = table_of(Hl7Message).insert()
_PRIOR = select(
    col(Hl7Message.sha256), col(Hl7Message.ack_code), col(Hl7Message.ack_text), col(Hl7Message.errors)
).where(col(Hl7Message.sender) == bindparam("sender"), col(Hl7Message.control_id) == bindparam("control_id"))
_PATIENT_ID = select(col(Patient.id)).where(col(Patient.mrn) == bindparam("mrn"))
_RESULTS_OF = select(LabResult).where(
    col(LabResult.patient_id) == bindparam("pid"), col(LabResult.source_id).in_(bindparam("ids", expanding=True))
)


def store_message(session: Session, raw: bytes, *, codes: CodeMap, via: str = "mllp", as_of: Any = None) -> Outcome:
    """Read ``raw`` and store what it carries in ``session`` (the caller commits). Never raises for
    bad input: an unreadable message is an AR outcome and nothing is written."""
    try:
        msg = parse_message(raw)
    except Unreadable as exc:
        return Outcome("AR", str(exc))
    prior = session.execute(_PRIOR, {"sender": msg.sender, "control_id": msg.control_id}).one_or_none()
    if prior is not None:
        if prior.sha256 == _sha(raw):
            return Outcome(
                prior.ack_code,
                prior.ack_text,
                [AckError(e["location"], e["reason"]) for e in prior.errors],
                control_id=msg.control_id,
                duplicate=True,
            )
        return Outcome(
            "AR",
            f"MSH-10 {msg.control_id} was already received from {msg.sender or 'this sender'} with other content; "
            "a new message needs a new control ID",
            control_id=msg.control_id,
        )
    return _Message(session, msg, codes, raw, via, as_of).run()


def observations_of(raw: bytes) -> Sequence[Observation]:
    """The OBX of a message (for the command line's dry reading and tests)."""
    return parse_message(raw).observations
