"""Validation of a resource against the FHIR R4 model (``fhir.resources``, its R4B package) and the
required value sets the model library does not check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

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
