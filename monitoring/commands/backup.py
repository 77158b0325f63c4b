"""``backup PATH`` and ``restore PATH`` for the SQLite database (issue 7; monitoring.backup)."""

from __future__ import annotations

import argparse

from monitoring.cli import EXIT_OK, BadInput


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backup", help="copy the live SQLite database to PATH (safe while the dashboard writes)")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="replace the database with the backup PATH (a safety backup is taken first)")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=cmd_restore)


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {table}" for table, n in counts.items())


def cmd_backup(args: argparse.Namespace) -> int:
    from pathlib import Path

    from monitoring import audit
    from monitoring.backup import BackupError, backup
    from monitoring.commands.users import actor
    from monitoring.schema import open_database

    engine = open_database(args.db)
    url = engine.url.render_as_string(hide_password=False)
    try:
        info = backup(url, Path(args.path))
    except BackupError as exc:
        raise BadInput(f"backup: {exc}") from None
    audit.record_separately(engine, username=actor(), action=audit.BACKUP, entity="database", after={"path": str(info.path)})
    print(f"backup written to {info.path} ({info.size_bytes} bytes, schema {info.revision}; {_summary(info.counts)})")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from monitoring import audit
    from monitoring.backup import BackupError, restore
    from monitoring.commands.users import actor
    from monitoring.db import create_db_engine, resolve_database_url

    url = resolve_database_url(args.db)
    try:
        result = restore(url, Path(args.path))
    except BackupError as exc:
        raise BadInput(f"restore: {exc}") from None
    engine = create_db_engine(url)
    try:
        audit.record_separately(
            engine,
            username=actor(),
            action=audit.RESTORE,
            entity="database",
            after={"from": str(result.restored.path), "safety_backup": str(result.safety_backup) if result.safety_backup else None},
        )
    finally:
        engine.dispose()
    if result.safety_backup:
        print(f"the database as it was is kept in {result.safety_backup}")
    print(f"restored {result.restored.path} ({_summary(result.restored.counts)}); schema now at {result.revision}")
    return EXIT_OK
