"""Importers: CSV files (kind recognised by header) and FHIR R4 Bundles, in one transaction.

``import_files`` reads every file, collects every problem of every row of every file, checks the
valid rows against the database too (unknown MRNs, conflicting values), and writes only when there
is no problem at all (PRODUCT.md §6: one transaction over all files; nothing written on error).
"""

from __future__ import annotations

import datetime as dt
import gc
import importlib
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session

from monitoring.store import (
    BatchRejected,
    BatchResult,
    LabColumns,
    LabIn,
    MedIn,
    PatientIn,
    Problem,
    unknown_mrns,
    write_batch,
)

__all__ = ["FileSummary", "ImportReport", "import_files", "import_uploads"]


@dataclass
class FileSummary:
    name: str
    kind: str  # patients, labs, medications, fhir (or "unreadable")
    records: int  # data rows of a CSV file, resources read from a bundle
    problems: int = 0
    skipped_resources: dict[str, int] = field(default_factory=dict)
    details: dict[str, int] = field(default_factory=dict)  # FHIR: "skipped: Type: why" / "note: ..." -> count


@dataclass
class ImportReport:
    """The outcome of one import: every problem (nothing written), or the counts written."""

    files: list[FileSummary] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    result: BatchResult | None = None
    # --skip-invalid: the refused items, stored in the intake review list instead of refusing all.
    review_items: list[int] = field(default_factory=list)
    refused: list[Problem] = field(default_factory=list)
    # Problems beyond DRESS_MAX_PROBLEMS (importers/caps.py): counted, not listed.
    more_problems: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problem_count(self) -> int:
        """Every problem found, the listed ones and those beyond the cap."""
        return len(self.problems) + self.more_problems

    def problem_lines(self) -> list[str]:
        from monitoring.importers.caps import more_line

        lines = [str(p) for p in self.problems]
        if self.more_problems:
            lines.append(more_line(self.more_problems))
        return lines

    def summary_lines(self) -> list[str]:
        lines = []
        for f in self.files:
            extra = ""
            if f.skipped_resources:
                extra = " (not used, counted and skipped: " + ", ".join(
                    f"{k} {v}" for k, v in sorted(f.skipped_resources.items())
                ) + ")"
            unit = ("resource" if f.kind == "fhir" else "row") + ("" if f.records == 1 else "s")
            lines.append(f"{f.name}: {f.kind}, {f.records} {unit}{extra}")
            lines.extend(f"  {k} ({v})" for k, v in f.details.items())
        r = self.result
        if r is not None:
            lines.append(
                f"patients: {r.patients_created} created, {r.patients_updated} updated; "
                f"labs: {r.labs_inserted} inserted, {r.labs_skipped} skipped (already stored); "
                f"medications: {r.meds_inserted} inserted, {r.meds_skipped} skipped (already stored)"
            )
            if r.labs_amended or r.labs_removed:
                lines.append(
                    f"stored results re-sent: {r.labs_amended} amended (corrected, or final of a preliminary; "
                    f"earlier values in the audit trail), {r.labs_removed} removed (entered-in-error; kept, hidden)"
                )
        if self.refused:
            lines.append(f"{len(self.refused)} refused item(s) put in the intake review list (Entry page):")
            lines.extend(f"  {p}" for p in self.refused)
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "files": [f.__dict__ for f in self.files],
            "problems": self.problem_lines(),
            "problem_count": self.problem_count,
            "result": self.result.as_dict() if self.result else None,
            "review_items": list(self.review_items),
            "refused": [str(p) for p in self.refused],
        }


def import_files(
    session: Session,
    paths: Sequence[str | Path],
    *,
    username: str | None = None,
    as_of: dt.date | None = None,
    commit: bool = True,
    skip_invalid: bool = False,
) -> ImportReport:
    """Import CSV and FHIR Bundle JSON files in one transaction.

    On success the batch is written (and committed unless ``commit=False``); on any problem the
    session is rolled back and the report lists every problem. ``as_of`` is "today" for the
    future-date check of lab results (default: the local date).

    ``skip_invalid``: every refused item (row, resource, or a file that cannot be read) is put in
    the intake review list (monitoring/review.py) and everything else is written; the report's
    ``refused`` lists them and ``problems`` stays empty.
    """
    named: list[tuple[str, Path | bytes]] = [(str(p), Path(p)) for p in paths]
    return _import(session, named, username=username, as_of=as_of, commit=commit, skip_invalid=skip_invalid)


