"""Create or migrate the schema with Alembic, so an older database is upgraded, never dropped."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported only when it is needed (a migration, or a database that is not current):
# importing it and reading the migration scripts costs about a tenth of a second, which every
# command would otherwise pay at start-up (bench/bench_import.py at 100,000 rows).

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's Config is a configparser: '%' starts an interpolation ("%40" in a PostgreSQL
    # password, "%2F" in a socket path), so it is doubled to stand for itself.
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest) inside one transaction."""
    from alembic import command

    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def newest_file_revision() -> str:
    """The revision of the newest migration script, from its file name ("0011_user_display_name.py"
    is revision 0011: tests/monitoring/test_schema.py checks that this is Alembic's head)."""
    names = sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*_*.py"))
    return names[-1].split("_", 1)[0]


def _stored_revision(engine: Engine) -> str | None:
    """The one revision in ``alembic_version``; None when there is no such table or not one row."""
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").fetchall()
    except DBAPIError:
        return None
    return str(rows[0][0]) if len(rows) == 1 else None


def is_current(engine: Engine) -> bool:
    """The database is at the newest revision. One query when it is (the usual start-up); Alembic
    decides otherwise."""
    if _stored_revision(engine) == newest_file_revision():
        return True
    return current_revision(engine) == head_revision(engine)


def ensure_schema(engine: Engine) -> None:
    """Upgrade when the database is behind; cheap when it is already current."""
    if not is_current(engine):
        upgrade(engine)


def open_database(db: str | None = None) -> Engine:
    """The engine for ``--db``/DATABASE_URL/default, with the schema brought up to date."""
    from monitoring.db import get_engine, resolve_database_url

    engine = get_engine(resolve_database_url(db))
    ensure_schema(engine)
    return engine
