"""FHIR R4 Bundle import (PRODUCT.md §6, issue 9): real Synthea bundles and hand-made ones."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlmodel import Session

from monitoring import catalogue
from monitoring.importers import import_files
from monitoring.importers.fhir import (
    EXT,
    LOCAL_TEST_SYSTEM,
    import_bundle,
    parse_bundle,
    parse_bundle_bytes,
)
from monitoring.models import ClinicalFinding, LabResult, MedicationRow, Patient
from monitoring.store import BatchRejected, LabIn, PatientIn, write_batch
from tests.conftest import FHIR_FIXTURES

TODAY = dt.date(2026, 11, 24)
AUSTIN = "Austin_Spencer_29195483-ce99-4a73-9cee-2d6728078472.json"
BEATRIZ = "Beatriz_Salazar_c837db1d-d74b-4707-be68-b87bb25b4504.json"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
MR_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}

needs_fixtures = pytest.mark.skipif(
    not FHIR_FIXTURES.is_dir(),
    reason=f"the shared Synthea FHIR fixtures are not at {FHIR_FIXTURES} (a clone without ../shared); CI has them",
)


# --- real Synthea bundles -------------------------------------------------------------------

# catalogue key -> LOINC codes the Synthea bundles use for it (read independently of the catalogue)
SYNTHEA_TESTS = {
    "alt": "1742-6",
    "ast": "1920-8",
    "alp": "6768-6",
    "bilirubin": "1975-2",
    "creatinine": "38483-4",
    "weight": "29463-7",
}
CANONICAL = {"alt": "U/L", "ast": "U/L", "alp": "U/L", "bilirubin": "mg/dL", "creatinine": "mg/dL", "weight": "kg"}


def _expected_from_json(path: Path) -> dict[str, list[tuple[dt.datetime, float, str]]]:
    """Per test: (clock time as recorded, value, resource id), read with plain json, no product code."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, list[tuple[dt.datetime, float, str]]] = {k: [] for k in SYNTHEA_TESTS}
    by_code = {code: key for key, code in SYNTHEA_TESTS.items()}
    for entry in doc["entry"]:
        r = entry["resource"]
        if r["resourceType"] != "Observation" or r.get("status") in ("entered-in-error", "cancelled"):
            continue
        for coding in r["code"]["coding"]:
            key = by_code.get(coding["code"]) if coding.get("system") == LOINC else None
            if key:
                assert r["valueQuantity"]["code"] == CANONICAL[key]  # the fixtures send canonical units
                when = dt.datetime.fromisoformat(r["effectiveDateTime"][:19])  # the clock time as written
                out[key].append((when, float(r["valueQuantity"]["value"]), r["id"]))
    return out


