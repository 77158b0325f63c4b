"""Allergies and conditions: DRESS detection (ICD-10-CM D72.12, SNOMED CT 702809001, text), the DRESS
Condition's onset and resolution dates, culprit drugs and other drug allergies (PRODUCT.md §6).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from monitoring.importers.fhir.base import ReaderBase
from monitoring.importers.fhir.codes import ICD10CM, SNOMED
from monitoring.importers.fhir.helpers import _codes, _drug_name, _first, _generic, _has_rxnorm, _known_drug
from monitoring.importers.fhir.parsed import _merge_names

_DRESS_TEXT = re.compile(r"\bdress\b|\bdihs\b|drug reaction with eosinophilia", re.IGNORECASE)

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


class ConditionReading(ReaderBase):
    """DRESS Conditions (onset, resolution) and drug AllergyIntolerances (culprits, allergies)."""

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

    def finish_allergies(self) -> None:
        """A drug allergy named by the patient's DRESS Condition is a culprit; the others stay allergies."""
        for mrn, names in self.out.allergies.items():
            text = " ".join(self.out.dress_texts.get(mrn, [])).lower()
            named = [n for n in names if text and re.search(rf"\b{re.escape(n.lower())}\b", text)]
            if named:
                self.out.culprits[mrn] = _merge_names(self.out.culprits.get(mrn, []), named)
                self.out.allergies[mrn] = [n for n in names if n not in named]
