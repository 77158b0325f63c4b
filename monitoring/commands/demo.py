"""The ``demo`` command: load the synthetic demo cohort (PRODUCT.md §6), idempotent."""

from __future__ import annotations

import argparse
import datetime as dt

from monitoring.cli import EXIT_OK, BadInput


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="load the synthetic demo cohort (idempotent)",
        description="Load the synthetic demo cohort (MRNs DEMO-001 ...), generated relative to today. "
        "Patients already in the database are left alone, so running it again adds nothing.",
    )
    p.add_argument(
        "--today",
        metavar="YYYY-MM-DD",
        help="reference date the demo is generated around (default: today)",
    )
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    today: dt.date | None = None
    if args.today:
        try:
            today = dt.date.fromisoformat(args.today)
        except ValueError:
            raise BadInput(f"--today: value {args.today!r}: not an ISO 8601 date (expected YYYY-MM-DD)") from None
        if today > dt.date.today():
            raise BadInput(
                f"--today: value {args.today!r}: after today; the demo's results would be dated in the future"
            )

    from sqlmodel import Session

    from monitoring.demo import DEMO_STORIES, load_demo
    from monitoring.schema import open_database

    engine = open_database(args.db)
    with Session(engine) as session:
        # Demo MRNs already present are skipped, so nothing here can conflict with stored rows.
        result = load_demo(session, today)
        session.commit()
    print(
        f"synthetic demo cohort (reference date {result.reference_date}): "
        f"{result.patients_created} patients, {result.labs_inserted} results, "
        f"{result.meds_inserted} medication rows, {result.findings_inserted} RegiSCAR findings, "
        f"{result.photos_inserted} synthetic photographs added"
    )
    if result.skipped_mrns:
        print(
            f"already in the database, left unchanged: {', '.join(result.skipped_mrns)} "
            f"({len(result.skipped_mrns)} of {len(DEMO_STORIES)} demo patients)"
        )
    return EXIT_OK
