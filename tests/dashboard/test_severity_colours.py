"""Issue 15: one colour key for the severities (monitoring.severity), used by the dashboard's
badges and ward rows (dashboard.widgets), the timeline figure (dashboard.figures) and the PDF
report (monitoring.report); none of them writes a severity colour of its own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dashboard import figures, widgets
from monitoring import report, severity
from monitoring.severity import Severity

ROOT = Path(__file__).resolve().parents[2]


def test_every_severity_has_every_colour() -> None:
    for key in (severity.COLOURS, severity.TEXT_ON, severity.INK, severity.TINTS):
        assert set(key) == set(Severity)
        assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in key.values())


def test_the_dashboard_and_the_report_use_the_key() -> None:
    assert widgets.SEVERITY_COLOURS == {s.value: severity.COLOURS[s] for s in Severity}
    assert widgets.SEVERITY_TEXT_COLOURS == {s.value: severity.TEXT_ON[s] for s in Severity}
    assert widgets.SEVERITY_TINTS == {s.value: severity.TINTS[s] for s in Severity}
    assert (widgets.CRITICAL, widgets.WARNING, widgets.INFO) == tuple(severity.COLOURS[s] for s in Severity)
    assert report._SEVERITY_COLOURS is severity.INK


def test_figure_zones_are_the_severity_hues() -> None:
    for s in Severity:
        hue = severity.COLOURS[s].lstrip("#")
        rgb = ", ".join(str(int(hue[i : i + 2], 16)) for i in (0, 2, 4))
        assert figures.ZONE_TINTS[s.value].startswith(f"rgba({rgb}, ")


def test_rgba_of_an_unknown_severity_is_infos() -> None:
    assert severity.rgba("none", 0.5) == severity.rgba("info", 0.5) == "rgba(21, 101, 192, 0.5)"


@pytest.mark.parametrize("path", ["dashboard/widgets.py", "dashboard/figures.py", "monitoring/report.py"])
def test_no_module_writes_a_severity_colour_of_its_own(path: str) -> None:
    text = (ROOT / path).read_text(encoding="utf-8").lower()
    written = {c for key in (severity.COLOURS, severity.TEXT_ON, severity.INK, severity.TINTS)
               for c in key.values() if c not in ("#ffffff",)}
    assert not [c for c in written if c in text]
    assert not re.search(r"rgba\(\s*(183, 28, 28|240, 162, 2|21, 101, 192)", text)
