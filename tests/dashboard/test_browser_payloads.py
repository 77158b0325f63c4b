"""The issue-12 payloads as stored data, in the real server and Chromium: nothing runs, nothing is
fetched from another address, no element is created by the data (issue 12 points 1, 2 and 8).

The payloads arrive by every intake path: the write services, a patients / medications CSV and a
FHIR bundle (Patient name, AllergyIntolerance code.text, MedicationRequest medication text,
Condition and Observation notes) through the importer, a photograph's note, and the Entry page
(typed in the browser). Then an admin opens EVERY page of dashboard/app.py's navigation for each
payload patient. The server is `dashboard/server.py` (as `make run`: a page opened by its address
stays signed in), so its Content-Security-Policy would stop an injected script or image; the test
therefore fails on what the escaping alone must prevent (any element the data made) and on any
policy violation (something the data tried), besides dialogs and requests to other hosts.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from sqlmodel import Session

import tests.dashboard.browser as br
from monitoring import auth, services
from monitoring.importers import import_files
from monitoring.photos import PhotoIn, store_photos
from monitoring.schema import open_database

pytestmark = br.needs_chromium

ADMIN, PASSWORD = "payload.admin", "payload-test-pass-2026"
EVIL = "evil.example"

NAME = f'XSS <img src="http://{EVIL}/track.png" onerror="alert(1)"> [phish](http://{EVIL}/) $x$'
DRUG = '<iframe srcdoc="<script>parent.alert(10)</script>"></iframe>'
MD_IMAGE = f"![t](http://{EVIL}/t.png)"
JS_LINK = "[x](javascript:alert(3))"
META = f'<meta http-equiv="refresh" content="0;url=http://{EVIL}/">'
SCRIPT = "<script>alert(4)</script>"
DIRECTIVES = ":material/warning: :red[red] `code` **bold**"
IMG_ONERROR = "<img src=x onerror=alert(5)>"

LONG_NAME = "Wolfeschlegelsteinhausenbergerdorff" * 5 + "x" * 25  # 200 characters, no space
ONSET = dt.date.today() - dt.timedelta(days=5)
# One payload patient per intake path; every patient page is opened for each.
MRNS = ("XSS-API", "XSS-CSV", "XSS-FHIR", "XSS-ENTRY")
PATIENT_PAGES = ("timeline", "entry", "photos", "taper", "followup", "report")
OTHER_PAGES = ("ward", "audit", "alert-report")

# Any element the data could have made: script-capable frames, scripts inside the app, refreshes,
# event-handler attributes, and links or images to the outside or to javascript:.
CREATED_JS = """() => [
  ...document.querySelectorAll('iframe[srcdoc], #root script, meta[http-equiv], [onerror], [onload], [onclick]'),
  ...[...document.querySelectorAll('img[src], a[href], iframe[src], source[src]')].filter(
     e => /evil\\.example|^javascript:/i.test(e.getAttribute('src') || e.getAttribute('href') || '')),
].map(e => e.outerHTML.slice(0, 200))"""


def _png(seed: int) -> bytes:
    image = Image.new("RGB", (320, 240), (200, 120 + seed, 110))
    for x in range(0, 320, 8):
        image.putpixel((x, (x * seed) % 240), (0, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _fhir_bundle() -> dict[str, Any]:
    patient = {"reference": "Patient/pf"}
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in [
        {"resourceType": "Patient", "id": "pf",
         "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                         "value": "XSS-FHIR"}],
         "name": [{"text": f"FHIR {JS_LINK} {SCRIPT} {MD_IMAGE}"}]},
        {"resourceType": "Condition", "id": "cf", "subject": patient, "code": {"text": "DRESS"},
         "onsetDateTime": ONSET.isoformat(), "note": [{"text": META}]},
        {"resourceType": "AllergyIntolerance", "id": "af", "category": ["medication"], "patient": patient,
         "code": {"text": IMG_ONERROR}, "reaction": [{"manifestation": [{"text": "DRESS"}]}]},
        {"resourceType": "MedicationRequest", "id": "mf", "status": "active", "intent": "order", "subject": patient,
         "medicationCodeableConcept": {"text": f"{DIRECTIVES} {MD_IMAGE}"[:80]},
         "dosageInstruction": [{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d",
                                                      "boundsPeriod": {"start": ONSET.isoformat()}}},
                                "doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg", "system": "http://unitsofmeasure.org",
                                                                  "code": "mg"}}]}]},
        {"resourceType": "Observation", "id": "of", "status": "final", "subject": patient,
         "code": {"coding": [{"system": "urn:dress-monitor:finding", "code": "fever"}]},
         "effectiveDateTime": f"{ONSET.isoformat()}T08:00:00Z", "valueString": "yes",
         "note": [{"text": f"{META} {JS_LINK} {DRUG}"}]},
    ]]}


def _store_payloads(url: str, directory: Path) -> None:
    """The payload patients by the services, the CSV importer, the FHIR importer and a photo note."""
    engine = open_database(url)
    with Session(engine) as s:
        services.add_patient(s, username=ADMIN, mrn="XSS-API", name=NAME, culprit_drugs=[DRUG, MD_IMAGE],
                             onset_date=ONSET, setting="inpatient")
        s.commit()
        # The longest name that can be stored, one unbroken word: the ward must still fit the screen.
        services.add_patient(s, username=ADMIN, mrn="LONG-200", name=LONG_NAME, onset_date=ONSET, setting="inpatient")
        s.commit()
        store_photos(s, "XSS-API", [PhotoIn("note.png", _png(1), "back", 12.0, ONSET, note=f"{NAME} {MD_IMAGE} {META}")],
                     username=ADMIN)
        s.commit()
    patients = directory / "patients.csv"
    # csv quoting: the payloads' quotes doubled; culprits separated by ';' as the format says.
    name = f"CSV {META}".replace('"', '""')
    patients.write_text(f'mrn,name,onset_date,culprit_drug\nXSS-CSV,"{name}",{ONSET},"{DRUG.replace(chr(34), 2 * chr(34))};{JS_LINK}"\n',
                        encoding="utf-8")
    meds = directory / "meds.csv"
    meds.write_text(f"mrn,start_date,drug,daily_dose,unit\nXSS-CSV,{ONSET},{SCRIPT},20,mg\n", encoding="utf-8")
    bundle = directory / "bundle.json"
    bundle.write_text(json.dumps(_fhir_bundle()), encoding="utf-8")
    with Session(engine) as s:
        report = import_files(s, [patients, meds, bundle], username=ADMIN)
        assert report.ok, report.problem_lines()
    engine.dispose()


@pytest.fixture(scope="module")
def payload_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real server on the demo database plus the payload patients."""
    directory = tmp_path_factory.mktemp("payloads")
    url = br.demo_database(directory, users=[(ADMIN, auth.ADMIN, PASSWORD)])
    _store_payloads(url, directory)
    with br.running_server(url, script="dashboard/server.py") as base:
        yield base


