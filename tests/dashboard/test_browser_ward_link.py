"""Issue 18 point 8 in Chromium: a patient's name in the ward table is a link that opens that
patient's timeline, in the same tab, still signed in (the server of ``make run``,
dashboard/server.py, whose browser cookie lets the new page load find the sign-in)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import Session

from monitoring import auth
from monitoring.schema import open_database
from tests.dashboard.cohort import write_cohort
from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, _no_exception, streamlit_server

USER, PASSWORD = "dr.link", "link-test-pass-2026"
SHOTS = os.environ.get("DRESS_SCREENSHOTS")  # a folder: the pages are saved there as PNG

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="Debian chromium not installed (in CI this test must run)",
)


@pytest.fixture
def cohort_server(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'ward.db'}"
    with Session(open_database(url)) as s:
        write_cohort(s, dt.date.today())
        auth.create_user(s, actor="test", username=USER, role=auth.CLINICIAN, password=PASSWORD)
        s.commit()
    # The server of `make run` (dashboard/server.py): its cookie keeps the sign-in across page loads.
    with streamlit_server(url, "dashboard/server.py") as base:
        yield base


def test_a_name_on_the_ward_opens_that_patients_timeline_signed_in(cohort_server: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(cohort_server + "/", wait_until="domcontentloaded")
            page.get_by_role("textbox", name="User name").fill(USER)
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_selector("tr.dm-row[data-mrn='WARN-1']", timeout=90_000)
            _no_exception(page)
            row = page.locator("tr.dm-row[data-mrn='WARN-1']")
            assert "today 00:00" in row.inner_text().replace("\u2060", "")  # point 2, as the browser shows it
            if SHOTS:
                page.screenshot(path=f"{SHOTS}/ward-1366.png")
            link = row.get_by_role("link", name="Walt Warning")
            assert link.get_attribute("target") == "_self"
            link.click()
            page.wait_for_url("**/timeline?mrn=WARN-1", timeout=60_000)
            page.wait_for_selector("h3:has-text('Walt Warning')", timeout=90_000)
            _no_exception(page)
            body = page.inner_text("body")
            assert "Cora Critical" not in body  # that patient's page, not the first in the list
            assert "Sign in" not in [b.inner_text() for b in page.get_by_role("button").all()]  # still signed in
            assert len(browser.contexts[0].pages) == 1  # the same tab
            if SHOTS:
                page.screenshot(path=f"{SHOTS}/timeline-from-ward-link-1366.png")
        finally:
            browser.close()
