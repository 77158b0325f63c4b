"""The dashboard as an ASGI app: ``streamlit run dashboard/server.py`` (what ``make run`` starts).

Streamlit 1.67's ``st.App`` runs dashboard/app.py unchanged and lets this file add middleware.
The middleware gives every browser a random ``dress_browser`` cookie (HttpOnly: no script can read
it; SameSite=Strict; Secure when the request came over HTTPS), set by the server's own HTTP
response. The sign-in stores only its SHA-256 digest with the server-side session
(monitoring/sessions.py), so a refresh, which starts a new Streamlit session, finds the session
again through ``st.context.cookies`` and the user stays signed in; signing out ends the session row
and with it every tab. Why this way: Streamlit has no API to set a cookie from a script; a
cookie written by JavaScript (the cookie components) cannot be HttpOnly and needs inline script;
st.login's own signed cookie exists only with an OpenID Connect provider.
"""

from __future__ import annotations

import secrets
from typing import Any

import streamlit as st
from starlette.middleware import Middleware

BROWSER_COOKIE = "dress_browser"


class BrowserCookie:
    """ASGI middleware: a browser without a ``dress_browser`` cookie gets one on its next HTTP
    response (the page, before the WebSocket that runs the script)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        cookies = b"; ".join(v for k, v in scope.get("headers") or [] if k == b"cookie")
        if f"{BROWSER_COOKIE}=".encode() in cookies:
            await self.app(scope, receive, send)
            return
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        header = f"{BROWSER_COOKIE}={secrets.token_urlsafe(32)}; Path=/; HttpOnly; SameSite=Strict{secure}".encode()

        async def with_cookie(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", header)]}
            await send(message)

        await self.app(scope, receive, with_cookie)


app = st.App("app.py", middleware=[Middleware(BrowserCookie)])