def _enter_payloads_on_the_entry_page(page: Any, base: str) -> None:
    """Register a patient and a dose change by typing the payloads into the Entry page's forms."""
    page.goto(base + "/entry?mrn=XSS-API", wait_until="domcontentloaded")
    page.get_by_role("tab", name="Patient details").click()
    page.get_by_text("Register a new patient").click()
    form = page.locator('[data-testid="stForm"]').filter(has=page.get_by_role("button", name="Register patient"))
    form.get_by_role("textbox", name="MRN").fill("XSS-ENTRY")
    form.get_by_role("textbox", name="Name").fill(f"ENTRY {IMG_ONERROR} {DIRECTIVES}")
    form.get_by_role("textbox", name="Culprit drug(s), separated by ;").fill(f"{DRUG}; {MD_IMAGE}")
    form.get_by_role("button", name="Register patient").click()
    page.wait_for_selector("text=Patient XSS-ENTRY registered.", timeout=60_000)
    page.get_by_role("tab", name="Doses").click()
    page.get_by_role("textbox", name="Drug (generic or brand name)").fill(f"{SCRIPT} {MD_IMAGE}")
    page.get_by_role("textbox", name="Daily dose").fill("5")
    page.get_by_role("button", name="Save dose change").click()
    stored = page.locator('[data-testid="stAlertContentSuccess"]').filter(has_text="mg/day from")
    stored.wait_for(timeout=60_000)
    assert f"Stored {SCRIPT} {MD_IMAGE} 5 mg/day" in stored.inner_text().replace("\u2060", "")  # as typed, as text
    br.no_exception(page)


