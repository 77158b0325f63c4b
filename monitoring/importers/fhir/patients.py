"""Patients and identity: the MRN rule (PRODUCT.md §6 edition 2: MR identifier, ``DRESS_MRN_SYSTEM``,
never a national identifier), names, and the Patient resource's fields through the intake path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from monitoring import catalogue, intake
from monitoring.importers.fhir.base import ReaderBase
from monitoring.importers.fhir.codes import EXT, SYNTHETIC_TAG, V2_0203
from monitoring.importers.fhir.helpers import _FHIR_DATE, _PARTIAL_DATE
from monitoring.intake import Refused
from monitoring.store import PatientIn

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


class PatientReading(ReaderBase):
    """The Patient resource: its MRN and its fields, through the one intake path."""

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
