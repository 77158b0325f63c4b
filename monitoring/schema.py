"""Create or migrate the schema with Alembic, so an older database is upgraded, never dropped."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's Config is a configparser: '%' starts an interpolation ("%40" in a PostgreSQL
    # password, "%2F" in a socket path), so it is doubled to stand for itself.
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest) inside one transaction."""
    cfg = alembic_config(engine)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def is_current(engine: Engine) -> bool:
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
