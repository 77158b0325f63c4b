"""The one way stored data meets HTML or Markdown on a page.

A name, a drug, a note, a unit or anything read from a file is data, never markup. Streamlit renders
as Markdown not only ``st.markdown`` but every label (buttons, pills, expanders, tabs, page links,
widget labels and options of pills / radio / segmented controls), help texts, ``st.caption``,
``st.toast`` and the alert boxes (``st.error``, ``st.warning``, ...). Besides GitHub-flavoured
Markdown it interprets ``$...$`` as LaTeX, ``:material/name:`` and ``:smile:`` as icons and emoji,
``:red[...]`` as colour directives, and, with ``unsafe_allow_html``, raw HTML. So:

- ``md(text)`` for any Markdown context: every character that can start Markdown or a Streamlit
  extension (``\\ ` * _ [ ] $ : ~ < > & | @ # !``, a leading block marker such as ``-``, ``+``,
  ``1.``, and the dot of ``www.``) is backslash-escaped (CommonMark: a backslash before ASCII
  punctuation makes it a literal character); a colon is also followed by an invisible WORD JOINER
  (U+2060) so that neither Streamlit's ``:material/`` rewrite, which runs on the raw source before
  parsing, nor the emoji plugin, which runs on the parsed text, finds a ``:name:`` shortcode; line
  breaks become spaces (a label is one line).
- ``plot(text)`` for text inside a Plotly figure (tick labels, annotations, hover text): Plotly
  reads a subset of HTML in them (``<b>``, ``<br>``, ``<a href>``, ``<span style>``) and character
  references, so ``&``, ``<`` and ``>`` become entities, which Plotly shows as the characters.
- ``html(text)`` for HTML passed to ``st.markdown(..., unsafe_allow_html=True)`` or ``st.html``:
  ``&``, ``<``, ``>`` and both quotes become entities (OWASP: HTML body and quoted attribute
  values), and so do the same Markdown characters and line breaks, because Streamlit still parses
  the text between inline HTML tags as Markdown: a character reference is always a literal
  character in CommonMark, so ``&#91;x&#93;(javascript&#58;...)`` stays text.

Other characters (letters, digits, ``- , . ( ) + =`` and so on) are left alone, so the source of an
escaped value still reads like the value.

Prefer not to render data as Markdown at all (``st.text``, ``st.code``, dataframes); where it must
be (a label, a title), escape it here. ``tests/dashboard/test_safe.py`` holds the payloads and
walks the dashboard source for calls that would render data unescaped.
"""

from __future__ import annotations

import re

__all__ = ["html", "md", "plot"]

WORD_JOINER = "\u2060"
"""Invisible, zero width, no line break: separates ':' from a following word in rendered text."""

# Inline Markdown (CommonMark, GFM: strikethrough, tables, e-mail autolinks), LaTeX ($), Streamlit
# directives and icons (:red[...], :material/...:), raw HTML and entities (< > &), headings (#).
_SPECIAL = "\\`*_[]$:~<>&|@#!"
_LINE_BREAKS = "\r\n\t\v\f\u2028\u2029\x85"
_WWW_DOT = re.compile(r"(?<=www)\.", re.IGNORECASE)  # GFM links a bare www.example.org
_LEADING_MARK = re.compile(r"^(\s*)([-+=])")  # a bullet, a thematic break at the start of a block
_LEADING_NUMBER = re.compile(r"^(\s*\d+)([.)])")  # an ordered list item at the start of a block

_MD = {c: "\\" + c for c in _SPECIAL}
_MD[":"] = "\\:" + WORD_JOINER
_MD.update({c: " " for c in _LINE_BREAKS})
_MD_TABLE = str.maketrans(_MD)

_HTML = {c: f"&#{ord(c)};" for c in _SPECIAL}
_HTML.update({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;", ":": "&#58;&#8288;"})
_HTML.update({c: "&#32;" for c in _LINE_BREAKS})
_HTML_TABLE = str.maketrans(_HTML)


def md(value: object) -> str:
    """``value`` as literal text inside Markdown (st.markdown, labels, help, captions, alerts)."""
    text = _WWW_DOT.sub(r"\\.", str(value).translate(_MD_TABLE))
    return _LEADING_NUMBER.sub(r"\1\\\2", _LEADING_MARK.sub(r"\1\\\2", text))


def html(value: object) -> str:
    """``value`` as literal text inside HTML, also when Streamlit parses that HTML as Markdown."""
    return _WWW_DOT.sub("&#46;", str(value).translate(_HTML_TABLE))


_PLOT_TABLE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def plot(value: object) -> str:
    """``value`` as literal text inside a Plotly figure (labels, annotations, hover text)."""
    return str(value).translate(_PLOT_TABLE)
