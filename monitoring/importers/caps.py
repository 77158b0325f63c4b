"""Caps on import input (issue 12 point 6): file size, FHIR entries, CSV columns, problems listed.

Each is a design choice, not a clinical number, and configurable by an environment variable
(README "Import caps"). Checked at the entry points of the importers: the size before a file is
read, the column count at the CSV header, the entry count of a Bundle (nested Bundles included)
before any resource is read, and the problem list stops at ``max_problems()`` with a count of the
rest ("…and N more problems").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from monitoring.store import Problem

__all__ = ["Cap", "MAX_IMPORT_BYTES", "MAX_FHIR_ENTRIES", "MAX_CSV_COLUMNS", "MAX_PROBLEMS", "capped", "more_line"]


@dataclass(frozen=True)
class Cap:
    env: str
    default: int
    what: str  # "bytes per file", for messages

    def value(self) -> int:
        """The cap: the environment variable when set (a whole number of at least 1), else the default."""
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise ValueError(f"{self.env}: value {raw!r}: not a whole number ({self.what})") from None
        if value < 1:
            raise ValueError(f"{self.env}: value {raw!r}: must be at least 1 ({self.what})")
        return value

    def named(self) -> str:
        """How a refusal names the cap: "the limit is 64 MiB (DRESS_MAX_IMPORT_BYTES)"."""
        value = self.value()
        shown = f"{value:,}"
        if self.what.startswith("bytes") and value % (1 << 20) == 0:
            shown = f"{value >> 20} MiB"
        return f"the limit is {shown} {self.what} ({self.env})"


# A 1 M-row labs CSV is about 50 MB: the default admits it. A 30 MB Bundle of 10 M empty entries
# is refused by the entry count, after parsing but before any resource is read.
MAX_IMPORT_BYTES = Cap("DRESS_MAX_IMPORT_BYTES", 64 << 20, "bytes per file")
MAX_FHIR_ENTRIES = Cap("DRESS_MAX_FHIR_ENTRIES", 100_000, "entries per Bundle, nested Bundles included")
MAX_CSV_COLUMNS = Cap("DRESS_MAX_CSV_COLUMNS", 200, "columns per CSV header")
MAX_PROBLEMS = Cap("DRESS_MAX_PROBLEMS", 100, "problems listed per import")


def capped(problems: list[Problem]) -> tuple[list[Problem], int]:
    """The first ``DRESS_MAX_PROBLEMS`` problems and how many more there were."""
    limit = MAX_PROBLEMS.value()
    if len(problems) <= limit:
        return problems, 0
    return problems[:limit], len(problems) - limit


def more_line(more: int) -> str:
    """The line that ends a capped list of problems."""
    return f"…and {more:,} more problem{'' if more == 1 else 's'} (not listed: {MAX_PROBLEMS.named()})"
