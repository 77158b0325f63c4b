"""Cells of a CSV a person opens in a spreadsheet: never a formula (CSV injection).

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as a formula by
Excel, LibreOffice and Google Sheets; a patient named ``=HYPERLINK("http://…")`` would become a
live link in every export. OWASP "CSV Injection": prefix such a cell with a single quote, which
the spreadsheet shows as text. A cell that is just a number (``-0.02``, ``+3``, ``-1e-3``) is left
alone: it cannot be a formula, and a negative change must stay a number.
"""

from __future__ import annotations

import re
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def formula_safe(value: Any) -> Any:
    """``value`` for a CSV cell: text that a spreadsheet would run is prefixed with ``'``;
    numbers, None and plain text are returned unchanged."""
    if not isinstance(value, str) or not value.startswith(FORMULA_START) or _NUMBER.fullmatch(value):
        return value
    return "'" + value
