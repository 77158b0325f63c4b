"""``python -m monitoring alerts`` and ``summary`` (PRODUCT.md §6) on a real, migrated SQLite file."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session

from monitoring.cli import main
from monitoring.db import create_db_engine
from tests.monitoring.engine_builder import Chart, day

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clinic_db(db_path: Path) -> Path:
    """A migrated database with one DRESS patient: ALT high, steroids from day 1, a short plan."""
    engine = create_db_engine(f"sqlite:///{db_path}")
    with Session(engine, expire_on_commit=False) as session:
        c = Chart(session, mrn="CLI-1", culprits=["carbamazepine"], weight_kg=80, resolved=day(30))
        c.lab("alt", 0, 420, ref_high=35)
        c.lab("alt", 7, 400)
        c.dose("methylprednisolone", 1, 64, route="iv")  # 80 mg prednisone-equivalent
        c.dose("methylprednisolone", 20, 32, route="iv")
        c.dose("methylprednisolone", 30, 0, route="iv")
        c.dose("Tegretol", 40, 200)
    engine.dispose()
    return db_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_alerts_json(clinic_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--db", str(clinic_db), "alerts", "--mrn", "CLI-1", "--as-of", day(8).isoformat(), "--json")
    assert code == 0, err
    alerts = json.loads(out)
    by_code = {a["code"]: a for a in alerts}
    # Edition 2: no creatinine or eosinophils were ever taken during the course, so LABS_OVERDUE
    # holds too and names them.
    assert {
        "HEPATIC_INVOLVEMENT", "STALLED_RESPONSE_DAY7", "PREMATURE_TAPER", "RELAPSE_RISK", "RECHALLENGE",
        "GI_PROPHYLAXIS_MISSING", "LABS_OVERDUE",
    } == set(by_code)
    assert "creatinine: never" in by_code["LABS_OVERDUE"]["message"].lower()
    for a in alerts:
        # The contract's keys, and the fields the message is composed from (added, none renamed).
        assert {"code", "severity", "date", "message", "evidence", "source"} <= set(a)
        assert a["message"].startswith(a["finding"]) and a["recommendation"] in a["message"]
    # Every alert carries the ids of the rows behind it (alert episodes are keyed by them).
    hepatic = by_code["HEPATIC_INVOLVEMENT"]
    assert hepatic["row_ids"]["lab_result"] == [hepatic["evidence"]["latest"]["row_id"]]
    assert by_code["RECHALLENGE"]["row_ids"]["medication_row"]
    assert hepatic["quoted"][0]["age_days"] == 1 and hepatic["quoted"][0]["date"] == day(7).isoformat()
    assert alerts[0]["severity"] == "critical" and alerts[0]["code"] == "RECHALLENGE"
    assert by_code["PREMATURE_TAPER"]["evidence"]["taper_days"] == 10
    # The ULN is per row: the latest ALT came without a reference range, so the default applies.
    assert by_code["HEPATIC_INVOLVEMENT"]["evidence"]["uln"] == 40
    assert by_code["HEPATIC_INVOLVEMENT"]["evidence"]["uln_is_default"] is True


def test_summary_json(clinic_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--db", str(clinic_db), "summary", "--mrn", "CLI-1", "--as-of", day(8).isoformat(), "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["day_since_onset"] == 8
    st = s["steroid"]
    assert st["course_start"] == day(1).isoformat()
    assert st["current_pred_eq_mg"] == 80 and st["current_mg_per_kg"] == 1
    assert (st["taper_start"], st["stop_date"], st["taper_days"]) == (day(20).isoformat(), day(30).isoformat(), 10)
    assert {"score", "category"} <= set(s["regiscar"])
    # resolution day 30 + 6 months is later than day 29 + 28 days
    assert s["patch_test_earliest"] == "2026-10-01"


def test_readable_tables(clinic_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--db", str(clinic_db), "alerts", "--mrn", "CLI-1", "--as-of", day(8).isoformat())
    assert code == 0
    assert "CRITICAL" in out and "RECHALLENGE" in out and "not a diagnosis" in out
    code, out, _ = run(capsys, "--db", str(clinic_db), "summary", "--mrn", "CLI-1", "--as-of", day(8).isoformat())
    assert code == 0 and "Course start" in out and "RegiSCAR" in out and "2026-10-01" in out
    # The course day with its first dose (day 0), as on the dashboard (issue 18 point 7).
    assert f"day 7 of steroids (first dose {day(1).isoformat()})" in out


def test_default_as_of_is_today(clinic_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--db", str(clinic_db), "summary", "--mrn", "CLI-1", "--json")
    assert code == 0 and json.loads(out)["as_of"] == dt.date.today().isoformat()


def test_unknown_mrn_and_bad_date_are_bad_input(clinic_db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--db", str(clinic_db), "alerts", "--mrn", "NOBODY", "--json")
    assert code == 2 and out == "" and "NOBODY" in err and "unknown MRN" in err
    code, out, err = run(capsys, "--db", str(clinic_db), "summary", "--mrn", "CLI-1", "--as-of", "2026-02-30")
    assert code == 2 and "2026-02-30" in err and "YYYY-MM-DD" in err


def test_bad_profile_is_bad_input(clinic_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[profile]\nname = "x"\nversion = "1"\nextends = "default"\n[thresholds.fever_c]\nvalue = "hot"\n')
    code, _, err = run(capsys, "--db", str(clinic_db), "alerts", "--mrn", "CLI-1", "--profile", str(bad))
    assert code == 2 and "thresholds.fever_c.value" in err


def test_real_process_exit_codes(clinic_db: Path) -> None:
    """The documented command line, in a real process."""
    ok = subprocess.run(
        [sys.executable, "-m", "monitoring", "--db", str(clinic_db), "alerts", "--mrn", "CLI-1", "--as-of", day(8).isoformat(), "--json"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert isinstance(json.loads(ok.stdout), list)
    bad = subprocess.run(
        [sys.executable, "-m", "monitoring", "--db", str(clinic_db), "summary", "--mrn", "X"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "unknown MRN" in bad.stderr and "Traceback" not in bad.stderr


def test_engine_benchmark_runs_and_prints_its_ratios() -> None:
    """bench/bench_engine.py on a tiny cohort: the script keeps working and prints its ratios."""
    done = subprocess.run(
        [sys.executable, "bench/bench_engine.py", "--patients", "3", "--days", "5", "--runs", "1"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "SELECTs per load: 4" in done.stdout
    assert "ratio (b)/(a)" in done.stdout and "ratio (a+b)/(a)" in done.stdout
