"""Observations and DiagnosticReports: codes, values and units, comparators, reference ranges,
statuses, corrections and withdrawals, business identifiers, panels, hand-entered findings.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from monitoring import catalogue, intake
from monitoring.catalogue import TestDef
from monitoring.importers.fhir.base import ReaderBase
from monitoring.importers.fhir.codes import _SKIP_STATUS
from monitoring.importers.fhir.helpers import _as_received, _effective, _source_id
from monitoring.importers.fhir.parsed import FindingIn
from monitoring.importers.fhir.results import (
    _RESULT_STATUS,
    _STATUS_RANK,
    _business_identifier,
    _converts,
    _detection_text,
    _finding_answers,
    _has_catalogue_result,
    _observation_code,
    _unit_error,
)
from monitoring.intake import Refused
from monitoring.store import LabIn


class ObservationReading(ReaderBase):
    """Observations (with panels and DiagnosticReports): results, findings, withdrawals, weights."""

    def context_of(self, parent: dict[str, Any], label: str) -> tuple[tuple[str, str] | None, Any]:
        """(time, subject) a report or panel passes to results that lack their own."""
        text, col = _effective(parent)
        return ((text, f"{label}.{col}") if text else None), parent.get("subject")

    def give_context(self, obs: dict[str, Any], when: tuple[str, str] | None, subject: Any) -> None:
        if when is not None:
            self.time_from.setdefault(id(obs), when)
        if subject is not None:
            self.subject_from.setdefault(id(obs), subject)

    def result_context(self, r: dict[str, Any]) -> None:
        """Before results are read: the time and subject a DiagnosticReport or a panel (hasMember)
        gives the Observations it references."""
        rtype = r.get("resourceType")
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
