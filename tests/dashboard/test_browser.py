"""The real server in a real browser: `streamlit run dashboard/app.py` on a free port with
DATABASE_URL set to a temporary database holding the demo cohort, loaded in headless Chromium
through Playwright. Fails on any Streamlit exception on a page.

Skipped only where /usr/bin/chromium is missing AND the environment variable CI is unset: in CI
it must run (.ci/run installs Debian's chromium).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from monitoring import auth
from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, ROOT, demo_database, needs_chromium, running_server
from tests.dashboard.browser import free_port as _free_port
from tests.dashboard.browser import no_exception as _no_exception

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "ROOT", "_free_port", "_no_exception"]  # other browser tests import these from here

USER, PASSWORD = "dr.browser", "browser-test-pass-2026"

pytestmark = needs_chromium


def _demo_database(tmp_path_factory: pytest.TempPathFactory, name: str) -> str:
    return demo_database(tmp_path_factory.mktemp(name), users=[(USER, auth.CLINICIAN, PASSWORD)])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_server(_demo_database(tmp_path_factory, "browser")) as base:
        yield base


def test_ward_overview_and_a_patient_timeline_in_chromium(server: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(server + "/", wait_until="domcontentloaded")
            page.get_by_role("textbox", name="User name").fill(USER)
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()

            page.wait_for_selector("table.dm-ward", timeout=90_000)
            page.wait_for_selector("text=Ada Okafor", timeout=30_000)
            _no_exception(page)
            rows = page.query_selector_all("table.dm-ward tr.dm-row")
            assert len(rows) >= 5
            assert "CRITICAL" in rows[0].inner_text()  # critical first

            # One click on a patient's button opens the timeline in the same session.
            page.get_by_role("radio", name=re.compile("Ada Okafor")).first.click()
            page.wait_for_selector(".js-plotly-plot", timeout=90_000)
            page.wait_for_selector("text=NEVER RECHALLENGE", timeout=30_000)
            assert "mrn=DEMO-001" in page.url
            assert page.get_by_text("Ada Okafor").first.is_visible()
            _no_exception(page)
            page.wait_for_selector("text=Alerts as of", timeout=30_000)
            _no_exception(page)
        finally:
            browser.close()


def test_a_link_to_a_patient_opened_signed_out_opens_that_patient_after_sign_in(server: str) -> None:
    """A bookmarked or mailed link (/timeline?mrn=...) meets the sign-in form, shows no patient
    data before sign-in, and opens that patient's timeline once signed in."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.goto(server + "/timeline?mrn=DEMO-005", wait_until="domcontentloaded")
            page.get_by_role("textbox", name="User name").wait_for(timeout=90_000)
            body = page.inner_text("body")
            assert "DEMO-005" not in body and "SYNTHETIC" not in body and "Page not found" not in body
            page.get_by_role("textbox", name="User name").fill(USER)
            page.get_by_role("textbox", name="Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_selector(".js-plotly-plot", timeout=90_000)
            page.wait_for_selector("text=Esther Mensah", timeout=30_000)
            assert "/timeline" in page.url and "mrn=DEMO-005" in page.url
            _no_exception(page)
        finally:
            browser.close()


@pytest.fixture(scope="module")
def session_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`streamlit run dashboard/server.py` (as `make run`): the app with the browser cookie."""
    with running_server(_demo_database(tmp_path_factory, "sessions"), script="dashboard/server.py") as base:
        yield base


def test_a_refresh_keeps_the_session_and_sign_out_in_one_tab_ends_the_other(session_server: str) -> None:
    """Issue 12 point 4, in Chromium: the browser cookie is HttpOnly; a refresh stays signed in
    (no new sign-in); signing out in one tab signs the other tab out at its next click."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 768})
            first = context.new_page()
            first.goto(session_server + "/", wait_until="domcontentloaded")
            first.get_by_role("textbox", name="User name").fill(USER)
            first.get_by_role("textbox", name="Password").fill(PASSWORD)
            first.get_by_role("button", name="Sign in").click()
            first.wait_for_selector("table.dm-ward", timeout=90_000)
            cookie = [c for c in context.cookies() if c["name"] == "dress_browser"]
            assert cookie and cookie[0]["httpOnly"] and cookie[0]["sameSite"] == "Strict"
            assert first.evaluate("document.cookie").find("dress_browser") == -1  # no script can read it

            first.reload(wait_until="domcontentloaded")
            first.wait_for_selector("table.dm-ward", timeout=90_000)  # still signed in after a refresh
            assert first.get_by_role("textbox", name="Password").count() == 0

            second = context.new_page()
            second.goto(session_server + "/timeline?mrn=DEMO-001", wait_until="domcontentloaded")
            second.wait_for_selector(".js-plotly-plot", timeout=90_000)  # the same session, no sign-in

            first.locator('[data-testid="stExpandSidebarButton"], [data-testid="stSidebarCollapsedControl"] button').first.click()
            first.get_by_role("button", name="Sign out").click()
            first.get_by_role("textbox", name="User name").wait_for(timeout=60_000)

            second.bring_to_front()
            second.mouse.click(5, 700)
            second.keyboard.press("r")  # Streamlit's rerun key: the other tab's next interaction
            second.get_by_role("textbox", name="User name").wait_for(timeout=60_000)
            assert "Ada Okafor" not in second.inner_text("body")
            _no_exception(first)
            _no_exception(second)
        finally:
            browser.close()
