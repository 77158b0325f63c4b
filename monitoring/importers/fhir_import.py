"""FHIR R4 Bundle import (PRODUCT.md §6, issue 9).

``parse_bundle(path)`` reads one Bundle (collection, transaction, batch or searchset) and turns it
into the records of the shared write path (``PatientIn`` / ``LabIn`` / ``MedIn``) plus every
problem found, naming the file, the resource (type/id) and its place in the bundle, e.g.
``b.json: Observation/abc (entry[12]): column valueQuantity.unit: value 'mmol/L': unit ...``.
Nothing is written here: ``monitoring.importers.import_files`` writes everything through
``store.write_batch`` in one transaction with the CSV files, or nothing when there is a problem.

Validation: each resource the product *uses* is validated against the FHIR R4 model of the
``fhir.resources`` library (its ``R4B`` package: for Patient, Observation, Condition,
AllergyIntolerance, Medication, MedicationRequest / MedicationStatement / MedicationAdministration
the R4B and R4 structures are the same), so a malformed or wrong-version resource is refused with
the path of the offending element. Resources the product does not use are counted and skipped,
never validated and never an error (PRODUCT.md §6): a hospital's Claim with a quirk must not block
its laboratory results. A file that is not JSON, is truncated, is not a Bundle, is a Bundle type
other than the four above, or carries resource types of another FHIR version (DSTU2, STU3, R5) is
refused as a whole with a message naming the file.

Rules, each from PRODUCT.md §6 unless said otherwise:
- MRN: the Patient identifier whose type is MR (v2-0203), else its first identifier, else its id.
  References (``Patient/id``, a ``urn:uuid`` fullUrl, an absolute URL) resolve within the bundle;
  a reference to a patient not in the bundle resolves through ``reference.identifier.value`` (the
  MRN, which must then be stored already), else it is a problem.
- Times are kept as the local clock time recorded; a result's UTC offset is kept beside it
  (``taken_at_offset_minutes``, through ``intake.reading``), never applied. A partial date (year or
  month) is refused.
- Observation: catalogue LOINC codes (or this product's own code system for tests without a
  LOINC code), valueQuantity converted as for CSV with the physiological bounds, referenceRange
  converted to the canonical unit, identity = resource id (re-import is idempotent; two results at
  the same time with different ids are both kept); re-sent with a stored id, ``intake.resent_result``
  decides (a correction or the final of a preliminary amends the stored row, ``match_stored`` /
  ``write_corrections``); entered-in-error removes the stored result (hidden, audited) and is
  otherwise skipped, like cancelled;
  body weight also updates the patient's weight (the latest by time); PCR as text.
- Medications become schedule rows: a row at the start of each order with its daily dose, and a
  row with dose 0 the day after its end unless the same drug continues then. Open-ended orders of
  a drug run until the next order of that drug starts (the schedule rule of PRODUCT.md §3).
- AllergyIntolerance to a drug records a culprit drug; a DRESS Condition gives the onset and
  resolution dates.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from monitoring import catalogue, intake
from monitoring.catalogue import TestDef
from monitoring.drugs import (
    PREDNISONE_EQUIVALENCE,
    PROTON_PUMP_INHIBITORS,
    SECOND_LINE,
    drug_table,
    normalise_drug,
    resolve_coded,
)
from monitoring.importers.caps import MAX_FHIR_ENTRIES
from monitoring.intake import Refused, today
from monitoring.models import ClinicalFinding, LabResult, Patient
from monitoring.store import BatchRejected, BatchResult, LabIn, MedIn, PatientIn, Problem, _same_value, write_batch

__all__ = [
    "ACCEPTED_BUNDLE_TYPES",
    "EXT",
    "FindingIn",
    "LOCAL_FINDING_SYSTEM",
    "LOCAL_TEST_SYSTEM",
    "ParsedBundle",
    "RXNORM_INGREDIENTS",
    "SOURCE_ID_SYSTEM",
    "import_bundle",
    "parse_bundle",
    "parse_bundle_bytes",
]

# --- code systems and extensions -----------------------------------------------------------
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
# This product's own code systems (PRODUCT.md §4: bsa_pct and hhv6_pcr have no LOINC code).
LOCAL_TEST_SYSTEM = "urn:dress-monitor:test"
LOCAL_FINDING_SYSTEM = "urn:dress-monitor:finding"
SOURCE_ID_SYSTEM = "urn:dress-monitor:source-id"


class EXT:
    """Extensions written by ``monitoring.fhir_export`` so that a round trip restores every field."""

    AS_RECEIVED = "urn:dress-monitor:extension:as-received"  # Observation: value/unit as received
    AS_ENTERED = "urn:dress-monitor:extension:as-entered"  # MedicationStatement: drug/dose/unit as entered
    WEIGHT = "urn:dress-monitor:extension:weight"  # Patient: weight (kg) in force
    BASELINE_CREATININE = "urn:dress-monitor:extension:baseline-creatinine"  # Patient (mg/dL)
    SETTING = "urn:dress-monitor:extension:setting"  # Patient: inpatient | clinic
    BSA = "urn:dress-monitor:extension:bsa-percent"  # Media: body surface area with rash (%)


# HL7 "test health data": the tag that marks this product's synthetic demo patients on export.
SYNTHETIC_TAG = {"system": ACT_REASON, "code": "HTEST"}

ACCEPTED_BUNDLE_TYPES: tuple[str, ...] = ("collection", "transaction", "batch", "searchset", "document")
R4_VERSIONS = ("4.0", "4.3")  # R4 (4.0.x) and R4B (4.3.x), whose used resources are identical

# Resource types that do not exist in R4 but in another FHIR version: a bundle that holds one is
# refused as a whole (a DSTU2 or R5 export read as R4 would be misread silently otherwise).
OTHER_VERSION_TYPES: dict[str, str] = {
    **{
        t: "DSTU2"
        for t in ("MedicationOrder", "DiagnosticOrder", "Order", "OrderResponse", "DeviceUseRequest", "Conformance",
                  "ImagingObjectSelection")
    },
    **{
        t: "DSTU2/STU3"
        for t in ("BodySite", "DataElement", "DeviceComponent", "EligibilityRequest", "EligibilityResponse",
                  "ExpansionProfile", "ImagingManifest", "ProcedureRequest", "ProcessRequest", "ProcessResponse",
                  "ReferralRequest", "Sequence", "ServiceDefinition")
    },
    **{
        t: "R5"
        for t in ("ActorDefinition", "ArtifactAssessment", "BiologicallyDerivedProductDispense", "ConditionDefinition",
                  "DeviceAssociation", "DeviceDispense", "DeviceUsage", "EncounterHistory", "FormularyItem",
                  "GenomicStudy", "ImagingSelection", "InventoryItem", "InventoryReport", "MedicationUsage",
                  "NutritionIntake", "Permission", "RequestOrchestration", "Requirements", "TestPlan", "Transport")
    },
}

# RxNorm ingredient codes of the drug table (monitoring/drugs.toml, each with where it was read;
# check them against RxNav before production use), for the export's codings. Reading a code is the
# resolver's (drugs.resolve_coded), which also knows the clinical-drug codes of the table.
RXNORM_INGREDIENTS: dict[str, str] = {e.rxcui: e.name for e in drug_table().entries.values() if e.rxcui}
# Drugs whose schedule the rules read (steroid course, second line, GI prophylaxis): an order of
# one of them with a dose the product cannot convert is an error, never silently dropped.
RECOGNISED_DRUGS: frozenset[str] = frozenset(PREDNISONE_EQUIVALENCE) | PROTON_PUMP_INHIBITORS | SECOND_LINE

# SNOMED CT route codes -> the plain route words drugs.is_systemic_route understands.
ROUTES: dict[str, str] = {
    "26643006": "oral",
    "47625008": "intravenous",
    "78421000": "intramuscular",
    "34206005": "subcutaneous",
    "6064005": "topical",
    "37161004": "rectal",
    "46713006": "nasal",
    "447694001": "inhalation",
    "54485002": "ophthalmic",
    "10547007": "otic",
}

_DRESS_TEXT = re.compile(r"\bdress\b|\bdihs\b|drug reaction with eosinophilia", re.IGNORECASE)
# "5 MG" of an RxNorm name; "5 MG/ML" is a concentration, not a strength per tablet.
_STRENGTH = re.compile(r"(\d+(?:\.\d+)?)\s*MG\b(?!/)", re.IGNORECASE)
_FHIR_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FHIR_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?")
_PARTIAL_DATE = re.compile(r"\d{4}(-\d{2})?")

# Dose units -> (mg per unit, per kg of body weight)
_MASS_UNITS: dict[str, tuple[float, bool]] = {
    "mg": (1.0, False),
    "g": (1000.0, False),
    "ug": (0.001, False),
    "mcg": (0.001, False),
    "mg/kg": (1.0, True),
    "g/kg": (1000.0, True),
}
# Units that count tablets or capsules: the strength comes from the product's name.
_COUNT_UNITS = frozenset(
    {"", "1", "tbl", "tab", "tabs", "tablet", "tablets", "capsule", "capsules", "cap", "caps", "each", "dose"}
)
_PERIOD_DAYS: dict[str, float] = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0, "a": 365.0}
_TIMING_CODES: dict[str, float] = {
    "QD": 1, "QOD": 0.5, "BID": 2, "TID": 3, "QID": 4, "AM": 1, "PM": 1, "QAM": 1, "QPM": 1, "QHS": 1,
    "Q4H": 6, "Q6H": 4, "Q8H": 3, "Q12H": 2, "Q24H": 1,
}
_SKIP_STATUS: dict[str, frozenset[str]] = {
    "Observation": frozenset({"entered-in-error", "cancelled"}),
    "MedicationRequest": frozenset({"entered-in-error", "cancelled", "draft"}),
    "MedicationStatement": frozenset({"entered-in-error", "not-taken"}),
    "MedicationAdministration": frozenset({"entered-in-error", "not-done"}),
}
# Required value-set bindings of the elements the importer reads: the model library checks
# structure and datatypes but not these codes, so they are checked here.
_REQUIRED_CODES: dict[str, dict[str, frozenset[str]]] = {
    "Observation": {"status": frozenset({"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                                         "entered-in-error", "unknown"})},
    "MedicationRequest": {"status": frozenset({"active", "on-hold", "cancelled", "completed", "entered-in-error", "stopped",
                                               "draft", "unknown"})},
    "MedicationStatement": {"status": frozenset({"active", "completed", "entered-in-error", "intended", "stopped", "on-hold",
                                                 "unknown", "not-taken"})},
    "MedicationAdministration": {"status": frozenset({"in-progress", "not-done", "on-hold", "completed", "entered-in-error",
                                                      "stopped", "unknown"})},
    "Patient": {"gender": frozenset({"male", "female", "other", "unknown"})},
}
_MAX_ERRORS_PER_RESOURCE = 5


@dataclass
class FindingIn:
    """A hand-entered RegiSCAR finding carried by this product's own export (ClinicalFinding)."""

    mrn: str
    item: str
    value: str
    note: str | None
    recorded_at: dt.datetime
    recorded_by: str | None
    where: str


