"""The one place that knows how to reach the database.

Resolution order (PRODUCT.md §6): an explicit ``--db`` (file path or SQLAlchemy URL), else the
environment variable DATABASE_URL, else the SQLite file ``data/dress_monitor.db`` under the project.
SQLite runs in WAL mode with a busy timeout and enforced foreign keys so that concurrent writers
lose nothing and a killed process leaves a consistent database (PRODUCT.md §8).

Faults (issue 12): a write waits at most ``busy_timeout_s()`` for a lock (env
DRESS_DB_BUSY_TIMEOUT_S, default 5 s: a design choice, long enough for any write of this product,
short enough that a page never freezes for half a minute); PostgreSQL gets the same bound as its
``lock_timeout``. Every engine is made with ``hide_parameters=True``: an error message or a log line
never carries the SQL parameters (patient names, drugs). ``database_fault`` turns a busy, locked or
read-only database into the one message the page and the command line show.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Table, event, inspect
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, create_engine

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_DB_PATH = DATA_DIR / "dress_monitor.db"
BUSY_TIMEOUT_ENV = "DRESS_DB_BUSY_TIMEOUT_S"
DEFAULT_BUSY_TIMEOUT_S = 5.0
BUSY_TIMEOUT_MS = int(DEFAULT_BUSY_TIMEOUT_S * 1000)  # the default, for callers that show it
FAULT_MESSAGE = "database busy / read-only: nothing was stored, try again"


def table_of(model: type[SQLModel]) -> Table:
    """The Core ``Table`` of a ``table=True`` model, typed: sqlmodel declares no ``__table__``, so
    ``Model.__table__`` is an attribute mypy cannot see. SQLAlchemy's mapper holds the same object."""
    mapper = inspect(model, raiseerr=False)
    table = None if mapper is None else mapper.local_table
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table model: it has no Table")
    return table


def busy_timeout_s() -> float:
    """How long a statement waits for a lock before giving up (env DRESS_DB_BUSY_TIMEOUT_S)."""
    raw = os.environ.get(BUSY_TIMEOUT_ENV)
    if not raw:
        return DEFAULT_BUSY_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{BUSY_TIMEOUT_ENV}: value {raw!r}: not a number of seconds") from None
    if not 0 < value <= 600:
        raise ValueError(f"{BUSY_TIMEOUT_ENV}: value {raw!r}: must be more than 0 and at most 600 seconds")
    return value


class MissingDatabase(FileNotFoundError):
    """A SQLite file named by --db / DATABASE_URL does not exist (only ``init`` creates one)."""


def require_existing(url: str) -> None:
    """Refuse a SQLite file path that does not exist (a mistyped ``--db`` must not silently make
    an empty database that then lists no patients) and a path that is a dangling symbolic link."""
    path = sqlite_file(url)
    if path is None:
        return
    if path.is_symlink() and not path.exists():
        raise MissingDatabase(f"{path}: a symbolic link to a file that does not exist")
    if not path.is_file():
        raise MissingDatabase(f"{path}: no database here (a mistyped --db?); create one with `python -m monitoring --db {path} init`")


def resolve_database_url(db: str | None = None) -> str:
    """A SQLAlchemy URL from ``--db`` (path or URL), DATABASE_URL, or the default SQLite file."""
    value = db if db else os.environ.get("DATABASE_URL") or None
    if not value:
        return f"sqlite:///{DEFAULT_DB_PATH}"
    if "://" in value:
        return value
    path = Path(value).expanduser()
    # A dangling link stays a link (create_db_engine refuses it), never silently its target.
    return f"sqlite:///{path.absolute() if path.is_symlink() and not path.exists() else path.resolve()}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (also of the URI form ``sqlite:///file:PATH?mode=ro&uri=true``,
    the way to open a database read-only); None for in-memory SQLite and other databases."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or u.database in (None, "", ":memory:"):
        return None
    database = u.database or ""
    if str(u.query.get("uri", "")).lower() in ("true", "1") and database.startswith("file:"):
        database = database[len("file:") :]
    return Path(database)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s() * 1000)}")
    cur.execute("PRAGMA foreign_keys = ON")
    try:
        cur.execute("PRAGMA journal_mode = WAL")
    except sqlite3.OperationalError:
        pass  # a read-only file cannot change its journal mode: it is still read (issue 12)
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.close()


def create_db_engine(url: str) -> Engine:
    """A new engine for ``url``; SQLite files get WAL, busy timeout, foreign keys, 0600 files."""
    if is_sqlite(url):
        file = sqlite_file(url)
        if file is None:
            engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool, hide_parameters=True)
        else:
            path = file
            if path.is_symlink() and not path.exists():
                # Creating the file would create the link's target, wherever it points.
                raise MissingDatabase(f"{path}: a symbolic link to a file that does not exist")
            read_only = make_url(url).query.get("mode") == "ro"
            if not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() and not read_only:
                # Patient data: readable by the owner only (PRODUCT.md §8).
                old = os.umask(0o077)
                try:
                    path.touch()
                finally:
                    os.umask(old)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout_s()}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    lock_ms = int(busy_timeout_s() * 1000)
    connect_args = {"options": f"-c lock_timeout={lock_ms}"} if make_url(url).get_backend_name() == "postgresql" else {}
    return create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args)


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """The shared engine for ``url`` (one per process and URL)."""
    return create_db_engine(url)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# SQLite's result codes and PostgreSQL's SQLSTATEs that mean "not now" rather than "bad data".
_SQLITE_FAULTS = ("database is locked", "database table is locked", "database is busy", "readonly database", "read-only", "disk i/o error", "unable to open database")
_PG_FAULT_STATES = frozenset({"25006", "55P03", "57014", "40001", "40P01", "53300", "57P01", "57P03", "08000", "08001", "08003", "08006"})


def database_fault(exc: BaseException) -> str | None:
    """FAULT_MESSAGE when ``exc`` says the database is busy, locked, read-only or unreachable;
    None for anything else (bad data, a bug), which callers report otherwise."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, sqlite3.OperationalError):
        orig: BaseException = exc
    elif isinstance(exc, DBAPIError):
        orig = exc.orig if exc.orig is not None else exc
    else:
        return None
    state = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "diag", None), "sqlstate", None)
    if state in _PG_FAULT_STATES:
        return FAULT_MESSAGE
    text = str(orig).lower()
    if any(f in text for f in _SQLITE_FAULTS) and (isinstance(exc, (OperationalError, sqlite3.OperationalError)) or not state):
        return FAULT_MESSAGE
    return None


def describe_error(exc: BaseException) -> str:
    """A one-line description of a database error with neither its SQL nor its parameters: the
    driver's first message line only (PostgreSQL's DETAIL line quotes the row's values)."""
    fault = database_fault(exc)
    if fault:
        return fault
    from sqlalchemy.exc import DBAPIError

    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    return f"database refused the change ({type(orig).__name__}: {first}); nothing was stored"
