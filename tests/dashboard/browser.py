"""Shared helpers of the browser tests (tests/dashboard/test_browser*.py, test_server_guard.py):
the real server (`streamlit run`) on a free port with DATABASE_URL set, Chromium's path and
arguments, signing in, and the check that no page shows a Streamlit exception.

Browser tests are skipped only where /usr/bin/chromium is missing AND the environment variable CI
is unset: in CI they must run (.ci/run installs Debian's chromium)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="Debian chromium not installed (in CI this test must run)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(database_url: str, *, script: str = "dashboard/app.py", env: Mapping[str, str] | None = None) -> Iterator[str]:
    """`streamlit run <script>` on a free port of 127.0.0.1 over ``database_url``; yields the base
    URL once /_stcore/health answers, and ends the whole process group afterwards, always."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
         "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                pytest.fail(f"streamlit did not start:\n{out[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        if proc.stdout:
            proc.stdout.close()


def demo_database(directory: Path, *, users: Sequence[tuple[str, str, str]] = ()) -> str:
    """A SQLite database in ``directory`` with the demo cohort and ``users`` (name, role,
    password); returns its URL."""
    from sqlmodel import Session

    from monitoring import auth
    from monitoring.demo import ensure_demo
    from monitoring.schema import open_database

    url = f"sqlite:///{directory / 'demo.db'}"
    engine = open_database(url)
    assert ensure_demo(engine)
    with Session(engine) as s:
        for username, role, password in users:
            auth.create_user(s, actor="test", username=username, role=role, password=password)
        s.commit()
    engine.dispose()
    return url


def sign_in(page: Any, base: str, username: str, password: str, *, path: str = "/") -> None:
    """Open ``path`` and sign in with the local form; returns once the form is submitted."""
    page.goto(base + path, wait_until="domcontentloaded")
    page.get_by_role("textbox", name="User name").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def no_exception(page: Any) -> None:
    errors = page.query_selector_all('[data-testid="stException"]')
    assert not errors, [e.inner_text()[:2000] for e in errors]


@dataclass
class Watched:
    """What a page did that the data must never make it do: dialogs (alert, confirm, prompt) and
    requests to any host but the server; ``violations(page)`` reads the Content-Security-Policy
    violations the current document reported (also those a script caught)."""

    dialogs: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    @staticmethod
    def violations(page: Any) -> list[str]:
        return list(page.evaluate("window.__csp || []"))


def watch(page: Any) -> Watched:
    """Start recording ``page``'s dialogs, requests to other hosts and CSP violations."""
    seen = Watched()
    page.on("dialog", lambda d: (seen.dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: seen.foreign.append(r.url) if urlparse(r.url).hostname not in ("127.0.0.1", None)
            and not r.url.startswith(("data:", "blob:")) else None)
    page.add_init_script("window.__csp = []; document.addEventListener('securitypolicyviolation',"
                         " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI))")
    return seen
