"""Shared fixtures: real databases, never mocks (ENGINEERING.md: the SQLModel test tutorial)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from monitoring import models  # noqa: F401  (registers tables)
from monitoring.db import create_db_engine

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = PROJECT_ROOT.parent / "shared"
FHIR_FIXTURES = SHARED_DIR / "fixtures" / "fhir"


@pytest.fixture
def engine() -> Iterator[Engine]:
    """An in-memory SQLite database with every table: fast, real SQL."""
    eng = create_db_engine("sqlite://")
    SQLModel.metadata.create_all(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A temporary SQLite file, migrated to the newest schema by Alembic."""
    from monitoring import schema

    path = tmp_path / "test.db"
    eng = create_db_engine(f"sqlite:///{path}")
    schema.upgrade(eng)
    eng.dispose()
    return path


@pytest.fixture
def db_url(db_path: Path) -> str:
    return f"sqlite:///{db_path}"
