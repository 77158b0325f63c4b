"""Issue 18 in Chromium, on the server of ``make run`` (dashboard/server.py, whose browser cookie
lets a new page load find the sign-in): point 8, a patient's name in the ward table is a link that
opens that patient's timeline in the same tab, still signed in; point 14, an address of a page the
account may not open (/audit for a clinician, /entry for a viewer) says who the page is for and
shows none of it, instead of silently showing the ward."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session

from monitoring import auth
from monitoring.schema import open_database
from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, running_server, sign_in
from tests.dashboard.browser import no_exception as _no_exception
from tests.dashboard.cohort import write_cohort

USER, PASSWORD = "dr.link", "link-test-pass-2026"
VIEWER = "ward.viewer"
SHOTS = os.environ.get("DRESS_SCREENSHOTS")  # a folder: the pages are saved there as PNG

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="Debian chromium not installed (in CI this test must run)",
)


@pytest.fixture(scope="module")
def cohort_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('ward') / 'ward.db'}"
    with Session(open_database(url)) as s:
        write_cohort(s, dt.date.today())
        auth.create_user(s, actor="test", username=USER, role=auth.CLINICIAN, password=PASSWORD)
        auth.create_user(s, actor="test", username=VIEWER, role=auth.VIEWER, password=PASSWORD)
        s.commit()
    # The server of `make run` (dashboard/server.py): its cookie keeps the sign-in across page loads.
    with running_server(url, script="dashboard/server.py") as base:
        yield base


def _signed_in(browser: Any, base: str, username: str) -> Any:
    """A new page at 1366x768, signed in as ``username`` on the ward."""
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    sign_in(page, base, username, PASSWORD)
    page.wait_for_selector("tr.dm-row[data-mrn='WARN-1']", timeout=90_000)
    _no_exception(page)
    return page


def test_a_name_on_the_ward_opens_that_patients_timeline_signed_in(cohort_server: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = _signed_in(browser, cohort_server, USER)
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
            assert len(page.context.pages) == 1  # the same tab
            if SHOTS:
                page.screenshot(path=f"{SHOTS}/timeline-from-ward-link-1366.png")
        finally:
            browser.close()


@pytest.mark.parametrize(
    ("username", "path", "title", "who"),
    [(USER, "audit", "Audit trail", "administrators only"), (USER, "alert-report", "Alert report", "administrators only"),
     (VIEWER, "entry", "Entry", "read-only")],
)
def test_a_direct_address_of_a_page_the_account_may_not_open_says_so(
    cohort_server: str, username: str, path: str, title: str, who: str
) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = _signed_in(browser, cohort_server, username)
            page.goto(f"{cohort_server}/{path}", wait_until="domcontentloaded")
            page.wait_for_selector(f"text={title} is for", timeout=90_000)
            if SHOTS:
                page.screenshot(path=f"{SHOTS}/refused-{path}-1366.png")
            page.get_by_role("link", name="Open the ward overview").wait_for(timeout=30_000)
            _no_exception(page)
            alert = page.inner_text("[data-testid='stAlert']").replace("\u2060", "")
            assert who in alert and username in alert, alert
            assert page.url.endswith(f"/{path}")  # the address asked for, not the ward in its place
            body = page.inner_text("body")
            assert "Walt Warning" not in body and "From – to (UTC)" not in body and "Save" not in body
            assert page.get_by_role("link", name="Open the ward overview").count() == 1
        finally:
            browser.close()


def test_the_ward_round_list_downloads_in_the_wards_order(cohort_server: str, tmp_path: Path) -> None:
    """Issue 18 point 15: the button gives the HTML list; opened in the browser it lists the ward's
    patients in the ward's order with the dates of their values (and prints on A4 landscape)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = _signed_in(browser, cohort_server, USER)
            on_ward = page.eval_on_selector_all("tr.dm-row", "rows => rows.map(r => r.dataset.mrn)")
            with page.expect_download(timeout=60_000) as info:
                page.get_by_role("button", name="Ward-round list (print)").click()
            saved = tmp_path / info.value.suggested_filename
            info.value.save_as(saved)
            assert saved.name == f"ward-round-{dt.date.today().isoformat()}.html"
            listing = browser.new_page(viewport={"width": 1366, "height": 768})
            listing.goto(saved.as_uri())
            assert listing.eval_on_selector_all("tr[data-mrn]", "rows => rows.map(r => r.dataset.mrn)") == on_ward
            crit = listing.inner_text("tr[data-mrn='CRIT-1']").replace("\u2060", "")
            assert "Cora Critical" in crit and "yesterday 06:00" in crit and "IVIG from" in crit
            assert "printed" in listing.inner_text("p.meta") and USER in listing.inner_text("p.meta")
            if SHOTS:
                listing.screenshot(path=f"{SHOTS}/ward-round-list-1366.png", full_page=True)
                listing.pdf(path=f"{SHOTS}/ward-round-list.pdf")  # the print layout (A4 landscape)
            _no_exception(page)
        finally:
            browser.close()
