"""The command line of PRODUCT.md §6: exit statuses 0/2/1, messages naming file, row and column,
``patients --json`` and ``labs --mrn --json`` keys, no traceback for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from monitoring.cli import main
from monitoring.db import create_db_engine
from monitoring.models import LabResult, Patient

ROOT = Path(__file__).resolve().parents[2]
PATIENTS = "mrn,name,sex,birth_date,weight_kg,onset_date,culprit_drug\nC1,Synthetic Cli,F,1970-03-02,70,2026-01-10,Tegretol;allopurinol\n"
LABS = (
    "mrn,taken_at,test,value,unit,ref_high\n"
    "C1,2026-01-12T08:00,creatinine,130,umol/L,106\n"
    "C1,2026-01-11T08:00,alt,3.2,ukat/L,0.7\n"
    "C1,2026-01-13,hhv6_pcr,not detected,copies/mL,\n"
)
MEDS = "mrn,start_date,drug,daily_dose,unit\nC1,2026-01-11,prednisone,1,mg/kg\n"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, text in (("patients.csv", PATIENTS), ("labs.csv", LABS), ("meds.csv", MEDS)):
        out[name] = tmp_path / name
        out[name].write_text(text, encoding="utf-8")
    return out


def _count(db_path: Path, table: type) -> int:
    engine = create_db_engine(f"sqlite:///{db_path}")
    with Session(engine) as s:
        n = s.execute(select(func.count()).select_from(table)).scalar_one()
    engine.dispose()
    return int(n)


def test_import_then_patients_and_labs_json(db_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    db = str(db_path)
    assert main(["--db", db, "import", *map(str, files.values())]) == 0
    out = capsys.readouterr().out
    assert "labs: 3 inserted, 0 skipped" in out and "medications: 1 inserted" in out

    assert main(["--db", db, "patients", "--json"]) == 0
    patients = json.loads(capsys.readouterr().out)
    assert len(patients) == 1
    p = patients[0]
    assert {"mrn", "name", "sex", "birth_date", "weight_kg", "onset_date", "culprit_drugs", "resolved_date"} <= set(p)
    assert (p["mrn"], p["birth_date"], p["weight_kg"], p["onset_date"]) == ("C1", "1970-03-02", 70.0, "2026-01-10")
    assert p["culprit_drugs"] == ["carbamazepine", "allopurinol"] and p["resolved_date"] is None

    assert main(["--db", db, "labs", "--mrn", "C1", "--json"]) == 0
    labs = json.loads(capsys.readouterr().out)
    assert [r["test"] for r in labs] == ["alt", "creatinine", "hhv6_pcr"]  # oldest first
    for r in labs:
        assert {"taken_at", "test", "loinc", "value", "unit", "original_value", "original_unit", "ref_high"} <= set(r)
    alt, creat, pcr = labs
    assert alt["taken_at"] == "2026-01-11T08:00:00" and alt["loinc"] == "1742-6"
    assert (alt["value"], alt["unit"], alt["original_value"], alt["original_unit"]) == (pytest.approx(192.0), "U/L", "3.2", "ukat/L")
    assert alt["ref_high"] == pytest.approx(42.0)
    assert creat["value"] == pytest.approx(130 / 88.4) and creat["unit"] == "mg/dL" and creat["ref_high"] == pytest.approx(106 / 88.4)
    assert pcr["value"] is None and pcr["value_text"] == "not detected" and pcr["taken_at"] == "2026-01-13T00:00:00"


def test_labs_json_gives_the_comparator_of_a_censored_result(
    db_path: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Troponin I '<0.03 ng/mL' and ferritin '>1000': `labs --json` says '<' and '>' beside the
    limit (never a bare 30 ng/L a reader would take for a measured value); exact results say null."""
    censored = tmp_path / "censored.csv"
    censored.write_text(
        "mrn,taken_at,test,value,unit\nC1,2026-01-14T08:00,troponin_i,<0.03,ng/mL\nC1,2026-01-14T09:00,ferritin,>1000,ng/mL\n",
        encoding="utf-8",
    )
    db = str(db_path)
    assert main(["--db", db, "import", *map(str, files.values()), str(censored)]) == 0
    capsys.readouterr()
    assert main(["--db", db, "labs", "--mrn", "C1", "--json"]) == 0
    labs = {r["test"]: r for r in json.loads(capsys.readouterr().out)}
    trop, ferritin = labs["troponin_i"], labs["ferritin"]
    assert (trop["comparator"], trop["value"], trop["unit"], trop["original_value"]) == ("<", pytest.approx(30.0), "ng/L", "<0.03")
    assert (ferritin["comparator"], ferritin["value"]) == (">", pytest.approx(1000.0))
    assert labs["alt"]["comparator"] is None and labs["hhv6_pcr"]["comparator"] is None
    assert main(["--db", db, "labs", "--mrn", "C1"]) == 0
    text = capsys.readouterr().out
    assert "troponin_i" in text and "<30 ng/L" in text and ">1000 ng/mL" in text


