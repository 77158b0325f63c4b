"""Bundle-level entry points and checks: reading a file or bytes (``parse_bundle``,
``parse_bundle_bytes``), the Patients of a file (``patient_index``), import in one transaction
(``import_bundle``), JSON load, the entry cap, version and Bundle validation.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlmodel import Session

from monitoring import intake
from monitoring.importers.caps import MAX_FHIR_ENTRIES
from monitoring.importers.fhir.codes import ACCEPTED_BUNDLE_TYPES, OTHER_VERSION_TYPES, R4_VERSIONS
from monitoring.importers.fhir.parsed import ParsedBundle
from monitoring.importers.fhir.patients import _mrn_of
from monitoring.importers.fhir.reader import Reader
from monitoring.importers.fhir.validation import _validate
from monitoring.intake import today
from monitoring.store import BatchRejected, BatchResult, Problem, write_batch

# --- entry points ------------------------------------------------------------------------------


def parse_bundle(path: Path, *, as_of: dt.date | None = None, other_patients: Mapping[str, str] | None = None) -> ParsedBundle:
    """Read and check one FHIR R4 Bundle file. Never raises for bad input: see ``problems``.

    ``as_of`` is "today" for the rule that results cannot be dated in the future.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        out = ParsedBundle(path)
        out.problems.append(Problem(str(path), None, None, f"cannot read the file: {exc.strerror or exc}"))
        return out
    return parse_bundle_bytes(data, path, as_of=as_of, other_patients=other_patients)


def parse_bundle_bytes(
    data: bytes, path: Path | str, *, as_of: dt.date | None = None, other_patients: Mapping[str, str] | None = None
) -> ParsedBundle:
    """Like ``parse_bundle`` for content already read; ``path`` names it in every problem.

    ``other_patients``: the Patients of the other files of the same import (``patient_index``),
    reference -> MRN, so that a resource here may name a Patient sent in another file."""
    path = Path(path)
    out = ParsedBundle(path)
    name = str(path)
    bundle = _load_json(data, name, out)
    if bundle is None:
        return out
    if not _check_bundle(bundle, name, out):
        return out
    Reader(bundle, name, out, as_of or today(), other_patients or {}, limit=intake.future_limit(as_of=as_of)).read()
    return out


def patient_index(data: bytes, *, as_of: dt.date | None = None) -> dict[str, str]:
    """The Patients of one Bundle file as reference -> MRN ("Patient/id" and each fullUrl), for
    linking the resources of the other files of the same import. Unreadable content gives {}."""
    try:
        doc = json.loads(data.decode("utf-8-sig"), parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    out: dict[str, str] = {}

    def walk(bundle: Any) -> None:
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict):
                continue
            if res.get("resourceType") == "Bundle":
                walk(res)
            elif res.get("resourceType") == "Patient":
                mrn, _rule = _mrn_of(res, as_of)
                if mrn:
                    if res.get("id"):
                        out.setdefault(f"Patient/{res['id']}", mrn)
                    if entry.get("fullUrl"):
                        out.setdefault(str(entry["fullUrl"]), mrn)

    walk(doc)
    return out


def import_bundle(
    session: Session,
    path: Path | str,
    *,
    username: str | None = None,
    as_of: dt.date | None = None,
) -> BatchResult:
    """Parse one bundle and write it in the caller's transaction (the caller commits).

    Raises ``BatchRejected`` with every problem and writes nothing when there is any. The CLI's
    ``import`` goes through ``monitoring.importers.import_files``, which mixes CSV files in.
    """
    parsed = parse_bundle(Path(path), as_of=as_of)
    if parsed.problems:
        raise BatchRejected(parsed.problems)
    parsed.merge_stored(session)
    taken = parsed.match_stored(session)
    result = write_batch(
        session,
        patients=parsed.all_patients(),
        labs=[lab for lab in parsed.labs if id(lab) not in taken],
        meds=parsed.meds,
        username=username,
        source="fhir",
        description=f"FHIR import of {Path(path).name}",
    )
    parsed.write_findings(session, username)
    result.labs_amended, result.labs_removed = parsed.write_corrections(session, username)
    result.skipped_resources = dict(parsed.skipped)
    return result


