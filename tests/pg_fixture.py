"""A PostgreSQL server of the test suite's own (issue 7: the same code on PostgreSQL).

``postgres_server`` (session scope) finds Debian's PostgreSQL (/usr/lib/postgresql/*/bin), runs
initdb into a temporary directory (as the ``postgres`` user when the suite runs as root, since the
server refuses to run as root), starts it on a free port of 127.0.0.1 with its socket in the same
directory, and stops it at the end. Durability settings are off: it holds throw-away test data.

``pg_url`` gives each test an empty database of its own, cloned from a template that already
carries the newest schema (built once by the Alembic migrations, as a hospital's would be).

In CI (CI=true) a missing PostgreSQL fails the tests that need it; elsewhere they are skipped with
the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TEMPLATE_DB = "dress_template"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def admin_connect(self):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason} (apt-get install postgresql)")


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        _unavailable("no initdb under /usr/lib/postgresql/*/bin or on PATH")
        raise AssertionError("unreachable")
    as_user: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="dress-pg-"))
    if os.geteuid() == 0:
        # The server refuses to run as root: run it as the postgres account Debian creates.
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base, ignore_errors=True)
            _unavailable("running as root and there is no 'postgres' account to run the server as")
            raise AssertionError("unreachable") from None
        os.chown(base, pg.pw_uid, pg.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    log = base / "server.log"
    init = subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if init.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        _unavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
    port = _free_port()
    log_file = log.open("wb")
    server = subprocess.Popen(
        [
            *as_user,
            str(bin_dir / "postgres"),
            "-D", str(data),
            "-k", str(base),
            "-p", str(port),
            "-h", "127.0.0.1",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=60",
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    info = PostgresServer("127.0.0.1", port, "postgres")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with info.admin_connect() as conn:
                    conn.execute("SELECT 1")
                break
            except Exception as exc:  # noqa: BLE001 - any failure means "not up yet" until the deadline
                if server.poll() is not None or time.monotonic() > deadline:
                    _unavailable(f"server did not start ({exc}); log: {log.read_text(errors='replace')[-500:] if log.exists() else ''}")
                time.sleep(0.1)
        _build_template(info)
        yield info
    finally:
        if server.poll() is None:
            # SIGINT is the server's fast shutdown. Sent to the postmaster itself: runuser does
            # not pass it on.
            pid_file = data / "postmaster.pid"
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
            except (OSError, ValueError, IndexError):
                server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log_file.close()
        shutil.rmtree(base, ignore_errors=True)


def _build_template(server: PostgresServer) -> None:
    """One database migrated by Alembic to the newest schema; each test's database copies it."""
    from monitoring import schema
    from monitoring.db import create_db_engine

    with server.admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    eng = create_db_engine(server.url(TEMPLATE_DB))
    try:
        schema.upgrade(eng)
    finally:
        eng.dispose()


def create_database(server: PostgresServer, *, empty: bool = False) -> str:
    """A new database (a copy of the migrated template, or empty); returns its URL."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    template = "template0" if empty else TEMPLATE_DB
    with server.admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return server.url(name)


def drop_database(server: PostgresServer, url: str) -> None:
    name = url.rsplit("/", 1)[-1]
    with server.admin_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A PostgreSQL database of this test's own, at the newest schema."""
    url = create_database(postgres_server)
    yield url
    drop_database(postgres_server, url)


@pytest.fixture
def pg_engine(pg_url: str):  # type: ignore[no-untyped-def]
    from monitoring.db import create_db_engine

    eng = create_db_engine(pg_url)
    yield eng
    eng.dispose()
