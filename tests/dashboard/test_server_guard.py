"""dashboard/server.py's Guard (issue 12 point 8) against the real server over HTTP: `/media/*`,
`/_stcore/upload_file/*` and `/_stcore/metrics` answer 403 without a signed-in session of the
browser's cookie and 200 with one (and 403 again once signed out); every response carries the
security headers; the `dress_browser` cookie is Secure when the request came over HTTPS through a
trusted proxy, never on an untrusted peer's word; and Chromium, signed in as an admin, opens every
page under that Content-Security-Policy without one violation and without a request to another
host, and uploads a file."""

from __future__ import annotations

import asyncio
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.dashboard.browser as br
from monitoring import audit, auth

ADMIN, PASSWORD = "guard.admin", "guard-test-pass-2026"

# Every page of dashboard/app.py's navigation, with a patient where the page needs one.
PAGES = ["/ward", "/timeline?mrn=DEMO-001", "/entry?mrn=DEMO-001", "/photos?mrn=DEMO-001", "/taper?mrn=DEMO-001",
         "/followup?mrn=DEMO-001", "/report?mrn=DEMO-001", "/audit", "/alert-report"]


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = br.demo_database(tmp_path_factory.mktemp("guard"), users=[(ADMIN, auth.ADMIN, PASSWORD)])
    with br.running_server(url, script="dashboard/server.py") as base:
        yield base


