"""The one place that knows how to reach the database.

Resolution order (PRODUCT.md §6): an explicit ``--db`` (file path or SQLAlchemy URL), else the
environment variable DATABASE_URL, else the SQLite file ``data/dress_monitor.db`` under the project.
SQLite runs in WAL mode with a busy timeout and enforced foreign keys so that concurrent writers
lose nothing and a killed process leaves a consistent database (PRODUCT.md §8).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, create_engine

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_DB_PATH = DATA_DIR / "dress_monitor.db"
BUSY_TIMEOUT_MS = 30_000


def resolve_database_url(db: str | None = None) -> str:
    """A SQLAlchemy URL from ``--db`` (path or URL), DATABASE_URL, or the default SQLite file."""
    value = db if db else os.environ.get("DATABASE_URL") or None
    if not value:
        return f"sqlite:///{DEFAULT_DB_PATH}"
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_connection.cursor()
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys = ON")
    cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.close()


def create_db_engine(url: str) -> Engine:
    """A new engine for ``url``; SQLite files get WAL, busy timeout, foreign keys, 0600 files."""
    if is_sqlite(url):
        u = make_url(url)
        memory = u.database in (None, "", ":memory:")
        if memory:
            engine = create_engine(url, connect_args={"check_same_thread": False}, poolclass=StaticPool)
        else:
            path = Path(u.database or "")
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                # Patient data: readable by the owner only (PRODUCT.md §8).
                old = os.umask(0o077)
                try:
                    path.touch()
                finally:
                    os.umask(old)
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


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
