"""The sign-in gate: every page requires a signed-in user (issue 7; PRODUCT.md §8).

``gate(engine)`` runs in dashboard/app.py before the navigation. Without a signed-in user the
navigation holds only the sign-in page, so no other page can be reached, not even by its URL.

- Where the hospital has configured Streamlit's OpenID Connect sign-in (an ``[auth]`` section in
  .streamlit/secrets.toml), ``st.login`` is used and the identity (e-mail) is mapped to an account
  of this product, which gives the role; an identity without an account is refused.
- Otherwise a local sign-in form checks the password (monitoring.auth: Argon2, slowed repeated
  failures, everything audited).

Each rerun checks the account again (one primary-key read), so disabling an account or changing a
role takes effect at once. The signed-in user lives in ``st.session_state[SIGNED_IN_KEY]`` (a
``monitoring.auth.SignedIn``), its name also under ``widgets.USERNAME_KEY``, which the pages sign
their writes with. Session state lives on the server: a browser cannot set it.

Pages hide write controls from viewers with ``can_write()``; the write services refuse a viewer in
any case (monitoring.auth.authorise_write).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st
from sqlalchemy.engine import Engine
from streamlit.navigation.page import StreamlitPage

from dashboard import safe, widgets
from monitoring import auth, sessions
from monitoring.auth import SignedIn

SIGNED_IN_KEY = "auth_signed_in"
"""st.session_state key of the signed-in user (a monitoring.auth.SignedIn)."""
SESSION_KEY = "auth_session_id"
"""st.session_state key of the server-side session's id (monitoring.sessions)."""
BROWSER_COOKIE = "dress_browser"  # set by dashboard/server.py

# Pages that only make sense for someone who may write, and pages for administrators, by url_path.
WRITE_PAGES: frozenset[str] = frozenset({"entry"})
ADMIN_PAGES: frozenset[str] = frozenset({"audit", "alert-report"})


def oidc_configured() -> bool:
    """Whether the hospital configured st.login (an [auth] section in secrets.toml)."""
    try:
        return bool(st.secrets.load_if_toml_exists() and "auth" in st.secrets)
    except Exception:  # noqa: BLE001 - unreadable secrets: fall back to local accounts, never crash
        return False


def client_address() -> str | None:
    """The browser's address, for the per-address sign-in throttle: the direct peer as Streamlit
    sees it or, when that peer is a proxy named in DRESS_TRUSTED_PROXY, the client it forwarded
    for (``monitoring.auth.source_address``; README, Security). Raises ValueError when
    DRESS_TRUSTED_PROXY is not a list of addresses."""
    trusted = auth.trusted_proxies()
    try:
        address = st.context.ip_address
        forwarded = st.context.headers.get_all("X-Forwarded-For") if trusted else []
    except Exception:  # noqa: BLE001 - no request context: no address
        return None
    peer = address if isinstance(address, str) else None  # AppTest gives a stand-in object
    return auth.source_address(peer, [f for f in forwarded if isinstance(f, str)], trusted)


def current() -> SignedIn | None:
    user = st.session_state.get(SIGNED_IN_KEY)
    return user if isinstance(user, SignedIn) else None


def can_write() -> bool:
    """Whether to show write controls (clinicians and admins)."""
    user = current()
    return user is not None and user.can(auth.WRITE)


def is_admin() -> bool:
    user = current()
    return user is not None and user.can(auth.MANAGE_ACCOUNTS)


def signed_in_state(user: SignedIn) -> dict[str, Any]:
    """The session-state entries of a signed-in user, with a server-side session opened for it in
    the dashboard's database (DATABASE_URL). Tests seed AppTest with these (the account must exist
    in the test's database: the gate checks the session and the account on every run)."""
    from dashboard import store
    from monitoring.db import create_db_engine

    engine = create_db_engine(store.database_url())
    try:
        session_id = sessions.open_session(engine, user)
    finally:
        engine.dispose()
    return _state(user, session_id)


def _state(user: SignedIn, session_id: int) -> dict[str, Any]:
    return {SIGNED_IN_KEY: user, widgets.USERNAME_KEY: user.username, SESSION_KEY: session_id}


def _remember(user: SignedIn, session_id: int) -> None:
    for key, value in _state(user, session_id).items():
        st.session_state[key] = value


