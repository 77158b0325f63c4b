"""Loading patient records for the engine: complete, ordered, hidden rows out, set-based."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event

from monitoring.records import load_record, load_records
from tests.monitoring.engine_builder import Chart, at, day


def test_unknown_mrn_is_a_lookup_error(session) -> None:
    with pytest.raises(LookupError, match="NOPE"):
        load_record(session, "NOPE")


def test_record_holds_patient_labs_meds_findings(session) -> None:
    c = Chart(session, culprits=["Tegretol", "allopurinol"], baseline_creatinine=0.9, resolved=day(40))
    late = c.lab("alt", at(2, 9), 120, ref_high=35)
    early = c.lab("alt", at(1, 7), 200)
    c.lab("hhv6_pcr", 5, None, value_text="detected")
    c.lab("alt", 3, 999, hidden=True)
    c.dose("prednisone", 2, 40)
    c.dose("Tegretol", -20, 400)
    c.dose("prednisone", 1, 60, hidden=True)
    c.finding("lymphadenopathy", "no", dt.datetime(2026, 3, 3, 9))
    c.finding("lymphadenopathy", "yes", dt.datetime(2026, 3, 4, 9))  # the later entry is in force
    c.finding("biopsy", "unknown", dt.datetime(2026, 3, 1, 9))

    rec = c.record()
    p = rec.patient
    assert p.mrn == c.mrn and p.culprit_drugs == ("Tegretol", "allopurinol") and p.baseline_creatinine_mg_dl == 0.9
    assert p.resolved_date == day(40) and p.onset_date == day(0) and p.weight_kg == 70
    assert [lab.id for lab in rec.labs if lab.test == "alt"] == [early.id, late.id]  # by time, hidden out
    assert rec.labs_by_test["alt"][-1].ref_high == 35
    pcr = rec.labs_by_test["hhv6_pcr"][0]
    assert pcr.value is None and pcr.value_text == "detected"
    assert [(m.drug, m.start_date) for m in rec.meds] == [("carbamazepine", day(-20)), ("prednisone", day(2))]
    assert rec.meds[0].drug_as_entered == "Tegretol"
    assert rec.findings == {"lymphadenopathy": "yes", "biopsy": "unknown"}


def test_results_as_of_count_the_whole_day_and_break_ties_by_id(session) -> None:
    c = Chart(session)
    c.lab("eosinophils", dt.datetime.combine(day(1), dt.time(0, 0)), 0.5)
    first = c.lab("eosinophils", dt.datetime.combine(day(2), dt.time(23, 59, 59, 999999)), 1.0)
    second = c.lab("eosinophils", dt.datetime.combine(day(2), dt.time(23, 59, 59, 999999)), 1.2)
    rec = c.record()
    assert [p.value for p in rec.results("eosinophils", day(1))] == [0.5]
    assert rec.latest("eosinophils", day(2)).id == second.id  # type: ignore[union-attr]
    assert second.id > first.id
    assert rec.latest("eosinophils", day(0)) is None
    assert rec.latest("alt", day(5)) is None


def test_load_records_active_only_and_by_ids(session) -> None:
    a = Chart(session, mrn="A1")
    b = Chart(session, mrn="B1", active=False)
    c = Chart(session, mrn="C1")
    a.lab("alt", 1, 10)
    b.lab("alt", 1, 20)
    c.dose("prednisone", 0, 10)
    assert [r.patient.mrn for r in load_records(session)] == ["A1", "C1"]
    assert [r.patient.mrn for r in load_records(session, active_only=False)] == ["A1", "B1", "C1"]
    only_b = load_records(session, [b.patient.id], active_only=False)  # type: ignore[list-item]
    assert [r.patient.mrn for r in only_b] == ["B1"] and only_b[0].labs[0].value == 20
    assert load_records(session, [b.patient.id]) == []  # type: ignore[list-item]
    assert load_records(session, []) == []
    # An inactive patient is still readable by MRN (the record of a discharged patient).
    assert load_record(session, "B1").patient.active is False


def test_load_records_uses_a_fixed_number_of_queries(session) -> None:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    charts = [Chart(session) for _ in range(3)]
    for i, ch in enumerate(charts):
        ch.lab("alt", 1, 10 + i)
        ch.dose("prednisone", 0, 20)
        ch.finding("biopsy", "yes")
    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        load_records(session)
        few = len(statements)
        more = [Chart(session) for _ in range(12)]
        for ch in more:
            for d in range(5):
                ch.lab("creatinine", d, 1.0)
            ch.dose("prednisone", 0, 20)
        statements.clear()
        records = load_records(session)
        assert len(statements) == few <= 4
        assert len(records) == 15
        statements.clear()
        load_records(session, [ch.patient.id for ch in more])  # type: ignore[misc]
        assert len(statements) == few
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_lab_points_carry_the_stored_values_as_the_orm_reads_them(session) -> None:
    """The lab rows are read past the ORM's row processing (SQLite): every field still equals what
    the ORM reads, times as datetimes to the microsecond, an amendment flagged, '<x' censored."""
    from sqlmodel import select

    from monitoring.models import LabResult

    c = Chart(session)
    exact = c.lab("alt", dt.datetime.combine(day(2), dt.time(7, 5, 9, 123456)), 120.5, ref_high=35)
    same_time = c.lab("ast", exact.taken_at, 80)
    censored = c.lab("troponin_t", dt.datetime.combine(day(1), dt.time(8)), 14)
    censored.comparator = "<"
    amended = c.lab("creatinine", dt.datetime.combine(day(1), dt.time(9, 30)), 1.1)
    amended.amended_at = dt.datetime(2026, 3, 2, 10, 11, 12, 5)
    amended.status = "amended"
    session.add_all([censored, amended])
    session.commit()
    points = {p.id: p for p in c.record().labs}
    for row in session.exec(select(LabResult)).all():
        p = points[row.id]
        assert type(p.taken_at) is dt.datetime and p.taken_at == row.taken_at
        assert (p.test, p.unit, p.original_value, p.original_unit, p.ref_high, p.loinc, p.source, p.status) == (
            row.test, row.unit, row.original_value, row.original_unit, row.ref_high, row.loinc, row.source, row.status
        )
    assert points[exact.id].taken_at == dt.datetime.combine(day(2), dt.time(7, 5, 9, 123456))
    assert points[same_time.id].taken_at == points[exact.id].taken_at and points[exact.id].value == 120.5
    assert points[censored.id].value is None and points[censored.id].censored_value == 14 and points[censored.id].comparator == "<"
    assert points[amended.id].amended and not points[exact.id].amended and points[amended.id].status == "amended"


def test_lab_points_carry_what_the_orm_reads_field_by_field(session) -> None:
    """load_records reads SQLite rows from the cursor and converts the stored times itself
    (records._lab_rows): every LabPoint must hold what the ORM reads for its row (times as
    datetimes, to the microsecond; amended; comparator and status; a '<x' bound kept apart)."""
    from sqlalchemy import select

    from monitoring.models import LabResult, utcnow

    c = Chart(session)
    c.lab("alt", dt.datetime.combine(day(1), dt.time(0, 0)), 40)
    c.lab("alt", dt.datetime.combine(day(1), dt.time(23, 59, 59, 999999)), 90, ref_high=35)
    c.lab("alt", dt.datetime.combine(day(1), dt.time(23, 59, 59, 999999)), 95)  # a tie on the time: by id
    c.lab("eosinophils", dt.datetime(2026, 3, 2, 7, 30, 0, 123456), 1.5)
    amended = c.lab("creatinine", at(2, 8), 1.4)
    amended.amended_at = utcnow()
    censored = c.lab("troponin_i", at(3, 6), 30)
    censored.comparator, censored.original_value = "<", "<30"
    above = c.lab("ferritin", at(3, 6), 16500)
    above.comparator, above.status = ">", "preliminary"
    c.lab("hhv6_pcr", 5, None, value_text="detected")
    session.commit()

    rec = load_records(session, [c.patient.id], active_only=False)[0]  # type: ignore[list-item]
    rows = session.execute(
        select(LabResult).where(LabResult.patient_id == c.patient.id).order_by(LabResult.taken_at, LabResult.id)  # type: ignore[arg-type]
    ).scalars().all()
    assert len(rec.labs) == len(rows) == 8
    for point, row in zip(rec.labs, rows, strict=True):
        assert isinstance(point.taken_at, dt.datetime)
        censored_low = row.comparator in ("<", "<=")
        assert (point.id, point.test, point.taken_at, point.unit, point.value_text, point.original_value) == (
            row.id, row.test, row.taken_at, row.unit, row.value_text, row.original_value
        )
        assert (point.original_unit, point.ref_low, point.ref_high, point.loinc, point.source) == (
            row.original_unit, row.ref_low, row.ref_high, row.loinc, row.source
        )
        assert point.value == (None if censored_low else row.value)
        assert point.censored_value == (row.value if censored_low else None)
        assert (point.amended, point.abnormal_flags, point.comparator, point.status) == (
            row.amended_at is not None, row.abnormal_flags, row.comparator, row.status
        )
    assert [p.amended for p in rec.labs if p.id == amended.id] == [True]
    assert rec.labs_by_test["troponin_i"][0].censored_value == 30
