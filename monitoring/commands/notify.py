"""``notify``: send new critical alert episodes and unacknowledged warnings (PRODUCT.md §10)."""

from __future__ import annotations

import argparse
import re
import sys
import time

from monitoring.cli import EXIT_OK, BadInput

_DURATION = re.compile(r"^\s*(\d+)\s*([smh]?)\s*$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> int:
    """'30s', '5m', '1h' or a number of seconds, as seconds (at least 1)."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) <= 0:
        raise BadInput(f"--every: value {text!r}: give a duration such as 30s, 5m or 1h")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "notify",
        help="evaluate every active patient and send new critical episodes and unacknowledged warnings "
        "(e-mail and/or webhook, settings in DRESS_SMTP_* and DRESS_WEBHOOK_URL)",
        description="Evaluates every active patient (keeping the alert episodes current), then sends each open "
        "critical episode nobody acknowledged and each warning unacknowledged after the profile's "
        "escalate_warning_after_hours, by SMTP (DRESS_SMTP_HOST, _PORT, _USER, _PASSWORD, _FROM, _TO, _STARTTLS) "
        "and/or a webhook (DRESS_WEBHOOK_URL). Each is sent once; failures are retried with back-off.",
    )
    p.add_argument("--every", metavar="DURATION", help="keep running, one round every DURATION (30s, 5m, 1h)")
    p.set_defaults(func=cmd_notify)


def cmd_notify(args: argparse.Namespace) -> int:
    from monitoring.notify import NotifyConfigError, NotifySettings, run_once
    from monitoring.schema import open_database

    every = parse_duration(args.every) if args.every else None
    try:
        settings = NotifySettings.from_env()
    except NotifyConfigError as exc:
        raise BadInput(f"notify: {exc}") from None
    if not settings.channels:
        raise BadInput("notify: no channel configured: set DRESS_SMTP_HOST (with DRESS_SMTP_FROM, DRESS_SMTP_TO) and/or DRESS_WEBHOOK_URL")
    engine = open_database(args.db)
    while True:
        report = run_once(engine, settings)
        print(report.line(), flush=True)
        if every is None:
            return EXIT_OK
        try:
            time.sleep(every)
        except KeyboardInterrupt:
            print("notify: stopped", file=sys.stderr)
            return EXIT_OK
