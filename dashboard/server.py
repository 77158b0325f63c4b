"""The dashboard as an ASGI app: ``streamlit run dashboard/server.py`` (what ``make run`` starts).

Streamlit 1.67's ``st.App`` runs dashboard/app.py unchanged and lets this file add middleware.

``BrowserCookie`` gives every browser a random ``dress_browser`` cookie (HttpOnly: no script can
read it; SameSite=Strict; Secure when the request came over HTTPS, directly or through a trusted
proxy: ``came_over_https``), set by the server's own HTTP response. The sign-in stores only its
SHA-256 digest with the server-side session (monitoring/sessions.py), so a refresh, which starts a
new Streamlit session, finds the session again through ``st.context.cookies`` and the user stays
signed in; signing out ends the session row and with it every tab. Why this way: Streamlit has no
API to set a cookie from a script; a cookie written by JavaScript (the cookie components) cannot be
HttpOnly and needs inline script; st.login's own signed cookie exists only with an OpenID Connect
provider.

``Guard`` (issue 12 point 8) answers 403 to ``/media/*`` (photographs, the report's figure,
downloads), ``/_stcore/upload_file/*`` (Streamlit's uploads, every method) and
``/_stcore/metrics`` unless the request's ``dress_browser`` cookie belongs to an open, signed-in
session (``sessions.browser_signed_in``): Streamlit itself serves a media file to anyone with its
address until some time after the page closed, and takes an upload for any open Streamlit session,
a signed-out one's too. It also puts the security headers (``SECURITY_HEADERS``:
Content-Security-Policy, nosniff, no referrer, no framing) on every HTTP response, so no reverse
proxy is needed for them.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import sys
from base64 import b64encode
from pathlib import Path
from typing import Any

# `streamlit run dashboard/server.py` puts dashboard/ on sys.path, not the project (as in app.py).
_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402
from starlette.concurrency import run_in_threadpool  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.requests import HTTPConnection  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402

from dashboard.auth import BROWSER_COOKIE, valid_browser_cookie  # noqa: E402


def _inline_script_hashes() -> list[str]:
    """CSP source expressions for the inline scripts of Streamlit's own index.html (one today:
    ``window.prerenderReady = false``), computed from the installed file, so no other inline
    script runs and an upgrade of Streamlit needs no edit here."""
    index = Path(st.__file__).parent / "static" / "index.html"
    bodies = re.findall(r"<script>(.*?)</script>", index.read_text(encoding="utf-8"), flags=re.S)
    return [f"'sha256-{b64encode(hashlib.sha256(b.encode('utf-8')).digest()).decode()}'" for b in bodies]


CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    # Streamlit's bundle and its one inline script (by hash); no 'unsafe-inline' for scripts and
    # no 'unsafe-eval' (no JavaScript from strings): Chromium opens every page without a violation
    # under this policy (tests/dashboard/test_server_guard.py), Plotly's figures included.
    # 'wasm-unsafe-eval' lets WebAssembly compile (and nothing else): the bundle's protobuf
    # library (long.js) and Plotly compile small modules, a violation on every page otherwise.
    "script-src 'self' 'wasm-unsafe-eval' " + " ".join(_inline_script_hashes()),
    # Streamlit (emotion) and Plotly write <style> elements and style attributes at run time.
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",  # the page's requests and its WebSocket: this server only
    "worker-src 'self' blob:",
    "frame-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),  # frame-ancestors for browsers that predate it
)


def _adding_headers(send: Any, headers: tuple[tuple[bytes, bytes], ...], *, replace: bool = False) -> Any:
    """``send`` that adds ``headers`` to the response's start (with ``replace``, first dropping
    any header of the same names the app set)."""
    names = {name for name, _ in headers}

    async def wrapped(message: dict[str, Any]) -> None:
        if message.get("type") == "http.response.start":
            kept = [(k, v) for k, v in message.get("headers", []) if not (replace and k.lower() in names)]
            message = {**message, "headers": [*kept, *headers]}
        await send(message)

    return wrapped


class _HttpMiddleware:
    """ASGI middleware that acts on HTTP requests (``http``) and passes anything else (the
    WebSocket, lifespan) through untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            await self.http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise NotImplementedError


