"""What one bundle holds (``ParsedBundle``), ready for ``store.write_batch``, and its merge with what
is stored (culprit drugs, weights, corrections of re-sent results, hand-entered findings).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from monitoring import intake
from monitoring.db import table_of
from monitoring.drugs import normalise_drug
from monitoring.models import ClinicalFinding, LabResult, Patient
from monitoring.store import LabIn, MedIn, PatientIn, Problem, _same_value


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
        pt = table_of(Patient)
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
        pt = table_of(Patient)
        lt = table_of(LabResult)
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
        pt = table_of(Patient)
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
        pt = table_of(Patient)
        ids = dict(session.execute(select(pt.c.mrn, pt.c.id).where(pt.c.mrn.in_({f.mrn for f in self.findings}))).all())
        ft = table_of(ClinicalFinding)
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
