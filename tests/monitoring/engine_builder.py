"""A small builder for engine tests: a patient's chart written as rows into a real database.

Days are counted from ``DAY0`` so that a test reads like a ward chart ("ALT 300 on day 1,
prednisone 60 mg from day 2"). ``Chart.record()`` reads the rows back through
``monitoring.records.load_record``, the same path the product uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlmodel import Session

from monitoring.catalogue import lookup
from monitoring.drugs import normalise_drug
from monitoring.models import ClinicalFinding, LabResult, MedicationRow, Patient
from monitoring.records import PatientRecord, load_record

DAY0 = dt.date(2026, 3, 2)


def day(n: int) -> dt.date:
    return DAY0 + dt.timedelta(days=n)


def at(n: int, hh: int = 8, mm: int = 0) -> dt.datetime:
    return dt.datetime.combine(day(n), dt.time(hh, mm))


class Chart:
    """One patient's rows, written into ``session``."""

    _count = 0

    def __init__(
        self,
        session: Session,
        *,
        mrn: str | None = None,
        onset: int | None = 0,
        weight_kg: float | None = 70.0,
        culprits: Sequence[str] = (),
        baseline_creatinine: float | None = None,
        resolved: dt.date | None = None,
        active: bool = True,
        setting: str = "inpatient",
    ) -> None:
        Chart._count += 1
        self.session = session
        self.patient = Patient(
            mrn=mrn or f"T{Chart._count:05d}",
            name=f"Test patient {Chart._count}",
            onset_date=day(onset) if onset is not None else None,
            weight_kg=weight_kg,
            culprit_drugs=list(culprits),
            baseline_creatinine_mg_dl=baseline_creatinine,
            resolved_date=resolved,
            active=active,
            setting=setting,
        )
        session.add(self.patient)
        session.commit()
        session.refresh(self.patient)

    @property
    def mrn(self) -> str:
        return self.patient.mrn

    def lab(
        self,
        test: str,
        when: int | dt.datetime,
        value: float | None,
        *,
        ref_high: float | None = None,
        value_text: str | None = None,
        hidden: bool = False,
    ) -> LabResult:
        t = lookup(test)
        taken_at = at(when) if isinstance(when, int) else when
        row = LabResult(
            patient_id=self.patient.id,  # type: ignore[arg-type]
            test=t.key,
            loinc=t.primary_loinc,
            taken_at=taken_at,
            value=value,
            unit=t.canonical_unit,
            value_text=value_text,
            original_value=value_text if value is None else f"{value:g}",
            original_unit=t.canonical_unit,
            ref_high=ref_high,
            source="manual",
            hidden=hidden,
        )
        self.session.add(row)
        self.session.commit()
        self.session.refresh(row)
        return row

    def dose(
        self,
        drug: str,
        start: int | dt.date,
        mg: float,
        *,
        route: str | None = "oral",
        hidden: bool = False,
    ) -> MedicationRow:
        row = MedicationRow(
            patient_id=self.patient.id,  # type: ignore[arg-type]
            drug=normalise_drug(drug),
            drug_as_entered=drug,
            start_date=day(start) if isinstance(start, int) else start,
            daily_dose_mg=mg,
            dose_as_entered=f"{mg:g}",
            unit_as_entered="mg",
            route=route,
            source="manual",
            hidden=hidden,
        )
        self.session.add(row)
        self.session.commit()
        self.session.refresh(row)
        return row

    def finding(self, item: str, value: str, when: dt.datetime | None = None) -> ClinicalFinding:
        row = ClinicalFinding(
            patient_id=self.patient.id,  # type: ignore[arg-type]
            item=item,
            value=value,
            recorded_at=when or dt.datetime(2026, 1, 1) + dt.timedelta(seconds=Chart._count),
        )
        if when is None:
            Chart._count += 1
        self.session.add(row)
        self.session.commit()
        return row

    def record(self) -> PatientRecord:
        return load_record(self.session, self.mrn)