# --- file-level checks -------------------------------------------------------------------------


def _refuse(out: ParsedBundle, name: str, reason: str, column: str | None = None, value: Any = None) -> None:
    out.problems.append(Problem(name, column, value, reason))


def _load_json(data: bytes, name: str, out: ParsedBundle) -> dict[str, Any] | None:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _refuse(out, name, f"not a FHIR JSON file: not UTF-8 text (byte {exc.start})")
        return None
    if not text.strip():
        _refuse(out, name, "the file is empty: expected a FHIR R4 Bundle (JSON)")
        return None
    try:
        # Decimals keep each number exactly as written: the value "as received" of a result.
        doc = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        truncated = exc.pos >= len(text.rstrip()) - 1 or exc.msg.startswith("Unterminated string")
        hint = "; the file ends before the JSON does (truncated?)" if truncated else ""
        _refuse(out, name, f"not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}{hint}")
        return None
    except RecursionError:
        _refuse(out, name, "not valid JSON: nested too deeply")
        return None
    if not isinstance(doc, dict):
        _refuse(out, name, f"not a FHIR resource: the JSON is a {type(doc).__name__}, expected an object with resourceType Bundle")
        return None
    return doc


def _entries_over_cap(entries: list[Any]) -> int | None:
    """The cap when the Bundle's entries, with those of the Bundles nested in it, exceed
    DRESS_MAX_FHIR_ENTRIES (counted while walking; the walk stops at the cap), else None."""
    limit = MAX_FHIR_ENTRIES.value()
    count = 0
    pending = [entries]
    while pending:
        level = pending.pop()
        count += len(level)
        if count > limit:
            return limit
        for entry in level:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
                nested = resource.get("entry")
                if isinstance(nested, list):
                    pending.append(nested)
    return None


def _check_bundle(bundle: dict[str, Any], name: str, out: ParsedBundle) -> bool:
    rtype = bundle.get("resourceType")
    if rtype is None:
        _refuse(out, name, "not a FHIR resource: no resourceType (expected a Bundle)")
        return False
    if rtype != "Bundle":
        _refuse(out, name, f"a {rtype} resource, not a Bundle: export a Bundle (collection, transaction, batch or searchset)",
                "resourceType", rtype)
        return False
    for where, holder in (("fhirVersion", bundle), ("meta.fhirVersion", bundle.get("meta") or {})):
        version = holder.get("fhirVersion") if isinstance(holder, dict) else None
        if version is not None:
            if not str(version).startswith(R4_VERSIONS):
                _refuse(out, name, f"FHIR version {version}: this importer reads FHIR R4 (4.0.x) Bundles only", where, version)
            else:
                _refuse(out, name, "fhirVersion is not an element of an R4 Bundle", where, version)
            return False
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        _refuse(out, name, "Bundle.entry must be a list", "entry", type(entries).__name__)
        return False
    over = _entries_over_cap(entries)
    if over is not None:
        _refuse(out, name, f"too many entries: more than {over:,} ({MAX_FHIR_ENTRIES.named()}); no resource was read",
                "entry", None)
        return False
    for i, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict):
            other = OTHER_VERSION_TYPES.get(str(resource.get("resourceType")))
            if other is not None:
                _refuse(out, name, f"entry[{i}]: resource type {resource.get('resourceType')} does not exist in FHIR R4 "
                        f"(it is {other}): this file is not an R4 Bundle")
                return False
    # The Bundle itself (without its resources, which are checked one by one) against the R4 model.
    shell = dict(bundle)
    shell["entry"] = [{k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e for e in entries]
    if not shell["entry"]:
        del shell["entry"]
    errors = _validate("Bundle", shell)
    if errors:
        for loc, msg, value in errors:
            _refuse(out, name, f"not a valid FHIR R4 Bundle: {msg}", loc, value)
        return False
    btype = bundle.get("type")
    if btype not in ACCEPTED_BUNDLE_TYPES:
        _refuse(out, name, f"Bundle type {btype!r} is not imported (accepted: {', '.join(ACCEPTED_BUNDLE_TYPES)})", "type", btype)
        return False
    return True