@needs_fixtures
@pytest.mark.parametrize(
    ("name", "counts"),
    [(AUSTIN, {"alt": 10, "creatinine": 10, "weight": 10}), (BEATRIZ, {"alt": 8, "creatinine": 16, "weight": 8})],
)
def test_synthea_results_arrive_with_value_unit_and_date(session: Session, name: str, counts: dict[str, int]) -> None:
    path = FHIR_FIXTURES / name
    expected = _expected_from_json(path)
    for key, n in counts.items():  # the fixture README's counts
        assert len(expected[key]) == n

    report = import_files(session, [path], username="tester")
    assert report.ok, report.problem_lines()

    doc = json.loads(path.read_text(encoding="utf-8"))
    patient_res = next(e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient")
    mr = next(i["value"] for i in patient_res["identifier"] if i.get("type", {}).get("coding", [{}])[0].get("code") == "MR")
    patient = session.execute(select(Patient).where(Patient.mrn == mr)).scalar_one()
    assert patient.name == " ".join([*patient_res["name"][0]["given"], patient_res["name"][0]["family"]])
    assert patient.sex == patient_res["gender"]
    assert patient.birth_date == dt.date.fromisoformat(patient_res["birthDate"])

    for key in SYNTHEA_TESTS:
        rows = session.execute(
            select(LabResult).where(LabResult.patient_id == patient.id, LabResult.test == key).order_by(LabResult.taken_at)
        ).scalars().all()
        got = sorted((r.taken_at, r.value, r.source_id) for r in rows)
        assert got == sorted(expected[key]), key
        assert {r.unit for r in rows} == {CANONICAL[key]}
        assert all(r.source == "fhir" and r.loinc == SYNTHEA_TESTS[key] for r in rows)

    latest_weight = max(expected["weight"])
    assert patient.weight_kg == pytest.approx(latest_weight[1])


@needs_fixtures
@pytest.mark.parametrize("name", [AUSTIN, BEATRIZ])
def test_synthea_skipped_resources_are_counted_per_type(session: Session, name: str) -> None:
    path = FHIR_FIXTURES / name
    doc = json.loads(path.read_text(encoding="utf-8"))
    types = Counter(e["resource"]["resourceType"] for e in doc["entry"])
    used_obs = sum(
        1
        for e in doc["entry"]
        if e["resource"]["resourceType"] == "Observation"
        and any(c["code"] in catalogue._BY_LOINC for c in e["resource"]["code"]["coding"])
    )
    report = import_files(session, [path], username="tester")
    assert report.ok, report.problem_lines()
    skipped = report.files[0].skipped_resources
    for rtype in ("Claim", "Encounter", "ExplanationOfBenefit", "Immunization", "Organization"):
        assert skipped[rtype] == types[rtype]
    # A DiagnosticReport is read when one of its results is a catalogue test (it gives them its time).
    by_ref = {f"Observation/{e['resource']['id']}": e["resource"] for e in doc["entry"]} | {
        e["fullUrl"]: e["resource"] for e in doc["entry"] if e.get("fullUrl")}
    reports = [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    used_reports = sum(
        1 for r in reports
        if any(c["code"] in catalogue._BY_LOINC for ref in r.get("result", []) for c in
               by_ref.get(ref["reference"], {}).get("code", {}).get("coding", []))
    )
    assert skipped.get("DiagnosticReport", 0) == types["DiagnosticReport"] - used_reports
    assert skipped["Observation"] == types["Observation"] - used_obs
    # every MedicationRequest is either on the schedule or counted as skipped (Synthea's have no unit)
    used_orders = set(session.execute(select(MedicationRow.source_id)).scalars())
    assert skipped.get("MedicationRequest", 0) + len(used_orders) == types["MedicationRequest"]
    assert sum(skipped.values()) + used_obs + used_reports + len(used_orders) + types["Patient"] == sum(types.values())
    summary = "\n".join(report.summary_lines())
    assert f"Claim {types['Claim']}" in summary
    assert f"skipped: MedicationRequest: no dose ({skipped['MedicationRequest']})" in summary  # skipped with the reason


@needs_fixtures
def test_synthea_reimport_changes_nothing(session: Session) -> None:
    paths = [FHIR_FIXTURES / AUSTIN, FHIR_FIXTURES / BEATRIZ]
    first = import_files(session, paths, username="tester")
    assert first.ok, first.problem_lines()
    assert first.result is not None and first.result.labs_inserted > 0
    counts = [session.execute(select(func.count()).select_from(t)).scalar_one() for t in (Patient, LabResult, MedicationRow)]
    again = import_files(session, paths, username="tester")
    assert again.ok, again.problem_lines()
    assert again.result is not None
    assert again.result.labs_inserted == 0 and again.result.meds_inserted == 0
    assert again.result.patients_created == 0 and again.result.patients_updated == 0
    assert [session.execute(select(func.count()).select_from(t)).scalar_one() for t in (Patient, LabResult, MedicationRow)] == counts


@needs_fixtures
def test_synthea_bundle_parses_quickly() -> None:
    import time

    parse_bundle(FHIR_FIXTURES / BEATRIZ)  # model classes imported once per process
    start = time.perf_counter()
    parsed = parse_bundle(FHIR_FIXTURES / AUSTIN)
    elapsed = time.perf_counter() - start
    assert parsed.ok
    assert elapsed < 3.0, f"a 1.5 MB bundle took {elapsed:.2f} s"


# --- hand-made bundles ------------------------------------------------------------------------


def _patient(pid: str = "p1", mrn: str = "MRN-1", **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": "urn:other", "value": "X-" + mrn}, {"type": MR_TYPE, "value": mrn}],
        "name": [{"use": "official", "given": ["Ada"], "family": "Lovelace"}],
        "gender": "female",
        "birthDate": "1970-01-02",
    }
    res.update(extra)
    return res


def _obs(oid: str, loinc: str, value: Any, unit: str, when: str = "2026-03-05T08:30:00+01:00", **extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
    }
    if value is not None:
        res["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    res.update(extra)
    return res


def _bundle(*resources: dict[str, Any], btype: str = "collection", urls: bool = False) -> dict[str, Any]:
    entries = []
    for r in resources:
        e: dict[str, Any] = {"resource": r}
        if urls:
            e["fullUrl"] = f"urn:uuid:00000000-0000-4000-8000-{abs(hash(r.get('id', id(r)))) % 10**12:012d}"
        entries.append(e)
    return {"resourceType": "Bundle", "type": btype, "entry": entries}


def _write(tmp_path: Path, doc: dict[str, Any] | str, name: str = "bundle.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def _import(session: Session, tmp_path: Path, doc: dict[str, Any], name: str = "bundle.json") -> Any:
    result = import_bundle(session, _write(tmp_path, doc, name), username="tester", as_of=TODAY)
    session.commit()
    return result


def _rows(session: Session, model: type) -> list[Any]:
    return list(session.execute(select(model)).scalars())


def _refused(session: Session, tmp_path: Path, doc: dict[str, Any] | str, name: str = "bundle.json") -> list[str]:
    path = _write(tmp_path, doc, name)
    report = import_files(session, [path], username="tester", as_of=TODAY)
    assert not report.ok
    assert _rows(session, Patient) == [] and _rows(session, LabResult) == [] and _rows(session, MedicationRow) == []
    return report.problem_lines()


def test_observation_values_units_times_and_reference_range(session: Session, tmp_path: Path) -> None:
    doc = _bundle(
        _patient(),
        # µmol/L converted to mg/dL, its reference range too; the offset is dropped, the clock time kept
        _obs("cr1", "14682-9", 176.8, "umol/L", referenceRange=[{"high": {"value": 110, "unit": "umol/L", "system": UCUM, "code": "umol/L"}}]),
        _obs("alt1", "1742-6", 84, "U/L", when="2026-03-05T23:10:00-07:00"),
        # two results at the same time with different ids: both kept (real EHR data has them)
        _obs("alt2", "1742-6", 86, "U/L", when="2026-03-05T23:10:00-07:00"),
        _obs("eo1", "711-2", 1200, "/uL", when="2026-03-06"),
        {**_obs("cmv1", "29604-6", None, ""), "valueCodeableConcept": {"text": "Detected"}},
        {**_obs("cmv2", "72493-0", None, "", when="2026-03-07T09:00:00Z"), "valueString": "not detected"},
    )
    result = _import(session, tmp_path, doc)
    assert result.labs_inserted == 6
    rows = {r.source_id: r for r in _rows(session, LabResult)}
    cr = rows["cr1"]
    assert (cr.test, cr.unit, cr.original_value, cr.original_unit) == ("creatinine", "mg/dL", "176.8", "umol/L")
    assert cr.value == pytest.approx(2.0)
    assert cr.ref_high == pytest.approx(110 / 88.4)
    assert cr.taken_at == dt.datetime(2026, 3, 5, 8, 30)
    assert rows["alt1"].taken_at == rows["alt2"].taken_at == dt.datetime(2026, 3, 5, 23, 10)
    assert (rows["alt1"].value, rows["alt2"].value) == (84, 86)
    assert rows["eo1"].value == pytest.approx(1.2) and rows["eo1"].unit == "10^9/L"
    assert rows["eo1"].taken_at == dt.datetime(2026, 3, 6, 0, 0)
    assert (rows["cmv1"].value, rows["cmv1"].value_text) == (None, "detected")
    assert rows["cmv2"].value_text == "not detected"

    again = _import(session, tmp_path, doc)
    assert again.labs_inserted == 0 and again.labs_skipped == 6


def test_entered_in_error_cancelled_and_uncatalogued_are_counted_not_errors(tmp_path: Path) -> None:
    doc = _bundle(
        _patient(),
        _obs("a", "1742-6", 50, "U/L", status="entered-in-error"),
        _obs("b", "1742-6", 51, "U/L", status="cancelled"),
        # not in the catalogue, and malformed: unused resources are never validated, never an error
        _obs("c", "8302-2", 180, "cm", bogusElement=True),
        {"resourceType": "Claim", "id": "x", "nonsense": 1},
        _obs("d", "1742-6", 52, "U/L"),
    )
    parsed = parse_bundle(_write(tmp_path, doc), as_of=TODAY)
    assert parsed.problems == []
    assert [lab.source_id for lab in parsed.labs] == ["d"]
    assert parsed.skipped == {"Observation": 3, "Claim": 1}
    assert parsed.skip_reasons["Observation: status entered-in-error"] == 1
    assert parsed.skip_reasons["Observation: code not in the catalogue of tests"] == 1


def test_unknown_unit_is_refused_with_the_resource_named_and_nothing_written(session: Session, tmp_path: Path) -> None:
    doc = _bundle(_patient(), _obs("good", "1742-6", 40, "U/L"), _obs("abc", "1742-6", 3.1, "mmol/L"))
    lines = _refused(session, tmp_path, doc, "labs.json")
    assert any(
        "labs.json: Observation/abc (entry[2])" in line and "valueQuantity" in line and "'mmol/L'" in line and "alt" in line
        for line in lines
    ), lines
    with pytest.raises(BatchRejected) as caught:
        import_bundle(session, tmp_path / "labs.json", as_of=TODAY)
    assert [p.column for p in caught.value.problems] == ["valueQuantity.unit"]
    assert _rows(session, LabResult) == []


def test_physiological_bounds_future_dates_and_invalid_resources_are_problems(session: Session, tmp_path: Path) -> None:
    doc = _bundle(
        _patient(),
        _obs("big", "2160-0", 180, "mg/dL"),  # µmol/L sent as mg/dL
        _obs("future", "1742-6", 40, "U/L", when="2099-01-01T08:00:00Z"),
        _obs("bad", "1742-6", 40, "U/L", status="bogus"),
        _obs("partial", "1742-6", 40, "U/L", when="2026-03"),
    )
    lines = _refused(session, tmp_path, doc)
    text = "\n".join(lines)
    assert "Observation/big (entry[1]): column valueQuantity.value: value '180'" in text and "physiological" in text
    assert "Observation/future (entry[2]): column effectiveDateTime" in text and "future" in text
    assert "Observation/bad (entry[3]): column status: value 'bogus'" in text
    assert "Observation/partial (entry[4])" in text


def test_references_resolve_by_id_full_url_and_identifier(session: Session, tmp_path: Path) -> None:
    write_batch(session, patients=[PatientIn("STORED-9", "Stored Patient")])
    session.commit()
    pat = _patient(pid="p1", mrn="MRN-1")
    doc = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111", "resource": pat, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {**_obs("o1", "1742-6", 40, "U/L"), "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}}},
            {"resource": {**_obs("o2", "1742-6", 41, "U/L"), "subject": {"reference": "Patient/p1"}}},
            {"resource": {**_obs("o3", "1742-6", 42, "U/L"), "subject": {"identifier": {"value": "STORED-9"}}}},
            {"request": {"method": "DELETE", "url": "Observation/zzz"}},
        ],
    }
    _import(session, tmp_path, doc)
    by_id = {r.source_id: r.patient_id for r in _rows(session, LabResult)}
    ids = {p.mrn: p.id for p in _rows(session, Patient)}
    assert by_id == {"o1": ids["MRN-1"], "o2": ids["MRN-1"], "o3": ids["STORED-9"]}

    lost = _bundle(_patient(), {**_obs("o4", "1742-6", 40, "U/L"), "subject": {"reference": "Patient/elsewhere"}})
    parsed = parse_bundle(_write(tmp_path, lost), as_of=TODAY)
    assert [str(p) for p in parsed.problems] == [
        f"{tmp_path / 'bundle.json'}: Observation/o4 (entry[1]): column subject.reference: value 'Patient/elsewhere': "
        "refers to a patient that is not in this bundle, and gives no identifier (MRN) to find it"
    ]


