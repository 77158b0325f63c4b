"""FHIR R4 export of a patient and the round trip through the importer (PRODUCT.md §6, issue 9)."""

from __future__ import annotations

import datetime as dt
import json
import stat
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from monitoring.db import create_db_engine
from monitoring.demo import load_demo
from monitoring.fhir_export import export_patient_bundle
from monitoring.importers.fhir import import_bundle, parse_bundle_bytes
from monitoring.models import ClinicalFinding, LabResult, MedicationRow, Patient, Photo
from monitoring.records import load_record
from monitoring.rules import evaluate
from monitoring.store import PATIENT_FIELDS, LabIn, MedIn, PatientIn, write_batch
from monitoring.summary import summarise

TODAY = dt.date.today()  # the plan (rows after today) is exported as "intended"
DAY0 = TODAY - dt.timedelta(days=20)


def _at(day: int, hh: int = 8, mm: int = 0) -> dt.datetime:
    return dt.datetime.combine(DAY0 + dt.timedelta(days=day), dt.time(hh, mm))


def _d(day: int) -> dt.date:
    return DAY0 + dt.timedelta(days=day)


@pytest.fixture
def empty_engine() -> Iterator[Engine]:
    """A second, empty database to import an export into."""
    eng = create_db_engine("sqlite://")
    SQLModel.metadata.create_all(eng)
    yield eng
    eng.dispose()


def _chart(session: Session) -> None:
    """A small DRESS chart with every kind of row the export carries."""
    write_batch(
        session,
        patients=[
            PatientIn(
                "EXP-1",
                "Grace Hopper",
                {
                    "sex": "female",
                    "birth_date": dt.date(1961, 12, 9),
                    "weight_kg": 64.5,
                    "onset_date": _d(0),
                    "culprit_drugs": ["carbamazepine", "allopurinol"],
                    "drug_allergies": ["amoxicillin"],
                    "baseline_creatinine_mg_dl": 0.8,
                    "resolved_date": _d(18),
                    "setting": "clinic",
                },
            )
        ],
        labs=[
            LabIn("EXP-1", "alt", _at(0), 312.0, "U/L", "5.2", "ukat/L", loinc="1743-4", ref_high=33.0),
            LabIn("EXP-1", "creatinine", _at(0, 9, 15), 1.9, "mg/dL", "168", "µmol/L", loinc="14682-9", ref_low=0.5, ref_high=1.1),
            LabIn("EXP-1", "eosinophils", _at(1), 2.1, "10^9/L", "2100", "/uL", loinc="711-2"),
            LabIn("EXP-1", "bsa_pct", _at(1, 12), 40.0, "%", "40", "%", source="photo", source_id="photo/3"),
            LabIn("EXP-1", "hhv6_pcr", _at(14), None, "{copies}/mL", "positive", "", value_text="detected"),
            LabIn("EXP-1", "temperature", _at(2, 22, 5), 38.9, "Cel", "102.0", "[degF]", loinc="8310-5"),
            LabIn("EXP-1", "alt", _at(5), 150.0, "U/L", "150", "U/L", loinc="1742-6", source="fhir", source_id="obs-77"),
            LabIn("EXP-1", "alt", _at(6), 999.0, "U/L", "999", "U/L", loinc="1742-6"),  # hidden below: entered in error
        ],
        meds=[
            MedIn("EXP-1", "methylprednisolone", "Solu-Medrol", _d(1), 80.0, "1.25", "mg/kg", route="intravenous"),
            MedIn("EXP-1", "prednisone", "prednisone", _d(6), 60.0, "60", "mg", route="oral"),
            MedIn("EXP-1", "methylprednisolone", "Solu-Medrol", _d(6), 0.0, "0", "mg", route="intravenous"),
            MedIn("EXP-1", "prednisone", "prednisone", _d(30), 40.0, "40", "mg", route="oral"),  # the plan
            MedIn("EXP-1", "omeprazole", "Prilosec", _d(1), 20.0, "20", "mg"),
        ],
    )
    pid = session.execute(select(Patient.id).where(Patient.mrn == "EXP-1")).scalar_one()
    session.execute(update(LabResult).where(LabResult.value == 999.0).values(hidden=True, hidden_reason="wrong patient"))  # type: ignore[arg-type]
    session.add(ClinicalFinding(patient_id=pid, item="lymphadenopathy", value="yes", note="neck and groin",
                                recorded_at=dt.datetime(2026, 3, 3, 10, 0, 5), recorded_by="dr.a"))
    session.add(Photo(patient_id=pid, taken_on=_d(1), body_site="trunk", bsa_pct=40.0, note="morbilliform",
                      thumbnail=b"thumbnail bytes are never exported", width=1200, height=900, size_bytes=345678,
                      pixel_sha256="ab" * 32))
    session.commit()