def test_payloads_from_every_intake_path_are_inert_text_on_every_page(payload_server: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    from playwright.sync_api import sync_playwright

    shots = tmp_path_factory.mktemp("screenshots")  # look at them: the payloads must read as text
    created: dict[str, list[str]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=br.CHROMIUM, args=br.CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            seen = br.watch(page)
            br.sign_in(page, payload_server, ADMIN, PASSWORD)
            page.wait_for_selector("table.dm-ward", timeout=90_000)
            _enter_payloads_on_the_entry_page(page, payload_server)

            visits = [f"/{name}" for name in OTHER_PAGES] + [f"/{name}?mrn={mrn}" for mrn in MRNS for name in PATIENT_PAGES]
            for path in visits:
                page.goto(payload_server + path, wait_until="domcontentloaded")
                page.wait_for_selector('[data-testid="stMainBlockContainer"]', timeout=90_000)
                page.wait_for_load_state("networkidle", timeout=60_000)
                page.wait_for_timeout(800)  # figures and images draw after the script
                br.no_exception(page)
                assert page.get_by_role("textbox", name="Password").count() == 0, path  # still signed in
                found = page.evaluate(CREATED_JS) + [f"CSP: {v}" for v in seen.violations(page)]
                if found:
                    created[path] = found
                if path.startswith("/timeline"):
                    page.wait_for_selector("text=NEVER RECHALLENGE", timeout=60_000)
                    page.screenshot(path=str(shots / f"{path.strip('/').replace('?', '_')}.png"))
            page.goto(payload_server + "/ward", wait_until="domcontentloaded")
            page.wait_for_selector("tr.dm-row[data-mrn='XSS-ENTRY']", timeout=90_000)
            ward = page.inner_text("table.dm-ward")
            page.wait_for_selector("tr.dm-row[data-mrn='LONG-200']", timeout=30_000)
            widths = page.evaluate("""() => ({viewport: window.innerWidth, page: document.documentElement.scrollWidth,
                table: document.querySelector('table.dm-ward').scrollWidth,
                box: document.querySelector('table.dm-ward').getBoundingClientRect().right})""")
            page.goto(payload_server + "/timeline?mrn=XSS-FHIR", wait_until="domcontentloaded")
            page.wait_for_selector("text=NEVER RECHALLENGE", timeout=90_000)
            banner = page.locator(".dm-banner").first.inner_text()
            page.goto(payload_server + "/photos?mrn=XSS-API", wait_until="domcontentloaded")
            page.get_by_role("button", name="Open day").first.click()  # the day's view shows the notes
            page.wait_for_selector("text=Note:", timeout=90_000)
            page.wait_for_timeout(800)
            photos = page.inner_text("body")
            found = page.evaluate(CREATED_JS) + [f"CSP: {v}" for v in seen.violations(page)]
            if found:
                created["/photos?mrn=XSS-API, its day open"] = found
        finally:
            browser.close()
    # Issue 12 point 5: a 200-character name at 1366x768 leaves the ward table within the screen.
    assert widths["viewport"] == 1366
    assert widths["table"] <= widths["viewport"] and widths["box"] <= widths["viewport"] and widths["page"] <= widths["viewport"], widths
    assert seen.dialogs == []
    assert seen.foreign == []  # every asset from our own server; no payload made the browser fetch
    assert created == {}
    # Each payload reads as the characters stored, by each path (the ward cuts long names with
    # "…"; safe.md puts an invisible word joiner after a colon).
    ward, banner, photos = (t.replace("\u2060", "") for t in (ward, banner, photos))
    assert NAME[:45] in ward and f"CSV {META}"[:45] in ward and f"ENTRY {IMG_ONERROR}" in ward
    # The FHIR allergy, a culprit, in the never-rechallenge banner (the drug resolver reads "(5)"
    # as an alternative name and keeps the rest as written).
    assert "culprit drug(s) <img src=x onerror=alert" in banner
    assert MD_IMAGE in photos  # the photograph's note
