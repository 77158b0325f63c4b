"""The real listener over a real socket on 127.0.0.1: ACKs, several senders, and faults.

The listener runs as ``python -m monitoring listen`` in a subprocess, on a migrated SQLite file
(WAL) or on PostgreSQL; the tests read the database it wrote, as the dashboard would.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import hl7.client
import pytest
from sqlalchemy import create_engine, func, select
from sqlmodel import Session

from monitoring.hl7.ack import parse_ack
from monitoring.hl7.server import VT, frame
from monitoring.models import Hl7Message, LabResult
from tests.monitoring.hl7.listener import Listener
from tests.monitoring.hl7.messages import adt, obx, oru


def ten_results(control_id: str, mrn: str = "HL7-001") -> str:
    codes = ["1742-6^ALT^LN", "1920-8^AST^LN", "6768-6^ALP^LN", "2324-2^GGT^LN", "1975-2^Bili^LN",
             "2160-0^Creat^LN", "711-2^Eos^LN", "6690-2^WBC^LN", "2276-4^Ferritin^LN", "1988-5^CRP^LN"]
    units = ["U/L", "U/L", "U/L", "U/L", "mg/dL", "mg/dL", "10*9/L", "10*9/L", "ng/mL", "mg/L"]
    values = ["80", "60", "100", "50", "0.9", "1.1", "1.6", "9.5", "700", "12"]
    return oru([obx(k + 1, c, v, u) for k, (c, v, u) in enumerate(zip(codes, values, units, strict=True))],
               control_id=control_id, mrn=mrn, order=f"ORD-{control_id}^LAB")


def count(db_url: str, model: type = LabResult) -> int:
    eng = create_engine(db_url)
    try:
        with Session(eng) as s:
            return int(s.execute(select(func.count()).select_from(model)).scalar_one())
    finally:
        eng.dispose()


@pytest.fixture
def listener(db_url: str, tmp_path: Path) -> Iterator[Listener]:
    lst = Listener(db_url, tmp_path / "listener.log", "--read-timeout", "2", "--max-bytes", "65536").start()
    with lst.connect() as c:
        assert parse_ack(c.send(adt()))[0] == "AA"
    yield lst
    lst.stop()


def test_python_hl7_client_gets_aa_and_the_result_is_stored(listener: Listener, db_url: str) -> None:
    # The library's own client (what the README shows for a test message).
    with hl7.client.MLLPClient("127.0.0.1", listener.port) as client:
        ack = client.send_message(oru([obx(1, "1742-6^ALT^LN", "250", "U/L", flags="H")], control_id="CLIENT-1"))
    code, control_id, text, errors = parse_ack(ack)
    assert (code, control_id, text, errors) == ("AA", "CLIENT-1", "stored 1", [])
    assert count(db_url) == 1
    assert "MSH-10 CLIENT-1: AA stored 1" in listener.log()
    assert "HL7-001" not in listener.log() and "250" not in listener.log()  # no patient data in logs


def test_ae_names_each_obx_sent_to_review(listener: Listener) -> None:
    with listener.connect() as c:
        ack = c.send(oru([obx(1, "1742-6^ALT^LN", "80", "U/L"), obx(2, "711-2^Eos^LN", "2.1", "mmol/L")]))
    code, _cid, text, errors = parse_ack(ack)
    assert code == "AE" and text == "stored 1; 1 to review"
    assert len(errors) == 1 and errors[0].startswith("OBX-6: unknown unit for eosinophils")
    assert b"ERR||OBX^2^6|207^Application internal error^HL70357|E" in ack


def test_several_senders_at_once(listener: Listener, db_url: str) -> None:
    acks: dict[str, str] = {}
    lock = threading.Lock()

    def sender(k: int) -> None:
        with listener.connect() as c:
            for j in range(6):
                cid = f"S{k}-{j}"
                code = parse_ack(c.send(ten_results(cid)))[0]
                with lock:
                    acks[cid] = code

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(acks) == 30 and set(acks.values()) == {"AA"}
    assert count(db_url) == 300


def test_not_mllp_closes_the_connection_and_the_listener_goes_on(listener: Listener) -> None:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert s.recv(100) == b""
    with listener.connect() as c:
        assert parse_ack(c.send(oru([obx(1, "1742-6^ALT^LN", "80", "U/L")])))[0] == "AA"


def test_not_hl7_inside_the_frame_gets_ar(listener: Listener) -> None:
    with listener.connect() as c:
        code, _cid, text, _ = parse_ack(c.send(b"hello, this is not a message"))
        assert code == "AR" and "does not begin with an MSH segment" in text
        # The connection stays usable.
        assert parse_ack(c.send(oru([obx(1, "1742-6^ALT^LN", "80", "U/L")], control_id="AFTER")))[0] == "AA"


def test_oversized_message_gets_ar_naming_it_and_the_connection_closes(listener: Listener, db_url: str) -> None:
    big = oru([obx(k, "1742-6^ALT^LN", "80", "U/L", sub_id=str(k)) for k in range(1, 2000)], control_id="BIG-1")
    assert len(big) > 65536
    with listener.connect() as c:
        c.sock.sendall(frame(big))
        code, cid, text, _ = parse_ack(c.read_ack())
        assert (code, cid) == ("AR", "BIG-1") and "larger than the limit of 65536 bytes" in text
        assert c.closed_by_peer()
    assert count(db_url) == 0


def test_sender_disconnecting_mid_message_stores_nothing(listener: Listener, db_url: str) -> None:
    whole = frame(ten_results("HALF-1"))
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as s:
        s.sendall(whole[: len(whole) // 2])
    time.sleep(0.5)
    assert "closed in the middle of a message; nothing stored" in listener.log()
    assert count(db_url) == 0
    with listener.connect() as c:  # and the same message sent whole later is stored once
        assert parse_ack(c.send(ten_results("HALF-1")))[0] == "AA"
    assert count(db_url) == 10


def test_stalled_sender_is_timed_out_never_a_hang(listener: Listener) -> None:
    with socket.create_connection(("127.0.0.1", listener.port), timeout=10) as s:
        s.sendall(VT + b"MSH|^~\\&|LIS|MAINLAB|")
        started = time.monotonic()
        assert s.recv(100) == b""  # the listener closed it after --read-timeout 2
        assert 1.5 < time.monotonic() - started < 8
    assert "not completed within 2 s" in listener.log()


def test_truncated_frame_then_a_good_one_on_the_same_connection(listener: Listener, db_url: str) -> None:
    # A frame whose end never comes, followed by a fresh start block: garbage is refused, not stored.
    with listener.connect() as c:
        c.sock.sendall(VT + b"MSH|^~\\&|LIS|MAINLAB|D|W|2026||ORU^R01|T1|P|2.5\rPID|1||" + frame(b"MSH|^~\\&|"))
        code, _cid, _text, _ = parse_ack(c.read_ack())
        assert code == "AR"
    assert count(db_url) == 0


def test_database_locked_for_ten_seconds_the_message_waits_and_is_stored(listener: Listener, db_path: Path, db_url: str) -> None:
    locker = sqlite3.connect(db_path, timeout=30)
    locker.execute("BEGIN EXCLUSIVE")
    result: dict[str, object] = {}

    def send() -> None:
        with listener.connect(timeout=120) as c:
            started = time.monotonic()
            result["ack"] = parse_ack(c.send(ten_results("LOCKED-1")))
            result["waited"] = time.monotonic() - started

    t = threading.Thread(target=send)
    t.start()
    time.sleep(10)
    assert "ack" not in result, "acknowledged while the database was locked"
    locker.rollback()
    locker.close()
    t.join(60)
    assert result["ack"] == ("AA", "LOCKED-1", "stored 10", [])
    assert float(result["waited"]) >= 9.5  # type: ignore[arg-type]
    assert count(db_url) == 10


def test_database_locked_beyond_the_wait_gets_ae_and_nothing_is_lost(db_url: str, db_path: Path, tmp_path: Path) -> None:
    lst = Listener(db_url, tmp_path / "short.log", "--store-wait", "1").start()
    try:
        with lst.connect() as c:
            assert parse_ack(c.send(adt()))[0] == "AA"
        locker = sqlite3.connect(db_path, timeout=30)
        locker.execute("PRAGMA busy_timeout = 0")
        locker.execute("BEGIN EXCLUSIVE")
        try:
            with lst.connect(timeout=120) as c:
                code, cid, text, _ = parse_ack(c.send(ten_results("BUSY-1")))
        finally:
            locker.rollback()
            locker.close()
        # SQLite's busy timeout (DRESS_DB_BUSY_TIMEOUT_S) and --store-wait 1 pass; then AE, never AA.
        assert (code, cid) == ("AE", "BUSY-1") and "not stored" in text
        assert count(db_url) == 0
        with lst.connect() as c:  # sent again once the database is free: stored
            assert parse_ack(c.send(ten_results("BUSY-1")))[0] == "AA"
        assert count(db_url) == 10
    finally:
        lst.stop()


def test_sigkill_mid_batch_every_aa_is_stored_and_nothing_half_stored(db_url: str, tmp_path: Path) -> None:
    lst = Listener(db_url, tmp_path / "kill.log").start()
    with lst.connect() as c:
        assert parse_ack(c.send(adt()))[0] == "AA"
    acked: list[str] = []

    def batch() -> None:
        try:
            with lst.connect() as c:
                for k in range(400):
                    cid = f"K-{k}"
                    if parse_ack(c.send(ten_results(cid)))[0] == "AA":
                        acked.append(cid)
        except OSError:
            pass  # the listener died under us

    t = threading.Thread(target=batch)
    t.start()
    while len(acked) < 20:
        time.sleep(0.01)
    lst.kill()
    t.join(30)
    assert 20 <= len(acked) < 400
    eng = create_engine(db_url)
    with Session(eng) as s:
        stored = {m.control_id: m.results_stored for m in s.execute(select(Hl7Message)).scalars()}
        per_order = dict(
            s.execute(select(LabResult.source_id, func.count()).group_by(LabResult.source_id)).all()  # type: ignore[arg-type]
        )
        n_labs = s.execute(select(func.count()).select_from(LabResult)).scalar_one()
    eng.dispose()
    assert set(acked) <= set(stored), "a message acknowledged AA is missing"
    assert all(stored[cid] == 10 for cid in stored if cid.startswith("K-"))
    assert n_labs == 10 * sum(1 for cid in stored if cid.startswith("K-")), "a message was half stored"
    assert all(v == 1 for v in per_order.values())
    # Restarted, the engine sends everything again: what was stored is not stored twice.
    lst2 = Listener(db_url, tmp_path / "kill.log").start()
    try:
        with lst2.connect() as c:
            codes = {parse_ack(c.send(ten_results(f"K-{k}")))[0] for k in range(60)}
        assert codes == {"AA"}
        assert count(db_url) == 10 * max(60, len(stored) - 1)
    finally:
        lst2.stop()


def test_same_message_twice_over_the_wire(listener: Listener, db_url: str) -> None:
    msg = ten_results("TWICE-1")
    with listener.connect() as c:
        first = parse_ack(c.send(msg))
        second = parse_ack(c.send(msg))
    assert first == second == ("AA", "TWICE-1", "stored 10", [])
    assert count(db_url) == 10
    assert "MSH-10 TWICE-1: AA stored 10 (already received)" in listener.log()


def test_listener_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    lst = Listener(pg_url, tmp_path / "pg.log").start()
    try:
        with lst.connect() as c:
            assert parse_ack(c.send(adt()))[0] == "AA"
            assert parse_ack(c.send(ten_results("PG-1")))[0] == "AA"
            assert parse_ack(c.send(ten_results("PG-1")))[0] == "AA"
        assert count(pg_url) == 10
    finally:
        lst.stop()


def test_bad_code_map_stops_the_listener_at_start_up(db_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "codes.toml"
    bad.write_text('[codes]\nALAT = "alt"\nXYZ = "vitamin_q"\n', encoding="utf-8")
    lst = Listener(db_url, tmp_path / "bad.log", env={"DRESS_LAB_CODES": str(bad)})
    with pytest.raises(RuntimeError, match="exited 2"):
        lst.start()
    assert f"{bad}: [codes] code 'XYZ': value 'vitamin_q': unknown catalogue key" in lst.log()