def test_export_is_a_valid_r4_collection_with_every_part(session: Session) -> None:
    from fhir.resources.R4B.bundle import Bundle

    _chart(session)
    bundle = export_patient_bundle(session, "EXP-1")
    Bundle.model_validate(json.loads(json.dumps(bundle)))  # every resource against the R4 model
    assert bundle["type"] == "collection"
    resources = [e["resource"] for e in bundle["entry"]]
    assert len({e["fullUrl"] for e in bundle["entry"]}) == len(resources)
    types = Counter(r["resourceType"] for r in resources)
    assert types == {"Patient": 1, "Condition": 1, "AllergyIntolerance": 3, "Observation": 9, "MedicationStatement": 5, "Media": 1}

    patient = resources[0]
    assert patient["identifier"][0]["type"]["coding"][0]["code"] == "MR" and patient["identifier"][0]["value"] == "EXP-1"
    condition = next(r for r in resources if r["resourceType"] == "Condition")
    assert condition["code"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "D72.12",
        "display": "Drug rash with eosinophilia and systemic symptoms syndrome",
    }
    assert (condition["onsetDateTime"], condition["abatementDateTime"]) == (_d(0).isoformat(), _d(18).isoformat())
    dress = [r["code"]["text"] for r in resources if r["resourceType"] == "AllergyIntolerance" and r.get("reaction")]
    assert sorted(dress) == ["allopurinol", "carbamazepine"]

    obs = {r["code"]["text"]: r for r in resources if r["resourceType"] == "Observation" and r["status"] == "final"}
    assert obs["Eosinophils"]["valueQuantity"] == {"value": 2.1, "unit": "10^9/L", "system": "http://unitsofmeasure.org", "code": "10*9/L"}
    assert obs["Eosinophils"]["code"]["coding"][0] == {"system": "http://loinc.org", "code": "711-2", "display": "Eosinophils"}
    assert obs["Creatinine"]["code"]["coding"][0]["code"] == "14682-9"  # the LOINC code as received
    assert obs["Rash BSA %"]["code"]["coding"] == [{"system": "urn:dress-monitor:test", "code": "bsa_pct", "display": "Rash BSA %"}]
    # "photo/3" is not a FHIR id: the product's row identity travels as an identifier
    assert "id" not in obs["Rash BSA %"] and obs["Rash BSA %"]["identifier"] == [{"system": "urn:dress-monitor:source-id", "value": "photo/3"}]
    from_fhir = [r for r in resources if r.get("identifier") == [{"system": "urn:dress-monitor:source-id", "value": "obs-77"}]]
    assert [r.get("id") for r in from_fhir] == ["obs-77"]  # a result that came by FHIR keeps its resource id
    assert obs["Creatinine"]["referenceRange"] == [
        {"low": {"value": 0.5, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
         "high": {"value": 1.1, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}
    ]
    assert obs["Creatinine"]["effectiveDateTime"].startswith(_at(0, 9, 15).isoformat())
    assert obs["HHV-6 PCR"]["valueCodeableConcept"]["coding"][0]["code"] == "260373001"
    hidden = [r for r in resources if r["resourceType"] == "Observation" and r["status"] == "entered-in-error"]
    assert len(hidden) == 1 and hidden[0]["note"] == [{"text": "hidden: wrong patient"}]
    finding = next(r for r in resources if r["resourceType"] == "Observation" and r["code"]["coding"][0]["system"] == "urn:dress-monitor:finding")
    assert (finding["valueString"], finding["effectiveDateTime"]) == ("yes", "2026-03-03T10:00:05+00:00")

    statements = sorted((r["effectivePeriod"]["start"], r["medicationCodeableConcept"]["text"], r["status"],
                         r["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"]) for r in resources if r["resourceType"] == "MedicationStatement")
    assert statements == [
        (_d(1).isoformat(), "methylprednisolone", "active", 80),
        (_d(1).isoformat(), "omeprazole", "active", 20),
        (_d(6).isoformat(), "methylprednisolone", "stopped", 0),
        (_d(6).isoformat(), "prednisone", "active", 60),
        (_d(30).isoformat(), "prednisone", "intended", 40),
    ]
    media = next(r for r in resources if r["resourceType"] == "Media")
    assert media["bodySite"] == {"text": "trunk"} and media["createdDateTime"] == _d(1).isoformat()
    assert media["extension"] == [{"url": "urn:dress-monitor:extension:bsa-percent", "valueDecimal": 40}]
    assert "data" not in media["content"] and "url" not in media["content"]


def _patient_row(session: Session, mrn: str) -> dict[str, Any]:
    p = session.execute(select(Patient).where(Patient.mrn == mrn)).scalar_one()
    return {k: getattr(p, k) for k in ("mrn", *PATIENT_FIELDS, "drug_allergies")}


def _lab_rows(session: Session, mrn: str) -> list[tuple[Any, ...]]:
    rows = session.execute(
        select(LabResult).join(Patient).where(Patient.mrn == mrn, LabResult.hidden.is_(False))  # type: ignore[attr-defined]
    ).scalars()
    return sorted(
        ((r.test, r.taken_at, r.value, r.unit, r.value_text, r.original_value, r.original_unit, r.ref_low, r.ref_high, r.loinc,
          r.source_id)
         for r in rows),
        key=repr,
    )


def _med_rows(session: Session, mrn: str) -> list[tuple[Any, ...]]:
    rows = session.execute(select(MedicationRow).join(Patient).where(Patient.mrn == mrn)).scalars()
    return sorted(
        (m.drug, m.drug_as_entered, m.start_date, m.daily_dose_mg, m.dose_as_entered, m.unit_as_entered, m.route)
        for m in rows
        if not m.hidden
    )


def _finding_rows(session: Session, mrn: str) -> list[tuple[Any, ...]]:
    rows = session.execute(select(ClinicalFinding).join(Patient).where(Patient.mrn == mrn)).scalars()
    return sorted((f.item, f.value, f.note, f.recorded_at) for f in rows)


def _without_row_ids(value: Any) -> Any:
    """Alerts and summaries name the database rows behind them; ids differ between two databases."""
    if isinstance(value, dict):
        return {k: _without_row_ids(v) for k, v in value.items() if k not in ("row_id", "row_ids", "photo_id", "id")}
    if isinstance(value, list | tuple):
        return [_without_row_ids(v) for v in value]
    return value


def _round_trip(source: Session, target_engine: Engine, mrn: str, tmp_path: Path) -> int:
    """Export, import into the target, compare; returns the number of alerts compared."""
    path = tmp_path / f"{mrn}.json"
    path.write_text(json.dumps(export_patient_bundle(source, mrn)), encoding="utf-8")
    with Session(target_engine, expire_on_commit=False) as target:
        import_bundle(target, path, username="tester", as_of=TODAY + dt.timedelta(days=1))
        target.commit()
        assert _patient_row(target, mrn) == _patient_row(source, mrn)
        assert _lab_rows(target, mrn) == _lab_rows(source, mrn)
        assert _med_rows(target, mrn) == _med_rows(source, mrn)
        assert _finding_rows(target, mrn) == _finding_rows(source, mrn)
        a, b = load_record(source, mrn), load_record(target, mrn)
        dates = sorted({TODAY, *(m.start_date for m in a.meds), *(lab.taken_at.date() for lab in a.labs[::7])})
        compared = 0
        for as_of in dates:
            alerts_a = _without_row_ids([x.to_dict() for x in evaluate(a, as_of)])
            alerts_b = _without_row_ids([x.to_dict() for x in evaluate(b, as_of)])
            assert alerts_a == alerts_b, f"{mrn} alerts as of {as_of}"
            compared += len(alerts_a)
            assert _without_row_ids(summarise(a, as_of)) == _without_row_ids(summarise(b, as_of)), f"{mrn} summary as of {as_of}"
        # importing the export again changes nothing
        again = import_bundle(target, path, username="tester", as_of=TODAY + dt.timedelta(days=1))
        assert (again.labs_inserted, again.meds_inserted, again.patients_created, again.patients_updated) == (0, 0, 0, 0)
        target.rollback()
    # and importing it back into the database it came from changes nothing either
    before = (_patient_row(source, mrn), _lab_rows(source, mrn), _med_rows(source, mrn), _finding_rows(source, mrn))
    back = import_bundle(source, path, username="tester", as_of=TODAY + dt.timedelta(days=1))
    assert (back.labs_inserted, back.meds_inserted, back.patients_created, back.patients_updated) == (0, 0, 0, 0)
    source.flush()
    assert (_patient_row(source, mrn), _lab_rows(source, mrn), _med_rows(source, mrn), _finding_rows(source, mrn)) == before
    source.rollback()
    return compared


def test_round_trip_of_a_full_chart(session: Session, empty_engine: Engine, tmp_path: Path) -> None:
    _chart(session)
    assert _round_trip(session, empty_engine, "EXP-1", tmp_path) > 0


def test_round_trip_of_every_demo_patient(session: Session, empty_engine: Engine, tmp_path: Path) -> None:
    load_demo(session, today=TODAY)
    session.commit()
    mrns = list(session.execute(select(Patient.mrn).order_by(Patient.mrn)).scalars())
    assert len(mrns) >= 5
    compared = {mrn: _round_trip(session, empty_engine, mrn, tmp_path) for mrn in mrns}
    assert sum(1 for n in compared.values() if n) >= 5, compared  # the comparison is not of empty lists


def test_drug_allergies_are_exported_as_allergies_and_come_back_as_allergies_not_culprits(
    session: Session, empty_engine: Engine, tmp_path: Path
) -> None:
    _chart(session)
    bundle = export_patient_bundle(session, "EXP-1")
    allergies = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "AllergyIntolerance"]
    by_drug = {a["code"]["text"]: a for a in allergies}
    assert sorted(by_drug) == ["allopurinol", "amoxicillin", "carbamazepine"]
    assert by_drug["amoxicillin"]["category"] == ["medication"]
    assert "reaction" not in by_drug["amoxicillin"]  # no DRESS reaction: an allergy, not a culprit
    path = tmp_path / "EXP-1.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    with Session(empty_engine) as target:
        import_bundle(target, path, username="tester", as_of=TODAY + dt.timedelta(days=1))
        target.commit()
        p = target.execute(select(Patient).where(Patient.mrn == "EXP-1")).scalar_one()
        assert p.drug_allergies == ["amoxicillin"]
        assert sorted(p.culprit_drugs or []) == ["allopurinol", "carbamazepine"]


def test_hidden_rows_are_exported_as_entered_in_error_and_not_imported(session: Session) -> None:
    _chart(session)
    data = json.dumps(export_patient_bundle(session, "EXP-1")).encode()
    parsed = parse_bundle_bytes(data, "EXP-1.json", as_of=TODAY)
    assert parsed.problems == []
    assert 999.0 not in [lab.value for lab in parsed.labs]
    assert parsed.skip_reasons["Observation: status entered-in-error"] == 1
    assert parsed.skipped["Media"] == 1


def test_unknown_mrn_is_a_lookup_error(session: Session) -> None:
    with pytest.raises(LookupError):
        export_patient_bundle(session, "NOBODY")


def test_cli_export_then_import_into_an_empty_database(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from monitoring.cli import main

    source = create_db_engine(db_url)
    with Session(source) as s:
        _chart(s)
    source.dispose()
    out = tmp_path / "out" / "exp-1.json"
    assert main(["--db", db_url, "export", "--mrn", "EXP-1", "--fhir", str(out)]) == 0
    assert "20 resources" in capsys.readouterr().out
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # patient data: the owner only

    assert main(["--db", db_url, "export", "--mrn", "NOBODY", "--fhir", str(tmp_path / "x.json")]) == 2
    assert "--mrn: value 'NOBODY': no patient with this MRN" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()

    other = tmp_path / "other.db"
    assert main(["--db", str(other), "init"]) == 0
    assert main(["--db", str(other), "import", str(out)]) == 0
    capsys.readouterr()
    assert main(["--db", str(other), "labs", "--mrn", "EXP-1", "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert main(["--db", db_url, "labs", "--mrn", "EXP-1", "--json"]) == 0
    original = json.loads(capsys.readouterr().out)
    def same(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:  # the source and row id differ by design
        return [{k: v for k, v in r.items() if k not in ("id", "source")} for r in rows]

    assert same(imported) == same(original) and len(original) == 7


def test_json_bytes_for_the_download_button_import_cleanly(session: Session) -> None:
    from monitoring.fhir_export import export_patient_json

    _chart(session)
    data = export_patient_json(session, "EXP-1")
    assert json.loads(data)["resourceType"] == "Bundle"
    parsed = parse_bundle_bytes(data, "EXP-1.json", as_of=TODAY)
    assert parsed.problems == []
    assert sorted(lab.test for lab in parsed.labs) == ["alt", "alt", "bsa_pct", "creatinine", "eosinophils", "hhv6_pcr", "temperature"]


def test_clock_times_survive_the_servers_time_zone_and_its_dst_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from monitoring.fhir_export import _local_datetime

    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        gap = _local_datetime(dt.datetime(2026, 3, 29, 2, 30))  # a clock time that never happened there
        assert gap in ("2026-03-29T02:30:00+01:00", "2026-03-29T02:30:00+02:00")
        assert _local_datetime(dt.datetime(2026, 7, 1, 8, 15, 0, 500)) == "2026-07-01T08:15:00.000500+02:00"
        assert _local_datetime(dt.datetime(2026, 12, 1, 23, 59, 59)) == "2026-12-01T23:59:59+01:00"
    finally:
        monkeypatch.undo()
        time.tzset()
