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

Modules, by concept: ``bundle`` (entry points, JSON load, the entry cap, version and Bundle
checks), ``validation`` (the R4 model and required value sets), ``parsed`` (``ParsedBundle`` and its
merge with what is stored), ``reader`` (the order resources are read in), ``base`` (the state of one
read, problems, references, dates), one reader per kind (``patients``, ``observations`` with the
pure ``results`` helpers, ``medications`` with the pure ``dosage`` arithmetic, ``conditions`` for
allergies and DRESS Conditions), ``codes`` (code systems, extensions) and ``helpers``.
"""


from monitoring.importers.fhir.bundle import import_bundle, parse_bundle, parse_bundle_bytes, patient_index
from monitoring.importers.fhir.codes import (
    ACCEPTED_BUNDLE_TYPES,
    EXT,
    LOCAL_FINDING_SYSTEM,
    LOCAL_TEST_SYSTEM,
    RXNORM_INGREDIENTS,
    SOURCE_ID_SYSTEM,
)
from monitoring.importers.fhir.parsed import FindingIn, ParsedBundle

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
    "patient_index",
]
