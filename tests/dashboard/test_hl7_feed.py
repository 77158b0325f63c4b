"""The ward shows a result seconds after its HL7 message, with the listener in another process.

The listener (``python -m monitoring listen``, a subprocess) writes; this process reads through the
dashboard's own data path (data version, cached ward rows, the timeline table), as a Streamlit
session beside it would on its next rerun. SQLite in WAL mode and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dashboard import store, timeline_model, ward_model
from monitoring.hl7.ack import parse_ack
from tests.monitoring.hl7.listener import Listener
from tests.monitoring.hl7.messages import adt, obx, oru


def _round_trip(url: str, log: Path) -> None:
    lst = Listener(url, log).start()
    try:
        with lst.connect() as c:
            assert parse_ack(c.send(adt(mrn="FEED-1", name="SYNTHETIC^FEED")))[0] == "AA"
        eng = store._engine(url)
        today = dt.date.today()
        before = store.data_version(eng)
        rows = {r.mrn: r for r in ward_model.ward_rows(url, today)}
        assert "FEED-1" in rows and rows["FEED-1"].changes.get("alt") is None
        with lst.connect() as c:
            ack = c.send(oru([obx(1, "1742-6^ALT^LN", "250", "U/L", ref="7-56", flags="H")], mrn="FEED-1", control_id="FEED-MSG-1"))
        assert parse_ack(ack)[0] == "AA"
        after = store.data_version(eng)
        assert after != before, "the dashboard's data version did not see the other process's write"
        rows = {r.mrn: r for r in ward_model.ward_rows(url, today)}
        change = rows["FEED-1"].changes.get("alt")
        assert change is not None and change.value == pytest.approx(250.0)
        assert any(code == "HEPATIC_INVOLVEMENT" for _sev, code in rows["FEED-1"].alerts)
        record = store.patient_record(url, after, "FEED-1")
        assert record is not None
        table = timeline_model.timeline_table(record, store.profile(), today)
        assert list(table["laboratory flag"]) == ["H"]
        assert list(table["as received"]) == ["250 U/L"]
    finally:
        lst.stop()
        store.clear_caches()


def test_ward_sees_the_listener_on_sqlite(db_url: str, tmp_path: Path) -> None:
    _round_trip(db_url, tmp_path / "listener.log")


def test_ward_sees_the_listener_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    _round_trip(pg_url, tmp_path / "listener.log")
