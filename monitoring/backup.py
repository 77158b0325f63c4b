"""Backup and restore of the SQLite database (PRODUCT.md §8: backups with SQLite's online backup).

``backup`` copies the live database with SQLite's online backup API in one step, which reads one
consistent snapshot: in WAL mode the dashboard keeps writing meanwhile and every transaction
committed before the copy started is in it. The copy is checked (``PRAGMA integrity_check``),
switched to a single self-contained file (journal mode DELETE) and only then moved to its name,
readable by the owner only.

``restore`` refuses a file that is not a backup of this schema: it must be an SQLite database that
passes integrity_check, whose Alembic revision is one this code knows, and whose whole schema
(tables and columns, foreign keys, indexes, triggers, views) is exactly the one the migrations
build for that revision: nothing missing (the audit trail's append-only triggers), nothing added
(a trigger that rewrites results), nothing changed. Before it overwrites anything it takes a safety backup of the current database;
then it copies the backup in with the same API (one transaction: other connections see the old
database or the restored one, never a mixture) and migrates it to the newest schema.

PostgreSQL deployments back up with the server's own tools (pg_dump); see the README.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

SQLITE_MAGIC = b"SQLite format 3\x00"
REQUIRED_TABLES = frozenset({"patient", "lab_result", "medication_row", "audit_entry", "app_user", "alembic_version"})


class BackupError(Exception):
    """The backup or restore could not be done; the message says why. Nothing was changed."""


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    revision: str
    size_bytes: int
    counts: dict[str, int]


def sqlite_path(url: str) -> Path:
    """The file behind a SQLite URL; BackupError for other databases and for in-memory SQLite."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        raise BackupError(
            f"backup and restore work on the SQLite database only; this is {u.get_backend_name()}: "
            "use the server's own tools (pg_dump / pg_restore)"
        )
    if u.database in (None, "", ":memory:"):
        raise BackupError("an in-memory database cannot be backed up")
    return Path(u.database or "").expanduser().resolve()


def known_revisions() -> set[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from monitoring.schema import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return {rev.revision for rev in ScriptDirectory.from_config(cfg).walk_revisions()}


def _connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30)


