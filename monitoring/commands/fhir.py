"""FHIR commands: ``export --mrn M --fhir FILE`` (PRODUCT.md §6). Import is ``import FILE.json``."""

from __future__ import annotations

import argparse

from monitoring.cli import EXIT_OK, BadInput


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export one patient as a FHIR R4 collection Bundle",
        description="Write one patient as a FHIR R4 collection Bundle (Patient, Condition, AllergyIntolerance, "
        "Observations, MedicationStatements, Media) that `import` reads back to the same data.",
    )
    p.add_argument("--mrn", required=True, help="the patient's MRN")
    p.add_argument("--fhir", required=True, metavar="FILE", help="the Bundle JSON file to write (readable by the owner only)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from monitoring.fhir_export import write_patient_bundle
    from monitoring.schema import open_database

    engine = open_database(args.db)
    with Session(engine) as session:
        try:
            count = write_patient_bundle(session, args.mrn, args.fhir)
        except LookupError:
            raise BadInput(f"--mrn: value {args.mrn!r}: no patient with this MRN") from None
        except OSError as exc:
            raise BadInput(f"{args.fhir}: cannot write the file: {exc.strerror or exc}") from None
    print(f"{args.fhir}: FHIR R4 collection Bundle of patient {args.mrn}, {count} resources")
    return EXIT_OK
