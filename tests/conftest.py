"""Shared fixtures: real databases, never mocks (ENGINEERING.md: the SQLModel test tutorial)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from monitoring import models  # noqa: F401  (registers tables)
from monitoring.db import create_db_engine
from tests.pg_fixture import pg_engine, pg_url, postgres_server  # noqa: F401  (fixtures)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = PROJECT_ROOT.parent / "shared"
FHIR_FIXTURES = SHARED_DIR / "fixtures" / "fhir"


# Storage, import and engine tests run on PostgreSQL as well as SQLite (issue 7): in these modules
# every test that uses ``engine`` (or ``session``) runs once per backend. PostgreSQL comes from
# tests/pg_fixture.py (a server of the suite's own; a failure in CI when it is missing).
BOTH_BACKENDS_MODULES = frozenset(
    {
        "test_store",
        "test_services",
        "test_csv_import",
        "test_fhir_import",
        "test_fhir_export",
        "test_records",
        "test_demo",
        "test_rules",
        "test_summary",
        "test_regiscar",
        "test_photos",
        "test_audit",
        "test_auth",
        "test_sessions",
        "test_followup",
        "test_taper",
        "test_feed",
        "test_episodes",
        "test_notify",
        "test_import_caps",
        "test_text_limits",
        "test_fhir_corrections",
        "test_fhir_edition2",
        "test_rules_edition2",
    }
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    module = metafunc.module.__name__.rsplit(".", 1)[-1]
    if "engine" in metafunc.fixturenames and module in BOTH_BACKENDS_MODULES:
        metafunc.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The database product under test: "sqlite" unless the module runs on both."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def engine(backend: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An in-memory SQLite database with every table: fast, real SQL (or, for the modules above, a
    fresh PostgreSQL database migrated by Alembic)."""
    if backend == "postgresql":
        pg = create_db_engine(request.getfixturevalue("pg_url"))
        yield pg
        pg.dispose()
        return
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
