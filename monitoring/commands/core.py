"""Core commands: init, demo, import, patients, labs (PRODUCT.md §6)."""

from __future__ import annotations

import argparse
import json
import sys

from monitoring.cli import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create or migrate the schema")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser(
        "import",
        help="import CSV files (patients, labs, medications) and FHIR R4 Bundle JSON files in one transaction",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="CSV or FHIR Bundle JSON (.json) files")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="import everything valid; put each refused row or resource in the intake review list (Entry page) "
        "instead of refusing the whole import",
    )
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("labs", help="a patient's results, oldest first")
    p.add_argument("--mrn", required=True, help="the patient's MRN")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_labs)

    p = sub.add_parser("patients", help="list patients")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_patients)


def cmd_init(args: argparse.Namespace) -> int:
    from monitoring.db import resolve_database_url
    from monitoring.schema import current_revision, open_database

    engine = open_database(args.db)
    print(f"schema at revision {current_revision(engine)} in {resolve_database_url(args.db).split('@')[-1]}")
    return EXIT_OK


def cmd_patients(args: argparse.Namespace) -> int:
    from sqlalchemy import select
    from sqlmodel import Session

    from monitoring.models import Patient
    from monitoring.schema import open_database

    engine = open_database(args.db)
    with Session(engine) as session:
        rows = session.execute(select(Patient).order_by(Patient.mrn)).scalars().all()
    out = [
        {
            "mrn": p.mrn,
            "name": p.name,
            "sex": p.sex,
            "birth_date": p.birth_date.isoformat() if p.birth_date else None,
            "weight_kg": p.weight_kg,
            "onset_date": p.onset_date.isoformat() if p.onset_date else None,
            "culprit_drugs": list(p.culprit_drugs or []),
            "baseline_creatinine_mg_dl": p.baseline_creatinine_mg_dl,
            "resolved_date": p.resolved_date.isoformat() if p.resolved_date else None,
            "setting": p.setting,
            "active": p.active,
            "synthetic": p.synthetic,
        }
        for p in rows
    ]
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        if not out:
            # Said on stderr (stdout stays the list, empty): an empty answer is not mistaken for a
            # wrong database or a failed query (issue 18 point 13).
            print(f"no patients in {args.db or 'the database'}: import some with `python -m monitoring import FILE`"
                  " or load the synthetic demo with `python -m monitoring demo`", file=sys.stderr)
        for p in out:
            tag = " [synthetic]" if p["synthetic"] else ""
            print(f"{p['mrn']:<12} {p['name']:<30} onset {p['onset_date'] or '-'}{tag}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    """All files in one transaction: every problem on its own line (exit 2) and nothing written."""
    from sqlmodel import Session

    from monitoring.cli import BadInput
    from monitoring.importers import import_files
    from monitoring.schema import open_database

    engine = open_database(args.db)
    with Session(engine, expire_on_commit=False) as session:
        report = import_files(session, args.files, username=_username(), skip_invalid=args.skip_invalid)
    if not report.ok:
        lines = report.problem_lines()
        lines.append(f"import refused: {report.problem_count} problem(s); nothing was written")
        if args.json:
            # A program reading stdout gets the report of problems too, not an empty stream.
            json.dump(report.as_dict(), sys.stdout, indent=2)
            print()
        raise BadInput(lines)
    if args.json:
        json.dump(report.as_dict(), sys.stdout, indent=2)
        print()
    else:
        for line in report.summary_lines():
            print(line)
    return EXIT_OK


def _username() -> str:
    """Who ran the import, for the audit trail: the operating-system account."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def cmd_labs(args: argparse.Namespace) -> int:
    """A patient's results oldest first (ties in storage order), hidden rows excluded."""
    from sqlalchemy import select
    from sqlmodel import Session, col

    from monitoring.cli import BadInput
    from monitoring.db import table_of
    from monitoring.models import LabResult, Patient
    from monitoring.schema import open_database

    engine = open_database(args.db)
    mrn = (args.mrn or "").strip()
    with Session(engine) as session:
        patient = session.execute(select(Patient).where(col(Patient.mrn) == mrn)).scalar_one_or_none()
        if patient is None:
            raise BadInput(f"--mrn: value {mrn!r}: unknown MRN: no such patient")
        lt = table_of(LabResult)
        rows = session.execute(
            select(lt).where(lt.c.patient_id == patient.id, lt.c.hidden.is_(False)).order_by(lt.c.taken_at, lt.c.id)
        ).all()
    out = [
        {
            "id": r.id,
            "taken_at": r.taken_at.isoformat(),
            "test": r.test,
            "loinc": r.loinc,
            "value": r.value,
            # A censored result: "<", "<=", ">" or ">=" before the value (PRODUCT.md §4), else null.
            "comparator": r.comparator,
            "unit": r.unit,
            "value_text": r.value_text,
            "original_value": r.original_value,
            "original_unit": r.original_unit,
            "ref_low": r.ref_low,
            "ref_high": r.ref_high,
            "source": r.source,
            "amended": r.amended_at is not None,
        }
        for r in rows
    ]
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
    else:
        tag = " [synthetic]" if patient.synthetic else ""
        print(f"{patient.mrn} {patient.name}{tag}: {len(out)} result(s)")
        for r in out:
            shown = r["value_text"] if r["value"] is None else f"{r['comparator'] or ''}{r['value']:g}"
            received = f"{r['original_value']} {r['original_unit']}".strip()
            print(f"{r['taken_at']:<19}  {r['test']:<24} {shown} {r['unit']}  (as received: {received})")
    return EXIT_OK