@pytest.mark.parametrize(
    ("identifiers", "expected"),
    [
        ([{"value": "FIRST"}, {"type": MR_TYPE, "value": "THE-MR"}], "THE-MR"),
        # Edition 2: an untyped identifier of an unknown system is not the MRN: the resource id is.
        ([{"system": "urn:a", "value": "FIRST"}, {"system": "urn:b", "value": "SECOND"}], "res-id-7"),
        # ... unless its system is the hospital's MRN system (DRESS_MRN_SYSTEM, set to urn:b here).
        ([{"system": "urn:a", "value": "FIRST"}, {"system": "urn:b/", "value": "SECOND"}], "SECOND@urn:b"),
        # An MR whose period has ended is not the MRN; the current one is.
        ([{"type": MR_TYPE, "value": "OLD-MR", "period": {"end": "2020-01-01"}}, {"type": MR_TYPE, "value": "NEW-MR"}],
         "NEW-MR"),
        # National identifiers are never the MRN, even typed MR by mistake.
        ([{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
           "system": "http://hl7.org/fhir/sid/us-ssn", "value": "444-22-2222"}], "res-id-7"),
        ([{"type": MR_TYPE, "system": "http://fhir.nl/fhir/NamingSystem/bsn", "value": "999911120"}], "res-id-7"),
        ([{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9000000009"}], "res-id-7@https://fhir.nhs.uk/Id/nhs-number"),
        ([], "res-id-7"),
    ],
)
def test_mrn_rule(tmp_path: Path, identifiers: list[dict[str, Any]], expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expected, _, system = expected.partition("@")
    monkeypatch.setenv("DRESS_MRN_SYSTEM", system)
    res = {"resourceType": "Patient", "id": "res-id-7", "identifier": identifiers, "name": [{"text": "A B"}]}
    if not identifiers:
        del res["identifier"]
    parsed = parse_bundle(_write(tmp_path, _bundle(res)), as_of=TODAY)
    assert [p.mrn for p in parsed.patients] == [expected]
    assert parsed.patients[0].name == "A B"


def test_weight_updates_the_patient_with_the_latest_by_time(session: Session, tmp_path: Path) -> None:
    doc = _bundle(
        _patient(),
        _obs("w2", "29463-7", 154, "[lb_av]", when="2026-03-09T08:00:00Z"),
        _obs("w1", "29463-7", 72, "kg", when="2026-03-01T08:00:00Z"),
    )
    _import(session, tmp_path, doc)
    patient = _rows(session, Patient)[0]
    assert patient.weight_kg == pytest.approx(154 * 0.45359237)

    # a later weight already stored is not overwritten by an older one arriving now
    write_batch(session, labs=[LabIn("MRN-1", "weight", dt.datetime(2026, 3, 20, 8), 65.0, "kg", "65", "kg", source_id="w9")])
    session.execute(Patient.__table__.update().values(weight_kg=65.0))  # type: ignore[attr-defined]
    session.commit()
    _import(session, tmp_path, _bundle(_patient(), _obs("w3", "29463-7", 70, "kg", when="2026-03-15T08:00:00Z")), "b2.json")
    session.refresh(patient)
    assert patient.weight_kg == 65.0


def _order(rtype: str, oid: str, drug: dict[str, Any], **fields: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": rtype, "id": oid, "subject": {"reference": "Patient/p1"}}
    res["status"] = {"MedicationRequest": "active", "MedicationStatement": "active", "MedicationAdministration": "completed"}[rtype]
    if rtype == "MedicationRequest":
        res["intent"] = "order"
    res.update(drug)
    res.update(fields)
    return res


def _cc(text: str | None = None, rxnorm: str | None = None) -> dict[str, Any]:
    cc: dict[str, Any] = {}
    if text:
        cc["text"] = text
    if rxnorm:
        cc["coding"] = [{"system": RXNORM, "code": rxnorm}]
    return {"medicationCodeableConcept": cc}


def _dosage(value: Any, unit: str | None, freq: int = 1, route: str | None = None, **timing: Any) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit:
        q.update({"unit": unit, "system": UCUM, "code": unit})
    d: dict[str, Any] = {"timing": {"repeat": {"frequency": freq, "period": 1, "periodUnit": "d", **timing}}, "doseAndRate": [{"doseQuantity": q}]}
    if route:
        d["route"] = {"coding": [{"system": "http://snomed.info/sct", "code": route}]}
    return d


def _meds(session: Session) -> list[tuple[str, dt.date, float, str | None]]:
    return sorted((m.drug, m.start_date, m.daily_dose_mg, m.route) for m in _rows(session, MedicationRow))


def test_medication_request_period_and_frequency_make_schedule_rows(session: Session, tmp_path: Path) -> None:
    doc = _bundle(
        _patient(),
        # prednisone 20 mg twice a day, 1–10 March; then 30 mg from 11 March (no stop row in between)
        _order("MedicationRequest", "mr1", _cc("Prednisone 20 MG Oral Tablet"),
               dosageInstruction=[_dosage(20, "mg", freq=2, route="26643006", boundsPeriod={"start": "2026-03-01", "end": "2026-03-10"})]),
        _order("MedicationRequest", "mr2", _cc(rxnorm="8640"),
               dosageInstruction=[_dosage(30, "mg", boundsPeriod={"start": "2026-03-11", "end": "2026-03-20"})]),
        # pantoprazole by RxNorm ingredient code only, open-ended from its authoring date
        _order("MedicationRequest", "mr3", _cc(rxnorm="40790"), authoredOn="2026-03-01T10:00:00+01:00",
               dosageInstruction=[_dosage(40, "mg")]),
        # Synthea: "1 tablet" without a unit and a name without a single strength: skipped with a reason
        _order("MedicationRequest", "mr4", _cc("Acetaminophen 325 MG / Hydrocodone 7.5 MG Oral Tablet"),
               authoredOn="2026-03-01", dosageInstruction=[_dosage(1, None)]),
        # no dose at all: skipped with a reason, never an error
        _order("MedicationRequest", "mr5", _cc("Verapamil Hydrochloride 40 MG"), authoredOn="2026-03-01"),
    )
    parsed = parse_bundle(_write(tmp_path, doc), as_of=TODAY)
    assert parsed.problems == []
    assert parsed.skipped == {"MedicationRequest": 2}
    assert "MedicationRequest: no dose" in parsed.skip_reasons
    _import(session, tmp_path, doc)
    assert _meds(session) == [
        ("pantoprazole", dt.date(2026, 3, 1), 40.0, None),
        ("prednisone", dt.date(2026, 3, 1), 40.0, "oral"),
        ("prednisone", dt.date(2026, 3, 11), 30.0, None),
        ("prednisone", dt.date(2026, 3, 21), 0.0, None),
    ]
    source = {(m.drug, m.start_date): m.source_id for m in _rows(session, MedicationRow)}
    assert source[("prednisone", dt.date(2026, 3, 21))] == "mr2"


def test_medication_statement_and_administration(session: Session, tmp_path: Path) -> None:
    weight = _obs("w", "29463-7", 70, "kg", when="2026-03-01T08:00:00Z")
    medication = {"resourceType": "Medication", "id": "ivig", "code": {"text": "Immune Globulin, Human 10% Injectable Solution"}}
    doc = _bundle(
        _patient(),
        weight,
        medication,
        # a statement with a period and a topical route
        _order("MedicationStatement", "ms1", _cc("Hydrocortisone 1 % Topical Cream"), effectivePeriod={"start": "2026-03-02", "end": "2026-03-04"},
               dosage=[_dosage(10, "mg", route="6064005")]),
        # pulse methylprednisolone: 500 mg IV on day 1 (two administrations summed), 500 mg on day 2
        _order("MedicationAdministration", "ma1", _cc("Solu-Medrol"), effectiveDateTime="2026-03-02T08:00:00+01:00",
               dosage={"dose": {"value": 250, "unit": "mg"}, "route": {"text": "Intravenous route"}}),
        _order("MedicationAdministration", "ma2", _cc("Solu-Medrol"), effectiveDateTime="2026-03-02T20:00:00+01:00",
               dosage={"dose": {"value": 250, "unit": "mg"}, "route": {"text": "Intravenous route"}}),
        _order("MedicationAdministration", "ma3", _cc("Solu-Medrol"), effectivePeriod={"start": "2026-03-03T08:00:00Z", "end": "2026-03-03T09:00:00Z"},
               dosage={"dose": {"value": 0.5, "unit": "g"}}),
        # IVIG 1 g/kg by a referenced Medication: resolved against the weight at write time
        _order("MedicationAdministration", "ma4", {"medicationReference": {"reference": "Medication/ivig"}},
               effectiveDateTime="2026-03-05T10:00:00Z", dosage={"dose": {"value": 1, "unit": "g/kg", "system": UCUM, "code": "g/kg"}}),
        # cyclosporine by a contained Medication
        _order("MedicationStatement", "ms2", {"medicationReference": {"reference": "#m1"}}, effectiveDateTime="2026-03-06",
               contained=[{"resourceType": "Medication", "id": "m1", "code": {"coding": [{"system": RXNORM, "code": "3008"}]}}],
               dosage=[_dosage(150, "mg", freq=2)]),
        # the culprit (brand name) is stored by name: RECHALLENGE needs every drug
        _order("MedicationStatement", "ms3", _cc("Tegretol 200 MG Oral Tablet"), effectiveDateTime="2026-03-08",
               dosage=[_dosage(1, "{tbl}", freq=2)]),
        _order("MedicationStatement", "ms4", _cc("Prednisone"), status="entered-in-error", effectiveDateTime="2026-03-01",
               dosage=[_dosage(60, "mg")]),
    )
    parsed = parse_bundle(_write(tmp_path, doc), as_of=TODAY)
    assert parsed.problems == []
    assert parsed.skipped == {"MedicationStatement": 1}
    _import(session, tmp_path, doc)
    assert _meds(session) == [
        ("carbamazepine", dt.date(2026, 3, 8), 400.0, None),
        ("cyclosporine", dt.date(2026, 3, 6), 300.0, None),
        ("hydrocortisone", dt.date(2026, 3, 2), 10.0, "topical"),
        ("hydrocortisone", dt.date(2026, 3, 5), 0.0, "topical"),
        ("ivig", dt.date(2026, 3, 5), 70000.0, None),
        ("ivig", dt.date(2026, 3, 6), 0.0, None),
        ("methylprednisolone", dt.date(2026, 3, 2), 500.0, "intravenous"),
        ("methylprednisolone", dt.date(2026, 3, 3), 500.0, None),
        ("methylprednisolone", dt.date(2026, 3, 4), 0.0, None),
    ]
    ivig = next(m for m in _rows(session, MedicationRow) if m.drug == "ivig" and m.daily_dose_mg)
    assert (ivig.unit_as_entered, ivig.drug_as_entered) == ("g/kg", "Immune Globulin, Human 10% Injectable Solution")


def test_steroid_dose_in_an_unusable_unit_is_an_error(session: Session, tmp_path: Path) -> None:
    doc = _bundle(
        _patient(),
        _order("MedicationStatement", "bad", _cc("Prednisolone 5 MG/ML Oral Solution"), effectiveDateTime="2026-03-01",
               dosage=[_dosage(8, "mL")]),
        _order("MedicationStatement", "insulin", _cc("Insulin glargine"), effectiveDateTime="2026-03-01", dosage=[_dosage(10, "U")]),
    )
    lines = _refused(session, tmp_path, doc)
    assert len(lines) == 1
    assert "MedicationStatement/bad (entry[1]): column dosage[0].doseAndRate[0].doseQuantity.unit: value 'mL'" in lines[0]


def test_allergy_records_culprits_merged_with_stored_ones(session: Session, tmp_path: Path) -> None:
    write_batch(session, patients=[PatientIn("MRN-1", "Ada Lovelace", {"culprit_drugs": ["allopurinol"]})])
    session.commit()
    doc = _bundle(
        _patient(),
        # Edition 2: a drug allergy is a culprit when its reaction names DRESS (test_fhir_edition2.py).
        {"resourceType": "AllergyIntolerance", "id": "a1", "category": ["medication"], "code": {"text": "Tegretol"},
         "patient": {"reference": "Patient/p1"}, "reaction": [{"manifestation": [{"text": "DRESS"}]}]},
        {"resourceType": "AllergyIntolerance", "id": "a2", "code": {"coding": [{"system": RXNORM, "code": "519", "display": "Allopurinol"}]},
         "patient": {"reference": "Patient/p1"}, "reaction": [{"description": "drug reaction with eosinophilia", "manifestation": [{"text": "rash"}]}]},
        {"resourceType": "AllergyIntolerance", "id": "a3", "category": ["food"], "code": {"text": "Peanuts"},
         "patient": {"reference": "Patient/p1"}},
        {"resourceType": "AllergyIntolerance", "id": "a4", "category": ["medication"], "code": {"text": "Penicillin"},
         "verificationStatus": {"coding": [{"code": "refuted"}]}, "patient": {"reference": "Patient/p1"}},
    )
    parsed = parse_bundle(_write(tmp_path, doc), as_of=TODAY)
    assert parsed.skipped == {"AllergyIntolerance": 2}
    _import(session, tmp_path, doc)
    assert _rows(session, Patient)[0].culprit_drugs == ["allopurinol", "carbamazepine"]

    # through the `import` command's path too: a bundle naming one culprit never drops another
    session.execute(Patient.__table__.update().values(culprit_drugs=["vancomycin"]))  # type: ignore[attr-defined]
    session.commit()
    report = import_files(session, [_write(tmp_path, doc, "again.json")], username="tester", as_of=TODAY)
    assert report.ok, report.problem_lines()
    session.expire_all()
    assert _rows(session, Patient)[0].culprit_drugs == ["vancomycin", "carbamazepine", "allopurinol"]


def test_dress_condition_gives_onset_and_resolution(session: Session, tmp_path: Path) -> None:
    doc = _bundle(
        _patient(),
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "D72.12"}]},
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]},
         "onsetDateTime": "2026-02-27T10:00:00+01:00", "abatementDateTime": "2026-05-01"},
        {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p1"}, "code": {"text": "Hypertension"}},
    )
    parsed = parse_bundle(_write(tmp_path, doc), as_of=TODAY)
    assert parsed.skipped == {"Condition": 1}
    _import(session, tmp_path, doc)
    p = _rows(session, Patient)[0]
    assert (p.onset_date, p.resolved_date) == (dt.date(2026, 2, 27), dt.date(2026, 5, 1))

    by_text = _bundle({"resourceType": "Condition", "id": "c3", "subject": {"identifier": {"value": "MRN-1"}},
                       "code": {"text": "Drug reaction with eosinophilia and systemic symptoms (DIHS)"}, "onsetDateTime": "2026-03-01"})
    _import(session, tmp_path, by_text, "b2.json")
    session.refresh(p)
    assert p.onset_date == dt.date(2026, 3, 1)