def _get(url: str, cookie: str | None = None, *, headers: dict[str, str] | None = None, method: str = "GET",
         data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    sent = {**({"Cookie": f"dress_browser={cookie}"} if cookie else {}), **(headers or {})}
    request = urllib.request.Request(url, headers=sent, method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=20) as r:
            return r.status, _headers(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, _headers(e.headers), e.read()


def _headers(message: Any) -> dict[str, str]:
    """The response's headers by lower-case name (every Set-Cookie kept, joined by newlines)."""
    out: dict[str, str] = {}
    for k, v in message.items():
        out[k.lower()] = f"{out[k.lower()]}\n{v}" if k.lower() in out else v
    return out


def _browser_cookie(base: str, headers: dict[str, str] | None = None) -> str:
    """The ``dress_browser`` Set-Cookie line the server gives a new browser sending ``headers``."""
    status, got, _ = _get(base + "/", headers=headers)
    assert status == 200
    lines = [line for line in got.get("set-cookie", "").split("\n") if line.startswith("dress_browser=")]
    assert len(lines) == 1, got.get("set-cookie")
    return lines[0]


def _secure(line: str) -> bool:
    return "secure" in [part.strip().lower() for part in line.split(";")]


def _signed_out_upload_answers(base: str) -> list[tuple[str, str, int, dict[str, str], bytes]]:
    """Uploads from a signed-out browser with its own open Streamlit session, opened as
    Streamlit's page opens it (the cookies of /_stcore/health and /, the page's WebSocket with the
    XSRF token, a rerun): a PUT and a DELETE of a file, at the plain address and with a doubled
    slash, each sent with the session's id and XSRF token while its WebSocket is open. Returns
    (path, method, status, headers, body) of each."""
    import websockets
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    jar: dict[str, str] = {}
    for path in ("/_stcore/health", "/"):
        for line in _get(base + path)[1].get("set-cookie", "").split("\n"):
            name, _, rest = line.partition("=")
            if rest:
                jar[name] = rest.split(";")[0]
    cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
    xsrf = jar["_streamlit_xsrf"]
    body = (b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
            b"Content-Type: text/csv\r\n\r\nmrn,alt\r\n--XX--\r\n")
    sent = {"Cookie": cookie, "X-Xsrftoken": xsrf, "Content-Type": "multipart/form-data; boundary=XX"}

    async def run() -> list[tuple[str, str, int, dict[str, str], bytes]]:
        url = base.replace("http://", "ws://") + "/_stcore/stream"
        async with websockets.connect(url, subprotocols=["streamlit", xsrf],  # type: ignore[list-item]
                                      additional_headers={"Cookie": cookie, "Origin": base}) as ws:
            rerun = BackMsg()
            rerun.rerun_script.SetInParent()
            await ws.send(rerun.SerializeToString())
            session = ""
            while not session:
                msg = ForwardMsg()
                msg.ParseFromString(await asyncio.wait_for(ws.recv(), 60))
                if msg.WhichOneof("type") == "new_session":
                    session = msg.new_session.initialize.session_id
            out = []
            for path in (f"/_stcore/upload_file/{session}/f1", f"//_stcore/upload_file/{session}/f1"):
                for method, data in (("PUT", body), ("DELETE", None)):
                    answer = await asyncio.to_thread(_get, base + path, headers=sent, method=method, data=data)
                    out.append((path, method, *answer))
            return out

    return asyncio.run(run())


def _png() -> bytes:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (8, 8), (200, 80, 80)).save(out, format="PNG")
    return out.getvalue()


def _assert_security_headers(headers: dict[str, str]) -> None:
    csp = headers.get("content-security-policy", "")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "connect-src 'self'" in csp
    scripts = csp.split("script-src", 1)[1].split(";", 1)[0]
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts  # inline scripts by hash only, no eval
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("referrer-policy") == "no-referrer"
    assert headers.get("x-frame-options") == "DENY"


def test_signed_out_requests_get_403_and_every_response_the_security_headers(guarded_server: str) -> None:
    status, headers, _ = _get(guarded_server + "/")
    assert status == 200
    _assert_security_headers(headers)
    assert "dress_browser=" in headers.get("set-cookie", "")
    for path in ("/_stcore/metrics", "/media/0123456789abcdef.png", "//media/x.png", "/_stcore/metrics/"):
        for cookie in (None, "n" * 43):  # no cookie; a cookie of no session
            status, headers, body = _get(guarded_server + path, cookie)
            assert status == 403, (path, cookie, status)
            assert b"Sign in" in body
            _assert_security_headers(headers)
    status, headers, _ = _get(guarded_server + "/_stcore/health")
    assert status == 200  # the health check stays open (load balancers, the test fixture)
    _assert_security_headers(headers)


def test_an_upload_without_a_signed_in_session_is_refused(guarded_server: str) -> None:
    """Streamlit accepts an upload for any open Streamlit session with its XSRF token (204: the
    file is kept in the server's memory), and a signed-out browser's sign-in page has both. The
    Guard answers 403 before Streamlit reads the body, for PUT and DELETE."""
    for path, method, status, headers, answer in _signed_out_upload_answers(guarded_server):
        assert status == 403 and b"Sign in" in answer, (path, method, status, answer)
        _assert_security_headers(headers)


def test_the_browser_cookie_is_secure_over_https_through_the_loopback_proxy(guarded_server: str) -> None:
    """The README's nginx on the same machine sends plain HTTP with X-Forwarded-Proto: uvicorn
    believes it from 127.0.0.1 (FORWARDED_ALLOW_IPS' default), so the cookie is Secure exactly
    when the browser used HTTPS."""
    assert _secure(_browser_cookie(guarded_server, {"X-Forwarded-Proto": "https"}))
    assert not _secure(_browser_cookie(guarded_server, {"X-Forwarded-Proto": "http"}))
    assert not _secure(_browser_cookie(guarded_server))
    line = _browser_cookie(guarded_server, {"X-Forwarded-Proto": "https"})
    assert "HttpOnly" in line and "SameSite=Strict" in line


def test_the_browser_cookie_is_secure_through_a_proxy_named_in_dress_trusted_proxy(tmp_path: Path) -> None:
    """A proxy on another machine: uvicorn's loopback trust is switched off (FORWARDED_ALLOW_IPS
    empty) so the server's peer, 127.0.0.1, stands for that proxy. Named in DRESS_TRUSTED_PROXY
    its X-Forwarded-Proto makes the cookie Secure (only its own, right-most entry); not named, the
    same header is a client's word and is ignored."""
    url = br.demo_database(tmp_path)
    for trusted, believed in (("127.0.0.1", True), ("", False), ("10.9.9.9", False)):
        env = {"FORWARDED_ALLOW_IPS": "", "DRESS_TRUSTED_PROXY": trusted}
        with br.running_server(url, script="dashboard/server.py", env=env) as base:
            assert _secure(_browser_cookie(base, {"X-Forwarded-Proto": "https"})) is believed, trusted
            assert not _secure(_browser_cookie(base, {"X-Forwarded-Proto": "https, http"})), trusted
            assert not _secure(_browser_cookie(base)), trusted
            # The agent API stays off (.streamlit/config.toml): Streamlit answers its route with
            # "not_available" and never runs the app for a non-browser client.
            status, _, answer = _get(base + "/_stcore/agent/interact", method="POST", data=b"{}",
                                     headers={"Content-Type": "application/json"})
            assert status >= 400 and b"not_available" in answer, (status, answer)


@br.needs_chromium
def test_media_and_metrics_only_for_a_signed_in_browser_and_every_page_obeys_the_csp(guarded_server: str) -> None:
    from playwright.sync_api import sync_playwright

    violations: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=br.CHROMIUM, args=br.CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1366, "height": 768})
            page = context.new_page()
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text or "Content-Security-Policy" in m.text else None)
            seen = br.watch(page)
            # No asset of the app may be refused, signed in or out (Streamlit's own probes of
            # /<page>/_stcore/health for its base path answer 404 by design: not assets).
            refused: list[str] = []
            page.on("response", lambda r: refused.append(f"{r.status} {r.url}")
                    if r.status == 403 or (r.status >= 400 and ("/media/" in r.url or "/static/" in r.url)) else None)
            page.goto(guarded_server + "/", wait_until="domcontentloaded")
            page.get_by_role("textbox", name="User name").wait_for(timeout=90_000)
            page.wait_for_load_state("networkidle", timeout=60_000)
            icon = page.eval_on_selector("link[rel~='icon']", "e => e.getAttribute('href')")
            assert icon.startswith("data:image/png;base64,"), icon  # the tab icon needs no request (and no session)
            br.sign_in(page, guarded_server, ADMIN, PASSWORD)
            page.wait_for_selector("table.dm-ward", timeout=90_000)
            cookie = next(c["value"] for c in context.cookies() if c["name"] == "dress_browser")

            page.goto(guarded_server + "/photos?mrn=DEMO-001", wait_until="domcontentloaded")
            page.wait_for_selector('img[src*="/media/"]', timeout=90_000)
            br.no_exception(page)
            src = page.locator('img[src*="/media/"]').first.get_attribute("src") or ""
            media = src if src.startswith("http") else guarded_server + "/" + src.lstrip("./").lstrip("/")
            assert re.search(r"/media/[0-9a-f]+\.\w+$", media), media

            status, headers, body = _get(media, cookie)
            assert status == 200 and body[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe1", b"\xff\xd8\xff\xdb", b"RIFF"), (status, body[:8])
            _assert_security_headers(headers)
            assert _get(media)[0] == 403  # the same address without the cookie
            assert _get(media, "o" * 43)[0] == 403  # or with another browser's
            status, _, body = _get(guarded_server + "/_stcore/metrics", cookie)
            assert status == 200 and body

            # The signed-in browser's own upload passes the Guard (its request carries the cookie):
            # Streamlit takes the file (204), as before the Guard closed uploads to signed-out ones.
            page.get_by_text("Add photographs", exact=True).click()
            page.locator('input[type="file"]').first.wait_for(state="attached", timeout=60_000)
            with page.expect_response(lambda r: "/_stcore/upload_file/" in r.url and r.request.method == "PUT",
                                      timeout=60_000) as upload:
                page.locator('input[type="file"]').first.set_input_files(
                    files=[{"name": "guard.png", "mimeType": "image/png", "buffer": _png()}])
            assert upload.value.status == 204, upload.value.status

            for path in PAGES:
                page.goto(guarded_server + path, wait_until="domcontentloaded")
                page.wait_for_selector('[data-testid="stMainBlockContainer"]', timeout=90_000)
                page.wait_for_load_state("networkidle", timeout=60_000)
                page.wait_for_timeout(1500)  # Plotly and the figures draw after the script
                if path.startswith("/timeline"):
                    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)  # Plotly draws under the policy
                br.no_exception(page)
                assert page.get_by_role("textbox", name="Password").count() == 0, path  # still signed in
                violations.extend(f"{path}: {v}" for v in seen.violations(page))

            # A download (the audit trail's CSV, built when pressed) passes the Guard: the browser's
            # own request carries the cookie.
            page.goto(guarded_server + "/audit", wait_until="domcontentloaded")
            with page.expect_download(timeout=60_000) as download:
                page.get_by_role("button", name="Export CSV (all matching entries)").click()
            saved = download.value.path()
            header = Path(saved).read_text(encoding="utf-8").splitlines()[0]
            assert header == ",".join(audit.CSV_COLUMNS)

            page.locator('[data-testid="stExpandSidebarButton"], [data-testid="stSidebarCollapsedControl"] button').first.click()
            page.get_by_role("button", name="Sign out").click()
            page.get_by_role("textbox", name="User name").wait_for(timeout=60_000)
        finally:
            browser.close()
    assert _get(media, cookie)[0] == 403  # signed out: the photograph's address is closed at once
    assert _get(guarded_server + "/_stcore/metrics", cookie)[0] == 403
    assert violations == []
    assert seen.foreign == [] and seen.dialogs == []
    assert refused == []


