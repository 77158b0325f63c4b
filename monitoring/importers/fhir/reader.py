"""The reader of one bundle: every resource collected (nested Bundles walked), then read in order:
Patients, contexts, DiagnosticReports, then each resource by its kind's reader.
"""

from __future__ import annotations

from typing import Any

from monitoring.importers.fhir.conditions import ConditionReading
from monitoring.importers.fhir.medications import MedicationReading
from monitoring.importers.fhir.observations import ObservationReading
from monitoring.importers.fhir.patients import PatientReading


class Reader(PatientReading, ObservationReading, MedicationReading, ConditionReading):
    """Reads one checked Bundle into its ``ParsedBundle`` (``read``), each kind by its own reader."""

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

    def set_contexts(self) -> None:
        """Before results and orders are read: the time and subject each DiagnosticReport and each
        panel (hasMember) gives the Observations it references, and the last administration of
        each order."""
        for _i, _url, r in self.entries:
            try:
                self.set_context(r)
            except (AttributeError, TypeError, KeyError, IndexError, ValueError):
                pass  # a damaged resource gives no context; reading it reports its problem

    def set_context(self, r: dict[str, Any]) -> None:
        if r.get("resourceType") == "MedicationAdministration":
            self.administration_context(r)
        else:
            self.result_context(r)