def test_findings_of_this_products_export_are_stored_once(session: Session, tmp_path: Path) -> None:
    finding = {"resourceType": "Observation", "id": "f1", "status": "final",
               "code": {"coding": [{"system": "urn:dress-monitor:finding", "code": "lymphadenopathy"}]},
               "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-03-03T10:00:00+00:00", "valueString": "yes"}
    doc = _bundle(_patient(), finding)
    _import(session, tmp_path, doc)
    report = import_files(session, [_write(tmp_path, doc, "same.json")], username="tester", as_of=TODAY)
    assert report.ok, report.problem_lines()
    rows = _rows(session, ClinicalFinding)
    assert [(f.item, f.value, f.recorded_at) for f in rows] == [("lymphadenopathy", "yes", dt.datetime(2026, 3, 3, 10))]


def test_local_code_system_for_tests_without_loinc(tmp_path: Path) -> None:
    bsa = _obs("b1", "0", 35, "%")
    bsa["code"] = {"coding": [{"system": LOCAL_TEST_SYSTEM, "code": "bsa_pct"}]}
    bsa["extension"] = [{"url": EXT.AS_RECEIVED, "extension": [{"url": "value", "valueString": "35"}, {"url": "unit", "valueString": "%"}]}]
    parsed = parse_bundle(_write(tmp_path, _bundle(_patient(), bsa)), as_of=TODAY)
    assert parsed.problems == []
    assert [(lab.test, lab.value, lab.loinc) for lab in parsed.labs] == [("bsa_pct", 35.0, None)]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("this is not json at all", "not valid JSON"),
        ('{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Pat', "truncated"),
        ("", "empty"),
        ('{"resourceType": "Patient", "id": "x"}', "a Patient resource, not a Bundle"),
        ("[1, 2]", "not a FHIR resource"),
        ('{"resourceType": "Bundle", "type": "history", "entry": []}', "Bundle type 'history' is not imported"),
        ('{"resourceType": "Bundle", "type": "collection", "fhirVersion": "5.0.0", "entry": []}', "FHIR version 5.0.0"),
        # DSTU2: MedicationOrder does not exist in R4
        ('{"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "MedicationOrder", "id": "m"}}]}',
         "MedicationOrder does not exist in FHIR R4 (it is DSTU2)"),
        # R5: Bundle.issues is not an R4 element
        ('{"resourceType": "Bundle", "type": "searchset", "issues": {"resourceType": "OperationOutcome"}, "entry": []}',
         "not a valid FHIR R4 Bundle"),
    ],
)
def test_files_that_are_not_r4_bundles_are_refused_naming_the_file(tmp_path: Path, content: str, needle: str) -> None:
    # file-level refusals do not depend on the database (nothing written: the CLI and upload tests)
    parsed = parse_bundle(_write(tmp_path, content, "upload.json"), as_of=TODAY)
    assert parsed.labs == [] and parsed.patients == [] and parsed.meds == []
    lines = [str(p) for p in parsed.problems]
    assert len(lines) == 1
    assert lines[0].startswith(str(tmp_path / "upload.json") + ": ")
    assert needle in lines[0]