def came_over_https(scope: dict[str, Any]) -> bool:
    """Whether the browser's request came over HTTPS: to this server directly (``server.sslCertFile``)
    or to a trusted reverse proxy that terminated TLS and forwarded plain HTTP.

    uvicorn (Streamlit 1.67's server) already rewrites ``scope["scheme"]`` from X-Forwarded-Proto
    when the peer is in its ``FORWARDED_ALLOW_IPS`` (default ``127.0.0.1,::1``: the README's nginx
    on the same machine). A proxy on another machine is trusted by ``DRESS_TRUSTED_PROXY``, the
    same rule as the sign-in throttle's (``monitoring.auth.forwarded_https``); the header of any
    other peer is never believed. An unreadable ``DRESS_TRUSTED_PROXY`` trusts no proxy here (the
    sign-in page names the bad value)."""
    if scope.get("scheme") == "https":
        return True
    from monitoring import auth

    try:
        trusted = auth.trusted_proxies()
    except ValueError:
        return False
    client = scope.get("client")
    peer = str(client[0]) if client else None
    proto = [v.decode("latin-1") for k, v in scope.get("headers") or [] if k == b"x-forwarded-proto"]
    return auth.forwarded_https(peer, proto, trusted)


class BrowserCookie(_HttpMiddleware):
    """ASGI middleware: a browser without a ``dress_browser`` cookie gets one on its next HTTP
    response (the page, before the WebSocket that runs the script)."""

    async def http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        cookies = b"; ".join(v for k, v in scope.get("headers") or [] if k == b"cookie")
        if f"{BROWSER_COOKIE}=".encode() in cookies:
            await self.app(scope, receive, send)
            return
        secure = "; Secure" if came_over_https(scope) else ""
        header = f"{BROWSER_COOKIE}={secrets.token_urlsafe(32)}; Path=/; HttpOnly; SameSite=Strict{secure}".encode()
        await self.app(scope, receive, _adding_headers(send, ((b"set-cookie", header),)))


def _base_path() -> str:
    """Streamlit's ``server.baseUrlPath`` as ``/prefix`` (empty when the app is at the root)."""
    base = str(st.config.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}" if base else ""


CLOSED_EXACT = ("/_stcore/metrics", "/_stcore/upload_file")


def guarded(path: str, base: str = "") -> bool:
    """Whether ``path`` needs a signed-in session: ``/media/...``, ``/_stcore/upload_file/...``
    (Streamlit's uploads: it checks only that the Streamlit session is open, which a signed-out
    browser's is; the sign-in page has no uploader) and ``/_stcore/metrics`` (repeated slashes
    count as one, as a browser or proxy may normalise them)."""
    path = re.sub(r"/{2,}", "/", path)
    if base and not path.startswith(base + "/"):
        return False
    rest = path[len(base):]
    return rest.startswith(("/media/", "/_stcore/upload_file/")) or rest.rstrip("/") in CLOSED_EXACT


@functools.cache
def _engine() -> Any:
    """The Guard's own engine on the dashboard's database (the middleware runs outside any
    Streamlit script, so not the cached one of dashboard/store.py); made at the first check."""
    from dashboard import store
    from monitoring.db import create_db_engine

    return create_db_engine(store.database_url())


def _signed_in(cookie: str | None) -> bool:
    """Whether this ``dress_browser`` cookie belongs to a valid signed-in session; any failure to
    tell (a busy or unreadable database) answers no: a photograph is never served on doubt."""
    if not valid_browser_cookie(cookie):
        return False
    from monitoring import sessions

    try:
        return sessions.browser_signed_in(_engine(), cookie)
    except Exception:  # noqa: BLE001 - fail closed; nothing about the request is logged
        return False


class Guard(_HttpMiddleware):
    """ASGI middleware: the security headers on every HTTP response; 403 for ``/media/*``,
    ``/_stcore/upload_file/*`` and ``/_stcore/metrics`` without a signed-in session (see the
    module docstring)."""

    async def http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        with_headers = _adding_headers(send, SECURITY_HEADERS, replace=True)

        if guarded(str(scope.get("path") or ""), _base_path()):
            cookie = HTTPConnection(scope).cookies.get(BROWSER_COOKIE)
            if not await run_in_threadpool(_signed_in, cookie):
                response = PlainTextResponse("Sign in to the dashboard first.", status_code=403, headers={"Cache-Control": "no-store"})
                await response(scope, receive, with_headers)
                return
        await self.app(scope, receive, with_headers)


app = st.App("app.py", middleware=[Middleware(BrowserCookie), Middleware(Guard)])
