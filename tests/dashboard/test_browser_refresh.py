"""A ward board left open in Chromium refreshes itself (issue 17): the real server with
DRESS_WARD_REFRESH_S=3, a CLI import by another process, and the new patient, its critical alert
and its episode appear on the open page without a click, within the interval plus a rerun."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session

from monitoring import auth, services
from monitoring.models import AlertEpisode
from monitoring.schema import open_database
from tests.dashboard.browser import CHROMIUM, CHROMIUM_ARGS, ROOT, needs_chromium, running_server, sign_in
from tests.dashboard.browser import no_exception as _no_exception

USER, PASSWORD = "dr.refresh", "refresh-test-pass-2026"
INTERVAL_S = 3

pytestmark = needs_chromium


@pytest.fixture
def ward_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path / 'ward.db'}"
    engine = open_database(url)
    with Session(engine) as s:
        auth.create_user(s, actor="test", username=USER, role=auth.CLINICIAN, password=PASSWORD)
        services.add_patient(s, username=USER, mrn="R-001", name="Synthetic Resident", weight_kg=70)
        s.commit()
    with running_server(url, env={"DRESS_WARD_REFRESH_S": str(INTERVAL_S)}) as base:
        yield base, url


def test_the_open_ward_shows_a_cli_import_by_another_process_without_a_click(
    ward_server: tuple[str, str], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    base, url = ward_server
    patients = tmp_path / "patients.csv"
    patients.write_text("mrn,name,weight_kg\nR-002,Synthetic Newcomer,64\n", encoding="utf-8")
    labs = tmp_path / "labs.csv"
    labs.write_text(f"mrn,taken_at,test,value,unit\nR-002,{time.strftime('%Y-%m-%d')},troponin_t,80,ng/L\n", encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            sign_in(page, base, USER, PASSWORD)
            page.wait_for_selector("text=Synthetic Resident", timeout=90_000)
            _no_exception(page)
            assert "Synthetic Newcomer" not in page.inner_text("body")

            done = subprocess.run(
                [sys.executable, "-m", "monitoring", "--db", url, "import", str(patients), str(labs)],
                cwd=ROOT, capture_output=True, text=True, timeout=120,
            )
            assert done.returncode == 0, done.stderr
            imported = time.monotonic()
            # No click, no reload: the board's fragment notices the new data version.
            page.wait_for_selector("tr.dm-row[data-mrn='R-002']", timeout=(INTERVAL_S + 20) * 1000)
            elapsed = time.monotonic() - imported
            print(f"ward showed the imported patient {elapsed:.1f} s after the import (interval {INTERVAL_S} s)")
            row = page.inner_text("tr.dm-row[data-mrn='R-002']")
            assert "Synthetic Newcomer" in row and "CRITICAL" in row and "Cardiac involvement" in row
            assert "new critical" in row  # new since yesterday: its episode began today
            _no_exception(page)
        finally:
            browser.close()
    # The import opened the episodes itself (the write path), before any page evaluated.
    with Session(open_database(url)) as s:
        codes = set(s.execute(select(AlertEpisode.code)).scalars())
    assert {"CARDIAC_INVOLVEMENT", "ICU_CRITERIA"} <= codes