def import_uploads(
    session: Session,
    uploads: Sequence[tuple[str, bytes]],
    *,
    username: str | None = None,
    as_of: dt.date | None = None,
    commit: bool = True,
    skip_invalid: bool = False,
) -> ImportReport:
    """Like ``import_files`` for uploaded files given as (file name, bytes) (the dashboard's Entry page)."""
    return _import(session, list(uploads), username=username, as_of=as_of, commit=commit, skip_invalid=skip_invalid)


def _import(
    session: Session,
    named: list[tuple[str, Path | bytes]],
    *,
    username: str | None,
    as_of: dt.date | None,
    commit: bool,
    skip_invalid: bool = False,
) -> ImportReport:
    # A million-row file makes millions of small objects and none of them cyclic garbage; the
    # cyclic collector would rescan them all again and again (measured: a third of the time).
    from monitoring.importers.caps import capped

    oversize = _oversize(named)
    if oversize:
        # Checked before any file is read: nothing of this import is read or stored.
        report = ImportReport(files=[FileSummary(n, "unreadable", 0, problems=1) for n in (p.where for p in oversize)],
                              problems=oversize)
        return report
    enabled = gc.isenabled()
    gc.disable()
    try:
        report = _import_all(session, named, username=username, as_of=as_of, commit=commit, skip_invalid=skip_invalid)
    finally:
        if enabled:
            gc.enable()
    report.problems, report.more_problems = capped(report.problems)
    return report


def _oversize(named: list[tuple[str, Path | bytes]]) -> list[Problem]:
    """Files above DRESS_MAX_IMPORT_BYTES, by their size on disk or in memory (none is read)."""
    from monitoring.importers.caps import MAX_IMPORT_BYTES

    limit = MAX_IMPORT_BYTES.value()
    problems = []
    for name, content in named:
        try:
            size = content.stat().st_size if isinstance(content, Path) else len(content)
        except OSError:
            continue  # reported by the reader ("cannot read the file")
        if size > limit:
            problems.append(Problem(name, None, f"{size:,} bytes", f"file too large: {MAX_IMPORT_BYTES.named()}"))
    return problems


def _import_all(
    session: Session,
    named: list[tuple[str, Path | bytes]],
    *,
    username: str | None,
    as_of: dt.date | None,
    commit: bool,
    skip_invalid: bool = False,
) -> ImportReport:
    report = ImportReport()
    patients: list[PatientIn] = []
    labs: list[LabIn] = []
    lab_columns: list[LabColumns] = []
    meds: list[MedIn] = []
    skipped: dict[str, int] = {}
    fhir_bundles: list[Any] = []  # parsed bundles: merged with stored data, findings written after
    refused_mrns: list[tuple[str, str]] = []  # CSV rows refused for their own problems: (where, MRN)
    patient_refs = _fhir_patients(named, as_of)
    for name, content in named:
        if name.lower().endswith(".json"):
            others = {ref: mrn for n, refs in patient_refs.items() if n != name for ref, mrn in refs.items()}
            summary, p, lab, med, problems = _read_fhir(name, content, as_of=as_of, parsed_out=fhir_bundles,
                                                        other_patients=others)
            for k, v in summary.skipped_resources.items():
                skipped[k] = skipped.get(k, 0) + v
            labs.extend(lab)
        else:
            summary, p, cols, med, problems = _read_csv(name, content, as_of, refused_mrns)
            lab_columns.extend(cols)
        summary.problems = len(problems)
        report.files.append(summary)
        report.problems.extend(problems)
        patients.extend(p)
        meds.extend(med)
    source = "csv" if all(f.kind != "fhir" for f in report.files) else "import"
    description = "import of " + ", ".join(Path(n).name for n, _ in named)
    if fhir_bundles:
        # A mg/kg dose of a drug no decision reads, for a patient without a weight: listed, not a refusal.
        weighed = {p.mrn for p in patients if p.values.get("weight_kg")}
        dropped: set[int] = set()
        for bundle in fhir_bundles:
            dropped |= bundle.drop_unweighable(session, weighed)
        if dropped:
            meds = [m for m in meds if id(m) not in dropped]
            by_path = {str(b.path): b for b in fhir_bundles}
            for f in report.files:
                bundle = by_path.get(str(Path(f.name)))
                if bundle is not None:
                    f.details.update({f"skipped: {k}": v for k, v in sorted(bundle.skip_reasons.items())})
    for bundle in fhir_bundles:
        # FHIR: allergy culprits are added to the stored ones, an older body weight does not win.
        bundle.merge_stored(session)
    if fhir_bundles:
        # FHIR: a result re-sent as a correction (or the final of a preliminary) amends the stored
        # one instead of being inserted; applied after the batch is accepted (write_corrections).
        taken: set[int] = set()
        for bundle in fhir_bundles:
            taken |= bundle.match_stored(session)
        if taken:
            labs = [lab for lab in labs if id(lab) not in taken]
    if skip_invalid:
        return _write_skipping_invalid(
            session, report, named, fhir_bundles, patients=patients, labs=labs, lab_columns=lab_columns, meds=meds,
            username=username, source=source, description=description, commit=commit,
        )
    if refused_mrns:
        # A refused row's MRN is checked too: its report names every problem it has.
        # Placed first: within a row, the sort by place keeps the MRN problem before the value's.
        report.problems[:0] = unknown_mrns(session, refused_mrns, (p.mrn for p in patients))
    try:
        # Checked against the database even when the files already have problems, so the report
        # is complete (unknown MRNs, conflicts); nothing is inserted then.
        result = write_batch(
            session,
            patients=patients,
            labs=labs,
            lab_columns=lab_columns,
            meds=meds,
            username=username,
            source=source,
            description=description,
            check_only=bool(report.problems),
        )
    except BatchRejected as exc:
        report.problems.extend(exc.problems)
        result = None
    if report.problems:
        session.rollback()
        report.problems = _in_file_order(report.problems, [n for n, _ in named])
        return report
    assert result is not None
    for bundle in fhir_bundles:
        bundle.write_findings(session, username)  # RegiSCAR findings of this product's own export
        _count_corrections(result, bundle.write_corrections(session, username))
    result.skipped_resources = skipped
    report.result = result
    if commit:
        session.commit()
    return report


