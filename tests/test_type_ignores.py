"""mypy runs in `make test` on monitoring/ (issue 13): an error it is told to ignore must say why,
on the same line, after the ignore (``# type: ignore[code]  # the reason``)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE = re.compile(r"#\s*type:\s*ignore(\[[^\]]*\])?(?P<rest>.*)$")


def unexplained(text: str, name: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        m = IGNORE.search(line)
        if m and not re.match(r"\s*(#|-)\s*\S", m.group("rest")):
            found.append(f"{name}:{number}: {line.strip()}")
    return found


def test_every_type_ignore_in_monitoring_says_why() -> None:
    found = [hit for path in sorted((ROOT / "monitoring").rglob("*.py"))
             for hit in unexplained(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert found == [], "type: ignore without a reason:\n" + "\n".join(found)


def test_the_check_sees_a_bare_ignore() -> None:
    assert unexplained("x = f()  # type: ignore[arg-type]\n", "m.py") == ["m.py:1: x = f()  # type: ignore[arg-type]"]
    assert unexplained("x = f()  # type: ignore[arg-type]  # f is untyped\n", "m.py") == []
