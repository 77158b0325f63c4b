"""The one severity type of alerts (PRODUCT.md §5: CDS Hooks indicators info, warning, critical).

Its order (critical first), its word and its symbol are defined here and used by the ward, the
timeline, the report and the command line; the dashboard keys its colours by the same values.
A ``Severity`` is a ``str``: it compares equal to 'critical' and is written as 'critical' in JSON.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Severity", "SEVERITY_ORDER", "rank", "symbol", "word"]


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