def _write_skipping_invalid(
    session: Session,
    report: ImportReport,
    named: list[tuple[str, Path | bytes]],
    fhir_bundles: list[Any],
    *,
    patients: list[PatientIn],
    labs: list[LabIn],
    lab_columns: list[LabColumns],
    meds: list[MedIn],
    username: str | None,
    source: str,
    description: str,
    commit: bool,
) -> ImportReport:
    """``import --skip-invalid``: write what is valid; each refused item goes to the review list.

    The files' own problems already left their rows/resources out. The database's refusals
    (unknown MRN, a conflicting value, a mg/kg dose without a weight) name the record by its
    place: those records are left out too and the rest written again, until the batch is accepted
    (each round removes at least one record, so this ends)."""
    from monitoring import review

    refused = list(report.problems)
    report.problems = []
    if refused and lab_columns:
        labs = [*labs, *(lab for cols in lab_columns for lab in cols.records())]
        lab_columns = []
    result: BatchResult | None = None
    while True:
        try:
            result = write_batch(
                session, patients=patients, labs=labs, lab_columns=lab_columns, meds=meds, username=username,
                source=source, description=description,
            )
            break
        except BatchRejected as exc:
            session.rollback()
            bad = {p.where for p in exc.problems}
            refused.extend(exc.problems)
            if lab_columns:
                labs = [*labs, *(lab for cols in lab_columns for lab in cols.records())]
                lab_columns = []
            kept = (
                [p for p in patients if p.where not in bad],
                [x for x in labs if x.where not in bad],
                [m for m in meds if m.where not in bad],
            )
            if sum(len(k) for k in kept) == len(patients) + len(labs) + len(meds):
                # A refusal that names no record (cannot happen today): refuse the import as before.
                report.problems = _in_file_order(refused, [n for n, _ in named])
                return report
            patients, labs, meds = kept
            for bundle in fhir_bundles:
                bundle.merge_stored(session)
    for bundle in fhir_bundles:
        bundle.write_findings(session, username)
        _count_corrections(result, bundle.write_corrections(session, username))
    located = _Locator(named, fhir_bundles)
    for p in _in_file_order(refused, [n for n, _ in named]):
        file, kind, mrn, record = located.find(p.where)
        report.review_items.append(
            review.add_review_item(
                session, source=file, location=p.where[len(file):].lstrip(": ") or "(whole file)", field=p.column,
                value=p.value, reason=p.reason, kind=kind, mrn=mrn, record=record, username=username,
            )
        )
        report.refused.append(p)
    skipped: dict[str, int] = {}
    for f in report.files:
        for k, v in f.skipped_resources.items():
            skipped[k] = skipped.get(k, 0) + v
    result.skipped_resources = skipped
    report.result = result
    if commit:
        session.commit()
    return report


