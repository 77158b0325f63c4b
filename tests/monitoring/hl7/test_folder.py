"""``listen --folder DIR``: files an interface engine drops, moved to done/ or failed/ with reasons."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, func, select
from sqlmodel import Session

from monitoring.hl7.codes import load_code_map
from monitoring.hl7.folder import process_folder, split_messages
from monitoring.hl7.server import make_storer
from monitoring.models import LabResult
from tests.monitoring.hl7.listener import PROJECT_ROOT
from tests.monitoring.hl7.messages import adt, fixture, obx, oru


def stored(db_url: str) -> int:
    eng = create_engine(db_url)
    with Session(eng) as s:
        n = int(s.execute(select(func.count()).select_from(LabResult)).scalar_one())
    eng.dispose()
    return n


def test_done_failed_and_reasons(db_url: str, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    # One file, two messages (a batch with FHS/BHS headers and LF line ends, as engines write).
    batch = "FHS|^~\\&|LIS\nBHS|^~\\&|LIS\n" + adt().replace("\r", "\n") + oru([obx(1, "1742-6^ALT^LN", "80", "U/L")]).replace("\r", "\n") + "BTS|2\nFTS|1\n"
    (drop / "a_batch.hl7").write_text(batch, encoding="utf-8")
    (drop / "b_review.hl7").write_text(oru([obx(1, "711-2^Eos^LN", "2.1", "mmol/L")], control_id="M-2"), encoding="utf-8")
    (drop / "c_garbage.txt").write_bytes(b"this is not HL7")
    (drop / "d_real.hl7").write_bytes(fixture("nist_oru_lead_final.hl7"))
    (drop / ".partial").write_text("being written", encoding="utf-8")
    eng = create_engine(db_url)
    store = make_storer(eng, load_code_map(), via="folder")
    result = process_folder(drop, store, settle=0.0)
    assert (result.done, result.failed, result.retried) == (3, 1, 0)
    assert sorted(p.name for p in (drop / "done").iterdir()) == ["a_batch.hl7", "b_review.hl7", "b_review.hl7.reason.txt", "d_real.hl7"]
    assert sorted(p.name for p in (drop / "failed").iterdir()) == ["c_garbage.txt", "c_garbage.txt.reason.txt"]
    reason = (drop / "failed" / "c_garbage.txt.reason.txt").read_text(encoding="utf-8")
    assert "c_garbage.txt: message 1 (MSH-10 ?): AR: not an HL7 v2 message" in reason
    review = (drop / "done" / "b_review.hl7.reason.txt").read_text(encoding="utf-8")
    assert "OBX^1^6: OBX-6: unknown unit for eosinophils" in review
    assert (drop / ".partial").exists()  # hidden files are the engine's, never touched
    assert stored(db_url) == 1
    # The same file dropped again: nothing stored twice, moved beside the first with a suffix.
    (drop / "a_batch.hl7").write_text(batch, encoding="utf-8")
    assert process_folder(drop, store, settle=0.0).done == 1
    assert (drop / "done" / "a_batch.hl7.1").exists() and stored(db_url) == 1
    eng.dispose()


def test_a_file_still_being_written_waits(db_url: str, tmp_path: Path) -> None:
    tmp_path = tmp_path / "drop"
    tmp_path.mkdir()
    (tmp_path / "new.hl7").write_text(adt(), encoding="utf-8")
    eng = create_engine(db_url)
    assert process_folder(tmp_path, make_storer(eng, load_code_map()), settle=60.0).done == 0
    assert (tmp_path / "new.hl7").exists()
    eng.dispose()


def test_split_messages_keeps_each_msh() -> None:
    assert len(split_messages((adt() + adt(control_id="ADT-2")).encode())) == 2
    assert split_messages(b"junk\rMSH|x") == [b"junk\rMSH|x"]  # not HL7 before MSH: one unreadable file


def test_command_line_folder_once(db_url: str, tmp_path: Path) -> None:
    tmp_path = tmp_path / "drop"
    tmp_path.mkdir()
    (tmp_path / "one.hl7").write_text(adt() + oru([obx(1, "1742-6^ALT^LN", "80", "U/L")]), encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "monitoring", "--db", db_url, "listen", "--folder", str(tmp_path), "--once"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1 file(s) done, 0 failed, 0 left for the next pass"
    assert stored(db_url) == 1
    missing = subprocess.run(
        [sys.executable, "-m", "monitoring", "--db", db_url, "listen", "--folder", str(tmp_path / "nope")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert missing.returncode == 2 and "not a directory" in missing.stderr