def test_reimport_reports_skips_and_changes_nothing(db_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--db", str(db_path), "import", *map(str, files.values())]
    assert main(args) == 0
    before = _count(db_path, LabResult)
    capsys.readouterr()
    assert main(args) == 0
    assert "labs: 0 inserted, 3 skipped" in capsys.readouterr().out
    assert _count(db_path, LabResult) == before


def test_bad_input_exits_2_with_one_line_per_problem_and_writes_nothing(
    db_path: Path, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad_labs.csv"
    bad.write_text("mrn,taken_at,test,value,unit\nC1,2026-01-12,creatinine,130,mg/dL\nC1,2026-01-12,alt,5,parsecs\n", encoding="utf-8")
    status = main(["--db", str(db_path), "import", str(files["patients.csv"]), str(bad)])
    assert status == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{bad}: row 2: column value: value '130': ")
    assert err[1].startswith(f"{bad}: row 3: column unit: value 'parsecs': unknown unit for alt")
    assert err[-1] == "import refused: 2 problem(s); nothing was written"
    assert _count(db_path, Patient) == 0


def test_import_json_report(db_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(db_path), "import", "--json", str(files["patients.csv"])]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["result"]["patients_created"] == 1


def test_labs_of_unknown_mrn_exits_2(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", str(db_path), "labs", "--mrn", "NOPE", "--json"]) == 2
    assert "unknown MRN" in capsys.readouterr().err


def test_usage_errors_exit_2(db_path: Path) -> None:
    assert main(["--db", str(db_path), "labs", "--json"]) == 2  # --mrn missing
    assert main(["--db", str(db_path), "no-such-command"]) == 2
    assert main(["--db", str(db_path), "import"]) == 2  # no file


def test_a_database_that_cannot_be_opened_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_db = tmp_path / "garbage.db"
    not_a_db.write_bytes(b"this is not an SQLite database, just text" * 100)
    assert main(["--db", str(not_a_db), "patients", "--json"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_init_creates_and_is_harmless_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "new" / "fresh.db"
    assert main(["--db", str(db), "init"]) == 0
    assert main(["--db", str(db), "init"]) == 0
    assert db.exists() and "schema at revision" in capsys.readouterr().out


def test_database_url_environment_variable_is_used(tmp_path: Path, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "env.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    assert main(["init"]) == 0  # a database file that does not exist is made by init only
    assert main(["import", str(files["patients.csv"])]) == 0
    assert _count(db, Patient) == 1


def test_real_process_exit_statuses_and_no_traceback(tmp_path: Path, files: dict[str, Path]) -> None:
    """As a user runs it: ``python -m monitoring``; 0 on success, 2 on bad input, never a traceback."""
    db = str(tmp_path / "proc.db")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "monitoring", "--db", db, *args], cwd=ROOT, capture_output=True, text=True)

    assert run("init").returncode == 0
    # An empty database says so on stderr, exit 0, stdout empty (issue 18 point 13).
    empty = run("patients")
    assert empty.returncode == 0 and empty.stdout == "" and "no patients in" in empty.stderr
    ok = run("import", str(files["patients.csv"]), str(files["labs.csv"]))
    assert ok.returncode == 0, ok.stderr
    binary = tmp_path / "photo.csv"
    binary.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00")
    bad = run("import", str(binary))
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"{binary}: a binary file") and "Traceback" not in bad.stderr
