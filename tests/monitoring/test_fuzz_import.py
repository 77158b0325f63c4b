"""Fuzzing the importers (issue 7: bad input): random bytes, random valid-looking CSV rows and FHIR
bundles. Whatever the input, the importer returns a report (never a traceback), a refused import
leaves the database exactly as it was (no partial write), and every example finishes within the
hypothesis deadline (no hang). An accepted import must leave a database whose rows are all sound.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from monitoring import catalogue
from monitoring.importers import ImportReport, import_uploads
from monitoring.models import AuditEntry, LabResult, MedicationRow, Patient

TODAY = dt.date(2026, 3, 1)
FUZZ = settings(
    max_examples=60,
    deadline=dt.timedelta(seconds=10),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

MRNS = ["M1", "M2", "M3", "", " M1 ", "m1", "M" * 70]
TESTS = [*catalogue.CATALOGUE, "1742-6", "2160-0", "711-2", "nonsense", "", "ALT"]
UNITS = sorted({u for t in catalogue.CATALOGUE.values() for u in (t.canonical_unit, *t.units)}) + ["", "mg/dL ", "µmol/l", "furlongs"]
DRUGS = ["prednisone", "Tegretol", "methylprednisolone", "IVIG", "omeprazole", "", "Bactrim", "x" * 300]

dates = st.dates(min_value=dt.date(1890, 1, 1), max_value=dt.date(2100, 1, 1))
text = st.text(max_size=30)
number_text = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["", " ", "1e308", "-0", "NaN", "inf", "1,5", "0x10", "½", "١٢", "12 mg", "detected", "Not Detected"]),
)
date_text = st.one_of(
    dates.map(dt.date.isoformat),
    st.builds(
        lambda d, sep: d.isoformat(sep=sep),
        st.datetimes(min_value=dt.datetime(1890, 1, 1), max_value=dt.datetime(2100, 1, 1)),
        st.sampled_from(" T"),
    ),
    st.sampled_from(["", "2026-02-30", "2026-13-01", "yesterday", "2026-01-01T25:00", "2026-01-01T10:00+05:00", "20260101"]),
    text,
)
CELL = {
    "mrn": st.sampled_from(MRNS),
    "name": st.one_of(text, st.just("")),
    "sex": st.sampled_from(["female", "male", "F", "other", "", "unknown", "?"]),
    "birth_date": date_text,
    "weight_kg": number_text,
    "onset_date": date_text,
    "culprit_drug": st.one_of(st.sampled_from(DRUGS), st.lists(st.sampled_from(DRUGS), max_size=3).map(";".join)),
    "baseline_creatinine_mg_dl": number_text,
    "resolved_date": date_text,
    "taken_at": date_text,
    "test": st.sampled_from(TESTS),
    "value": number_text,
    "unit": st.sampled_from(UNITS),
    "ref_low": number_text,
    "ref_high": number_text,
    "start_date": date_text,
    "drug": st.sampled_from(DRUGS),
    "daily_dose": number_text,
    "route": st.sampled_from(["oral", "iv", "topical", "", "intravenous"]),
}
KINDS = {
    "patients": ["mrn", "name", "sex", "birth_date", "weight_kg", "onset_date", "culprit_drug", "baseline_creatinine_mg_dl", "resolved_date"],
    "labs": ["mrn", "taken_at", "test", "value", "unit", "ref_low", "ref_high"],
    "medications": ["mrn", "start_date", "drug", "daily_dose", "unit", "route"],
}
MED_UNITS = st.sampled_from(["mg", "g", "mg/kg", "MG", "", "mcg"])


GOOD_MRNS = ["M1", "M2", "M3"]
GOOD_DRUGS = ["prednisone", "Tegretol", "methylprednisolone", "omeprazole", "Bactrim", "allopurinol"]
good_day = st.dates(min_value=dt.date(2025, 6, 1), max_value=TODAY)


def _num(lo: float, hi: float) -> st.SearchStrategy[str]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False).map(lambda x: f"{x:.6g}")


@st.composite
def good_row(draw: st.DrawFn, kind: str) -> dict[str, str]:
    """A row a laboratory or pharmacy system could really send."""
    mrn = draw(st.sampled_from(GOOD_MRNS))
    if kind == "patients":
        return {
            "mrn": mrn,
            "name": f"Synthetic Fuzz {mrn}",
            "sex": draw(st.sampled_from(["female", "male"])),
            "birth_date": draw(st.dates(min_value=dt.date(1930, 1, 1), max_value=dt.date(2010, 1, 1))).isoformat(),
            "weight_kg": draw(_num(30, 150)),
            "onset_date": draw(good_day).isoformat(),
            "culprit_drug": draw(st.sampled_from(GOOD_DRUGS)),
            "baseline_creatinine_mg_dl": draw(st.one_of(st.just(""), _num(0.4, 1.5))),
            "resolved_date": "",
        }
    if kind == "labs":
        test = catalogue.lookup(draw(st.sampled_from(list(catalogue.CATALOGUE))))
        lo = 30.0 if test.key == "temperature" else max(test.min_value or 0.0, 0.0)
        hi = 45.0 if test.key == "temperature" else min(test.max_value or 1e6, 1e6)
        when = dt.datetime.combine(draw(good_day), dt.time(draw(st.integers(0, 23)), draw(st.integers(0, 59))))
        return {
            "mrn": mrn,
            "taken_at": when.isoformat(sep=draw(st.sampled_from(" T"))),
            "test": draw(st.sampled_from([test.key, *test.loinc])),
            "value": draw(_num(lo, hi)),
            "unit": test.canonical_unit,
            "ref_low": "",
            "ref_high": draw(st.one_of(st.just(""), _num(lo, hi))),
        }
    return {
        "mrn": mrn,
        "start_date": draw(good_day).isoformat(),
        "drug": draw(st.sampled_from(GOOD_DRUGS)),
        "daily_dose": draw(_num(0, 100)),
        "unit": "mg",
        "route": draw(st.sampled_from(["oral", "intravenous", ""])),
    }


@st.composite
def csv_file(draw: st.DrawFn, kind: str | None = None) -> bytes:
    """A CSV file of one kind: real-looking rows, some cells swapped for garbage, sometimes a
    column too many or too few, a ragged row, a BOM, another encoding."""
    kind = kind or draw(st.sampled_from(sorted(KINDS)))
    columns = list(draw(st.permutations(KINDS[kind])))
    if draw(st.integers(0, 14)) == 0:
        columns = [*columns, draw(st.sampled_from(["extra", "notes", "MRN", ""]))]
    if draw(st.integers(0, 14)) == 0 and len(columns) > 1:
        columns = columns[1:]
    garbage_rate = draw(st.sampled_from([0, 0, 0, 20, 5]))  # one cell in N is garbage (0: none)
    rows = []
    # One row per patient in a patients file (two different rows for one MRN are an error).
    patient_order = draw(st.permutations(GOOD_MRNS))
    for n in range(draw(st.integers(0, 3 if kind == "patients" else 8))):
        good = draw(good_row(kind))
        if kind == "patients":
            good = {**good, "mrn": patient_order[n], "name": f"Synthetic Fuzz {patient_order[n]}"}
        row = []
        for c in columns:
            if c in good and not (garbage_rate and draw(st.integers(0, garbage_rate - 1)) == 0):
                row.append(good[c])
            else:
                row.append(draw(MED_UNITS if (kind == "medications" and c == "unit") else CELL.get(c, text)))
        if draw(st.integers(0, 29)) == 0:
            row = row[: draw(st.integers(0, len(row)))] + draw(st.lists(text, max_size=2))
        rows.append(row)
    buf = io.StringIO()
    csv.writer(buf).writerows([columns, *rows])
    data = buf.getvalue()
    if draw(st.booleans()):
        data = "\ufeff" + data
    encoding = draw(st.sampled_from(["utf-8"] * 8 + ["latin-1", "utf-16"]))
    return data.encode(encoding, errors="replace")


@st.composite
def fhir_bundle(draw: st.DrawFn) -> bytes:
    """A Bundle as an EHR sends it (Patient, LOINC Observations, medications, allergies, a DRESS
    Condition, resources the product does not use), with some fields swapped for garbage."""
    rate = draw(st.sampled_from([0, 0, 12, 4]))  # one field in N is garbage (0: none)

    def pick(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> Any:
        return draw(bad) if rate and draw(st.integers(0, rate - 1)) == 0 else draw(good)

    def when(day_only: bool = False) -> Any:
        day = draw(good_day)
        good = st.just(day.isoformat() if day_only else f"{day.isoformat()}T{draw(st.integers(0, 23)):02d}:00:00+00:00")
        return pick(good, date_text)

    patients = draw(st.lists(st.sampled_from(["F1", "F2"]), min_size=1 if draw(st.integers(0, 9)) else 0, max_size=2, unique=True))
    entries: list[Any] = []
    for mrn in patients:
        entries.append(
            {
                "fullUrl": f"urn:uuid:{mrn}",
                "resource": {
                    "resourceType": "Patient",
                    "id": mrn,
                    "identifier": pick(st.just([{"type": {"coding": [{"code": "MR"}]}, "value": mrn}]), st.sampled_from([[], "bad", [{"value": ""}]])),
                    "name": pick(st.just([{"family": "Synthetic", "given": ["Fuzz"]}]), st.sampled_from([[], [{"text": ""}], None, 5])),
                    "birthDate": pick(st.just("1970-01-01"), date_text),
                    "gender": pick(st.sampled_from(["female", "male"]), st.sampled_from(["x", 3, ""])),
                },
            }
        )
    subjects = [f"urn:uuid:{m}" for m in patients] or ["Patient/nobody"]
    for i in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["Observation"] * 4 + ["MedicationStatement", "MedicationRequest", "AllergyIntolerance", "Condition", "Encounter", "junk"]))
        ref = {"reference": pick(st.sampled_from(subjects), st.sampled_from(["Patient/unknown", "", 7]))}
        resource: Any
        if kind == "Observation":
            test = catalogue.lookup(draw(st.sampled_from([k for k, t in catalogue.CATALOGUE.items() if t.loinc])))
            lo = 30.0 if test.key == "temperature" else max(test.min_value or 0.0, 0.0)
            hi = 45.0 if test.key == "temperature" else min(test.max_value or 1e6, 1e6)
            resource = {
                "resourceType": "Observation",
                "id": pick(st.just(f"o{i}"), st.sampled_from(["o1", "", None])),
                "status": pick(st.just("final"), st.sampled_from(["amended", "entered-in-error", "bogus"])),
                "code": {"coding": [{"system": "http://loinc.org", "code": pick(st.sampled_from(test.loinc), st.sampled_from(["0000-0", ""]))}]},
                "subject": ref,
                "effectiveDateTime": when(),
                "valueQuantity": {
                    "value": pick(st.floats(min_value=lo, max_value=hi), st.one_of(st.floats(), st.integers(), st.text(max_size=4), st.none())),
                    "unit": pick(st.just(test.canonical_unit), st.sampled_from(UNITS)),
                    "system": "http://unitsofmeasure.org",
                    "code": pick(st.just(test.canonical_unit), st.sampled_from(UNITS)),
                },
            }
        elif kind in ("MedicationStatement", "MedicationRequest"):
            dose = {"value": pick(st.floats(min_value=0, max_value=100), st.one_of(st.floats(), st.text(max_size=3))), "unit": pick(st.just("mg"), st.sampled_from(["", "mcg", "tablet"]))}
            resource = {
                "resourceType": kind,
                "id": f"m{i}",
                "status": pick(st.sampled_from(["active", "completed"]), st.sampled_from(["stopped", "bogus"])),
                "subject": ref,
                "medicationCodeableConcept": {"text": pick(st.sampled_from(GOOD_DRUGS), st.sampled_from(DRUGS))},
                "effectivePeriod": {"start": when(True), "end": pick(st.just(None), date_text)},
                "dosageInstruction" if kind == "MedicationRequest" else "dosage": [
                    {"doseAndRate": [{"doseQuantity": dose}], "timing": {"repeat": {"frequency": pick(st.just(1), st.integers(-1, 5)), "period": 1, "periodUnit": "d"}}}
                ],
            }
            if resource["effectivePeriod"]["end"] is None:
                del resource["effectivePeriod"]["end"]
            if kind == "MedicationRequest":
                resource["intent"] = "order"
                resource["authoredOn"] = when(True)
                resource.pop("effectivePeriod")
        elif kind == "AllergyIntolerance":
            resource = {"resourceType": kind, "id": f"a{i}", "patient": ref, "code": {"text": pick(st.sampled_from(GOOD_DRUGS), st.sampled_from(DRUGS))}}
        elif kind == "Condition":
            resource = {
                "resourceType": kind,
                "id": f"c{i}",
                "subject": ref,
                "code": {"text": pick(st.just("DRESS"), st.sampled_from(["drug reaction with eosinophilia", "flu", ""])),
                         "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": pick(st.just("D72.12"), st.just("J10"))}]},
                "onsetDateTime": when(),
            }
        elif kind == "Encounter":
            resource = {"resourceType": "Encounter", "id": f"e{i}", "status": "finished", "class": {"code": "IMP"}}
        else:
            resource = draw(st.one_of(st.none(), st.integers(), text, st.dictionaries(text, text, max_size=3)))
        entries.append({"fullUrl": f"urn:uuid:r{i}", "resource": resource})
    bundle: Any = {
        "resourceType": pick(st.just("Bundle"), st.sampled_from(["Patient", "", None])),
        "type": pick(st.sampled_from(["collection", "transaction", "batch", "searchset"]), st.sampled_from(["document", "bogus", 3])),
        "entry": pick(st.just(entries), st.sampled_from(["not a list", None, {}])),
    }
    return json.dumps(bundle).encode()


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.integers(), st.text(max_size=10)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def _counts(engine: Engine) -> tuple[int, ...]:
    with Session(engine) as s:
        return tuple(int(s.execute(select(func.count()).select_from(m)).scalar_one()) for m in (Patient, LabResult, MedicationRow, AuditEntry))


def _import(engine: Engine, files: list[tuple[str, bytes]]) -> ImportReport:
    """One import; checks the invariants that hold whatever the input."""
    before = _counts(engine)
    with Session(engine, expire_on_commit=False) as session:
        report = import_uploads(session, files, username="fuzz", as_of=TODAY)  # must not raise
    after = _counts(engine)
    if report.ok:
        assert report.result is not None
    else:
        assert report.problems, "refused without saying why"
        assert after == before, "a refused import wrote something"
        for problem in report.problems:
            line = str(problem)
            assert line.strip() and "Traceback" not in line
    return report


def _stored_rows_are_sound(engine: Engine) -> None:
    """Whatever was accepted obeys the catalogue: canonical units, bounds, no future result."""
    with Session(engine) as s:
        for lab in s.execute(select(LabResult)).scalars():
            test = catalogue.lookup(lab.test)
            assert lab.unit == test.canonical_unit
            if lab.value is not None:
                assert test.min_value is None or lab.value >= test.min_value
                assert test.max_value is None or lab.value <= test.max_value
            else:
                assert lab.value_text in ("detected", "not detected")
            assert lab.taken_at.date() <= TODAY
        for med in s.execute(select(MedicationRow)).scalars():
            assert med.daily_dose_mg >= 0 and med.daily_dose_mg == med.daily_dose_mg  # not NaN


@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".csv", ".json", ".CSV", ".txt"]))
def test_random_bytes_are_refused_cleanly(engine: Engine, data: bytes, suffix: str) -> None:
    report = _import(engine, [(f"random{suffix}", data)])
    _stored_rows_are_sound(engine)
    if not data.strip():
        assert not report.ok  # an empty file is an error (PRODUCT.md §6)


@FUZZ
@given(patients=csv_file("patients"), files=st.lists(st.sampled_from(["labs", "medications"]).flatmap(csv_file), max_size=3))
def test_valid_looking_csv_rows_never_crash_or_half_write(engine: Engine, patients: bytes, files: list[bytes]) -> None:
    _import(engine, [("patients.csv", patients), *((f"file{i}.csv", f) for i, f in enumerate(files))])
    _stored_rows_are_sound(engine)


@FUZZ
@given(bundle=fhir_bundle())
def test_valid_looking_fhir_bundles_never_crash_or_half_write(engine: Engine, bundle: bytes) -> None:
    _import(engine, [("bundle.json", bundle)])
    _stored_rows_are_sound(engine)


@FUZZ
@given(value=JSON_VALUES)
def test_any_json_document_is_refused_or_imported_cleanly(engine: Engine, value: Any) -> None:
    _import(engine, [("doc.json", json.dumps(value).encode())])


@FUZZ
@given(csv_data=csv_file(), bundle=fhir_bundle())
def test_mixed_csv_and_fhir_in_one_import_is_all_or_nothing(engine: Engine, csv_data: bytes, bundle: bytes) -> None:
    _import(engine, [("a.csv", csv_data), ("b.json", bundle)])
    _stored_rows_are_sound(engine)


def _observation_bundle(code: str, value: float) -> bytes:
    return json.dumps(
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": "urn:uuid:F1", "resource": {"resourceType": "Patient", "id": "F1", "identifier": [{"value": "F1"}], "name": [{"family": "Synthetic"}]}},
                {
                    "fullUrl": "urn:uuid:o1",
                    "resource": {
                        "resourceType": "Observation",
                        "id": "o1",
                        "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                        "subject": {"reference": "urn:uuid:F1"},
                        "effectiveDateTime": "2026-01-10T08:00:00+00:00",
                        "valueQuantity": {"value": value, "unit": "U/L", "system": "http://unitsofmeasure.org", "code": "U/L"},
                    },
                },
            ],
        }
    ).encode()


def test_resent_observation_with_another_code_is_a_reported_conflict_not_a_crash(engine: Engine) -> None:
    """Found by the fuzz above: Observation o1 stored as ALT, then sent again coded as AST, reached
    the unique index (patient, resource id) and raised IntegrityError. It is a conflict to report."""
    assert _import(engine, [("first.json", _observation_bundle("1742-6", 50))]).ok
    report = _import(engine, [("again.json", _observation_bundle("1920-8", 50))])
    assert not report.ok
    assert any("o1" in str(p) and "different" in str(p) for p in report.problems), report.problem_lines()
