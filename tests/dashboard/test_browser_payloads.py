"""The issue-12 payloads as stored data, in the real server and Chromium: nothing runs, nothing is
fetched from another address, no element is created by the data (issue 12 points 1, 2 and 8)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from sqlmodel import Session

import tests.dashboard.test_browser as tb
from monitoring import auth, services
from monitoring.demo import ensure_demo
from monitoring.schema import open_database

NAME = 'XSS <img src="http://evil.example/track.png" onerror="alert(1)"> [phish](http://evil.example/) $x$'
DRUG = '<iframe srcdoc="<script>parent.alert(10)</script>"></iframe>'

pytestmark = getattr(tb, "pytestmark", [])


@pytest.fixture(scope="module")
def payload_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server on a demo database holding one patient whose name and drugs are payloads."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request

    db = tmp_path_factory.mktemp("payloads") / "demo.db"
    url = f"sqlite:///{db}"
    engine = open_database(url)
    assert ensure_demo(engine)
    with Session(engine) as s:
        auth.create_user(s, actor="test", username=tb.USER, role=auth.CLINICIAN, password=tb.PASSWORD)
        s.commit()
        services.add_patient(s, username=tb.USER, mrn="XSS-1", name=NAME,
                             culprit_drugs=[DRUG, "![t](http://evil.example/t.png)"],
                             onset_date=dt.date.today() - dt.timedelta(days=5), setting="inpatient")
        s.commit()
    port = tb._free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
         "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=tb.ROOT, env={**os.environ, "DATABASE_URL": url}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
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
                pytest.fail("streamlit did not start")
            time.sleep(0.3)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)


def test_payload_patient_is_inert_text_on_ward_and_timeline(payload_server: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    shots_dir = tmp_path_factory.mktemp("screenshots")
    from playwright.sync_api import sync_playwright

    dialogs: list[str] = []
    foreign: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=tb.CHROMIUM, args=tb.CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("request", lambda r: foreign.append(r.url) if urlparse(r.url).hostname not in ("127.0.0.1", None)
                    and not r.url.startswith(("data:", "blob:")) else None)
            page.goto(payload_server + "/", wait_until="domcontentloaded")
            page.get_by_role("textbox", name="User name").fill(tb.USER)
            page.get_by_role("textbox", name="Password").fill(tb.PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_selector("table.dm-ward", timeout=90_000)
            page.wait_for_selector("text=XSS-1", timeout=30_000)
            shots = shots_dir  # look at them: the payloads must read as text
            page.screenshot(path=str(shots / "ward.png"))
            page.get_by_role("radio", name="XSS").first.click()
            page.wait_for_selector("text=NEVER RECHALLENGE", timeout=90_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(shots / "timeline.png"))
            tb._no_exception(page)
            created = page.evaluate(
                """() => [
                  ...document.querySelectorAll('iframe[srcdoc], #root script, meta[http-equiv], img[onerror]'),
                  ...[...document.querySelectorAll('img[src], a[href]')].filter(e => (e.src || e.href).includes('evil.example')),
                ].map(e => e.outerHTML.slice(0, 200))"""
            )
            banner = page.locator(".dm-banner").first.inner_text()
        finally:
            browser.close()
    assert dialogs == []
    assert foreign == []  # every asset from our own server (no fonts.gstatic.com)
    assert created == []
    assert '<iframe srcdoc="<script>parent.alert' in banner  # the drug shown as the characters stored