def _forget() -> None:
    for key in (SIGNED_IN_KEY, widgets.USERNAME_KEY, SESSION_KEY):
        st.session_state.pop(key, None)


def browser_cookie() -> str | None:
    """The ``dress_browser`` cookie (HttpOnly, set by dashboard/server.py) that lets a refreshed
    page find its session again; None when the app runs without it (AppTest, plain app.py)."""
    try:
        value = st.context.cookies.get(BROWSER_COOKIE)
    except Exception:  # noqa: BLE001 - no request context
        return None
    return value if valid_browser_cookie(value) else None


def valid_browser_cookie(value: object) -> bool:
    """Whether ``value`` can be a ``dress_browser`` cookie (a string of 20 to 200 characters; the
    server makes 43): anything else is treated as no cookie, here and in dashboard/server.py."""
    return isinstance(value, str) and 20 <= len(value) <= 200


def _open(engine: Engine, user: SignedIn, source: str | None) -> None:
    _remember(user, sessions.open_session(engine, user, browser=browser_cookie(), source=source))


def refusal(page: StreamlitPage, user: SignedIn) -> str | None:
    """Why ``user`` may not open ``page`` (None: they may): admin pages are for administrators,
    write pages for accounts that may write."""
    if page.url_path in ADMIN_PAGES and not user.can(auth.VIEW_AUDIT):
        return f"{page.title} is for administrators only: this account ({user.username}, {user.role}) has no access."
    if page.url_path in WRITE_PAGES and not user.can(auth.WRITE):
        return f"{page.title} is for accounts that may write (clinicians, administrators): this account ({user.username}) is read-only."
    return None


def _refused_page(page: StreamlitPage, reason: str) -> StreamlitPage:
    """A hidden stand-in at the refused page's address: a direct link (``/audit``) says who the
    page is for instead of silently showing the first page (st.navigation's fallback for an
    address it does not know). It runs only this message, never the page's file."""

    def refused() -> None:
        st.error(safe.md(reason))
        st.page_link(PAGES_HOME, label="Open the ward overview")

    return st.Page(refused, title=page.title, url_path=page.url_path, visibility="hidden")


PAGES_HOME = "views/ward.py"  # dashboard/app.py's default page


def visible_pages(pages: Mapping[str, Sequence[StreamlitPage]], user: SignedIn) -> dict[str, list[StreamlitPage]]:
    """The navigation for this user's role: write pages only for writers, admin pages for admins.
    A page the role may not open is replaced by a hidden stand-in at its address that says so."""
    out: dict[str, list[StreamlitPage]] = {}
    stand_ins: list[StreamlitPage] = []
    for group, items in pages.items():
        kept = []
        for p in items:
            if (reason := refusal(p, user)) is None:
                kept.append(p)
            else:
                stand_ins.append(_refused_page(p, reason))
        if kept:
            out[group] = kept
    # Hidden pages join the first group: a group of hidden pages alone would show an empty menu.
    if out and stand_ins:
        out[next(iter(out))].extend(stand_ins)
    return out