def test_dstu2_shaped_resources_are_refused_by_the_r4_model(session: Session, tmp_path: Path) -> None:
    # DSTU2 Condition: "patient" instead of "subject", clinicalStatus a plain code
    doc = _bundle({"resourceType": "Condition", "id": "c", "patient": {"reference": "Patient/p"}, "clinicalStatus": "active",
                   "code": {"text": "DRESS"}})
    lines = _refused(session, tmp_path, doc)
    assert any("Condition/c (entry[0]): column patient" in line for line in lines), lines


def test_bytes_parse_keeps_numbers_as_written(tmp_path: Path) -> None:
    doc = json.dumps(_bundle(_patient(), _obs("x", "1742-6", 0, "U/L"))).replace('"value": 0', '"value": 40.50')
    parsed = parse_bundle_bytes(doc.encode(), "x.json", as_of=TODAY)
    assert parsed.problems == []
    assert parsed.labs[0].original_value == "40.50" and parsed.labs[0].value == float(Decimal("40.5"))


def test_cli_import_prints_skipped_counts_and_refuses_bad_files(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from monitoring.cli import main

    good = _write(tmp_path, _bundle(_patient(), _obs("a", "1742-6", 40, "U/L"), {"resourceType": "Encounter", "id": "e", "status": "finished",
                                                                                 "class": {"code": "AMB"}}), "good.json")
    assert main(["--db", db_url, "import", str(good)]) == 0
    out = capsys.readouterr().out
    assert "Encounter 1" in out
    bad = _write(tmp_path, '{"resourceType": "Bundle", "type": "collection", "entry": [', "bad.json")
    assert main(["--db", db_url, "import", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "truncated" in err


def test_conditional_reference_and_duplicate_ids(tmp_path: Path) -> None:
    obs = {**_obs("o1", "1742-6", 40, "U/L"), "subject": {"reference": "Patient?identifier=urn:hosp|MRN-1"}}
    parsed = parse_bundle(_write(tmp_path, _bundle(obs, btype="transaction")), as_of=TODAY)
    assert parsed.problems == [] and [lab.mrn for lab in parsed.labs] == ["MRN-1"]

    same_id = _bundle(_patient(), _obs("dup", "1742-6", 40, "U/L"), _obs("dup", "1742-6", 41, "U/L"))
    parsed = parse_bundle(_write(tmp_path, same_id), as_of=TODAY)
    assert [(p.where.rsplit(": ", 1)[-1], p.column) for p in parsed.problems] == [("Observation/dup (entry[2])", "id")]


# --- property: schedule rows reproduce the daily dose of the orders ---------------------------

@st.composite
def _courses(draw: st.DrawFn) -> list[tuple[int, int | None, int]]:
    """Orders of one drug, in date order, not overlapping: (start day, length in days or None, mg/day)."""
    out: list[tuple[int, int | None, int]] = []
    day = 0
    for _k in range(draw(st.integers(1, 6))):
        day += draw(st.integers(0, 10))  # 0 after a bounded order: the next starts the day after its end
        open_ended = draw(st.booleans())
        length = None if open_ended else draw(st.integers(1, 15))
        out.append((day, length, draw(st.sampled_from([0, 5, 10, 20, 40, 60]))))
        day += length or 1
    return out


@settings(max_examples=60, deadline=None)
@given(courses=_courses())
def test_schedule_rows_give_the_dose_of_the_order_in_force(courses: list[tuple[int, int | None, int]]) -> None:
    base = dt.date(2026, 1, 1)
    resources: list[dict[str, Any]] = [_patient()]
    for k, (start, length, mg) in enumerate(courses):
        period = {"start": (base + dt.timedelta(days=start)).isoformat()}
        if length is not None:
            period["end"] = (base + dt.timedelta(days=start + length - 1)).isoformat()
        resources.append(_order("MedicationStatement", f"s{k}", _cc("prednisone"), effectivePeriod=period, dosage=[_dosage(mg, "mg")]))
    parsed = parse_bundle_bytes(json.dumps(_bundle(*resources)).encode(), "p.json", as_of=TODAY)
    assert parsed.problems == []
    rows = sorted((m.start_date, m.daily_dose_mg) for m in parsed.meds)
    assert len({d for d, _ in rows}) == len(rows)  # one row per date (the schedule's key)

    def by_rows(day: dt.date) -> float:
        current = [mg for d, mg in rows if d <= day]
        return current[-1] if current else 0.0

    def by_orders(day: dt.date) -> float:
        dose = 0.0
        for k, (start, length, mg) in enumerate(courses):
            first = base + dt.timedelta(days=start)
            nxt = base + dt.timedelta(days=courses[k + 1][0]) if k + 1 < len(courses) else None
            last = first + dt.timedelta(days=length - 1) if length is not None else (nxt - dt.timedelta(days=1) if nxt else None)
            if first <= day and (last is None or day <= last):
                dose = float(mg)
        return dose

    horizon = base + dt.timedelta(days=sum((length or 1) + 10 for _, length, _ in courses) + 5)
    day = base
    while day <= horizon:
        assert by_rows(day) == by_orders(day), day
        day += dt.timedelta(days=1)
    assert {d for d, _ in rows} >= {base + dt.timedelta(days=s) for s, _, _ in courses}  # a row at every start


def test_dashboard_upload_names_the_uploaded_file(session: Session) -> None:
    from monitoring.importers import import_uploads

    report = import_uploads(session, [("results.json", b'{"resourceType": "Bundle", "type": "collection", "entry": [')],
                            username="tester", as_of=TODAY)
    assert [line.split(": ", 1)[0] for line in report.problem_lines()] == ["results.json"]
    doc = _bundle(_patient(), _obs("u1", "1742-6", 40, "U/L"), _obs("u2", "1742-6", 2, "mmol/L"))
    report = import_uploads(session, [("results.json", json.dumps(doc).encode())], username="tester", as_of=TODAY)
    assert [line.split(": ")[:2] for line in report.problem_lines()] == [["results.json", "Observation/u2 (entry[2])"]]
    assert _rows(session, LabResult) == []


def test_partial_birth_date_is_not_stored_and_not_an_error(tmp_path: Path) -> None:
    parsed = parse_bundle(_write(tmp_path, _bundle(_patient(birthDate="1970"))), as_of=TODAY)
    assert parsed.problems == [] and "birth_date" not in parsed.patients[0].values
    assert parsed.notes == {"Patient: partial birthDate (year or month only) not stored": 1}
    assert parsed.skipped == {}
    untyped = parse_bundle(_write(tmp_path, _bundle({"id": "x"}), "untyped.json"), as_of=TODAY)
    assert [str(p) for p in untyped.problems] == [
        f"{tmp_path / 'untyped.json'}: entry[0]: column resource.resourceType: a resource without a resourceType"
    ]


def test_a_drug_text_longer_than_its_column_is_stored_shortened_and_said(session: Session, tmp_path: Path) -> None:
    """The drug is read from the whole text; only the display text as entered is shortened to its
    column, and the import report says so (never cut in silence)."""
    long_text = "Prednisone 20 MG Oral Tablet " + "(as directed by the prescriber, see the order note) " * 5
    doc = _bundle(_patient(), _order("MedicationRequest", "long", _cc(long_text.strip()), authoredOn="2026-03-01",
                                     dosageInstruction=[_dosage(20, "mg")]))
    parsed = parse_bundle(_write(tmp_path, doc), as_of=TODAY)
    assert parsed.problems == []
    assert parsed.notes == {
        "MedicationRequest: drug_as_entered longer than 200 characters, stored shortened (the drug is read from the full text)": 1}
    _import(session, tmp_path, doc)
    (row,) = _rows(session, MedicationRow)
    assert row.drug == "prednisone" and row.daily_dose_mg == 20.0
    assert len(row.drug_as_entered) == 200 and long_text.startswith(row.drug_as_entered)


def test_a_stopped_order_without_end_date_ends_on_its_last_documented_date_and_is_said(tmp_path: Path) -> None:
    # Edition 2: never a course running on to today (the day-2,633 course of issue 13).
    doc = _bundle(_patient(), _order("MedicationRequest", "st", _cc("Prednisone 10 MG Oral Tablet"), status="stopped",
                                     authoredOn="2026-03-01", dosageInstruction=[_dosage(1, "{tbl}")]))
    parsed = parse_bundle(_write(tmp_path, doc), as_of=TODAY)
    assert [(m.drug, m.start_date, m.daily_dose_mg) for m in parsed.meds] == [
        ("prednisone", dt.date(2026, 3, 1), 10.0), ("prednisone", dt.date(2026, 3, 2), 0.0)]
    assert parsed.notes == {"MedicationRequest: stopped without an end date: ends on its last documented date": 1}
    # Its last administration, or its validity end, when later, is the last day.
    given = {"resourceType": "MedicationAdministration", "id": "ma", "status": "completed",
             "medicationCodeableConcept": {"text": "Prednisone 10 MG Oral Tablet"}, "subject": {"reference": "Patient/p1"},
             "request": {"reference": "MedicationRequest/st"}, "effectiveDateTime": "2026-03-04T08:00:00+01:00",
             "dosage": {"dose": {"value": 1, "unit": "tablet"}}}
    parsed = parse_bundle(_write(tmp_path, {**doc, "entry": [*doc["entry"], {"resource": given}]}), as_of=TODAY)
    assert [(m.start_date, m.daily_dose_mg) for m in parsed.meds][-1] == (dt.date(2026, 3, 5), 0.0)
    order = doc["entry"][1]["resource"]
    order["dispenseRequest"] = {"validityPeriod": {"start": "2026-03-01", "end": "2026-03-10"}}
    parsed = parse_bundle(_write(tmp_path, doc), as_of=TODAY)
    assert [(m.start_date, m.daily_dose_mg) for m in parsed.meds][-1] == (dt.date(2026, 3, 11), 0.0)


# --- fuzz: any damage to a bundle is a problem or a skip, never a crash ----------------------

# Values put in place of an element: every JSON type, and strings that look almost right.
_DAMAGE: list[Any] = [None, True, False, 0, -5, 3.5, 10**20, "", "x", "mg", "2026-13-40", "2026-03", "Patient/p1",
                      "#nowhere", [], {}, {"a": 1}, [1, "x"], [{}], {"coding": "x"}, {"value": "NaN"}]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _rich_bundle() -> dict[str, Any]:
    """A fresh deep copy each time (the helpers share module-level dicts such as MR_TYPE)."""
    return json.loads(json.dumps(_rich_bundle_shared()))


def _rich_bundle_shared() -> dict[str, Any]:
    return _bundle(
        _patient(),
        _obs("o1", "14682-9", 176.8, "umol/L", referenceRange=[{"high": {"value": 110, "unit": "umol/L"}}]),
        {**_obs("o2", "29604-6", None, ""), "valueCodeableConcept": {"text": "Detected"}},
        _order("MedicationRequest", "m1", _cc("Prednisone 20 MG Oral Tablet", "8640"),
               dosageInstruction=[_dosage(20, "mg", freq=2, route="26643006", boundsPeriod={"start": "2026-03-01", "end": "2026-03-10"})]),
        _order("MedicationAdministration", "m2", {"medicationReference": {"reference": "#c"}}, effectiveDateTime="2026-03-02T08:00:00Z",
               contained=[{"resourceType": "Medication", "id": "c", "code": {"text": "IVIG"}}], dosage={"dose": {"value": 1, "unit": "g/kg"}}),
        {"resourceType": "AllergyIntolerance", "id": "a1", "category": ["medication"], "code": {"text": "Tegretol"},
         "patient": {"reference": "Patient/p1"}},
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}, "code": {"text": "DRESS"},
         "onsetDateTime": "2026-02-27", "abatementDateTime": "2026-05-01"},
    )


def test_damaged_bundles_give_problems_never_a_crash() -> None:
    import random

    rng = random.Random(20261124)  # seeded: a failure is reproducible
    for _ in range(800):
        _check_damaged(rng)


def _check_damaged(rng: Any) -> None:
    doc = _rich_bundle()
    for _ in range(rng.randint(1, 3)):
        path = rng.choice([p for p in _paths(doc) if p])
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        if rng.random() < 0.4 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = json.loads(json.dumps(rng.choice(_DAMAGE)))
    parsed = parse_bundle_bytes(json.dumps(doc).encode(), "damaged.json", as_of=TODAY)
    for problem in parsed.problems:
        assert str(problem).startswith("damaged.json")
    for lab in parsed.labs:  # what is accepted is still converted and within bounds
        assert lab.unit == catalogue.lookup(lab.test).canonical_unit
        if lab.value is not None:
            catalogue.check_bounds(catalogue.lookup(lab.test), lab.value)
    for med in parsed.meds:
        assert med.daily_dose_mg >= 0 and (med.dose_per_kg is None or med.dose_per_kg >= 0)
