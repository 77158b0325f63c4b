"""Import caps (issue 12 point 6): file size before reading, CSV columns at the header, FHIR entries
before any resource, at most DRESS_MAX_PROBLEMS problems listed with a count of the rest, and MRN
lookups chunked (no "too many SQL variables"); on the command line and on both databases."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from monitoring.importers import import_files, import_uploads
from monitoring.models import LabResult, Patient

TODAY = dt.date(2026, 3, 1)
ROOT = Path(__file__).resolve().parents[2]
LABS_HEADER = "mrn,taken_at,test,value,unit,ref_low,ref_high\n"
PATIENTS = "mrn,name,sex,birth_date,weight_kg,onset_date,culprit_drug\nP1,Synthetic Ann,F,1970-03-02,70,2026-01-10,allopurinol\n"


def _count(session: Session, model: type) -> int:
    return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def _bundle(entries: list[dict]) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}).encode()


def test_file_over_the_size_cap_is_refused_before_reading(session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRESS_MAX_IMPORT_BYTES", "1000")
    labs = tmp_path / "labs.csv"
    labs.write_text(LABS_HEADER + "".join(f"P1,2026-02-01T08:{i % 60:02d},alt,{i},U/L,,40\n" for i in range(60)))
    patients = tmp_path / "patients.csv"
    patients.write_text(PATIENTS)
    report = import_files(session, [patients, labs], as_of=TODAY)
    assert not report.ok
    (problem,) = report.problems
    assert problem.where == str(labs)
    assert "file too large" in problem.reason and "1,000 bytes per file (DRESS_MAX_IMPORT_BYTES)" in problem.reason
    assert problem.value == f"{labs.stat().st_size:,} bytes"
    assert _count(session, Patient) == 0  # the other file is not stored either
    # An upload is measured the same way.
    report = import_uploads(session, [("labs.csv", labs.read_bytes())], as_of=TODAY)
    assert "DRESS_MAX_IMPORT_BYTES" in report.problems[0].reason


def test_default_size_cap_refuses_the_30_mb_bundle_of_10_m_entries_unread(session: Session, tmp_path: Path) -> None:
    # The bundle: 10 M empty entries, 30 MB. With the defaults (64 MiB, 100 000 entries)
    # it is refused by the entry count, before any resource is read.
    path = tmp_path / "huge.json"
    path.write_bytes(b'{"resourceType":"Bundle","type":"collection","entry":[' + b",".join([b"{}"] * 10_000_000) + b"]}")
    report = import_files(session, [path], as_of=TODAY)
    assert not report.ok
    (problem,) = report.problems
    assert "too many entries: more than 100,000" in problem.reason
    assert "DRESS_MAX_FHIR_ENTRIES" in problem.reason
    # A lowered size cap refuses it without even parsing it.
    import os

    os.environ["DRESS_MAX_IMPORT_BYTES"] = str(20 << 20)
    try:
        report = import_files(session, [path], as_of=TODAY)
    finally:
        del os.environ["DRESS_MAX_IMPORT_BYTES"]
    assert "file too large: the limit is 20 MiB bytes per file" in report.problems[0].reason


def test_fhir_entry_cap_counts_nested_bundles(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRESS_MAX_FHIR_ENTRIES", "50")
    nested = {"resourceType": "Bundle", "type": "collection", "entry": [{}] * 30}
    report = import_uploads(session, [("b.json", _bundle([{"resource": nested}, {"resource": nested}]))], as_of=TODAY)
    assert not report.ok
    assert "too many entries: more than 50 (the limit is 50 entries per Bundle, nested Bundles included" in report.problems[0].reason
    # At the cap the bundle is read as usual (its empty entries are its own problems, not the cap).
    report = import_uploads(session, [("b.json", _bundle([{"resource": nested}]))], as_of=TODAY)
    assert all("too many entries" not in p.reason for p in report.problems)


def test_csv_header_with_a_million_columns_gives_one_problem(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(",".join(["x"] * 1_000_000) + "\n1\n")
    report = import_files(session, [path], as_of=TODAY)
    assert report.problem_lines() == [
        f"{path}: row 1: value '1,000,000 columns': too many columns in the header: "
        "the limit is 200 columns per CSV header (DRESS_MAX_CSV_COLUMNS)"
    ]


def test_forty_thousand_unknown_mrns_are_named_and_the_list_capped(session: Session) -> None:
    # More MRNs than SQLite's variable limit (32 766) in one IN list: chunked, each row named.
    body = LABS_HEADER + "".join(f"U{i},2026-02-01T08:00,alt,30,U/L,,40\n" for i in range(40_000))
    report = import_uploads(session, [("labs.csv", body.encode())], as_of=TODAY)
    assert not report.ok
    assert len(report.problems) == 100
    assert report.problem_count == 40_000
    assert report.problems[0].where == "labs.csv: row 2" and report.problems[0].value == "U0"
    assert "unknown MRN" in report.problems[0].reason
    lines = report.problem_lines()
    assert len(lines) == 101
    assert lines[-1].startswith("…and 39,900 more problems")
    assert _count(session, LabResult) == 0


def test_known_mrns_above_the_variable_limit_are_stored(session: Session) -> None:
    n = 35_000
    patients = "mrn,name\n" + "".join(f"K{i},Synthetic {i}\n" for i in range(n))
    assert import_uploads(session, [("patients.csv", patients.encode())], as_of=TODAY).ok
    labs = LABS_HEADER + "".join(f"K{i},2026-02-01T08:00,alt,30,U/L,,40\n" for i in range(n))
    report = import_uploads(session, [("labs.csv", labs.encode())], as_of=TODAY)
    assert report.ok, report.problem_lines()[:3]
    assert _count(session, LabResult) == n


def test_problem_cap_is_configurable(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRESS_MAX_PROBLEMS", "3")
    body = LABS_HEADER + "".join(f"U{i},2026-02-01T08:00,alt,30,U/L,,40\n" for i in range(5))
    report = import_uploads(session, [("labs.csv", body.encode())], as_of=TODAY)
    assert [p.where for p in report.problems] == ["labs.csv: row 2", "labs.csv: row 3", "labs.csv: row 4"]
    assert report.problem_lines()[-1].startswith("…and 2 more problems")
    monkeypatch.setenv("DRESS_MAX_PROBLEMS", "none")
    with pytest.raises(ValueError, match="DRESS_MAX_PROBLEMS: value 'none': not a whole number"):
        import_uploads(session, [("labs.csv", body.encode())], as_of=TODAY)


def test_command_line_import_lists_100_problems_and_the_count(db_path: Path, tmp_path: Path) -> None:
    labs = tmp_path / "labs.csv"
    labs.write_text(LABS_HEADER + "".join(f"U{i},2026-02-01T08:00,alt,30,U/L,,40\n" for i in range(250)))
    proc = subprocess.run(
        [sys.executable, "-m", "monitoring", "--db", str(db_path), "import", str(labs)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert sum("unknown MRN" in line for line in lines) == 100
    assert any("…and 150 more problems" in line for line in lines)
    assert "import refused: 250 problem(s); nothing was written" in proc.stderr