def _sign_in_page(engine: Engine) -> None:
    st.markdown("## DRESS monitor")
    st.caption("Patient data: sign in to continue. Every sign-in is recorded.")
    try:
        source = client_address()
    except ValueError as exc:  # a setting of the server, not of the user: say which and stop here
        st.error(f"{safe.md(exc)}. Sign-in is not possible until the server's setting is corrected.")
        return
    if oidc_configured():
        _oidc_sign_in(engine, source)
        return
    with st.form("auth_sign_in", clear_on_submit=False, enter_to_submit=True):
        username = st.text_input("User name", key="auth_username", autocomplete="username")
        password = st.text_input("Password", type="password", key="auth_password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            user = auth.sign_in(engine, username, password, source=source)
        except auth.SignInRefused as exc:
            st.error(safe.md(exc))
        else:
            _open(engine, user, source)
            st.session_state.pop("auth_password", None)
            st.rerun()
    _no_accounts_hint(engine)


def _no_accounts_hint(engine: Engine) -> None:
    from sqlalchemy import select
    from sqlmodel import Session

    from monitoring.models import User

    with Session(engine) as session:
        if session.execute(select(User.id).limit(1)).first() is None:
            st.info(
                "There is no account yet. On the server, create one with "
                "`python -m monitoring users add NAME --role admin` (or `make run` once, which creates demo accounts "
                "and prints their passwords)."
            )


def _oidc_sign_in(engine: Engine, source: str | None) -> None:
    if not st.user.is_logged_in:
        st.button("Sign in with the hospital account", type="primary", on_click=st.login)
        return
    identity = str(st.user.get("email") or "")
    try:
        user = auth.sign_in_external(engine, identity)
    except auth.SignInRefused as exc:
        st.error(safe.md(exc))
        st.button("Sign out", on_click=st.logout)
        return
    _open(engine, user, source)
    st.rerun()


def sign_out(engine: Engine) -> None:
    user = current()
    if user is not None:
        auth.record_sign_out(engine, user)
    # Ends the server-side session: every other tab (and a refresh) of it is signed out too.
    sessions.end_session(engine, st.session_state.get(SESSION_KEY))
    _forget()
    if oidc_configured() and st.user.is_logged_in:
        st.logout()
    st.rerun()


def _sidebar(engine: Engine, user: SignedIn) -> None:
    with st.sidebar:
        st.markdown(f"Signed in as **{safe.md(user.label)}** · {safe.md(user.role)}")
        if not user.can(auth.WRITE):
            st.caption("Read-only account: you can look, not change.")
        if st.button("Sign out", key="auth_sign_out"):
            sign_out(engine)


def _validated(engine: Engine) -> SignedIn | None:
    """The session's user as the database has it now (server-side session still open, not idle,
    within its lifetime, account enabled), or None (and the tab forgets it). After a browser
    refresh the session is found again through the browser's cookie."""
    had = current()
    session_id = st.session_state.get(SESSION_KEY)
    browser = browser_cookie()
    if had is None and session_id is None and browser is None:
        return None
    found = sessions.resume(engine, session_id=session_id if isinstance(session_id, int) else None, browser=browser)
    if found.user is None or found.session_id is None:
        _forget()
        if had is not None:
            st.warning(sessions.REASONS.get(found.ended or sessions.SIGNED_OUT, sessions.REASONS[sessions.SIGNED_OUT]))
        return None
    if found.user != had or found.session_id != session_id:
        _remember(found.user, found.session_id)  # a refresh, or a role changed by an admin
    return found.user


def gate(engine: Engine, pages: Mapping[str, Sequence[StreamlitPage]] | None = None) -> SignedIn:
    """The signed-in user, checked against the database; otherwise show the sign-in form (nothing
    else is reachable) and stop this run.

    With ``pages``, a link to any page (``/timeline?mrn=...`` bookmarked or sent in a letter) is
    recognised but not run: the sign-in form stands in its place and, once signed in, the rerun at
    the same address opens the page asked for."""
    user = _validated(engine)
    if user is not None:
        _sidebar(engine, user)
        return user
    if pages:
        st.navigation({group: list(items) for group, items in pages.items()}, position="hidden")
        _sign_in_page(engine)
    else:
        st.navigation([st.Page(lambda: _sign_in_page(engine), title="Sign in", url_path="sign-in", icon=":material/lock:")], position="hidden").run()
    st.stop()
    raise AssertionError("unreachable: st.stop() ends the run")


def require(permission: str) -> SignedIn:
    """For a page: stop with a message unless the signed-in user has ``permission``."""
    user = current()
    if user is None or not user.can(permission):
        st.error("You do not have access to this page.")
        st.stop()
        raise AssertionError("unreachable: st.stop() ends the run")
    return user


def require_signed_in(permission: str = auth.READ) -> SignedIn:
    """The first statement of every page file: defence in depth behind the gate of app.py.
    ``permission``: what the page needs beyond reading (the Entry page: write; Audit: view_audit).

    The page files live in ``dashboard/views/`` rather than ``pages/`` so that Streamlit never runs
    them as a legacy multipage app without app.py's gate; this check is the second line of defence
    should a page ever be run on its own.
    """
    from dashboard import store

    user = _validated(store.engine())
    if user is None:
        st.warning("Sign in first: open the dashboard's start page.")
        st.stop()
        raise AssertionError("unreachable: st.stop() ends the run")
    if not user.can(permission):
        st.error("Your account does not have access to this page.")
        st.stop()
        raise AssertionError("unreachable: st.stop() ends the run")
    return user
