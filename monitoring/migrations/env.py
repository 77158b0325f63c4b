"""Alembic environment: migrations run on the connection handed over by ``monitoring.schema``.

SQLite uses batch mode so that ALTER TABLE works (Alembic's documented approach).
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from monitoring import models  # noqa: F401  (registers the tables on SQLModel.metadata)

target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        from monitoring.db import create_db_engine, resolve_database_url

        engine = create_db_engine(context.config.get_main_option("sqlalchemy.url") or resolve_database_url())
        with engine.connect() as conn:
            _run(conn)
        return
    _run(connection)


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
