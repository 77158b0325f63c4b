"""Photograph commands (issue 6).

- ``photos --mrn M [--json] [--include-hidden]`` lists a patient's photographs (metadata only).
- ``photos import --mrn M --site SITE [--bsa PCT] [--date YYYY-MM-DD] [--note TEXT] FILE...`` stores
  photographs with the same checks as the dashboard. All-or-nothing: any refused file (each named
  on its own line on stderr) means exit 2 and nothing stored.
- ``photos hide --id N --reason TEXT`` hides a photograph (there is no delete); ``photos restore``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import sys

from monitoring.cli import EXIT_OK, BadInput

BODY_SITES_HELP = "face, neck, chest, abdomen, back, arms, hands, legs, feet, mucosa, other"


def _iso_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def _default_user() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "photos",
        help="list, import or hide clinical photographs",
        description="Without a subcommand: list a patient's photographs (metadata, never the images).",
    )
    p.add_argument("--mrn", help="the patient's MRN")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--include-hidden", action="store_true", help="list hidden photographs too")
    p.set_defaults(func=cmd_list)
    actions = p.add_subparsers(dest="photos_command", metavar="{import,hide,restore}")
    actions.required = False

    imp = actions.add_parser("import", help="store photographs (all-or-nothing; EXIF/GPS stripped)")
    imp.add_argument("--mrn", required=True, help="the patient's MRN")
    imp.add_argument("--site", required=True, help=f"body site: {BODY_SITES_HELP}")
    imp.add_argument("--bsa", type=float, default=None, help="BSA %% involved (0-100), also stored as a bsa_pct observation")
    imp.add_argument("--date", type=_iso_date, default=None, help="date taken when the file has no EXIF date (default today)")
    imp.add_argument("--note", default=None, help="a note stored with each photograph")
    imp.add_argument("--max-mb", type=float, default=None, help="size limit per file in MB (default $DRESS_PHOTO_MAX_MB, else 25)")
    imp.add_argument("--user", default=None, help="who uploads (recorded in the audit trail)")
    imp.add_argument("--json", action="store_true", help="print the stored photographs as JSON")
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.set_defaults(func=cmd_import)

    for name, verb in (("hide", "hide a photograph (with a reason, audited; there is no delete)"), ("restore", "show a hidden photograph again")):
        h = actions.add_parser(name, help=verb)
        h.add_argument("--id", type=int, required=True, dest="photo_id", help="photograph id (see `photos --mrn M`)")
        h.add_argument("--reason", required=True, help="why (kept in the audit trail)")
        h.add_argument("--user", default=None, help="who (recorded in the audit trail)")
        h.set_defaults(func=cmd_hide if name == "hide" else cmd_restore)


def cmd_list(args: argparse.Namespace) -> int:
    from sqlmodel import Session

    from monitoring.photos import list_photos
    from monitoring.schema import open_database

    if not args.mrn:
        raise BadInput("photos: --mrn is required (photos --mrn MRN [--json], or photos import --mrn MRN --site SITE FILE...)")
    engine = open_database(args.db)
    with Session(engine) as session:
        try:
            photos = list_photos(session, args.mrn, with_thumbnails=False, include_hidden=args.include_hidden)
        except LookupError:
            raise BadInput(f"photos: column mrn: value {args.mrn!r}: unknown MRN") from None
    if args.json:
        json.dump([p.to_dict() for p in photos], sys.stdout, indent=2)
        print()
        return EXIT_OK
    if not photos:
        print(f"no photographs for {args.mrn}")
    for p in photos:
        bsa = f"BSA {p.bsa_pct:g} %" if p.bsa_pct is not None else "BSA not recorded"
        hidden = f"  [hidden: {p.hidden_reason}]" if p.hidden else ""
        print(f"#{p.id:<5} {p.taken_on.isoformat()}  {p.body_site:<8} {bsa:<16} {p.width}x{p.height} {p.size_bytes / 1024:.0f} kB{hidden}")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from monitoring.db import session_scope
    from monitoring.photos import PhotoIn, PhotoLimits, date_source_words, size_problem, store_photos
    from monitoring.schema import open_database
    from monitoring.store import BatchRejected, Problem

    try:
        limits = PhotoLimits.from_env(args.max_mb)
    except ValueError as exc:
        raise BadInput(f"photos import: column max-mb: {exc}") from None
    problems: list[Problem] = []
    items: list[PhotoIn] = []
    for path in args.files:
        try:
            size = os.stat(path).st_size
        except OSError as exc:
            problems.append(Problem(path, None, None, f"cannot read the file: {exc.strerror or exc}"))
            continue
        # Refused from its size before it is read: a 4 GB file never reaches memory.
        too_big = size_problem(path, size, limits)
        if too_big is not None:
            problems.append(too_big)
            continue
        try:
            with open(path, "rb") as fh:
                data = fh.read(limits.max_bytes + 1)
        except OSError as exc:
            problems.append(Problem(path, None, None, f"cannot read the file: {exc.strerror or exc}"))
            continue
        items.append(PhotoIn(filename=path, data=data, body_site=args.site, bsa_pct=args.bsa, taken_on=args.date, note=args.note))

    engine = open_database(args.db)
    try:
        with session_scope(engine) as session:
            if problems:
                # Still check the readable files, so that every problem is reported in one go.
                try:
                    store_photos(session, args.mrn, items, username=args.user or _default_user(), limits=limits)
                except BatchRejected as exc:
                    problems.extend(exc.problems)
                raise BatchRejected(problems)
            stored = store_photos(session, args.mrn, items, username=args.user or _default_user(), limits=limits)
    except BatchRejected as exc:
        raise BadInput([str(p) for p in exc.problems] + [f"nothing stored: {len(exc.problems)} problem(s)"]) from None
    except LookupError:
        raise BadInput(f"photos import: column mrn: value {args.mrn!r}: unknown MRN") from None
    if args.json:
        json.dump(
            [
                {
                    "id": s.id,
                    "file": s.filename,
                    "taken_on": s.taken_on.isoformat(),
                    "date_source": s.date_source,
                    "body_site": s.body_site,
                    "bsa_pct": s.bsa_pct,
                    "width": s.width,
                    "height": s.height,
                    "size_bytes": s.size_bytes,
                    "content_type": s.content_type,
                }
                for s in stored
            ],
            sys.stdout,
            indent=2,
        )
        print()
    else:
        for s in stored:
            print(f"stored #{s.id}: {s.filename} ({s.body_site}, taken {s.taken_on.isoformat()}, {date_source_words(s.date_source)}, {s.width}x{s.height})")
        print(f"{len(stored)} photograph(s) stored for {args.mrn}; metadata (EXIF, GPS) stripped")
    return EXIT_OK


def _hide_or_restore(args: argparse.Namespace, *, hide: bool) -> int:
    from monitoring.db import session_scope
    from monitoring.photos import hide_photo, restore_photo
    from monitoring.schema import open_database

    engine = open_database(args.db)
    fn = hide_photo if hide else restore_photo
    try:
        with session_scope(engine) as session:
            fn(session, args.photo_id, reason=args.reason, username=args.user or _default_user())
    except LookupError:
        raise BadInput(f"photos: column id: value '{args.photo_id}': no such photograph") from None
    except ValueError as exc:
        raise BadInput(f"photos: column reason: {exc}") from None
    print(f"photograph #{args.photo_id} {'hidden' if hide else 'restored'}")
    return EXIT_OK


def cmd_hide(args: argparse.Namespace) -> int:
    return _hide_or_restore(args, hide=True)


def cmd_restore(args: argparse.Namespace) -> int:
    return _hide_or_restore(args, hide=False)
