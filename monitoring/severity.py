"""The one severity type of alerts (PRODUCT.md §5: CDS Hooks indicators info, warning, critical).

Its order (critical first), its word, its symbol and its colours are defined here and used by the
ward, the timeline, the report and the command line (one colour key: critical red, warning amber,
info blue, issue 15).
A ``Severity`` is a ``str``: it compares equal to 'critical' and is written as 'critical' in JSON.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["COLOURS", "INK", "SEVERITY_ORDER", "TEXT_ON", "TINTS", "Severity", "rank", "rgba", "symbol", "word"]


class Severity(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 for critical, 1 warning, 2 info: sort ascending for attention order."""
        return _RANK[self]

    @property
    def symbol(self) -> str:
        """A symbol in common system fonts, so colour is never the only signal."""
        return _SYMBOL[self]

    @property
    def word(self) -> str:
        return self.value.upper()


_RANK = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
_SYMBOL = {Severity.CRITICAL: "‼", Severity.WARNING: "⚠", Severity.INFO: "ℹ"}

SEVERITY_ORDER: dict[str, int] = {s.value: s.rank for s in Severity}

# The one colour key of the severities, for the dashboard's badges, banners and ward rows, the
# timeline figure and the PDF report. Colour is never the only signal (symbol and word beside it).
COLOURS: dict[str, str] = {Severity.CRITICAL: "#b71c1c", Severity.WARNING: "#f0a202", Severity.INFO: "#1565c0"}
# Text written on a COLOURS fill (amber needs dark text to be read).
TEXT_ON: dict[str, str] = {Severity.CRITICAL: "#ffffff", Severity.WARNING: "#1f1300", Severity.INFO: "#ffffff"}
# Text or a thin line on white paper or a white page: the amber darkened so it can be read.
INK: dict[str, str] = {Severity.CRITICAL: "#b71c1c", Severity.WARNING: "#8a5a00", Severity.INFO: "#1565c0"}
# Light backgrounds (ward rows, banners, table cells) of the same hues.
TINTS: dict[str, str] = {Severity.CRITICAL: "#fde0e0", Severity.WARNING: "#fff1cc", Severity.INFO: "#e3effd"}


def rgba(severity: str, alpha: float) -> str:
    """The severity's COLOURS hue as a CSS/Plotly 'rgba(r, g, b, alpha)' (a translucent zone);
    anything not a severity takes info's."""
    hex_colour = COLOURS.get(severity, COLOURS[Severity.INFO]).lstrip("#")
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r}, {g}, {b}, {alpha:g})"


def rank(severity: str | None) -> int:
    """Attention order of a severity; anything else (no alert) sorts after info."""
    if severity is None:
        return len(_RANK)
    try:
        return Severity(severity).rank
    except ValueError:
        return len(_RANK)


def symbol(severity: str) -> str:
    try:
        return Severity(severity).symbol
    except ValueError:
        return ""


def word(severity: str) -> str:
    try:
        return Severity(severity).word
    except ValueError:
        return str(severity).upper()
