"""Pure helpers of a laboratory result (Observation): its code (LOINC, this product's code systems,
the laboratory code map), its value and units, its status, and its business identifier.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from monitoring import catalogue, intake
from monitoring.catalogue import TestDef
from monitoring.importers.fhir.codes import LOCAL_FINDING_SYSTEM, LOCAL_TEST_SYSTEM, LOINC, SNOMED, SOURCE_ID_SYSTEM


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


def _has_catalogue_result(obs: Mapping[str, Any]) -> bool:
    """An Observation that is, or whose panel components are, a catalogue test."""
    if _observation_code(obs.get("code"))[0] is not None:
        return True
    return any(isinstance(c, dict) and _observation_code(c.get("code"))[0] is not None for c in obs.get("component") or [])


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


def _finding_answers() -> dict[str, tuple[str, ...]] | None:
    """The hand-entered RegiSCAR items and answers, when the scoring module is installed."""
    try:
        from monitoring.services import finding_answers

        return finding_answers()
    except (ImportError, TypeError):
        return None