def inspect(path: Path) -> BackupInfo:
    """Check that ``path`` is a sound database of this schema; BackupError saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    with path.open("rb") as fh:
        header = fh.read(len(SQLITE_MAGIC))
    if header != SQLITE_MAGIC:
        raise BackupError(f"{path}: not an SQLite database")
    try:
        with closing(_connect_read_only(path)) as conn:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            if [r[0] for r in rows] != ["ok"]:
                detail = "; ".join(str(r[0]) for r in rows[:5])
                raise BackupError(f"{path}: damaged database (integrity_check: {detail})")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = REQUIRED_TABLES - tables
            if missing:
                raise BackupError(f"{path}: not a DRESS monitor database (missing tables: {', '.join(sorted(missing))})")
            versions = [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]
            counts = {t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in ("patient", "lab_result", "medication_row", "audit_entry")}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: cannot be read as a database ({exc})") from None
    if len(versions) != 1 or versions[0] not in known_revisions():
        raise BackupError(f"{path}: schema revision {versions or 'none'} is not one this version of DRESS monitor knows")
    differences = schema_differences(path, versions[0])
    if differences:
        shown = "; ".join(differences[:10]) + (f"; and {len(differences) - 10} more" if len(differences) > 10 else "")
        raise BackupError(f"{path}: its schema is not the one of revision {versions[0]} ({shown})")
    return BackupInfo(path=path, revision=versions[0], size_bytes=path.stat().st_size, counts=counts)


def schema_of(conn: sqlite3.Connection) -> dict[str, object]:
    """Every table with its columns, every index with its columns, every trigger and view with its
    SQL (white space folded): what restore compares. A trigger is code that runs on every write (one
    that divides each new ALT by 10, or the loss of the audit trail's append-only triggers), so it
    must be exactly the expected one."""
    out: dict[str, object] = {}
    objects = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").fetchall()
    for kind, name, table, sql in objects:
        if kind == "table":
            columns = conn.execute(f'PRAGMA table_xinfo("{name}")').fetchall()
            out[f"table {name}"] = [(c[1], (c[2] or "").upper(), c[3], c[5], c[6]) for c in columns]
            fks = conn.execute(f'PRAGMA foreign_key_list("{name}")').fetchall()
            out[f"foreign keys of {name}"] = sorted((f[2], f[3], f[4], f[6]) for f in fks)
        elif kind == "index":
            info = conn.execute(f'PRAGMA index_xinfo("{name}")').fetchall()
            unique = [r[2] for r in conn.execute(f'PRAGMA index_list("{table}")').fetchall() if r[1] == name]
            partial = " ".join((sql or "").split()).partition(" WHERE ")[2]
            out[f"index {name}"] = (table, unique[0] if unique else None, [r[2] for r in info if r[5]], partial)
        else:  # trigger, view
            out[f"{kind} {name}"] = (table, " ".join((sql or "").split()))
    return out


@functools.cache
def expected_schema(revision: str) -> dict[str, object]:
    """The schema a database of this product has at ``revision``: built by the migrations into a
    temporary file (once per process)."""
    import tempfile

    from monitoring import schema
    from monitoring.db import create_db_engine

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "expected.db"
        engine = create_db_engine(f"sqlite:///{path}")
        try:
            schema.upgrade(engine, revision)
        finally:
            engine.dispose()
        with closing(sqlite3.connect(path)) as conn:
            return schema_of(conn)


def schema_differences(path: Path, revision: str) -> list[str]:
    """What in the database at ``path`` differs from the schema of ``revision``: missing, extra or
    changed tables, columns, indexes, triggers and views."""
    with closing(_connect_read_only(path)) as conn:
        found = schema_of(conn)
    expected = expected_schema(revision)
    out = [f"{name} missing" for name in sorted(expected.keys() - found.keys())]
    out += [f"{name} not expected" for name in sorted(found.keys() - expected.keys())]
    out += [f"{name} differs" for name in sorted(expected.keys() & found.keys()) if expected[name] != found[name]]
    return out


def _private_empty_file(path: Path) -> None:
    old = os.umask(0o077)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    finally:
        os.umask(old)


def backup(url: str, dest: Path, *, overwrite: bool = False) -> BackupInfo:
    """Copy the live database at ``url`` to ``dest`` (0600), consistent while others write."""
    src = sqlite_path(url)
    named = Path(dest).expanduser()
    if named.is_symlink():
        # A link (dangling or not) would send patient data wherever it points.
        raise BackupError(f"{named}: a symbolic link; give the backup's own path, not a link")
    dest = named.resolve()
    if not src.is_file():
        raise BackupError(f"{src}: no database to back up")
    if dest == src:
        raise BackupError("the backup cannot be the database itself")
    if dest.exists() and not overwrite:
        raise BackupError(f"{dest}: exists already; choose a new name")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    partial.unlink(missing_ok=True)
    _private_empty_file(partial)
    try:
        with closing(sqlite3.connect(src, timeout=30)) as source, closing(sqlite3.connect(partial)) as target:
            # pages=-1: the whole database in one step, hence one read transaction, one snapshot.
            source.backup(target, pages=-1)
            target.execute("PRAGMA journal_mode = DELETE")
        for suffix in ("-wal", "-shm", "-journal"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)
        inspect(partial)
        os.chmod(partial, 0o600)
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return inspect(dest)


def safety_backup_path(db: Path, now: dt.datetime | None = None) -> Path:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return db.parent / "backups" / f"{db.stem}-before-restore-{stamp}.db"


@dataclass(frozen=True)
class RestoreResult:
    restored: BackupInfo
    safety_backup: Path | None
    revision: str


def restore(url: str, src: Path) -> RestoreResult:
    """Replace the database at ``url`` with the backup ``src`` after checking it and taking a
    safety backup of the current database. Migrates the restored database to the newest schema."""
    from monitoring import schema
    from monitoring.db import create_db_engine

    info = inspect(Path(src).expanduser().resolve())
    db = sqlite_path(url)
    if info.path == db:
        raise BackupError("the backup to restore is the database itself")
    safety: Path | None = None
    if db.is_file() and db.stat().st_size > 0:
        safety = safety_backup_path(db)
        backup(url, safety)
    else:
        db.parent.mkdir(parents=True, exist_ok=True)
        if not db.exists():
            _private_empty_file(db)
    with closing(_connect_read_only(info.path)) as source, closing(sqlite3.connect(db, timeout=30)) as target:
        target.execute("PRAGMA busy_timeout = 30000")
        source.backup(target, pages=-1)
    engine = create_db_engine(f"sqlite:///{db}")
    try:
        schema.ensure_schema(engine)
        with engine.connect() as conn:
            ok = conn.exec_driver_sql("PRAGMA integrity_check").scalar()
        revision = schema.current_revision(engine) or ""
    finally:
        engine.dispose()
    if ok != "ok":
        raise BackupError(f"{db}: integrity_check after restore says {ok!r}; the safety backup is {safety}")
    return RestoreResult(restored=info, safety_backup=safety, revision=revision)
