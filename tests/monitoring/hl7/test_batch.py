"""Messages that waited stored together in one transaction (``Storer.many``, issue 16 performance):
the same answers and the same stored rows as one by one; a failure rolls the transaction back
whole and each message is stored again alone, with its own answer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

import monitoring.hl7.server as server
from monitoring.db import create_db_engine
from monitoring.hl7.ack import parse_ack
from monitoring.hl7.codes import load_code_map
from monitoring.hl7.server import ListenerConfig, Storer, frame, make_storer
from monitoring.models import AlertEpisode, Hl7Message, LabResult, ReviewItem
from monitoring.schema import upgrade
from tests.monitoring.hl7.messages import adt, obx, oru


def _messages() -> list[bytes]:
    alt = oru([obx(1, "1742-6^ALT^LN", "250", "U/L", flags="H"), obx(2, "711-2^Eos^LN", "2.1", "10*9/L")],
              control_id="B-1", order="ORD-B1^LAB")
    corrected = oru([obx(1, "1742-6^ALT^LN", "260", "U/L", status="C")], control_id="B-2", order="ORD-B1^LAB")
    review = oru([obx(1, "711-2^Eos^LN", "2.1", "mmol/L")], control_id="B-3", order="ORD-B3^LAB")
    other = oru([obx(1, "1742-6^ALT^LN", "99", "U/L")], control_id="B-1", order="ORD-X^LAB")  # same MSH-10, other content
    return [m.encode() for m in (adt(), alt, corrected, review, alt, other, "not HL7 at all")]


def _engine(path: Path) -> Engine:
    eng = create_db_engine(f"sqlite:///{path}")
    upgrade(eng)
    return eng


def _stored(eng: Engine) -> dict[str, Any]:
    with Session(eng) as s:
        labs = sorted((r.test, r.value, r.status, r.hidden) for r in s.execute(select(LabResult)).scalars())
        episodes = sorted((e.code, e.state) for e in s.execute(select(AlertEpisode)).scalars())
        n_review = s.execute(select(func.count()).select_from(ReviewItem)).scalar_one()
        n_msgs = s.execute(select(func.count()).select_from(Hl7Message)).scalar_one()
    return {"labs": labs, "episodes": episodes, "review": n_review, "messages": n_msgs}


def _answers(acks: list[tuple[bytes, Any]]) -> list[tuple[str, str, str]]:
    return [parse_ack(ack)[:3] for ack, _o in acks]


def test_together_answers_and_stores_the_same_as_one_by_one(tmp_path: Path) -> None:
    codes = load_code_map()
    one = _engine(tmp_path / "one.db")
    together = _engine(tmp_path / "together.db")
    singly = [make_storer(one, codes)(raw) for raw in _messages()]
    batch = make_storer(together, codes).many(_messages())
    assert _answers(batch) == _answers(singly)
    assert [c for c, _id, _t in _answers(batch)] == ["AA", "AA", "AA", "AE", "AA", "AR", "AR"]
    assert _stored(together) == _stored(one)
    assert _stored(together)["labs"] and _stored(together)["episodes"]


def test_a_failure_inside_the_transaction_stores_each_message_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    codes = load_code_map()
    eng = _engine(tmp_path / "fail.db")
    real = server.store_message
    calls: list[bytes] = []

    def failing(session: Session, raw: bytes, **k: Any) -> Any:
        calls.append(raw)
        if b"|B-3|" in raw:
            raise RuntimeError("a bug in one message")
        return real(session, raw, **k)

    monkeypatch.setattr(server, "store_message", failing)
    msgs = _messages()[:4]
    acks = make_storer(eng, codes).many(msgs)
    assert [c for c, _id, _t in _answers(acks)] == ["AA", "AA", "AA", "AE"]
    assert "internal error" in _answers(acks)[3][2]
    assert len(calls) > len(msgs)  # tried together, then each alone
    stored = _stored(eng)
    assert stored["messages"] == 3 and ("alt", 260.0, "amended", False) in stored["labs"]


def test_the_listener_stores_what_waited_together(tmp_path: Path) -> None:
    """Messages submitted while the worker is busy are handed to ``Storer.many`` together."""
    batches: list[int] = []

    def many(raws: Any) -> list[tuple[bytes, Any]]:
        batches.append(len(raws))
        if len(batches) == 1:
            time.sleep(0.5)  # the first message is being stored: the others arrive meanwhile
        return [(b"ACK" + raw[:3], None) for raw in raws]

    def one(raw: bytes) -> tuple[bytes, Any]:
        return many([raw])[0]

    async def main() -> list[bytes]:
        stop = asyncio.Event()
        ports: list[int] = []
        task = asyncio.create_task(server.serve(ListenerConfig(port=0), Storer(one, many), ready=ports.append, stop=stop))
        while not ports:
            await asyncio.sleep(0.01)
        async def send(k: int) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", ports[0])
            writer.write(frame(f"M{k:02d}".encode()))
            await writer.drain()
            data = await reader.readuntil(b"\x1c\x0d")
            writer.close()
            return data
        first = asyncio.create_task(send(0))
        await asyncio.sleep(0.1)
        answers = [*await asyncio.gather(*(send(k) for k in range(1, 12))), await first]
        stop.set()
        await task
        return list(answers)

    answers = asyncio.run(main())
    assert sorted(answers) == sorted(frame(b"ACKM" + f"{k:02d}".encode()[:2]) for k in range(12))
    assert batches[0] == 1 and sum(batches) == 12  # the first alone, at once
    assert max(batches[1:]) > 1  # those that waited, together


def test_no_statement_of_a_message_reads_the_whole_results_table(tmp_path: Path) -> None:
    # Every query a feed message makes must find its rows by an index: one that scans lab_result
    # costs a hospital database's millions of rows per message (the source-id lookup did).
    from sqlalchemy import event

    codes = load_code_map()
    eng = _engine(tmp_path / "plan.db")
    store = make_storer(eng, codes)
    for raw in _messages()[:3]:
        store(raw)
    seen: list[tuple[str, Any]] = []

    @event.listens_for(eng, "before_cursor_execute")
    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    again = oru([obx(1, "1742-6^ALT^LN", "251", "U/L", flags="H"), obx(2, "711-2^Eos^LN", "2.2", "10*9/L")],
                control_id="B-9", order="ORD-B9^LAB")
    assert parse_ack(store(again.encode())[0])[0] == "AA"
    event.remove(eng, "before_cursor_execute", capture)
    scans = []
    with eng.connect() as conn:
        for statement, parameters in seen:
            plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            scans += [f"{statement.split(chr(10))[0][:80]}: {step}" for step in plan if step.startswith("SCAN lab_result")]
    assert seen and scans == []
