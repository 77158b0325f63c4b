"""Acknowledge and snooze an alert's episode from a page (PRODUCT.md §10).

The reason is asked in a dialog (``st.dialog``); the write goes through monitoring.episodes (signed,
permission-checked, audited). A reason text typed by a clinician is stored data: it is shown with
``st.text``, never as Markdown or HTML.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import streamlit as st

from dashboard import auth, safe, store, widgets
from monitoring import episodes
from monitoring.auth import PermissionDenied
from monitoring.db import session_scope
from monitoring.guideline import GuidelineProfile
from monitoring.models import AlertEpisode


def _write(fn: Callable[..., Any], **kwargs: Any) -> bool:
    signer = widgets.username()
    if not signer:
        st.error("Sign in first: every acknowledgement is signed. Nothing was stored.")
        return False
    try:
        with session_scope(store.engine()) as session:
            fn(session, username=signer, **kwargs)
    except (episodes.EpisodeActionRefused, PermissionDenied) as exc:
        st.error("Not stored: " + safe.md(exc))
        return False
    store.clear_caches()
    return True


DIALOG_KEY = "episode_dialog"  # which dialog is open: {"kind": "ack" | "snooze", "id": episode id, "title": ...}


def _close() -> None:
    st.session_state.pop(DIALOG_KEY, None)


def _open(kind: str, episode_id: int, title: str) -> None:
    st.session_state[DIALOG_KEY] = {"kind": kind, "id": episode_id, "title": title}


@st.dialog("Acknowledge the alert", on_dismiss=_close)
def acknowledge_dialog(episode_id: int, title: str) -> None:
    st.text(title)
    reason = st.radio(
        "Reason", list(episodes.ACK_REASONS), format_func=lambda r: episodes.ACK_REASONS[r], key="episode_ack_reason"
    )
    text = st.text_input(
        "Why (needed for 'not relevant')", key="episode_ack_text", max_chars=episodes.MAX_ACK_TEXT,
    )
    if st.button("Acknowledge", type="primary", key="episode_ack_confirm") and _write(
        episodes.acknowledge, episode_id=episode_id, reason=reason, text=text
    ):
        st.session_state["episode_done"] = f"{safe.md(title)}: acknowledged."
        _close()
        st.rerun()


@st.dialog("Snooze the alert", on_dismiss=_close)
def snooze_dialog(episode_id: int, title: str, today: dt.date, latest: dt.date) -> None:
    st.text(title)
    until = st.date_input(
        "Snooze until", value=today + dt.timedelta(days=1), min_value=today + dt.timedelta(days=1), max_value=latest,
        format="YYYY-MM-DD", key="episode_snooze_until",
    )
    st.caption(f"At most until {latest.isoformat()} (guideline profile: snooze_max_days, a design choice).")
    if st.button("Snooze", type="primary", key="episode_snooze_confirm") and _write(
        episodes.snooze, episode_id=episode_id, until=until, today=today
    ):
        st.session_state["episode_done"] = f"{safe.md(title)}: snoozed until {until.isoformat()}."
        _close()
        st.rerun()


def episode_status(ep: AlertEpisode | None, today: dt.date) -> None:
    """How this alert's episode stands: since when, acknowledged or snoozed by whom and why."""
    if ep is None:
        return
    lines = [f"Holding since {ep.onset_date.isoformat()}" + (f" · reopened by new evidence {ep.reopen_count}×" if ep.reopen_count else "")]
    state = episodes.effective_state(ep, today)
    if state == episodes.ACKNOWLEDGED:
        lines.append(
            f"✓ Acknowledged by {ep.acknowledged_by} on {widgets.iso(ep.acknowledged_at, time=True)} UTC: "
            f"{episodes.ACK_REASONS.get(ep.ack_reason or '', ep.ack_reason or '').removesuffix(' …')}"
            + (f" {ep.ack_text}" if ep.ack_text else "")
        )
    elif state == episodes.SNOOZED and ep.snoozed_until is not None:
        lines.append(f"Snoozed until {ep.snoozed_until.isoformat()}")
    st.text("\n".join(lines))  # the reason text is stored data: plain text only


def episode_controls(ep: AlertEpisode | None, title: str, today: dt.date, prof: GuidelineProfile, *, key: str) -> None:
    """The alert's state, and for a user who may write the Acknowledge and Snooze buttons."""
    episode_status(ep, today)
    if ep is None or not auth.can_write():
        return
    left, right = st.columns(2)
    # The buttons open a dialog (open_dialog, once per run): it stays open across its own reruns.
    left.button("Acknowledge…", key=f"{key}_ack", width="stretch", on_click=_open, args=("ack", ep.id, title))
    never = ep.code in episodes.NEVER_SNOOZE
    right.button(
        "Snooze…", key=f"{key}_snooze", width="stretch", disabled=never, on_click=_open, args=("snooze", ep.id, title),
        help=f"{safe.md(title)} can be acknowledged but never snoozed." if never else None,
    )
    if never:
        st.caption("Can be acknowledged but never snoozed.")


def open_dialog(today: dt.date, prof: GuidelineProfile) -> None:
    """Show the dialog a button asked for (call once per page run, after the buttons)."""
    wanted = st.session_state.get(DIALOG_KEY)
    if not isinstance(wanted, dict):
        return
    if wanted.get("kind") == "ack":
        acknowledge_dialog(int(wanted["id"]), str(wanted["title"]))
    elif wanted.get("kind") == "snooze":
        snooze_dialog(int(wanted["id"]), str(wanted["title"]), today, episodes.latest_snooze(prof, today))


def show_done() -> None:
    if done := st.session_state.pop("episode_done", None):
        st.success(done)  # markup-safe: built with safe.md where it is set
