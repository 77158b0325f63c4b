"""Command line: ``python -m monitoring [--db PATH_OR_URL] COMMAND`` (PRODUCT.md §6).

Exit status: 0 success, 2 bad input (each problem on its own line, naming file, row, column and
value), 1 anything else. No Python traceback reaches the user for bad input.

A SQLite file named by ``--db`` or DATABASE_URL must exist, except for ``init`` (which creates it)
and ``restore`` (which may restore into a new file): a mistyped path is an error (exit 2), never a
new empty database. A busy, locked or read-only database prints "database busy / read-only:
nothing was stored, try again" (exit 1); no database error prints SQL or its parameters.

Each group of commands lives in its own module with ``register(subparsers)``; a command's handler
takes the parsed arguments and returns the exit status. Heavy modules are imported inside the
handlers so that start-up stays lean.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2

# The commands that may create the SQLite file they are pointed at.
CREATING_COMMANDS = frozenset({"init", "restore"})

# Modules that add commands. Each defines ``register(subparsers: argparse._SubParsersAction) -> None``
# and sets ``func`` on its parsers (``parser.set_defaults(func=handler)``).
COMMAND_MODULES: tuple[str, ...] = (
    "monitoring.commands.core",
    "monitoring.commands.photos",
    "monitoring.commands.users",
    "monitoring.commands.backup",
    "monitoring.commands.engine",
    "monitoring.commands.demo",
    "monitoring.commands.fhir",
    "monitoring.commands.listen",
    "monitoring.commands.notify",
)


class BadInput(Exception):
    """Bad input from the user: reported as lines on stderr with exit status 2."""

    def __init__(self, lines: Sequence[str] | str):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m monitoring",
        description="DRESS monitor: serial labs, steroid courses and alerts for DRESS patients.",
    )
    parser.add_argument(
        "--db",
        metavar="PATH_OR_URL",
        help="SQLite file path or SQLAlchemy URL (default: $DATABASE_URL, else data/dress_monitor.db)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: usage errors are bad input
        return EXIT_BAD_INPUT if exc.code not in (0, None) else EXIT_OK
    try:
        if args.command not in CREATING_COMMANDS:
            from monitoring.db import MissingDatabase, require_existing, resolve_database_url

            try:
                require_existing(resolve_database_url(args.db))
            except MissingDatabase as exc:
                raise BadInput(f"--db: {exc}") from None
        return int(args.func(args) or 0)
    except BadInput as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader stopped early (`... --json | head`): not an error. Python's own flush at exit
        # would fail again, so stdout is pointed at /dev/null (the documented remedy).
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - last line of defence: a message, never a traceback
        import sqlite3

        from sqlalchemy.exc import SQLAlchemyError

        from monitoring.db import describe_error

        if isinstance(exc, (SQLAlchemyError, sqlite3.Error)):
            # Never str(exc): SQLAlchemy's message carries the SQL statement.
            print(f"error: {describe_error(exc)}", file=sys.stderr)
        else:
            print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
