"""The code systems, extensions and value sets the FHIR importer reads and ``monitoring.fhir_export``
writes (one place for each URI and code list).
"""

from __future__ import annotations

import uuid

from monitoring.drugs import PREDNISONE_EQUIVALENCE, PROTON_PUMP_INHIBITORS, SECOND_LINE, drug_table

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

# Statuses whose resource is not used (an Observation entered-in-error also withdraws a stored result).
_SKIP_STATUS: dict[str, frozenset[str]] = {
    "Observation": frozenset({"entered-in-error", "cancelled"}),
    "MedicationRequest": frozenset({"entered-in-error", "cancelled", "draft"}),
    "MedicationStatement": frozenset({"entered-in-error", "not-taken"}),
    "MedicationAdministration": frozenset({"entered-in-error", "not-done"}),
}


def deterministic_uuid(*parts: object) -> str:
    """A stable urn:uuid for a record (the export's fullUrls): the same record, the same URN."""
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "dress-monitor:" + ":".join(str(p) for p in parts)))