def _count_corrections(result: BatchResult, counts: tuple[int, int]) -> None:
    result.labs_amended += counts[0]
    result.labs_removed += counts[1]


class _Locator:
    """The file, kind, MRN and record (CSV row or FHIR resource, as received) a problem names."""

    _CSV_KINDS = {"patients": "patient", "labs": "lab", "medications": "medication"}
    _FHIR_KINDS = {
        "Observation": "lab", "DiagnosticReport": "lab", "MedicationRequest": "medication",
        "MedicationStatement": "medication", "MedicationAdministration": "medication", "Medication": "medication",
        "Patient": "patient", "AllergyIntolerance": "allergy", "Condition": "condition",
    }

    def __init__(self, named: list[tuple[str, Path | bytes]], fhir_bundles: list[Any]):
        self.named = named
        self.bundles = {str(b.path): b for b in fhir_bundles}
        self.csv_rows: dict[str, list[list[str]]] = {}

    def find(self, where: str) -> tuple[str, str, str | None, dict[str, Any] | None]:
        name, content = next(((n, c) for n, c in self.named if where == n or where.startswith(n + ":")), (where, b""))
        if name.lower().endswith(".json"):
            bundle = self.bundles.get(str(Path(name)))
            resource = bundle.resource_at.get(where) if bundle is not None else None
            if resource is None:
                return name, "file", None, None
            mrn = bundle.mrn_at.get(where) if bundle is not None else None
            return name, self._FHIR_KINDS.get(str(resource.get("resourceType")), "other"), mrn, resource
        m = _ROW.search(where[len(name):])
        rows = self._rows(name, content)
        if not m or not rows:
            return name, "file", None, None
        n = int(m.group(1))
        header = [h.strip().lstrip("\ufeff") for h in rows[0]]
        if n < 2 or n > len(rows):
            return name, "file", None, None
        record = dict(zip(header, rows[n - 1], strict=False))
        from monitoring.importers.csv_import import recognise

        kind = recognise(header)
        return name, self._CSV_KINDS.get(kind.name if kind else "", "other"), (record.get("mrn") or "").strip() or None, record

    def _rows(self, name: str, content: Path | bytes) -> list[list[str]]:
        if name not in self.csv_rows:
            import csv
            import io

            try:
                data = content.read_bytes() if isinstance(content, Path) else content
                self.csv_rows[name] = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
            except (OSError, UnicodeDecodeError, csv.Error):
                self.csv_rows[name] = []
        return self.csv_rows[name]


def _read_csv(
    name: str, content: Path | bytes, as_of: dt.date | None, refused_mrns: list[tuple[str, str]] | None = None
) -> tuple[FileSummary, list[PatientIn], list[LabColumns], list[MedIn], list[Problem]]:
    from monitoring.importers.csv_import import parse_csv, parse_csv_bytes

    parsed = parse_csv(content, as_of=as_of) if isinstance(content, Path) else parse_csv_bytes(content, name, as_of=as_of)
    parsed.name = name
    summary = FileSummary(name, parsed.kind or "unreadable", parsed.rows)
    summary.details.update(unresolved_drug_lines(parsed.meds, parsed.patients))
    labs = [parsed.lab_columns] if parsed.lab_columns is not None else []
    if refused_mrns is not None:
        refused_mrns.extend(parsed.refused_mrns)
    return summary, parsed.patients, labs, parsed.meds, parsed.problems


def _fhir_patients(named: list[tuple[str, Path | bytes]], as_of: dt.date | None) -> dict[str, dict[str, str]]:
    """Per FHIR file of an import with several files: its Patients (reference -> MRN)."""
    json_files = [(n, c) for n, c in named if n.lower().endswith(".json")]
    if len(json_files) < 2:
        return {}
    from monitoring.importers.fhir import patient_index

    out = {}
    for name, content in json_files:
        try:
            data = content.read_bytes() if isinstance(content, Path) else content
        except OSError:
            continue
        out[name] = patient_index(data, as_of=as_of)
    return out