@br.needs_chromium
def test_behind_a_trusted_proxy_the_sign_in_throttle_counts_the_forwarded_client(tmp_path: Path) -> None:
    """DRESS_TRUSTED_PROXY end to end: the X-Forwarded-For header of the page's WebSocket reaches
    the sign-in, and the failed attempt is counted under the right-most untrusted address, not the
    forged left part. uvicorn's own loopback trust (FORWARDED_ALLOW_IPS) is switched off here, so
    the app's rule alone decides: without DRESS_TRUSTED_PROXY the same request counts as unknown."""
    from playwright.sync_api import sync_playwright
    from sqlmodel import Session

    from monitoring.schema import open_database

    url = br.demo_database(tmp_path, users=[(ADMIN, auth.ADMIN, PASSWORD)])
    forwarded = {"X-Forwarded-For": "198.51.100.9, 192.0.2.44"}
    for trusted, expected in (("127.0.0.1", "source:192.0.2.44"), ("", "source:unknown")):
        env = {"FORWARDED_ALLOW_IPS": "", "DRESS_TRUSTED_PROXY": trusted}
        with br.running_server(url, script="dashboard/server.py", env=env) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=br.CHROMIUM, args=br.CHROMIUM_ARGS)
            try:
                context = browser.new_context(viewport={"width": 1366, "height": 768}, extra_http_headers=forwarded)
                page = context.new_page()
                br.sign_in(page, base, ADMIN, "not the password")
                page.get_by_text("not recognised").wait_for(timeout=60_000)
            finally:
                browser.close()
        engine = open_database(url)
        with Session(engine) as s:
            keys = {row["key"] for row in auth.throttle_status(s)}
        engine.dispose()
        assert expected in keys, (trusted, keys)
        assert "source:198.51.100.9" not in keys  # the part a client writes itself is never believed
