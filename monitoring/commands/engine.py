"""Engine commands: ``alerts`` and ``summary`` (PRODUCT.md §6).

    python -m monitoring alerts --mrn M [--as-of YYYY-MM-DD] [--json] [--profile FILE]
    python -m monitoring summary --mrn M [--as-of YYYY-MM-DD] [--json] [--profile FILE]

The as-of date defaults to today. An unknown MRN, a bad date or an unusable profile file is bad
input (exit 2, one message per line).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import textwrap
from typing import Any

from monitoring.cli import EXIT_OK, BadInput


def _as_of(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"value {text!r}: not a date (expected YYYY-MM-DD)") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mrn", required=True, help="the patient's medical record number")
    p.add_argument(
        "--as-of",
        dest="as_of",
        type=_as_of,
        default=None,
        metavar="YYYY-MM-DD",
        help="evaluate as of this date (default: today)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--profile",
        metavar="FILE",
        default=None,
        help="guideline profile TOML file (default: $DRESS_GUIDELINE_PROFILE, else the built-in default)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="alerts for one patient as of a date (decision support, not a diagnosis)")
    _common(p)
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("summary", help="summary of one patient as of a date: course, RegiSCAR, patch-test date")
    _common(p)
    p.set_defaults(func=cmd_summary)


def _load(args: argparse.Namespace) -> tuple[Any, dt.date, Any]:
    from sqlmodel import Session

    from monitoring.guideline import ProfileError, load_profile
    from monitoring.records import load_record
    from monitoring.schema import open_database

    try:
        profile = load_profile(args.profile)
    except ProfileError as exc:
        raise BadInput([f"{exc.path}: {p}" for p in exc.problems]) from None
    engine = open_database(args.db)
    with Session(engine) as session:
        try:
            record = load_record(session, args.mrn)
        except LookupError:
            raise BadInput(f"--mrn: value {args.mrn!r}: unknown MRN (no such patient in the database)") from None
    as_of = args.as_of or dt.date.today()
    return record, as_of, profile


def cmd_alerts(args: argparse.Namespace) -> int:
    from monitoring.rules import NOT_A_DIAGNOSIS, evaluate

    record, as_of, profile = _load(args)
    alerts = evaluate(record, as_of, profile)
    if args.json:
        json.dump([a.to_dict() for a in alerts], sys.stdout, indent=2)
        print()
        return EXIT_OK
    p = record.patient
    print(f"Alerts for {p.mrn} {p.name}{' [synthetic]' if p.synthetic else ''} as of {as_of.isoformat()}")
    print(f"Guideline profile: {profile.name} {profile.version}. {NOT_A_DIAGNOSIS}")
    if not alerts:
        print("No alert.")
        return EXIT_OK
    print(f"{'SEVERITY':<11} {'DATE':<10} CODE")
    for a in alerts:
        print(f"{a.severity.symbol} {a.severity.word:<9} {a.date.isoformat():<10} {a.code}")
        for text in (a.finding, a.recommendation):
            for line in textwrap.wrap(text, width=100):
                print(f"{'':<23}{line}")
        for line in textwrap.wrap(f"Source: {a.source}", width=100):
            print(f"{'':<23}{line}")
    return EXIT_OK


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def cmd_summary(args: argparse.Namespace) -> int:
    from monitoring.steroids import course_day_words
    from monitoring.summary import summarise

    record, as_of, profile = _load(args)
    s = summarise(record, as_of, profile)
    if args.json:
        json.dump(s, sys.stdout, indent=2)
        print()
        return EXIT_OK
    st, rs = s["steroid"], s["regiscar"]
    rows = [
        ("Patient", f"{s['mrn']} {s['name']}{' [synthetic]' if s['synthetic'] else ''}"),
        ("As of", s["as_of"]),
        ("Day since onset", f"{_fmt(s['day_since_onset'])} (onset {_fmt(s['onset_date'])})"),
        ("Course start", _fmt(st["course_start"])),
        # Counted from the first dose as day 0, said so (issue 18 point 7; steroids.course_day_words).
        ("Day of course", course_day_words(
            dt.date.fromisoformat(st["course_start"]) if st["course_start"] else None, st["day_of_course"]) or "-"),
        (
            "Current dose",
            f"{_fmt(st['current_pred_eq_mg'])} mg/day prednisone-equivalent, {_fmt(st['current_mg_per_kg'])} mg/kg",
        ),
        ("Taper start (plan incl.)", _fmt(st["taper_start"])),
        ("Stop date (plan incl.)", _fmt(st["stop_date"])),
        ("Taper length", f"{_fmt(st['taper_days'])} days" if st["taper_days"] is not None else "-"),
        ("Second line", ", ".join(f"{x['drug']} {x['start_date']}" for x in st["second_line"]) or "-"),
        ("RegiSCAR", f"{rs['score']} ({rs['category']})"),
        ("Earliest patch test", _fmt(s["patch_test_earliest"])),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print()
    print("RegiSCAR items:")
    for item in rs["items"]:
        print(f"  {item['points']:+d}  {item['key']:<22} {item['answer']:<9} ({item['filled_by']})")
    print("Patch test:")
    for reason in s["patch_test"]["reasons"]:
        print(f"  {reason}")
    return EXIT_OK