@dataclass
class ParsedBundle:
    """What one bundle holds, ready for ``store.write_batch``, and every problem found in it.

    ``skipped`` counts, per resource type, the resources not used (unused types, uncatalogued
    codes, entered-in-error, orders without a usable dose); ``skip_reasons`` says why, except for
    types the product does not use at all. ``notes`` counts resources used with a caveat.
    ``patient_updates`` carries patient fields found outside the Patient resource (weight from a
    body-weight Observation, DRESS dates from a Condition, culprit drugs from AllergyIntolerance).
    """

    path: Path
    patients: list[PatientIn] = field(default_factory=list)
    labs: list[LabIn] = field(default_factory=list)
    meds: list[MedIn] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    skip_reasons: dict[str, int] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)  # used, with something the reader should know
    patient_updates: dict[str, PatientIn] = field(default_factory=dict)
    findings: list[FindingIn] = field(default_factory=list)
    resources: int = 0
    # Times of the body-weight results behind a weight update (checked against stored results).
    weight_times: dict[str, dt.datetime] = field(default_factory=dict)
    # Culprit drugs from AllergyIntolerance, per MRN: merge_stored adds them to the stored ones.
    culprits: dict[str, list[str]] = field(default_factory=dict)
    # Other drug allergies (not DRESS), per MRN, and the text of each patient's DRESS Conditions.
    allergies: dict[str, list[str]] = field(default_factory=dict)
    dress_texts: dict[str, list[str]] = field(default_factory=dict)
    # Each resource by the place a problem names it ("file: Type/id (entry[3])"), and the MRN it
    # was found to belong to: an import with --skip-invalid keeps the refused resource as received.
    resource_at: dict[str, dict[str, Any]] = field(default_factory=dict)
    mrn_at: dict[str, str] = field(default_factory=dict)
    # id() of the schedule rows of drugs no decision reads (their problems never block)
    optional_meds: set[int] = field(default_factory=set)
    # Observations withdrawn by the sender (status entered-in-error): (MRN, source id, where, and
    # the business identifier, catalogue test and time that find it under another resource id, or None).
    withdrawn: list[tuple[str, str, str, tuple[str, str, dt.datetime] | None]] = field(default_factory=list)
    # Found by match_stored, applied by write_corrections: (stored row, re-sent result, why) and
    # (stored row, reason).
    corrections: list[tuple[LabResult, LabIn, str]] = field(default_factory=list)
    removals: list[tuple[LabResult, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def skip(self, rtype: str, reason: str | None = None) -> None:
        """Count a resource not used; ``reason`` None: its type is not used (the count says it all)."""
        self.skipped[rtype] = self.skipped.get(rtype, 0) + 1
        if reason is not None:
            key = f"{rtype}: {reason}"
            self.skip_reasons[key] = self.skip_reasons.get(key, 0) + 1

    def all_patients(self) -> list[PatientIn]:
        return [*self.patients, *self.patient_updates.values()]

    def drop_unweighable(self, session: Session, weighed: set[str]) -> set[int]:
        """Leave out the mg/kg doses of drugs no decision reads for patients without a weight
        (neither in the import, ``weighed``, nor stored): listed as skipped, never a refusal.
        Returns the id() of the records left out."""
        candidates = [m for m in self.meds if id(m) in self.optional_meds and m.dose_per_kg is not None and m.mrn not in weighed]
        if not candidates:
            return set()
        pt = Patient.__table__  # type: ignore[attr-defined]
        stored = {mrn for mrn, w in session.execute(
            select(pt.c.mrn, pt.c.weight_kg).where(pt.c.mrn.in_({m.mrn for m in candidates}))) if w}
        dropped = {id(m) for m in candidates if m.mrn not in stored}
        for m in candidates:
            if id(m) in dropped:
                self.skip_reasons_add(f"{m.drug}: a mg/kg dose and no weight recorded: not placed on the schedule")
        self.meds = [m for m in self.meds if id(m) not in dropped]
        return dropped

    def skip_reasons_add(self, reason: str) -> None:
        key = f"medication: {reason}"
        self.skip_reasons[key] = self.skip_reasons.get(key, 0) + 1

    def merge_stored(self, session: Session) -> None:
        """Merge with what is stored; call before ``write_batch`` (the updates are changed in place).

        Culprit drugs are added to the stored ones, never replace them (a culprit dropped would
        silence RECHALLENGE); a body weight older than a stored weight result does not overwrite the
        patient's weight (the latest by time wins)."""
        mrns = [m for m, u in self.patient_updates.items()
                if m in self.culprits or m in self.allergies or "weight_kg" in u.values]
        if not mrns:
            return
        pt = Patient.__table__  # type: ignore[attr-defined]
        lt = LabResult.__table__  # type: ignore[attr-defined]
        stored_allergies: dict[str, list[str]] = {}
        stored = {}
        for pid, mrn, culprits, allergies in session.execute(
                select(pt.c.id, pt.c.mrn, pt.c.culprit_drugs, pt.c.drug_allergies).where(pt.c.mrn.in_(mrns))):
            stored[mrn] = (pid, list(culprits or []))
            stored_allergies[mrn] = list(allergies or [])
        latest_weight = dict(session.execute(
            select(lt.c.patient_id, func.max(lt.c.taken_at))
            .where(lt.c.patient_id.in_([pid for pid, _ in stored.values()]), lt.c.test == "weight", lt.c.hidden.is_(False))
            .group_by(lt.c.patient_id)
        ).all()) if stored else {}
        for mrn, upd in self.patient_updates.items():
            pid, culprits = stored.get(mrn, (None, []))
            if mrn in self.culprits:
                merged = _merge_names(culprits, self.culprits[mrn])
                if merged != culprits:
                    upd.values["culprit_drugs"] = merged
            if self.allergies.get(mrn):
                have = stored_allergies.get(mrn, [])
                merged = [a for a in _merge_names(have, self.allergies[mrn]) if a not in (upd.values.get("culprit_drugs") or culprits)]
                if merged != have:
                    upd.values["drug_allergies"] = merged
            if pid is None:
                continue
            when = self.weight_times.get(mrn)
            if when is not None and "weight_kg" in upd.values and latest_weight.get(pid) and latest_weight[pid] > when:
                del upd.values["weight_kg"]

    def match_stored(self, session: Session) -> set[int]:
        """Results re-sent with the identity (resource id) of a stored one, decided by the one rule
        ``intake.resent_result`` (PRODUCT.md §6 edition 2, "Corrections"): a correction (status
        corrected / amended) or the final of a stored preliminary result becomes an amendment of the
        stored row, taken out of the batch (returns their id()); the same result again and
        conflicts stay in the batch, where ``write_batch`` skips or refuses them. Observations sent
        as entered-in-error whose result is stored are to be removed (hidden). Call before
        ``write_batch``; ``write_corrections`` applies them once the batch is accepted."""
        self.corrections, self.removals = [], []
        keyed = [lab for lab in self.labs if lab.source_id is not None]
        if not keyed and not self.withdrawn:
            return set()
        pt = Patient.__table__  # type: ignore[attr-defined]
        mrns = {lab.mrn for lab in keyed} | {w[0] for w in self.withdrawn}
        ids = dict(session.execute(select(pt.c.mrn, pt.c.id).where(pt.c.mrn.in_(mrns))).all())
        if not ids:
            return set()
        source_ids = {str(lab.source_id) for lab in keyed} | {w[1] for w in self.withdrawn}
        stored = {(row.patient_id, str(row.source_id)): row for row in _stored_labs(session, ids, "source_id", source_ids)}
        # The same result under a new resource id is found by its business identifier, test and
        # time: an identifier some laboratories give a whole order (accession) is shared by serial
        # results of one test (troponin at 0 h and 3 h), which the time keeps apart.
        identifiers = {lab.source_identifier for lab in keyed if lab.source_identifier is not None}
        identifiers |= {w[3][0] for w in self.withdrawn if w[3] is not None}
        by_identifier = {
            (row.patient_id, str(row.source_identifier), row.test, row.taken_at): row
            for row in _stored_labs(session, ids, "source_identifier", identifiers)
            if row.source_id is not None
        }
        taken: set[int] = set()
        for lab in keyed:
            pid = ids.get(lab.mrn, -1)
            row = stored.get((pid, str(lab.source_id)))
            if row is None and lab.source_identifier is not None:
                row = by_identifier.get((pid, lab.source_identifier, lab.test, lab.taken_at))
                if row is not None:
                    # The same result under a new resource id (another server, a re-export): it is
                    # decided as if re-sent under the id it is stored with, so the same result again
                    # is skipped and another value without a correction status is refused by name.
                    lab.source_id = row.source_id
            if row is None or row.hidden:
                continue  # new, or removed earlier: write_batch inserts it, skips it or refuses a change
            same = (
                row.test == lab.test
                and row.taken_at == lab.taken_at
                and _same_value(row.value, lab.value)
                and row.value_text == lab.value_text
                and row.comparator == lab.comparator
            )
            action, why = intake.resent_result(row.status, lab.status, same)
            if action == "amend":
                self.corrections.append((row, lab, f"{why} ({lab.where})"))
                taken.add(id(lab))
        for mrn, source_id, where, same_result in self.withdrawn:
            pid = ids.get(mrn, -1)
            row = stored.get((pid, source_id))
            if row is None and same_result is not None:
                row = by_identifier.get((pid, *same_result))
            if row is not None and not row.hidden:
                self.removals.append((row, f"entered-in-error: withdrawn by its sender ({where})"))
        return taken

    def write_corrections(self, session: Session, username: str | None = None) -> tuple[int, int]:
        """Apply what ``match_stored`` found (after ``write_batch``), through the one amendment and
        removal path of ``monitoring.services``, audited. Returns (amended, removed)."""
        from monitoring.services import amend_from_source, void_from_source

        user = username or "fhir import"
        for row, lab, why in self.corrections:
            amend_from_source(session, row, lab, user=user, why=why)
        for row, reason in self.removals:
            void_from_source(session, row, user=user, reason=reason)
        return len(self.corrections), len(self.removals)

    def write_findings(self, session: Session, username: str | None = None) -> int:
        """Store the hand-entered findings of the bundle (after ``write_batch``); idempotent: a
        finding with the same item, value and time is stored once. Returns the number added."""
        if not self.findings:
            return 0
        pt = Patient.__table__  # type: ignore[attr-defined]
        ids = dict(session.execute(select(pt.c.mrn, pt.c.id).where(pt.c.mrn.in_({f.mrn for f in self.findings}))).all())
        ft = ClinicalFinding.__table__  # type: ignore[attr-defined]
        have = {
            (pid, item, value, at)
            for pid, item, value, at in session.execute(
                select(ft.c.patient_id, ft.c.item, ft.c.value, ft.c.recorded_at).where(ft.c.patient_id.in_(list(ids.values())))
            )
        }
        added = 0
        for f in self.findings:
            pid = ids.get(f.mrn)
            if pid is None or (pid, f.item, f.value, f.recorded_at) in have:
                continue
            session.add(ClinicalFinding(patient_id=pid, item=f.item, value=f.value, note=f.note,
                                        recorded_at=f.recorded_at, recorded_by=f.recorded_by or username))
            have.add((pid, f.item, f.value, f.recorded_at))
            added += 1
        session.flush()
        return added


def _merge_names(first: Iterable[str], second: Iterable[str]) -> list[str]:
    out: list[str] = []
    for name in [*first, *second]:
        n = normalise_drug(name)
        if n and n not in out:
            out.append(n)
    return out


# --- entry points ------------------------------------------------------------------------------


def parse_bundle(path: Path, *, as_of: dt.date | None = None, other_patients: Mapping[str, str] | None = None) -> ParsedBundle:
    """Read and check one FHIR R4 Bundle file. Never raises for bad input: see ``problems``.

    ``as_of`` is "today" for the rule that results cannot be dated in the future.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        out = ParsedBundle(path)
        out.problems.append(Problem(str(path), None, None, f"cannot read the file: {exc.strerror or exc}"))
        return out
    return parse_bundle_bytes(data, path, as_of=as_of, other_patients=other_patients)


def parse_bundle_bytes(
    data: bytes, path: Path | str, *, as_of: dt.date | None = None, other_patients: Mapping[str, str] | None = None
) -> ParsedBundle:
    """Like ``parse_bundle`` for content already read; ``path`` names it in every problem.

    ``other_patients``: the Patients of the other files of the same import (``patient_index``),
    reference -> MRN, so that a resource here may name a Patient sent in another file."""
    path = Path(path)
    out = ParsedBundle(path)
    name = str(path)
    bundle = _load_json(data, name, out)
    if bundle is None:
        return out
    if not _check_bundle(bundle, name, out):
        return out
    _Reader(bundle, name, out, as_of or today(), other_patients or {}, limit=intake.future_limit(as_of=as_of)).read()
    return out


def patient_index(data: bytes, *, as_of: dt.date | None = None) -> dict[str, str]:
    """The Patients of one Bundle file as reference -> MRN ("Patient/id" and each fullUrl), for
    linking the resources of the other files of the same import. Unreadable content gives {}."""
    try:
        doc = json.loads(data.decode("utf-8-sig"), parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    out: dict[str, str] = {}

    def walk(bundle: Any) -> None:
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict):
                continue
            if res.get("resourceType") == "Bundle":
                walk(res)
            elif res.get("resourceType") == "Patient":
                mrn, _rule = _mrn_of(res, as_of)
                if mrn:
                    if res.get("id"):
                        out.setdefault(f"Patient/{res['id']}", mrn)
                    if entry.get("fullUrl"):
                        out.setdefault(str(entry["fullUrl"]), mrn)

    walk(doc)
    return out


def import_bundle(
    session: Session,
    path: Path | str,
    *,
    username: str | None = None,
    as_of: dt.date | None = None,
) -> BatchResult:
    """Parse one bundle and write it in the caller's transaction (the caller commits).

    Raises ``BatchRejected`` with every problem and writes nothing when there is any. The CLI's
    ``import`` goes through ``monitoring.importers.import_files``, which mixes CSV files in.
    """
    parsed = parse_bundle(Path(path), as_of=as_of)
    if parsed.problems:
        raise BatchRejected(parsed.problems)
    parsed.merge_stored(session)
    taken = parsed.match_stored(session)
    result = write_batch(
        session,
        patients=parsed.all_patients(),
        labs=[lab for lab in parsed.labs if id(lab) not in taken],
        meds=parsed.meds,
        username=username,
        source="fhir",
        description=f"FHIR import of {Path(path).name}",
    )
    parsed.write_findings(session, username)
    result.labs_amended, result.labs_removed = parsed.write_corrections(session, username)
    result.skipped_resources = dict(parsed.skipped)
    return result


# --- file-level checks -------------------------------------------------------------------------


def _refuse(out: ParsedBundle, name: str, reason: str, column: str | None = None, value: Any = None) -> None:
    out.problems.append(Problem(name, column, value, reason))


def _load_json(data: bytes, name: str, out: ParsedBundle) -> dict[str, Any] | None:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _refuse(out, name, f"not a FHIR JSON file: not UTF-8 text (byte {exc.start})")
        return None
    if not text.strip():
        _refuse(out, name, "the file is empty: expected a FHIR R4 Bundle (JSON)")
        return None
    try:
        # Decimals keep each number exactly as written: the value "as received" of a result.
        doc = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(text.rstrip()) - 1 or exc.msg.startswith("Unterminated string")
        hint = "; the file ends before the JSON does (truncated?)" if truncated else ""
        _refuse(out, name, f"not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}{hint}")
        return None
    except RecursionError:
        _refuse(out, name, "not valid JSON: nested too deeply")
        return None
    if not isinstance(doc, dict):
        _refuse(out, name, f"not a FHIR resource: the JSON is a {type(doc).__name__}, expected an object with resourceType Bundle")
        return None
    return doc


def _entries_over_cap(entries: list[Any]) -> int | None:
    """The cap when the Bundle's entries, with those of the Bundles nested in it, exceed
    DRESS_MAX_FHIR_ENTRIES (counted while walking; the walk stops at the cap), else None."""
    limit = MAX_FHIR_ENTRIES.value()
    count = 0
    pending = [entries]
    while pending:
        level = pending.pop()
        count += len(level)
        if count > limit:
            return limit
        for entry in level:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
                nested = resource.get("entry")
                if isinstance(nested, list):
                    pending.append(nested)
    return None


def _check_bundle(bundle: dict[str, Any], name: str, out: ParsedBundle) -> bool:
    rtype = bundle.get("resourceType")
    if rtype is None:
        _refuse(out, name, "not a FHIR resource: no resourceType (expected a Bundle)")
        return False
    if rtype != "Bundle":
        _refuse(out, name, f"a {rtype} resource, not a Bundle: export a Bundle (collection, transaction, batch or searchset)",
                "resourceType", rtype)
        return False
    for where, holder in (("fhirVersion", bundle), ("meta.fhirVersion", bundle.get("meta") or {})):
        version = holder.get("fhirVersion") if isinstance(holder, dict) else None
        if version is not None:
            if not str(version).startswith(R4_VERSIONS):
                _refuse(out, name, f"FHIR version {version}: this importer reads FHIR R4 (4.0.x) Bundles only", where, version)
            else:
                _refuse(out, name, "fhirVersion is not an element of an R4 Bundle", where, version)
            return False
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        _refuse(out, name, "Bundle.entry must be a list", "entry", type(entries).__name__)
        return False
    over = _entries_over_cap(entries)
    if over is not None:
        _refuse(out, name, f"too many entries: more than {over:,} ({MAX_FHIR_ENTRIES.named()}); no resource was read",
                "entry", None)
        return False
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict):
            other = OTHER_VERSION_TYPES.get(str(resource.get("resourceType")))
            if other is not None:
                _refuse(out, name, f"entry[{i}]: resource type {resource.get('resourceType')} does not exist in FHIR R4 "
                        f"(it is {other}): this file is not an R4 Bundle")
                return False
    # The Bundle itself (without its resources, which are checked one by one) against the R4 model.
    shell = dict(bundle)
    shell["entry"] = [{k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e for e in entries]
    if not shell["entry"]:
        del shell["entry"]
    errors = _validate("Bundle", shell)
    if errors:
        for loc, msg, value in errors:
            _refuse(out, name, f"not a valid FHIR R4 Bundle: {msg}", loc, value)
        return False
    btype = bundle.get("type")
    if btype not in ACCEPTED_BUNDLE_TYPES:
        _refuse(out, name, f"Bundle type {btype!r} is not imported (accepted: {', '.join(ACCEPTED_BUNDLE_TYPES)})", "type", btype)
        return False
    return True


def _validate(rtype: str, resource: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """Errors of ``resource`` against the FHIR R4 model: (element path, message, offending value)."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    model = get_fhir_model_class(rtype)
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        errors = []
        for err in exc.errors()[:_MAX_ERRORS_PER_RESOURCE]:
            loc = _path(err.get("loc", ()))
            value = err.get("input")
            shown = value if isinstance(value, str | int | float | Decimal | bool) else None
            errors.append((loc or rtype, str(err.get("msg", "invalid")), shown))
        return errors
    return []


def _path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# --- reading the resources ---------------------------------------------------------------------


@dataclass
class _Interval:
    start: dt.date
    end: dt.date | None  # last day given (inclusive); None: until the next order of the drug
    mg: float
    per_kg: float
    drug_as_entered: str
    dose_as_entered: str
    unit_as_entered: str
    route: str | None
    source_id: str | None
    where: str
    exact: bool = False  # a schedule row of this product's export: kept as it is
    optional: bool = False  # a drug no decision reads: dropped (listed) rather than refusing the import


class _Reader:
    def __init__(self, bundle: dict[str, Any], name: str, out: ParsedBundle, as_of: dt.date,
                 other_patients: Mapping[str, str] | None = None, limit: dt.datetime | None = None):
        self.other_patients = dict(other_patients or {})
        self.lenient: str | None = None  # resource type whose problems are skips (see read_medication)
        self.last_administration: dict[int, dt.date] = {}  # id() of an order -> its last administration
        self.bundle = bundle
        self.name = name
        self.out = out
        self.as_of = as_of
        # (place in the file, e.g. "entry[3]" or "entry[3].entry[2]" in a nested Bundle, fullUrl, resource)
        self.entries: list[tuple[str, str | None, dict[str, Any]]] = []
        self.limit = limit or intake.future_limit(as_of=as_of)  # a result taken after it is in the future
        self.by_ref: dict[str, dict[str, Any]] = {}
        self.patient_mrn: dict[int, str] = {}  # id(resource) -> MRN
        self.identifier_mrn: dict[tuple[str | None, str], str] = {}
        self.intervals: dict[tuple[str, str], list[_Interval]] = defaultdict(list)
        self.weights: dict[str, tuple[dt.datetime, float]] = {}
        self.medications_used: set[int] = set()  # id() of Medication resources an imported order names
        # (MRN, "id", resource id) or (MRN, "identifier", business identifier, test, time) -> where and result
        self.lab_ids: dict[tuple[Any, ...], tuple[str, LabIn]] = {}
        # id() of an Observation -> the time / subject its DiagnosticReport or panel gives it
        self.time_from: dict[int, tuple[str, str]] = {}
        self.subject_from: dict[int, Any] = {}
        self.skip_obs: dict[int, str] = {}  # id() of an Observation -> why it is not used

    # -- helpers --
    def where(self, i: str, r: Mapping[str, Any]) -> str:
        rid = r.get("id")
        label = f"{r.get('resourceType')}/{rid}" if rid else str(r.get("resourceType"))
        return f"{self.name}: {label} ({i})"

    def problem(self, where: str, column: str | None, value: Any, reason: str) -> None:
        if self.lenient is not None:
            # Not decision data (an order of a drug no rule reads): skipped and listed, never a refusal.
            self.out.skip(self.lenient, f"not placed on the schedule ({column or 'resource'}: {reason})")
            return
        self.out.problems.append(Problem(where, column, _plain(value), reason))

    def valid(self, i: str, r: dict[str, Any]) -> bool:
        errors = _validate(r["resourceType"], r)
        for element, codes in _REQUIRED_CODES.get(r["resourceType"], {}).items():
            value = r.get(element)
            if value is not None and not (isinstance(value, str) and value in codes):
                errors.append((element, f"not a code of the required value set ({', '.join(sorted(codes))})", value))
        for loc, msg, value in errors:
            self.problem(self.where(i, r), loc, value, f"not valid FHIR R4: {msg}")
        return not errors

    def guarded(self, handler: Callable[[str, dict[str, Any]], None], i: str, r: dict[str, Any]) -> None:
        """Run a reader on a resource that may be malformed anywhere: a resource the readers cannot
        walk is a problem naming it (with the R4 model's findings), never a crash."""
        try:
            handler(i, r)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError, InvalidOperation) as exc:
            if self.valid(i, r):
                self.problem(self.where(i, r), None, None, f"could not be read: {type(exc).__name__}: {exc}")

    def update(self, mrn: str, where: str) -> PatientIn:
        upd = self.out.patient_updates.get(mrn)
        if upd is None:
            upd = self.out.patient_updates[mrn] = PatientIn(mrn, None, {}, where)
        return upd

    # -- main --
    def collect(self, entries: list[Any], prefix: str) -> None:
        """Every resource of the bundle, Bundles nested in its entries walked (PRODUCT.md §6 ed. 2)."""
        for k, entry in enumerate(entries):
            place = f"{prefix}entry[{k}]"
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                self.out.skip("(entry without resource)", "a request without a resource (e.g. DELETE)")
                continue
            if not isinstance(resource.get("resourceType"), str):
                self.problem(f"{self.name}: {place}", "resource.resourceType", None, "a resource without a resourceType")
                continue
            rtype = str(resource.get("resourceType"))
            if rtype == "Bundle":
                inner = resource.get("entry") or []
                if not isinstance(inner, list):
                    self.problem(f"{self.name}: {place}", "resource.entry", None, "a nested Bundle's entry must be a list")
                    continue
                self.collect(inner, place + ".")
                continue
            self.out.resources += 1
            full_url = entry.get("fullUrl")
            self.entries.append((place, full_url, resource))
            self.out.resource_at[self.where(place, resource)] = resource
            rid = resource.get("id")
            if full_url:
                self.by_ref[str(full_url)] = resource
            if rid:
                self.by_ref.setdefault(f"{rtype}/{rid}", resource)
            if full_url and rid and str(full_url).endswith(f"/{rtype}/{rid}"):
                self.by_ref[f"{rtype}/{rid}"] = resource

    def read(self) -> None:
        self.collect(self.bundle.get("entry") or [], "")
        for i, _url, r in self.entries:
            if r.get("resourceType") == "Patient":
                self.guarded(self.read_patient, i, r)
        self.set_contexts()
        for i, _url, r in self.entries:
            if r.get("resourceType") == "DiagnosticReport":
                self.guarded(self.read_report, i, r)
        handlers = {
            "Observation": self.read_observation,
            "Condition": self.read_condition,
            "AllergyIntolerance": self.read_allergy,
            "MedicationRequest": self.read_medication,
            "MedicationStatement": self.read_medication,
            "MedicationAdministration": self.read_medication,
        }
        for i, _url, r in self.entries:
            rtype = str(r.get("resourceType"))
            handler = handlers.get(rtype)
            if handler is not None:
                self.guarded(handler, i, r)
            elif rtype == "DiagnosticReport":
                pass  # read above: its results are Observations
            elif rtype == "Medication":
                pass  # counted below: used when an order that is used refers to it
            elif rtype == "Media":
                self.out.skip(rtype, "photograph metadata without the image (photographs are uploaded in the dashboard)")
            elif rtype != "Patient":
                self.out.skip(rtype)  # a resource type this product does not use
        for _i, _url, r in self.entries:
            if r.get("resourceType") == "Medication" and id(r) not in self.medications_used:
                self.out.skip("Medication", "not referred to by a medication order that was imported")
        self.finish_weights()
        self.finish_schedules()
        self.finish_allergies()

    def finish_allergies(self) -> None:
        """A drug allergy named by the patient's DRESS Condition is a culprit; the others stay allergies."""
        for mrn, names in self.out.allergies.items():
            text = " ".join(self.out.dress_texts.get(mrn, [])).lower()
            named = [n for n in names if text and re.search(rf"\b{re.escape(n.lower())}\b", text)]
            if named:
                self.out.culprits[mrn] = _merge_names(self.out.culprits.get(mrn, []), named)
                self.out.allergies[mrn] = [n for n in names if n not in named]

    # -- Patient --
    def read_patient(self, i: str, r: dict[str, Any]) -> None:
        where = self.where(i, r)
        if not self.valid(i, r):
            return
        mrn, rule = _mrn_of(r, self.as_of)
        if not mrn:
            self.problem(where, "identifier", None,
                         f"no MRN: no identifier typed MR, none of the hospital's MRN system ({MRN_SYSTEM_ENV}), and no id")
            return
        if rule == "id":
            self.note("Patient: no current MR identifier (nor one of the DRESS_MRN_SYSTEM system): the resource id is the MRN")
        try:
            mrn = intake.stored_text("patient", "mrn", mrn)  # the intake path's limit and characters
        except intake.FieldError as exc:
            self.problem(where, "identifier", mrn, f"the MRN: {exc.reason}")
            return
        self.patient_mrn[id(r)] = mrn
        for ident in r.get("identifier") or []:
            if ident.get("value"):
                self.identifier_mrn[(ident.get("system"), str(ident["value"]))] = mrn
                self.identifier_mrn.setdefault((None, str(ident["value"])), mrn)
        # The patient's fields go through the one intake path (name length and characters, sex,
        # birth date not in the future, placeholder birth dates dropped, weight bounds).
        fields: dict[str, Any] = {}
        name = _name_of(r)
        if name is not None:
            fields["name"] = name
        if r.get("gender"):
            fields["sex"] = r["gender"]  # FHIR administrative gender: the codes the product stores
        if r.get("birthDate"):
            if _PARTIAL_DATE.fullmatch(str(r["birthDate"])):
                # FHIR allows a year or month only (often for privacy): not a date the product stores.
                self.note("Patient: partial birthDate (year or month only) not stored")
            else:
                birth = self.date_of(where, "birthDate", r["birthDate"])
                if birth is None:
                    return
                fields["birth_date"] = birth
        if "active" in r:
            fields["active"] = bool(r["active"])
        tags = (r.get("meta") or {}).get("tag") or []
        if any(t.get("system") == SYNTHETIC_TAG["system"] and t.get("code") == SYNTHETIC_TAG["code"] for t in tags):
            fields["synthetic"] = True
        for ext in r.get("extension") or []:
            url = ext.get("url")
            if url == EXT.WEIGHT:
                w = self.quantity_in(where, "extension(weight)", ext.get("valueQuantity"), "weight")
                if w is not None:
                    fields["weight_kg"] = w
            elif url == EXT.BASELINE_CREATININE:
                c = self.quantity_in(where, "extension(baseline-creatinine)", ext.get("valueQuantity"), "creatinine")
                if c is not None:
                    fields["baseline_creatinine_mg_dl"] = c
            elif url == EXT.SETTING and ext.get("valueCode") in ("inpatient", "clinic"):
                fields["setting"] = ext["valueCode"]
        try:
            got = intake.patient_fields(fields, on=self.as_of)
        except Refused as exc:
            for e in exc.errors:
                self.problem(where, _PATIENT_ELEMENT.get(e.column, e.column), r.get("birthDate") if e.column == "birth_date" else e.value, e.reason)
            return
        for n in got.notes:
            # Named with the resource, so the clinician can find the chart to complete.
            self.note(f"{where}: {_PATIENT_ELEMENT.get(n.column, n.column)} '{r.get('birthDate') if n.column == 'birth_date' else n.value}': {n.reason}")
        values = dict(got.values)
        name = values.pop("name", None)
        self.out.patients.append(PatientIn(mrn, name, values, where))

    def quantity_in(self, where: str, column: str, q: Any, test_key: str) -> float | None:
        if not isinstance(q, dict) or q.get("value") is None:
            self.problem(where, column, None, "a quantity with a value is required")
            return None
        test = catalogue.CATALOGUE[test_key]
        unit = q.get("code") or q.get("unit") or test.canonical_unit
        try:
            cv = intake.converter(test, str(unit)).convert(intake.as_text(q["value"]))
        except ValueError as exc:
            self.problem(where, column, q.get("value"), str(exc))
            return None
        if test_key == "weight" and not cv.value:
            self.problem(where, column, q.get("value"), "a weight must be above 0 kg")
            return None
        return cv.value

    # -- references --
    def patient_of(self, i: str, r: dict[str, Any], element: str) -> str | None:
        where = self.where(i, r)
        ref = r.get(element)
        if not isinstance(ref, dict):
            self.problem(where, element, None, "no patient: the resource does not say whose it is")
            return None
        target = ref.get("reference")
        if target:
            target = str(target)
            res = self.by_ref.get(target)
            if res is None and "/Patient/" in target:
                res = self.by_ref.get("Patient/" + target.rsplit("/Patient/", 1)[1].split("/_history")[0])
            if res is not None and res.get("resourceType") == "Patient":
                mrn = self.patient_mrn.get(id(res))
                if mrn is None:
                    self.problem(where, f"{element}.reference", target, "refers to a Patient that could not be read (see its problem)")
                else:
                    self.out.mrn_at[where] = mrn
                return mrn
            if res is None:
                # A Patient sent in another file of the same import links its resources.
                key = target if target in self.other_patients else (
                    "Patient/" + target.rsplit("Patient/", 1)[1].split("/_history")[0] if "Patient/" in target else target)
                if key in self.other_patients:
                    self.out.mrn_at[where] = self.other_patients[key]
                    return self.other_patients[key]
        ident = ref.get("identifier")
        if target and target.startswith("Patient?identifier="):
            # A conditional reference of a transaction: "Patient?identifier=system|value".
            system, _, value = target.split("=", 1)[1].rpartition("|")
            ident = {"system": system or None, "value": value}
        if isinstance(ident, dict) and ident.get("value"):
            value = str(ident["value"])
            # A patient not in the bundle: known by identifier (a stored MRN; write_batch checks it).
            return self.identifier_mrn.get((ident.get("system"), value)) or self.identifier_mrn.get((None, value)) or value
        if target:
            self.problem(where, f"{element}.reference", target,
                         "refers to a patient that is not in this bundle, and gives no identifier (MRN) to find it")
        else:
            self.problem(where, element, None, "no patient reference or identifier")
        return None

    def date_of(self, where: str, column: str, text: Any) -> dt.date | None:
        s = str(text)
        if _FHIR_DATE.fullmatch(s[:10]) and (len(s) == 10 or s[10] == "T"):
            try:
                return dt.date.fromisoformat(s[:10])
            except ValueError:
                pass
        if _PARTIAL_DATE.fullmatch(s):
            self.problem(where, column, s, "a partial date (year or month only) is not precise enough")
        else:
            self.problem(where, column, s, "not a FHIR date (YYYY-MM-DD)")
        return None

    def datetime_of(self, where: str, column: str, text: Any) -> dt.datetime | None:
        """The local clock time as recorded: the offset, when given, is dropped, never applied."""
        s = str(text)
        if _FHIR_DATETIME.fullmatch(s) or (_FHIR_DATE.fullmatch(s)):
            try:
                value = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
            except ValueError:
                value = None
            if value is not None:
                return value.replace(tzinfo=None)
        if _PARTIAL_DATE.fullmatch(s):
            self.problem(where, column, s, "a partial date (year or month only) is not precise enough")
        else:
            self.problem(where, column, s, "not a FHIR dateTime (YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with offset)")
        return None

    # -- Observation --
    def reference_to(self, ref: Any) -> dict[str, Any] | None:
        """The resource a Reference names within the bundle (relative, fullUrl or absolute URL)."""
        target = ref.get("reference") if isinstance(ref, dict) else None
        if not target:
            return None
        target = str(target)
        res = self.by_ref.get(target)
        if res is None and "/" in target:
            parts = target.split("/_history")[0].rstrip("/").split("/")
            if len(parts) >= 2:
                res = self.by_ref.get(f"{parts[-2]}/{parts[-1]}")
        return res

    def context_of(self, parent: dict[str, Any], label: str) -> tuple[tuple[str, str] | None, Any]:
        """(time, subject) a report or panel passes to results that lack their own."""
        text, col = _effective(parent)
        return ((text, f"{label}.{col}") if text else None), parent.get("subject")

    def give_context(self, obs: dict[str, Any], when: tuple[str, str] | None, subject: Any) -> None:
        if when is not None:
            self.time_from.setdefault(id(obs), when)
        if subject is not None:
            self.subject_from.setdefault(id(obs), subject)

    def set_contexts(self) -> None:
        """Before results are read: the time and subject each DiagnosticReport and each panel
        (hasMember) gives the Observations it references."""
        for _i, _url, r in self.entries:
            try:
                self.set_context(r)
            except (AttributeError, TypeError, KeyError, IndexError, ValueError):
                pass  # a damaged resource gives no context; reading it reports its problem

    def set_context(self, r: dict[str, Any]) -> None:
        rtype = r.get("resourceType")
        if rtype == "MedicationAdministration":
            if r.get("status") in _SKIP_STATUS[rtype]:
                return
            order = self.reference_to(r.get("request"))
            period = got if isinstance(got := r.get("effectivePeriod"), dict) else {}
            when = str(r.get("effectiveDateTime") or period.get("end") or period.get("start") or "")
            if isinstance(order, dict) and _FHIR_DATE.fullmatch(when[:10]):
                day = dt.date.fromisoformat(when[:10])
                if day > self.last_administration.get(id(order), dt.date.min):
                    self.last_administration[id(order)] = day
            return
        if rtype == "DiagnosticReport":
            context, subject = self.context_of(r, "DiagnosticReport")
            refs = r.get("result") or []
            skip = r.get("status") in ("entered-in-error", "cancelled")
        elif rtype == "Observation" and r.get("hasMember"):
            context, subject = self.context_of(r, "hasMember of Observation")
            refs = r.get("hasMember") or []
            skip = False
        else:
            return
        for ref in refs if isinstance(refs, list) else []:
            target = self.reference_to(ref)
            if isinstance(target, dict) and target.get("resourceType") == "Observation":
                self.give_context(target, context, subject)
                if skip:
                    self.skip_obs[id(target)] = f"its DiagnosticReport is {r.get('status')}"

    def read_report(self, i: str, r: dict[str, Any]) -> None:
        """A DiagnosticReport: its contained Observations are read here (each identified as
        "<report id>.<contained id>"); those in ``result`` that are entries are read as entries."""
        status = r.get("status")
        if status in ("entered-in-error", "cancelled"):
            self.out.skip("DiagnosticReport", f"status {status}")
            return
        when, subject = self.context_of(r, "DiagnosticReport")
        results: list[dict[str, Any]] = [c for c in r.get("contained") or [] if isinstance(c, dict)]
        for ref in r.get("result") or []:
            target = str((ref or {}).get("reference") or "")
            res = self.reference_to(ref) if target and not target.startswith("#") else None
            if res is not None:
                results.append(res)
            elif target and not target.startswith("#"):
                self.note("DiagnosticReport: a result it references is not in this bundle (not imported)")
        if not any(_has_catalogue_result(x) for x in results if x.get("resourceType") == "Observation"):
            self.out.skip("DiagnosticReport", "none of its results is a test of the catalogue")
            return
        for c in r.get("contained") or []:
            if not isinstance(c, dict) or c.get("resourceType") != "Observation":
                continue
            derived = dict(c)
            derived["id"] = f"{r.get('id') or 'report'}.{c.get('id') or 'contained'}"
            self.give_context(derived, when, subject)
            self.out.resource_at[self.where(i, derived)] = derived
            self.out.resources += 1
            self.guarded(self.read_observation, i, derived)

    def note(self, text: str) -> None:
        self.out.notes[text] = self.out.notes.get(text, 0) + 1

    def read_panel(self, i: str, r: dict[str, Any]) -> bool:
        """A panel Observation: each component with a catalogue code is a result of its own
        (identified "<panel id>.component<k>"); members (hasMember) are read as entries.
        Returns False when nothing in it is a catalogue test."""
        comps = [(k, c) for k, c in enumerate(r.get("component") or [])
                 if isinstance(c, dict) and _observation_code(c.get("code"))[0] is not None]
        if not comps:
            if r.get("hasMember"):
                self.out.skip("Observation", "panel: its members (hasMember) are read as results of their own")
                return True
            return False
        if not self.valid(i, r):
            return True
        for k, c in comps:
            derived = {key: v for key, v in r.items() if not key.startswith("value") and key not in (
                "component", "hasMember", "referenceRange", "interpretation", "identifier", "code", "dataAbsentReason")}
            derived.update({key: v for key, v in c.items() if key.startswith("value") or key in ("code", "referenceRange")})
            derived["id"] = f"{r.get('id') or 'panel'}.component{k}"
            if id(r) in self.time_from:
                self.time_from[id(derived)] = self.time_from[id(r)]
            if id(r) in self.subject_from:
                self.subject_from[id(derived)] = self.subject_from[id(r)]
            self.out.resource_at[self.where(i, derived)] = derived
            self.out.resources += 1
            self.read_observation(i, derived, validate=False)
        return True

    def read_observation(self, i: str, r: dict[str, Any], *, validate: bool = True) -> None:
        status = r.get("status")
        if status in _SKIP_STATUS["Observation"]:
            if status == "entered-in-error":
                self.withdraw(i, r)
            self.out.skip("Observation", f"status {status}")
            return
        if id(r) in self.skip_obs:
            if "entered-in-error" in self.skip_obs[id(r)]:
                self.withdraw(i, r)
            self.out.skip("Observation", self.skip_obs[id(r)])
            return
        test, loinc, finding = _observation_code(r.get("code"))
        if test is None and finding is None:
            if not (r.get("component") or r.get("hasMember")) or not self.read_panel(i, r):
                self.out.skip("Observation", "code not in the catalogue of tests")
            return
        where = self.where(i, r)
        if validate and not self.valid(i, r):
            return
        inherited_time = self.time_from.get(id(r))
        if "subject" not in r and id(r) in self.subject_from:
            r = {**r, "subject": self.subject_from[id(r)]}
        mrn = self.patient_of(i, r, "subject")
        when_text, when_col = _effective(r)
        if when_text is None and inherited_time is not None:
            # An Observation of a DiagnosticReport (or panel) without a time of its own: the report's.
            when_text, when_col = inherited_time
        if when_text is None and r.get("issued"):
            # No clinically relevant time at all: the time the result was issued (later than the
            # sample), said in the report.
            when_text, when_col = str(r["issued"]), "issued"
            self.note("Observation: no effective time: the time it was issued is used")
        if when_text is None:
            self.problem(where, "effectiveDateTime", None, "no time: effectiveDateTime, effectivePeriod.start or effectiveInstant is required")
            return
        when = self.datetime_of(where, when_col, when_text)
        if mrn is None or when is None:
            return
        if finding is not None:
            self.read_finding(where, r, mrn, finding, when)
            return
        assert test is not None
        got = self.lab_value(where, r, test)
        if got is None:
            return
        text, comparator, unit, columns, as_received = got
        refs = self.reference_range(where, r, test, unit) if unit else (None, None)
        if refs is None:
            return
        columns.update({"taken_at": when_col, "ref_low": "referenceRange.low", "ref_high": "referenceRange.high", "source_id": "id"})
        status = str(r.get("status") or "final")
        try:
            lab = intake.reading(
                mrn=mrn,
                test=test.key,
                # with its UTC offset, which the intake keeps beside the recorded time
                taken_at=dt.datetime.fromisoformat(str(when_text).replace("Z", "+00:00")),
                value=text,
                unit=unit,
                ref_low=refs[0],
                ref_high=refs[1],
                comparator=comparator,
                status=_RESULT_STATUS.get(status, "final"),
                source="fhir",
                source_id=_source_id(r),
                where=where,
                now=self.limit - intake.FUTURE_TOLERANCE,
            )
        except Refused as exc:
            for e in exc.errors:
                self.problem(where, columns.get(e.column, e.column), e.value, e.reason)
            return
        lab.loinc = loinc or test.primary_loinc
        if as_received is not None:
            lab.original_value, lab.original_unit = as_received[0][:64], as_received[1][:40]
        value = lab.value
        lab.source_identifier = _business_identifier(r)
        if not self.first_of_its_result(where, mrn, lab):
            return
        self.out.labs.append(lab)
        if test.key == "weight" and value is not None:
            prev = self.weights.get(mrn)
            if prev is None or when >= prev[0]:
                self.weights[mrn] = (when, value)

    def first_of_its_result(self, where: str, mrn: str, lab: LabIn) -> bool:
        """Whether ``lab`` is added to the batch, given the results of this bundle read before it
        with the same identity: resource id, or business identifier, test and time (PRODUCT.md §6
        edition 2, "Corrections"). The same result again under its id is added (the write path
        counts it once); under another id it is not added twice. A preliminary and its final (or a
        correction) in one bundle, in either order, are one reading: the later status wins and
        the report names the one it replaces. Two different results of the same status are a
        problem naming both."""
        keys: list[tuple[Any, ...]] = []
        if lab.source_id is not None:
            keys.append((mrn, "id", lab.source_id))
        if lab.source_identifier is not None:
            keys.append((mrn, "identifier", lab.source_identifier, lab.test, lab.taken_at))
        result = (lab.test, lab.taken_at, lab.value, lab.value_text, lab.comparator)
        for key in keys:
            seen = self.lab_ids.get(key)
            if seen is None:
                continue
            seen_where, seen_lab = seen
            seen_result = (seen_lab.test, seen_lab.taken_at, seen_lab.value, seen_lab.value_text, seen_lab.comparator)
            if seen_result == result and seen_lab.status == lab.status:
                if seen_lab.source_id == lab.source_id:
                    return True  # the write path counts it once (skipped)
                self.note(f"{where}: the same result as {seen_where} (same identifier), counted once")
                return False
            rank, seen_rank = _STATUS_RANK.get(lab.status, 1), _STATUS_RANK.get(seen_lab.status, 1)
            if rank == seen_rank:
                what, column, value = ("resource id", "id", lab.source_id) if key[1] == "id" else (
                    "identifier", "identifier", lab.source_identifier)
                self.problem(where, column, value, f"the same {what} as {seen_where} with a different result")
                return False
            (keep, keep_where), (drop, drop_where) = sorted(
                ((lab, where), (seen_lab, seen_where)), key=lambda x: _STATUS_RANK.get(x[0].status, 1), reverse=True
            )
            self.note(f"{drop_where}: the {drop.status} result is replaced by its {keep.status} in the same bundle, {keep_where}")
            if keep is seen_lab:
                return False
            self.out.labs.remove(seen_lab)
            break
        for key in keys:
            self.lab_ids[key] = (where, lab)
        return True

    def withdraw(self, i: str, r: dict[str, Any]) -> None:
        """An Observation sent as entered-in-error: the stored result of the same identity, if any,
        is removed (hidden with the reason, audited; PRODUCT.md §6 edition 2). Finding its patient
        is quiet: a withdrawn resource that names no patient is only skipped."""
        source_id = _source_id(r)
        if source_id is None:
            return
        if "subject" not in r and id(r) in self.subject_from:
            r = {**r, "subject": self.subject_from[id(r)]}
        kept = len(self.out.problems)
        mrn = self.patient_of(i, r, "subject") if self.lenient is None else None
        del self.out.problems[kept:]
        if mrn is not None:
            identifier, test = _business_identifier(r), _observation_code(r.get("code"))[0]
            when_text = _effective(r)[0] or (self.time_from[id(r)][0] if id(r) in self.time_from else None)
            same_result = None
            if identifier is not None and test is not None and when_text is not None:
                try:
                    # the time as recorded, as intake.reading stores it (the offset is not applied)
                    when = dt.datetime.fromisoformat(str(when_text).replace("Z", "+00:00")).replace(tzinfo=None)
                    same_result = (identifier, test.key, when)
                except ValueError:
                    pass  # no readable time: only its resource id finds the stored result
            self.out.withdrawn.append((mrn, source_id, self.where(i, r), same_result))

    def lab_value(
        self, where: str, r: dict[str, Any], test: TestDef
    ) -> tuple[object, str | None, str, dict[str, str], tuple[str, str] | None] | None:
        """(value as sent, comparator, unit, intake column -> FHIR element, value as received by the
        exporting product) for ``intake.reading``, or None after a problem or a skip."""
        as_received = _as_received(r)
        q = r.get("valueQuantity")
        column: str | None
        if isinstance(q, dict):
            if q.get("value") is None:
                self.problem(where, "valueQuantity.value", None, "the quantity has no value")
                return None
            candidates = [(f"valueQuantity.{k}", str(q[k])) for k in ("code", "unit") if q.get(k) not in (None, "")]
            if not candidates:
                self.problem(where, "valueQuantity.unit", None, f"no unit: a {test.label} result needs one (canonical {test.canonical_unit})")
                return None
            # UCUM code first, then the human-readable unit: the first the catalogue knows.
            column, unit = next(
                ((c, u) for c, u in candidates if _converts(test, u)), candidates[-1]
            )
            comparator = q.get("comparator")
            columns = {"value": "valueQuantity.value", "unit": column}
            return q["value"], str(comparator) if comparator else None, unit, columns, as_received
        text = None
        column = None
        if isinstance(r.get("valueString"), str):
            text, column = r["valueString"], "valueString"
        elif isinstance(r.get("valueCodeableConcept"), dict):
            cc = r["valueCodeableConcept"]
            column = "valueCodeableConcept"
            text = _detection_text(cc)
        elif isinstance(r.get("valueBoolean"), bool) and test.qualitative:
            text, column = ("detected" if r["valueBoolean"] else "not detected"), "valueBoolean"
        if column is None:
            other = next((k for k in r if k.startswith("value")), None)
            if other is None:
                self.out.skip("Observation", "no value (not yet resulted, or data absent)")
                return None
            self.problem(where, other, None, f"a {test.label} result must be a valueQuantity")
            return None
        if not test.qualitative:
            self.problem(where, column, text, f"a {test.label} result must be a valueQuantity with a unit, not text")
            return None
        return text or "", None, "", {"value": column}, as_received

    def reference_range(
        self, where: str, r: dict[str, Any], test: TestDef, value_unit: str
    ) -> tuple[float | None, float | None] | None:
        """The first reference range with a limit, in the value's unit (``intake.reading`` converts
        and checks it with the value); None after a problem."""
        ranges = r.get("referenceRange") or []
        # A range written with the value's own unit text ("degrees C" beside the UCUM code Cel, as
        # the HL7 spec's temperature example does) is in the value's unit.
        vq = r.get("valueQuantity")
        if not isinstance(vq, dict):
            vq = {}
        same_unit = {catalogue.normalise_unit(str(u)) for u in (value_unit, vq.get("code"), vq.get("unit")) if u}
        for k, rr in enumerate(ranges):
            limits: list[float | None] = []
            for side in ("low", "high"):
                q = rr.get(side)
                if not isinstance(q, dict) or q.get("value") is None:
                    limits.append(None)
                    continue
                number = float(q["value"])
                units = [str(u) for u in (q.get("code"), q.get("unit")) if u]
                if not units or any(catalogue.normalise_unit(u) in same_unit for u in units):
                    limits.append(number)
                    continue
                unit = next((u for u in units if _converts(test, u)), None)
                if unit is None:
                    self.problem(where, f"referenceRange[{k}].{side}.unit", units[0], str(_unit_error(test, units[0])))
                    return None
                limits.append(catalogue.from_canonical(test, catalogue.to_canonical(test, number, unit), value_unit))
            if limits[0] is not None or limits[1] is not None:
                return limits[0], limits[1]
        return None, None

    def read_finding(self, where: str, r: dict[str, Any], mrn: str, item: str, when: dt.datetime) -> None:
        value = r.get("valueString")
        if not isinstance(value, str) or not value.strip():
            self.problem(where, "valueString", None, f"the finding {item} needs an answer (valueString)")
            return
        answer = value.strip().lower()
        allowed = _finding_answers()
        if allowed is not None:
            if item not in allowed:
                self.problem(where, "code", item, f"not a hand-entered RegiSCAR item (one of {', '.join(allowed)})")
                return
            if answer not in {a.lower() for a in allowed[item]}:
                self.problem(where, "valueString", value, f"answer for {item} must be one of {', '.join(allowed[item])}")
                return
        notes = [n.get("text") for n in r.get("note") or [] if n.get("text")]
        performer = next((p.get("display") for p in r.get("performer") or [] if p.get("display")), None)
        self.out.findings.append(FindingIn(mrn, item, answer, "\n".join(notes) or None, when, performer, where))

    def finish_weights(self) -> None:
        for mrn, (when, kg) in self.weights.items():
            given = next((p for p in self.out.patients if p.mrn == mrn and "weight_kg" in p.values), None)
            if given is not None:
                continue  # this product's export states the weight in force: it wins
            self.update(mrn, self.name).values["weight_kg"] = kg
            self.out.weight_times[mrn] = when

    # -- Condition --
    def read_condition(self, i: str, r: dict[str, Any]) -> None:
        if not _is_dress(r.get("code")):
            self.out.skip("Condition", "not DRESS")
            return
        ver = _codes(r.get("verificationStatus"))
        if ver & {"entered-in-error", "refuted"}:
            self.out.skip("Condition", "verification status entered-in-error or refuted")
            return
        where = self.where(i, r)
        if not self.valid(i, r):
            return
        mrn = self.patient_of(i, r, "subject")
        if mrn is None:
            return
        onset_text, onset_col = _first(r, ("onsetDateTime", None), ("onsetPeriod", "start"))
        end_text, end_col = _first(r, ("abatementDateTime", None), ("abatementPeriod", "end"), ("abatementPeriod", "start"))
        onset = self.date_of(where, onset_col, onset_text) if onset_text else None
        resolved = self.date_of(where, end_col, end_text) if end_text else None
        if onset and resolved and resolved < onset:
            self.problem(where, end_col, end_text, f"resolution before the onset ({onset.isoformat()})")
            return
        texts = [str(t) for t in [(r.get("code") or {}).get("text"), *[c.get("display") for c in (r.get("code") or {}).get("coding") or []],
                                  *[n.get("text") for n in r.get("note") or [] if isinstance(n, dict)]] if t]
        self.out.dress_texts.setdefault(mrn, []).extend(texts)
        upd = self.update(mrn, where)
        prev_onset = upd.values.get("onset_date")
        if onset is not None and (prev_onset is None or onset >= prev_onset):
            # Several DRESS Conditions: the latest episode's dates are the patient's.
            upd.values["onset_date"] = onset
            upd.values.pop("resolved_date", None)
            if resolved is not None:
                upd.values["resolved_date"] = resolved
        elif onset is None and resolved is not None and prev_onset is None:
            upd.values["resolved_date"] = resolved

    # -- AllergyIntolerance --
    def read_allergy(self, i: str, r: dict[str, Any]) -> None:
        ver = _codes(r.get("verificationStatus"))
        if ver & {"entered-in-error", "refuted"}:
            self.out.skip("AllergyIntolerance", "verification status entered-in-error or refuted")
            return
        code = r.get("code")
        categories = set(r.get("category") or [])
        drug = _drug_name(code) if isinstance(code, dict) else None
        is_drug = "medication" in categories or (isinstance(code, dict) and _has_rxnorm(code))
        if not is_drug and not categories and drug:
            is_drug = _known_drug(code if isinstance(code, dict) else None, drug)
        if not is_drug:
            self.out.skip("AllergyIntolerance", "not a drug allergy")
            return
        where = self.where(i, r)
        if not drug:
            self.out.skip("AllergyIntolerance", "drug allergy without a drug name or code")
            return
        if not self.valid(i, r):
            return
        mrn = self.patient_of(i, r, "patient")
        if mrn is None:
            return
        generic = _generic(code, drug)
        self.update(mrn, where)
        if _reaction_is_dress(r):
            # Added to the stored culprits by merge_stored (never written as a replacement list).
            self.out.culprits[mrn] = _merge_names(self.out.culprits.get(mrn, []), [generic])
        else:
            # A drug allergy (penicillin urticaria) is shown as such; a culprit only when its reaction,
            # or the DRESS Condition, names DRESS (PRODUCT.md §6 edition 2).
            self.out.allergies[mrn] = _merge_names(self.out.allergies.get(mrn, []), [generic])

    # -- medications --
    def medication_concept(self, i: str, r: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(the CodeableConcept naming the drug, the Medication resource used) of an order."""
        if isinstance(r.get("medicationCodeableConcept"), dict):
            return r["medicationCodeableConcept"], None
        ref = (r.get("medicationReference") or {}).get("reference")
        if not ref:
            return None, None
        ref = str(ref)
        med = None
        if ref.startswith("#"):
            med = next((c for c in r.get("contained") or [] if c.get("id") == ref[1:]), None)
        else:
            med = self.by_ref.get(ref)
            if med is None and "/Medication/" in ref:
                med = self.by_ref.get("Medication/" + ref.rsplit("/Medication/", 1)[1])
        if not isinstance(med, dict) or med.get("resourceType") != "Medication":
            return None, None
        return (med.get("code") if isinstance(med.get("code"), dict) else None), med

    def read_medication(self, i: str, r: dict[str, Any]) -> None:
        rtype = str(r["resourceType"])
        status = r.get("status")
        if status in _SKIP_STATUS[rtype]:
            self.out.skip(rtype, f"status {status}")
            return
        concept, med_resource = self.medication_concept(i, r)
        name = _drug_name(concept) if concept else None
        if not name:
            if r.get("medicationReference"):
                # Not decision data until it names a drug: listed, never a refusal (§6 edition 2).
                self.out.skip(rtype, "refers to a Medication that is not in this bundle or has no code")
            else:
                self.out.skip(rtype, "no medication name or code")
            return
        as_entered = _as_entered(r)
        # This product's own export names the stored generic name: kept as it is (round trip).
        drug = name.lower() if as_entered is not None else _generic(concept, name)
        # A problem in the order of a drug no decision reads (not a steroid, IVIG, cyclosporine,
        # PPI or a drug of a culprit group) is skipped and listed with its reason, never a refusal.
        self.lenient = None if _decision_drug(drug) else rtype
        try:
            self.read_order(i, r, rtype, status, concept, med_resource, name, drug, as_entered)
        finally:
            self.lenient = None

    def read_order(
        self, i: str, r: dict[str, Any], rtype: str, status: Any, concept: dict[str, Any] | None,
        med_resource: dict[str, Any] | None, name: str, drug: str, as_entered: dict[str, str] | None,
    ) -> None:
        where = self.where(i, r)
        if not self.valid(i, r):
            return
        if med_resource is not None and med_resource is not r and not self.valid_medication(med_resource):
            return
        steps = self.dose_steps(where, rtype, r, drug, name, as_entered)
        if steps is None:
            return
        mrn = self.patient_of(i, r, "subject")
        if mrn is None:
            return
        if rtype != "MedicationAdministration" and status in _ENDED_STATUS and steps[-1][2] is None:
            # Stopped or completed without an end date: it ends on its last documented date (start,
            # last administration, validity end), never runs on to today; the report says so.
            last = max(d for d in (steps[-1][1], self.last_administration.get(id(r)), _validity_end(r)) if d)
            dose, start, _end = steps[-1]
            steps[-1] = (dose, start, last)
            self.note(f"{rtype}: {status} without an end date: ends on its last documented date")
        if med_resource is not None:
            self.medications_used.add(id(med_resource))
        for dose, start, end in steps:
            mg, per_kg, dose_text, unit_text, route = dose
            drug_as_entered = name
            if as_entered is not None:
                drug_as_entered = as_entered.get("drug") or name
                dose_text = as_entered.get("dose") or dose_text
                unit_text = as_entered.get("unit") or unit_text
            self.intervals[(mrn, drug)].append(
                _Interval(start, end, mg, per_kg, drug_as_entered[:200], dose_text[:64], unit_text[:16], route,
                          _source_id(r), where, exact=as_entered is not None, optional=self.lenient is not None)
            )

    def valid_medication(self, med: dict[str, Any]) -> bool:
        idx = next((i for i, _u, r in self.entries if r is med), None)
        if idx is None:  # contained: validated with its order
            return True
        return self.valid(idx, med)

    def dose_steps(
        self, where: str, rtype: str, r: dict[str, Any], drug: str, name: str, as_entered: dict[str, str] | None
    ) -> list[tuple[tuple[float, float, str, str, str | None], dt.date, dt.date | None]] | None:
        """[(dose, first day, last day or None)], one per dosage step (ordered by ``sequence``), or
        per day of an administration over several days; None after a problem or skip."""
        if rtype == "MedicationAdministration":
            return self.administration_days(where, r, drug, name)
        key = "dosageInstruction" if rtype == "MedicationRequest" else "dosage"
        dosages = [(j, d) for j, d in enumerate(r.get(key) or []) if isinstance(d, dict)]
        # Steps in the order of their sequence number (a written taper: 20 -> 10 -> 5 mg).
        dosages.sort(key=lambda jd: (jd[1].get("sequence") is None, jd[1].get("sequence") or 0, jd[0]))
        if not dosages:
            dosages = [(0, {})]
        order_start, order_start_col, order_end, order_end_col = _order_period(rtype, r)
        steps: list[tuple[tuple[float, float, str, str, str | None], dt.date, dt.date | None]] = []
        prev_end: dt.date | None = None
        for n, (j, dosage) in enumerate(dosages):
            col = f"{key}[{j}]"
            per_day = _per_day(dosage.get("timing"))
            if per_day is None:
                self.out.skip(rtype, "timing that is not a regular frequency (e.g. as needed)")
                return None
            dar = (dosage.get("doseAndRate") or [{}])[0]
            dose = self.dose_of(where, rtype, dar.get("doseQuantity"), f"{col}.doseAndRate[0].doseQuantity", per_day,
                                _route(dosage.get("route")), drug, name, as_entered)
            if dose is None:
                return None
            repeat = (dosage.get("timing") or {}).get("repeat") or {}
            bounds = got if isinstance(got := repeat.get("boundsPeriod"), dict) else {}
            start_text, start_col = bounds.get("start"), f"{col}.timing.repeat.boundsPeriod.start"
            end_text, end_col = bounds.get("end"), f"{col}.timing.repeat.boundsPeriod.end"
            start: dt.date | None = None
            if start_text:
                start = self.date_of(where, start_col, start_text)
                if start is None:
                    return None
            elif n == 0 and order_start:
                start = self.date_of(where, order_start_col, order_start)
                if start is None:
                    return None
            elif n > 0 and prev_end is not None:
                start = prev_end + dt.timedelta(days=1)  # the next step follows the previous one
            if start is None:
                if n == 0:
                    self.out.skip(rtype, "no start date")
                else:
                    self.problem(where, f"{col}.timing.repeat.boundsPeriod.start", None,
                                 f"dosage step {n + 1} has no start and the step before it no end: it cannot be dated")
                return None
            end: dt.date | None = None
            if end_text:
                end = self.date_of(where, end_col, end_text)
                if end is None:
                    return None
            else:
                bd = repeat.get("boundsDuration")
                if isinstance(bd, dict) and bd.get("value") is not None:
                    days = _PERIOD_DAYS.get(str(bd.get("code") or bd.get("unit") or "d"))
                    if days is not None and float(bd["value"]) * days >= 1:
                        end = start + dt.timedelta(days=round(float(bd["value"]) * days) - 1)
                        end_col = f"{col}.timing.repeat.boundsDuration"
                if end is None and n == len(dosages) - 1 and order_end:
                    end = self.date_of(where, order_end_col, order_end)
                    end_col = order_end_col
                    if end is None:
                        return None
            if end is not None and end < start:
                self.problem(where, end_col, end_text or str(end), f"ends before it starts ({start.isoformat()})")
                return None
            if steps and steps[-1][2] is None and start <= steps[-1][1]:
                self.problem(where, start_col, start_text, "a dosage step starts before the step before it")
                return None
            steps.append((dose, start, end))
            prev_end = end
        return steps

    def administration_days(
        self, where: str, r: dict[str, Any], drug: str, name: str
    ) -> list[tuple[tuple[float, float, str, str, str | None], dt.date, dt.date | None]] | None:
        """One administration: its dose on its day; over an effectivePeriod of several days (or
        with a rate over a duration), the amount given on each day, in proportion to the hours of
        the period that fall on that day."""
        dosage = got if isinstance(got := r.get("dosage"), dict) else {}
        route = _route(dosage.get("route"))
        if r.get("effectiveDateTime"):
            start_text, start_col, end_text = r["effectiveDateTime"], "effectiveDateTime", None
        elif isinstance(r.get("effectivePeriod"), dict) and r["effectivePeriod"].get("start"):
            start_text, start_col = r["effectivePeriod"]["start"], "effectivePeriod.start"
            end_text = r["effectivePeriod"].get("end")
        else:
            self.out.skip("MedicationAdministration", "no start date")
            return None
        t0 = self.datetime_of(where, start_col, start_text)
        t1 = self.datetime_of(where, "effectivePeriod.end", end_text) if end_text else None
        if t0 is None or (end_text and t1 is None):
            return None
        if t1 is not None and t1 < t0:
            self.problem(where, "effectivePeriod.end", end_text, f"ends before it starts ({t0.isoformat(sep=' ')})")
            return None
        rate = dosage.get("rateQuantity")
        if isinstance(rate, dict) and rate.get("value") is not None and t1 is not None and t1 > t0:
            per_hour = _rate_mg_per_hour(rate)
            if per_hour is None:
                if dosage.get("dose") is None:
                    self.out.skip("MedicationAdministration", f"rate unit {rate.get('unit') or rate.get('code')!r} "
                                  "not convertible to mg per hour")
                    return None
            else:
                hours = (t1 - t0).total_seconds() / 3600
                dose = self.dose_of(where, "MedicationAdministration",
                                    {"value": Decimal(str(per_hour * hours)), "unit": "mg"}, "dosage.rateQuantity", 1.0,
                                    route, drug, name, None)
                if dose is None:
                    return None
                shown = f"{_plain(rate['value'])} {rate.get('unit') or rate.get('code')}"
                return self.split_by_day((dose[0], dose[1], shown, "mg", route), t0, t1)
        dose = self.dose_of(where, "MedicationAdministration", dosage.get("dose"), "dosage.dose", 1.0, route, drug, name, None)
        if dose is None:
            return None
        if t1 is None or t1.date() == t0.date():
            return [(dose, t0.date(), t0.date())]
        return self.split_by_day(dose, t0, t1)

    @staticmethod
    def split_by_day(
        dose: tuple[float, float, str, str, str | None], t0: dt.datetime, t1: dt.datetime
    ) -> list[tuple[tuple[float, float, str, str, str | None], dt.date, dt.date | None]]:
        total = (t1 - t0).total_seconds()
        days: list[tuple[tuple[float, float, str, str, str | None], dt.date, dt.date | None]] = []
        day = t0.date()
        while day <= t1.date():
            lo = max(t0, dt.datetime.combine(day, dt.time()))
            hi = min(t1, dt.datetime.combine(day + dt.timedelta(days=1), dt.time()))
            share = (hi - lo).total_seconds() / total if total else 1.0
            if share > 0:
                days.append(((dose[0] * share, dose[1] * share, dose[2], dose[3], dose[4]), day, day))
            day += dt.timedelta(days=1)
        return days

    def dose_of(
        self, where: str, rtype: str, q: Any, column: str, per_day: float, route: str | None, drug: str, name: str,
        as_entered: dict[str, str] | None,
    ) -> tuple[float, float, str, str, str | None] | None:
        """(mg/day, mg/kg/day, dose as entered, unit as entered, route), or None after a problem/skip."""
        recognised = drug in RECOGNISED_DRUGS
        if not isinstance(q, dict) or q.get("value") is None:
            reason = f"no dose (a {drug} order without a dose cannot be placed on the schedule)" if recognised else "no dose"
            self.out.skip(rtype, reason)
            return None
        try:
            amount = float(Decimal(str(q["value"])))
        except (InvalidOperation, ValueError):
            self.problem(where, f"{column}.value", q.get("value"), "not a number")
            return None
        if amount < 0:
            self.problem(where, f"{column}.value", q.get("value"), "a dose cannot be negative")
            return None
        unit = str(q.get("code") or q.get("unit") or "").strip()
        u = catalogue.normalise_unit(unit)
        value_text = str(_plain(q["value"]))
        if u in _MASS_UNITS:
            factor, weight_based = _MASS_UNITS[u]
            daily = amount * factor * per_day
            shown_unit = unit if weight_based else "mg"
            dose_text = f"{value_text} {unit}" + ("" if per_day == 1 else f" x {per_day:g}/day")
            if as_entered is None and not weight_based and per_day == 1 and u in ("mg", "g"):
                dose_text, shown_unit = value_text, u
            return (0.0, daily, dose_text, shown_unit, route) if weight_based else (daily, 0.0, dose_text, shown_unit, route)
        if u in _COUNT_UNITS or u.strip("{}") in _COUNT_UNITS:
            strengths = _STRENGTH.findall(name)
            if len(strengths) == 1:
                # One tablet of "Prednisone 5 MG Oral Tablet" is 5 mg: the strength is coded in the name.
                daily = amount * float(strengths[0]) * per_day
                return daily, 0.0, f"{value_text} x {strengths[0]} mg" + ("" if per_day == 1 else f" x {per_day:g}/day"), "mg", route
            reason = "dose in tablets or units without a single strength in mg in the product's name"
            self.out.skip(rtype, reason if not recognised else f"{drug}: {reason}")
            return None
        if recognised:
            self.problem(where, f"{column}.unit", unit,
                         f"dose unit not usable for {drug} (accepted: mg, g, mcg, mg/kg, g/kg, or tablets of a named strength)")
            return None
        self.out.skip(rtype, f"dose unit {unit!r} not convertible to mg")
        return None

    def finish_schedules(self) -> None:
        for (mrn, drug), intervals in self.intervals.items():
            for row in _schedule_rows(intervals):
                iv, start, mg, per_kg = row
                if mg and per_kg:
                    self.lenient = "MedicationRequest" if iv.optional else None
                    self.problem(iv.where, "dose", None,
                                 f"{drug} on {start.isoformat()}: doses in mg and in mg/kg overlap and cannot be added up")
                    self.lenient = None
                    continue
                self.out.meds.append(
                    med := MedIn(
                        mrn=mrn,
                        drug=drug,
                        drug_as_entered=iv.drug_as_entered,
                        start_date=start,
                        daily_dose_mg=mg,
                        dose_as_entered=iv.dose_as_entered if (mg or per_kg or iv.exact) else "0",
                        unit_as_entered=iv.unit_as_entered,
                        route=iv.route,
                        source="fhir",
                        source_id=iv.source_id,
                        where=iv.where,
                        dose_per_kg=per_kg or None,
                    )
                )
                if iv.optional:
                    self.out.optional_meds.add(id(med))


def _schedule_rows(intervals: list[_Interval]) -> list[tuple[_Interval, dt.date, float, float]]:
    """Schedule rows of one drug: (the interval behind the row, start date, mg/day, mg/kg/day).

    At each date the dose in force is that of the orders started most recently and still running
    (orders of one drug starting the same day add up: two administrations, morning and evening);
    an open-ended order runs until the next order of the drug starts. A row is written at every
    order's start and wherever the dose changes, so a stop is a row with dose 0 the day after the
    last day unless the drug continues then.
    """
    ivs = sorted(intervals, key=lambda iv: iv.start)
    starts = sorted({iv.start for iv in ivs})
    ends: dict[int, dt.date | None] = {}
    for iv in ivs:
        if iv.end is not None:
            ends[id(iv)] = iv.end + dt.timedelta(days=1)
        else:
            ends[id(iv)] = next((s for s in starts if s > iv.start), None)
    points = sorted(set(starts) | {e for e in ends.values() if e is not None})
    rows: list[tuple[_Interval, dt.date, float, float]] = []
    prev: tuple[float, float] | None = None
    start_set = set(starts)
    for t in points:
        active = [iv for iv in ivs if iv.start <= t and (ends[id(iv)] is None or t < ends[id(iv)])]  # type: ignore[operator]
        if active:
            latest = max(iv.start for iv in active)
            current = [iv for iv in active if iv.start == latest]
            dose = (sum(iv.mg for iv in current), sum(iv.per_kg for iv in current))
            owner = current[0]
        else:
            dose = (0.0, 0.0)
            owner = max((iv for iv in ivs if ends[id(iv)] == t), key=lambda iv: iv.start, default=ivs[0])
        if t in start_set or dose != prev:
            rows.append((owner, t, dose[0], dose[1]))
        prev = dose
    return rows


# --- small pure helpers ------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


# National identifiers are never an MRN (PRODUCT.md §6 edition 2): v2-0203 types SS (social
# security) and NI (national unique individual identifier), and the national systems EHRs send.
NATIONAL_ID_TYPES: frozenset[str] = frozenset({"SS", "NI", "NH"})
NATIONAL_ID_SYSTEMS: frozenset[str] = frozenset({
    "http://hl7.org/fhir/sid/us-ssn",  # US social security number
    "urn:oid:2.16.840.1.113883.4.1",  # the same, as an OID
    "http://fhir.nl/fhir/NamingSystem/bsn",  # Dutch burgerservicenummer
    "urn:oid:2.16.840.1.113883.2.4.6.3",  # the same, as an OID
    "https://fhir.nhs.uk/Id/nhs-number",  # NHS number (England, Wales)
    "http://fhir.nhs.net/Id/nhs-number",
    "http://ns.electronichealth.net.au/id/hi/ihi/1.0",  # Australian IHI
    "http://fhir.de/sid/gkv/kvid-10",  # German health insurance number
    "http://fhir.de/identifier-type/kvid-10",
    "urn:oid:1.2.250.1.213.1.4.8",  # French INS-NIR
    "http://electronichealth.se/identifier/personnummer",  # Swedish personnummer
    "urn:oid:1.2.208.176.1.2",  # Danish CPR
    "urn:oid:2.16.578.1.12.4.1.4.1",  # Norwegian fødselsnummer
})
MRN_SYSTEM_ENV = "DRESS_MRN_SYSTEM"


def _type_codes(ident: Mapping[str, Any]) -> set[str]:
    return {str(c.get("code")) for c in (ident.get("type") or {}).get("coding") or []
            if isinstance(c, dict) and c.get("system") in (V2_0203, None)}


def is_national_identifier(ident: Mapping[str, Any]) -> bool:
    """A social security or national number (type SS/NI, or a known national system)."""
    return bool(_type_codes(ident) & NATIONAL_ID_TYPES) or str(ident.get("system") or "").rstrip("/") in NATIONAL_ID_SYSTEMS


def _ended(ident: Mapping[str, Any], today: dt.date) -> bool:
    end = (ident.get("period") or {}).get("end") if isinstance(ident.get("period"), dict) else None
    if not end or not _FHIR_DATE.fullmatch(str(end)[:10]):
        return False
    try:
        return dt.date.fromisoformat(str(end)[:10]) < today
    except ValueError:
        return False


def _mrn_of(r: Mapping[str, Any], today: dt.date | None = None, mrn_system: str | None = None) -> tuple[str | None, str]:
    """(MRN, the rule that gave it). PRODUCT.md §6 edition 2: the identifier typed MR (v2-0203)
    whose period has not ended; else the identifier of the hospital's MRN system
    (``DRESS_MRN_SYSTEM``); else the resource id. A national identifier is never the MRN."""
    import os

    today = today or dt.date.today()
    system = (mrn_system if mrn_system is not None else os.environ.get(MRN_SYSTEM_ENV, "")).strip().rstrip("/")
    identifiers = [x for x in r.get("identifier") or []
                   if isinstance(x, dict) and x.get("value") and not is_national_identifier(x)]
    for ident in identifiers:
        if "MR" in _type_codes(ident) and (ident.get("type") or {}).get("coding") and not _ended(ident, today):
            return str(ident["value"]).strip(), "MR"
    if system:
        for ident in identifiers:
            if str(ident.get("system") or "").rstrip("/") == system and not _ended(ident, today):
                return str(ident["value"]).strip(), "system"
    rid = r.get("id")
    return (str(rid).strip() if rid else None), "id"


# intake.patient_fields' field -> the Patient element it came from (problems name what was sent).
_PATIENT_ELEMENT = {"name": "name", "sex": "gender", "birth_date": "birthDate", "weight_kg": "extension(weight)",
                    "baseline_creatinine_mg_dl": "extension(baseline-creatinine)", "setting": "extension(setting)",
                    "active": "active", "synthetic": "meta.tag"}


def _name_of(r: Mapping[str, Any]) -> str | None:
    names = [n for n in r.get("name") or [] if isinstance(n, dict)]
    if not names:
        return None
    ranked = sorted(names, key=lambda n: {"official": 0, "usual": 1}.get(str(n.get("use")), 2))
    n = ranked[0]
    # Never cut here: the intake path refuses a name over its limit, naming it.
    if n.get("text"):
        return str(n["text"]).strip() or None
    parts = [*(n.get("given") or []), n.get("family") or ""]
    text = " ".join(str(p).strip() for p in parts if p and str(p).strip())
    return text or None


def _codes(cc: Any) -> set[str]:
    if not isinstance(cc, dict):
        return set()
    return {str(c.get("code")) for c in cc.get("coding") or [] if c.get("code")}


def _observation_code(cc: Any) -> tuple[TestDef | None, str | None, str | None]:
    """(catalogue test, LOINC code as received, finding item) of an Observation's code."""
    if not isinstance(cc, dict):
        return None, None, None
    codings = [c for c in cc.get("coding") or [] if isinstance(c, dict)]
    for c in codings:
        if c.get("system") == LOINC:
            test = catalogue.lookup_loinc(str(c.get("code") or ""))
            if test is not None:
                return test, str(c["code"]), None
    for c in codings:
        if c.get("system") == LOCAL_TEST_SYSTEM and str(c.get("code")) in catalogue.CATALOGUE:
            return catalogue.CATALOGUE[str(c["code"])], None, None
        if c.get("system") == LOCAL_FINDING_SYSTEM and c.get("code"):
            return None, None, str(c["code"])
    # A laboratory's own code (most send them): the same local code map as the HL7 feed
    # (lab_codes.toml, DRESS_LAB_CODES), the table named by the coding system first.
    local = [c for c in codings if c.get("system") not in (LOINC, SNOMED) and c.get("code")]
    if local:
        code_map = _lab_code_map()
        if code_map is not None:
            for c in local:
                test = code_map.test_for([(str(c["code"]), "", "")], facility=str(c.get("system") or ""))
                if test is not None:
                    return test, None, None
    return None, None, None


_CODE_MAPS: dict[str, Any] = {}


def _lab_code_map() -> Any:
    """The laboratory code map in force (monitoring/hl7/codes.py), or None when it cannot be read."""
    import os

    from monitoring.hl7.codes import ENV_VAR, CodeMapError, load_code_map

    key = os.environ.get(ENV_VAR, "")
    if key not in _CODE_MAPS:
        try:
            _CODE_MAPS[key] = load_code_map()
        except CodeMapError:
            _CODE_MAPS[key] = None
    return _CODE_MAPS[key]


_ENDED_STATUS = frozenset({"stopped", "completed"})
# Rate units -> mg per hour
_RATE_MASS = {"mg": 1.0, "g": 1000.0, "ug": 0.001, "mcg": 0.001}
_RATE_TIME = {"h": 1.0, "hr": 1.0, "hour": 1.0, "min": 1 / 60, "d": 24.0, "day": 24.0}


def _decision_drug(drug: str) -> bool:
    """A drug a decision reads: steroid, IVIG, cyclosporine, PPI, or a drug of a culprit group."""
    from monitoring import drugs

    return drug in RECOGNISED_DRUGS or drugs.group_of(drug) is not None


def _rate_mg_per_hour(rate: Mapping[str, Any]) -> float | None:
    """A rateQuantity such as 10 mg/h or 500 mg/min in mg per hour; None if not a mass rate."""
    unit = str(rate.get("code") or rate.get("unit") or "").strip().lower().replace("[", "").replace("]", "")
    mass, sep, per = unit.partition("/")
    if not sep or mass not in _RATE_MASS or per not in _RATE_TIME:
        return None
    try:
        return float(Decimal(str(rate["value"]))) * _RATE_MASS[mass] / _RATE_TIME[per]
    except (InvalidOperation, ValueError):
        return None


def _order_period(rtype: str, r: Mapping[str, Any]) -> tuple[str | None, str, str | None, str]:
    """(start, its element, end, its element) of an order outside its dosage steps."""
    if rtype == "MedicationStatement":
        if r.get("effectiveDateTime"):
            return str(r["effectiveDateTime"]), "effectiveDateTime", None, ""
        p = got if isinstance(got := r.get("effectivePeriod"), dict) else {}
        return p.get("start"), "effectivePeriod.start", p.get("end"), "effectivePeriod.end"
    validity = (r.get("dispenseRequest") or {}).get("validityPeriod")
    if isinstance(validity, dict) and validity.get("start"):
        return validity["start"], "dispenseRequest.validityPeriod.start", validity.get("end"), "dispenseRequest.validityPeriod.end"
    if r.get("authoredOn"):
        return str(r["authoredOn"]), "authoredOn", None, ""
    return None, "", None, ""


def _validity_end(r: Mapping[str, Any]) -> dt.date | None:
    end = ((r.get("dispenseRequest") or {}).get("validityPeriod") or {}).get("end")
    if end and _FHIR_DATE.fullmatch(str(end)[:10]):
        try:
            return dt.date.fromisoformat(str(end)[:10])
        except ValueError:
            return None
    return None


def _has_catalogue_result(obs: Mapping[str, Any]) -> bool:
    """An Observation that is, or whose panel components are, a catalogue test."""
    if _observation_code(obs.get("code"))[0] is not None:
        return True
    return any(isinstance(c, dict) and _observation_code(c.get("code"))[0] is not None for c in obs.get("component") or [])


def _effective(r: Mapping[str, Any]) -> tuple[str | None, str]:
    if r.get("effectiveDateTime"):
        return str(r["effectiveDateTime"]), "effectiveDateTime"
    period = r.get("effectivePeriod")
    if isinstance(period, dict) and period.get("start"):
        return str(period["start"]), "effectivePeriod.start"
    if r.get("effectiveInstant"):
        return str(r["effectiveInstant"]), "effectiveInstant"
    return None, "effectiveDateTime"


def _first(r: Mapping[str, Any], *paths: tuple[str, str | None]) -> tuple[str | None, str]:
    for key, sub in paths:
        v = r.get(key)
        if sub is not None:
            v = v.get(sub) if isinstance(v, dict) else None
        if v:
            return str(v), key + (f".{sub}" if sub else "")
    key, sub = paths[0]
    return None, key + (f".{sub}" if sub else "")


def _stored_labs(session: Session, patient_ids: dict[str, int], column: str, values: set[str]) -> list[LabResult]:
    """The stored results of these patients whose ``column`` (source_id, source_identifier) is one of
    ``values``, read in chunks of 500."""
    chosen = sorted(values)
    out: list[LabResult] = []
    for i in range(0, len(chosen), 500):
        out += session.execute(
            select(LabResult).where(
                col(LabResult.patient_id).in_(list(patient_ids.values())),
                getattr(LabResult, column).in_(chosen[i : i + 500]),
            )
        ).scalars()
    return out


def _business_identifier(r: Mapping[str, Any]) -> str | None:
    """The sender's business identifier of a result (Observation.identifier) as "system|value":
    the first that is not this product's own export id nor marked old. One too long for the column
    is kept as its SHA-256; one that cannot be stored (control characters) is not used, and the
    resource id alone identifies the result."""
    for ident in r.get("identifier") or []:
        if not isinstance(ident, dict) or not ident.get("value") or ident.get("use") == "old":
            continue
        if ident.get("system") == SOURCE_ID_SYSTEM:
            continue
        text = f"{ident.get('system') or ''}|{ident['value']}"
        if len(text) > 255:
            text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
        try:
            return intake.stored_text("lab_result", "source_identifier", text)
        except intake.FieldError:
            return None
    return None


# A preliminary result is replaced by its final, a final by its correction (intake.resent_result).
_STATUS_RANK = {"preliminary": 0, "final": 1, "amended": 2}


def _source_id(r: Mapping[str, Any]) -> str | None:
    """This product's own record id when it exported the resource, else the resource id."""
    for ident in r.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == SOURCE_ID_SYSTEM and ident.get("value"):
            return str(ident["value"])
    rid = r.get("id")
    return str(rid) if rid else None


def _sub_extensions(r: Mapping[str, Any], url: str) -> dict[str, str] | None:
    for ext in r.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            out: dict[str, str] = {}
            for sub in ext.get("extension") or []:
                if isinstance(sub, dict) and sub.get("url") and "valueString" in sub:
                    out[str(sub["url"])] = str(sub["valueString"])
            return out
    return None


def _as_received(r: Mapping[str, Any]) -> tuple[str, str] | None:
    sub = _sub_extensions(r, EXT.AS_RECEIVED)
    if sub is None or "value" not in sub:
        return None
    return sub["value"], sub.get("unit", "")


def _as_entered(r: Mapping[str, Any]) -> dict[str, str] | None:
    return _sub_extensions(r, EXT.AS_ENTERED)


def _detection_text(cc: Mapping[str, Any]) -> str | None:
    for c in cc.get("coding") or []:
        if c.get("system") == SNOMED and c.get("code") in ("260373001", "10828004"):
            return "detected"
        if c.get("system") == SNOMED and c.get("code") in ("260415000", "260385009"):
            return "not detected"
    if cc.get("text"):
        return str(cc["text"])
    for c in cc.get("coding") or []:
        if c.get("display"):
            return str(c["display"])
    return None


# FHIR Observation.status -> the stored result status (intake.RESULT_STATUSES).
_RESULT_STATUS = {"preliminary": "preliminary", "registered": "preliminary", "amended": "amended", "corrected": "amended"}


def _converts(test: TestDef, unit: str) -> bool:
    try:
        intake.converter(test, unit)
    except ValueError:
        return False
    return True


def _unit_error(test: TestDef, unit: str) -> catalogue.UnitError:
    try:
        catalogue.conversion_for(test, unit)
    except catalogue.UnitError as exc:
        return exc
    return catalogue.UnitError(f"unit {unit!r} is not known for {test.key}")


def _drug_name(cc: Mapping[str, Any] | None) -> str | None:
    if not isinstance(cc, dict):
        return None
    if cc.get("text") and str(cc["text"]).strip():
        return str(cc["text"]).strip()
    for c in cc.get("coding") or []:
        if c.get("display"):
            return str(c["display"]).strip()
    by_code = resolve_coded(None, _codings(cc))
    return by_code.name if by_code.by_code else None


def _codings(cc: Mapping[str, Any] | None) -> tuple[tuple[str | None, str], ...]:
    """(system, code) of each coding with a code: what the drug resolver reads beside the text."""
    if not isinstance(cc, dict):
        return ()
    return tuple((c.get("system"), str(c["code"])) for c in cc.get("coding") or [] if isinstance(c, dict) and c.get("code"))


def _has_rxnorm(cc: Mapping[str, Any]) -> bool:
    return any(c.get("system") == RXNORM for c in cc.get("coding") or [])


def _generic(cc: Mapping[str, Any] | None, name: str) -> str:
    """The stored generic name of a coded drug: the one resolver reads its RxNorm codes and its text."""
    return resolve_coded(name, _codings(cc)).name


def _known_drug(cc: Mapping[str, Any] | None, name: str) -> bool:
    """A drug of the table (by code or by name)."""
    return bool(resolve_coded(name, _codings(cc)).entries)


# SNOMED CT 702809001 |Drug reaction with eosinophilia and systemic symptoms (disorder)|, as used
# by published FHIR value sets and concept maps (e.g. MedDRA 10073508 "DRESS syndrome" -> 702809001).
SNOMED_DRESS = "702809001"


def _reaction_is_dress(r: Mapping[str, Any]) -> bool:
    """An AllergyIntolerance whose reaction names DRESS/DIHS (text or the SNOMED CT concept)."""
    for reaction in r.get("reaction") or []:
        if not isinstance(reaction, dict):
            continue
        if isinstance(reaction.get("description"), str) and _DRESS_TEXT.search(reaction["description"]):
            return True
        for cc in reaction.get("manifestation") or []:
            if not isinstance(cc, dict):
                continue
            if any(c.get("system") == SNOMED and str(c.get("code")) == SNOMED_DRESS for c in cc.get("coding") or []
                   if isinstance(c, dict)):
                return True
            if _is_dress(cc):
                return True
    return False


def _is_dress(cc: Any) -> bool:
    """ICD-10-CM D72.12, or text naming DRESS / DIHS / drug reaction with eosinophilia (§6)."""
    if not isinstance(cc, dict):
        return False
    for c in cc.get("coding") or []:
        if c.get("system") == ICD10CM and str(c.get("code")).upper().replace(".", "") == "D7212":
            return True
    texts = [cc.get("text")] + [c.get("display") for c in cc.get("coding") or []]
    return any(isinstance(t, str) and _DRESS_TEXT.search(t) for t in texts)


def _route(cc: Any) -> str | None:
    if not isinstance(cc, dict):
        return None
    for c in cc.get("coding") or []:
        if str(c.get("code")) in ROUTES and c.get("system") in (SNOMED, None):
            return ROUTES[str(c["code"])]
    text = cc.get("text") or next((c.get("display") for c in cc.get("coding") or [] if c.get("display")), None)
    if not text:
        return None
    t = re.sub(r"\s+route$", "", str(text).strip().lower())
    return t[:40] or None


def _per_day(timing: Any) -> float | None:
    """Administrations per day from a Timing; 1 when absent; None when not a regular frequency."""
    if not isinstance(timing, dict):
        return 1.0
    repeat = timing.get("repeat")
    if isinstance(repeat, dict) and (repeat.get("frequency") is not None or repeat.get("period") is not None):
        freq = float(repeat.get("frequency") or 1)
        period = float(repeat.get("period") or 1)
        days = _PERIOD_DAYS.get(str(repeat.get("periodUnit") or "d"))
        if days is None or period <= 0:
            return None
        return freq / (period * days)
    code = (timing.get("code") or {}).get("coding") or []
    for c in code:
        if str(c.get("code")).upper() in _TIMING_CODES:
            return float(_TIMING_CODES[str(c["code"]).upper()])
    if isinstance(repeat, dict) and repeat.get("timeOfDay"):
        return float(len(repeat["timeOfDay"]))
    return 1.0


def _finding_answers() -> dict[str, tuple[str, ...]] | None:
    """The hand-entered RegiSCAR items and answers, when the scoring module is installed."""
    try:
        from monitoring.services import finding_answers

        return finding_answers()
    except (ImportError, TypeError):
        return None


def deterministic_uuid(*parts: object) -> str:
    """A stable urn:uuid for a record (the export's fullUrls): the same record, the same URN."""
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "dress-monitor:" + ":".join(str(p) for p in parts)))