def _read_fhir(
    name: str, content: Path | bytes, *, as_of: dt.date | None = None, parsed_out: list[Any] | None = None,
    other_patients: dict[str, str] | None = None,
) -> tuple[FileSummary, list[PatientIn], list[LabIn], list[MedIn], list[Problem]]:
    try:
        fhir = importlib.import_module("monitoring.importers.fhir")
    except ModuleNotFoundError as exc:
        if exc.name != "monitoring.importers.fhir":
            raise
        return FileSummary(name, "fhir", 0), [], [], [], [
            Problem(name, None, None, "FHIR import is not available in this installation (monitoring.importers.fhir is missing)")
        ]
    if isinstance(content, Path):
        if not content.is_file():
            return FileSummary(name, "fhir", 0), [], [], [], [Problem(name, None, None, "cannot read the file: no such file")]
        bundle = fhir.parse_bundle(content, as_of=as_of, other_patients=other_patients)
    elif hasattr(fhir, "parse_bundle_bytes"):
        # An upload is parsed in memory (no patient data in a temporary file), named as uploaded.
        bundle = fhir.parse_bundle_bytes(content, name, as_of=as_of, other_patients=other_patients)
    else:
        # parse_bundle reads a path; an upload is written to a private temporary file of the same name.
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(name).name
            path.write_bytes(content)
            bundle = fhir.parse_bundle(path, as_of=as_of)
    if parsed_out is not None:
        parsed_out.append(bundle)
    patients = list(bundle.patients)
    patients.extend(_patient_updates(getattr(bundle, "patient_updates", None)))
    skipped = dict(getattr(bundle, "skipped", {}) or {})
    records = len(patients) + len(bundle.labs) + len(bundle.meds) + sum(skipped.values())
    problems = [_renamed(p, name) for p in bundle.problems]
    labs = list(bundle.labs)
    meds = list(bundle.meds)
    details = {f"skipped: {k}": v for k, v in sorted((getattr(bundle, "skip_reasons", None) or {}).items())}
    details.update({f"note: {k}": v for k, v in sorted((getattr(bundle, "notes", None) or {}).items())})
    culprits = [n for names in (getattr(bundle, "culprits", None) or {}).values() for n in names]
    details.update(unresolved_drug_lines(meds, patients, culprits))
    return FileSummary(name, "fhir", records, skipped_resources=skipped, details=details), patients, labs, meds, problems


UNRESOLVED = "unresolved drug name, kept as written (matches no culprit group, steroid or PPI)"


def unresolved_drug_lines(meds: Sequence[MedIn], patients: Sequence[PatientIn], culprits: Sequence[str] = ()) -> dict[str, int]:
    """Report lines for drug names the resolver cannot read (PRODUCT.md §6 edition 2): each name as
    written, with the number of rows naming it. A culprit name is listed as well."""
    from monitoring.drugs import resolve

    counts: dict[str, int] = {}
    names = [m.drug_as_entered or m.drug for m in meds]
    names += [c for p in patients for c in (p.values.get("culprit_drugs") or [])]
    names += list(culprits)
    for name in names:
        if name and not resolve(name).resolved:
            key = f"{UNRESOLVED}: '{name}'"
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _patient_updates(updates: Mapping[str, PatientIn | Mapping[str, object]] | Iterable[object] | None) -> list[PatientIn]:
    """Patient fields found outside the Patient resource (a body-weight Observation, a Condition)."""
    if not updates:
        return []
    if isinstance(updates, dict):
        return [u if isinstance(u, PatientIn) else PatientIn(mrn, None, dict(u)) for mrn, u in updates.items()]
    return [u for u in updates if isinstance(u, PatientIn)]


def _renamed(p: Problem, name: str) -> Problem:
    """FHIR problems name the file as the caller gave it (an upload's temporary path is not useful)."""
    if p.where.startswith(name):
        return p
    head, sep, tail = p.where.partition(": ")
    if sep and Path(head).name == Path(name).name:
        return Problem(f"{name}: {tail}", p.column, p.value, p.reason)
    return p


_ROW = re.compile(r": row (\d+)")


def _in_file_order(problems: list[Problem], names: list[str]) -> list[Problem]:
    """Problems sorted by file (in the order given), then row; stable otherwise."""
    order = {n: i for i, n in enumerate(names)}

    def key(p: Problem) -> tuple[int, int]:
        file_index = len(names)
        for n, i in order.items():
            if p.where == n or p.where.startswith(n + ":"):
                file_index = i
                break
        m = _ROW.search(p.where[len(names[file_index]) :] if file_index < len(names) else p.where)
        return file_index, int(m.group(1)) if m else 0

    return sorted(problems, key=key)
