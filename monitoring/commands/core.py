"""Core commands: init, demo, import, patients, labs (PRODUCT.md §6)."""

from __future__ import annotations

import argparse
import json
import sys

from monitoring.cli import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("init", help="create or migrate the schema")
    p.set_defaults(func=cmd_init)

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
        for p in out:
            tag = " [synthetic]" if p["synthetic"] else ""
            print(f"{p['mrn']:<12} {p['name']:<30} onset {p['onset_date'] or '-'}{tag}")
    return EXIT_OK
