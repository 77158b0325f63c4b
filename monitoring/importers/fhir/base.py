"""The state of one bundle being read and what every resource kind's reader uses: where a resource
is, its problems, validation, references (patients, resources), dates and times.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Mapping
from decimal import InvalidOperation
from typing import Any

from monitoring import intake
from monitoring.importers.fhir.dosage import _Interval
from monitoring.importers.fhir.helpers import _FHIR_DATE, _FHIR_DATETIME, _PARTIAL_DATE, _plain
from monitoring.importers.fhir.parsed import ParsedBundle
from monitoring.importers.fhir.validation import _REQUIRED_CODES, _validate
from monitoring.store import LabIn, PatientIn, Problem


class ReaderBase:
    """The shared state of one bundle being read; each resource kind's reader extends it."""

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

    def note(self, text: str) -> None:
        self.out.notes[text] = self.out.notes.get(text, 0) + 1

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
