"""What a reader sees of a Markdown string the page sent: escapes removed (dashboard/safe.py)."""

from __future__ import annotations

import re

from dashboard.safe import WORD_JOINER

_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")  # CommonMark: a backslash before ASCII punctuation


def shown(markdown: str) -> str:
    return _ESCAPE.sub(r"\1", markdown).replace(WORD_JOINER, "")


def shown_html(markup: str) -> str:
    """The text of HTML as a reader sees it: character references decoded (tags left in place)."""
    import html

    return html.unescape(markup).replace(WORD_JOINER, "")
