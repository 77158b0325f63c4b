"""Small pure helpers of the FHIR importer shared by the readers of several resource kinds: dates,
elements, identifiers, extensions and drug names (resolved by the one resolver, ``drugs.resolve_coded``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from monitoring.drugs import resolve_coded
from monitoring.importers.fhir.codes import EXT, RXNORM, SOURCE_ID_SYSTEM

_FHIR_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FHIR_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?")
_PARTIAL_DATE = re.compile(r"\d{4}(-\d{2})?")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


def _codes(cc: Any) -> set[str]:
    if not isinstance(cc, dict):
        return set()
    return {str(c.get("code")) for c in cc.get("coding") or [] if c.get("code")}


def _effective(r: Mapping[str, Any]) -> tuple[str | None, str]:
    if r.get("effectiveDateTime"):
        return str(r["effectiveDateTime"]), "effectiveDateTime"
    period = r.get("effectivePeriod")
    if isinstance(period, dict) and period.get("start"):
        return str(period["start"]), "effectivePeriod.start"
    if r.get("effectiveInstant"):
        return str(r["effectiveInstant"]), "effectiveInstant"
    return None, "effectiveDateTime"


def _first(r: Mapping[str, Any], *paths: tuple[str, str | None]) -> tuple[str | None, str]:
    for key, sub in paths:
        v = r.get(key)
        if sub is not None:
            v = v.get(sub) if isinstance(v, dict) else None
        if v:
            return str(v), key + (f".{sub}" if sub else "")
    key, sub = paths[0]
    return None, key + (f".{sub}" if sub else "")


def _source_id(r: Mapping[str, Any]) -> str | None:
    """This product's own record id when it exported the resource, else the resource id."""
    for ident in r.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == SOURCE_ID_SYSTEM and ident.get("value"):
            return str(ident["value"])
    rid = r.get("id")
    return str(rid) if rid else None


def _sub_extensions(r: Mapping[str, Any], url: str) -> dict[str, str] | None:
    for ext in r.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == url:
            out: dict[str, str] = {}
            for sub in ext.get("extension") or []:
                if isinstance(sub, dict) and sub.get("url") and "valueString" in sub:
                    out[str(sub["url"])] = str(sub["valueString"])
            return out
    return None


def _as_received(r: Mapping[str, Any]) -> tuple[str, str] | None:
    sub = _sub_extensions(r, EXT.AS_RECEIVED)
    if sub is None or "value" not in sub:
        return None
    return sub["value"], sub.get("unit", "")


def _as_entered(r: Mapping[str, Any]) -> dict[str, str] | None:
    return _sub_extensions(r, EXT.AS_ENTERED)


def _drug_name(cc: Mapping[str, Any] | None) -> str | None:
    if not isinstance(cc, dict):
        return None
    if cc.get("text") and str(cc["text"]).strip():
        return str(cc["text"]).strip()
    for c in cc.get("coding") or []:
        if c.get("display"):
            return str(c["display"]).strip()
    by_code = resolve_coded(None, _codings(cc))
    return by_code.name if by_code.by_code else None


def _codings(cc: Mapping[str, Any] | None) -> tuple[tuple[str | None, str], ...]:
    """(system, code) of each coding with a code: what the drug resolver reads beside the text."""
    if not isinstance(cc, dict):
        return ()
    return tuple((c.get("system"), str(c["code"])) for c in cc.get("coding") or [] if isinstance(c, dict) and c.get("code"))


def _has_rxnorm(cc: Mapping[str, Any]) -> bool:
    return any(c.get("system") == RXNORM for c in cc.get("coding") or [])


def _generic(cc: Mapping[str, Any] | None, name: str) -> str:
    """The stored generic name of a coded drug: the one resolver reads its RxNorm codes and its text."""
    return resolve_coded(name, _codings(cc)).name


def _known_drug(cc: Mapping[str, Any] | None, name: str) -> bool:
    """A drug of the table (by code or by name)."""
    return bool(resolve_coded(name, _codings(cc)).entries)
