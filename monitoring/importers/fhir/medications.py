"""Medications: MedicationRequest / MedicationStatement / MedicationAdministration become schedule
rows (dosage steps, administrations over several days, rates); PRODUCT.md §3 and §6.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any

from monitoring import catalogue
from monitoring.importers.fhir.base import ReaderBase
from monitoring.importers.fhir.codes import _SKIP_STATUS, RECOGNISED_DRUGS
from monitoring.importers.fhir.dosage import (
    _COUNT_UNITS,
    _ENDED_STATUS,
    _MASS_UNITS,
    _PERIOD_DAYS,
    _STRENGTH,
    _Interval,
    _order_period,
    _per_day,
    _rate_mg_per_hour,
    _route,
    _schedule_rows,
    _validity_end,
)
from monitoring.importers.fhir.helpers import _FHIR_DATE, _as_entered, _drug_name, _generic, _plain, _source_id
from monitoring.intake import text_limit
from monitoring.store import MedIn


def _decision_drug(drug: str) -> bool:
    """A drug a decision reads: steroid, IVIG, cyclosporine, PPI, or a drug of a culprit group."""
    from monitoring import drugs

    return drug in RECOGNISED_DRUGS or drugs.group_of(drug) is not None


class MedicationReading(ReaderBase):
    """MedicationRequest, MedicationStatement and MedicationAdministration: schedule rows per drug."""

    def medication_concept(self, i: str, r: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(the CodeableConcept naming the drug, the Medication resource used) of an order."""
        if isinstance(r.get("medicationCodeableConcept"), dict):
            return r["medicationCodeableConcept"], None
        ref = (r.get("medicationReference") or {}).get("reference")
        if not ref:
            return None, None
        ref = str(ref)
        med = None
        if ref.startswith("#"):
            med = next((c for c in r.get("contained") or [] if c.get("id") == ref[1:]), None)
        else:
            med = self.by_ref.get(ref)
            if med is None and "/Medication/" in ref:
                med = self.by_ref.get("Medication/" + ref.rsplit("/Medication/", 1)[1])
        if not isinstance(med, dict) or med.get("resourceType") != "Medication":
            return None, None
        return (med.get("code") if isinstance(med.get("code"), dict) else None), med

    def read_medication(self, i: str, r: dict[str, Any]) -> None:
        rtype = str(r["resourceType"])
        status = r.get("status")
        if status in _SKIP_STATUS[rtype]:
            self.out.skip(rtype, f"status {status}")
            return
        concept, med_resource = self.medication_concept(i, r)
        name = _drug_name(concept) if concept else None
        if not name:
            if r.get("medicationReference"):
                # Not decision data until it names a drug: listed, never a refusal (§6 edition 2).
                self.out.skip(rtype, "refers to a Medication that is not in this bundle or has no code")
            else:
                self.out.skip(rtype, "no medication name or code")
            return
        as_entered = _as_entered(r)
        # This product's own export names the stored generic name: kept as it is (round trip).
        drug = name.lower() if as_entered is not None else _generic(concept, name)
        # A problem in the order of a drug no decision reads (not a steroid, IVIG, cyclosporine,
        # PPI or a drug of a culprit group) is skipped and listed with its reason, never a refusal.
        self.lenient = None if _decision_drug(drug) else rtype
        try:
            self.read_order(i, r, rtype, status, concept, med_resource, name, drug, as_entered)
        finally:
            self.lenient = None

    def read_order(
        self, i: str, r: dict[str, Any], rtype: str, status: Any, concept: dict[str, Any] | None,
        med_resource: dict[str, Any] | None, name: str, drug: str, as_entered: dict[str, str] | None,
    ) -> None:
        where = self.where(i, r)
        if not self.valid(i, r):
            return
        if med_resource is not None and med_resource is not r and not self.valid_medication(med_resource):
            return
        steps = self.dose_steps(where, rtype, r, drug, name, as_entered)
        if steps is None:
            return
        mrn = self.patient_of(i, r, "subject")
        if mrn is None:
            return
        if rtype != "MedicationAdministration" and status in _ENDED_STATUS and steps[-1][2] is None:
            # Stopped or completed without an end date: it ends on its last documented date (start,
            # last administration, validity end), never runs on to today; the report says so.
            last = max(d for d in (steps[-1][1], self.last_administration.get(id(r)), _validity_end(r)) if d)
            dose, start, _end = steps[-1]
            steps[-1] = (dose, start, last)
            self.note(f"{rtype}: {status} without an end date: ends on its last documented date")
        if med_resource is not None:
            self.medications_used.add(id(med_resource))
        for dose, start, end in steps:
            mg, per_kg, dose_text, unit_text, route = dose
            drug_as_entered = name
            if as_entered is not None:
                drug_as_entered = as_entered.get("drug") or name
                dose_text = as_entered.get("dose") or dose_text
                unit_text = as_entered.get("unit") or unit_text
            texts = []
            for column, text in (("drug_as_entered", drug_as_entered), ("dose_as_entered", dose_text),
                                 ("unit_as_entered", unit_text)):
                limit = text_limit("medication_row", column)
                if len(text) > limit:
                    # Display text only (the drug is read from its full name above): kept shortened,
                    # and the report says so rather than cutting in silence.
                    self.note(f"{rtype}: {column} longer than {limit} characters, stored shortened (the drug is read from the full text)")
                texts.append(text[:limit])
            drug_text, dose_text, unit_text = texts
            self.intervals[(mrn, drug)].append(
                _Interval(start, end, mg, per_kg, drug_text, dose_text, unit_text, route,
                          _source_id(r), where, exact=as_entered is not None, optional=self.lenient is not None)
            )

    def valid_medication(self, med: dict[str, Any]) -> bool:
        idx = next((i for i, _u, r in self.entries if r is med), None)
        if idx is None:  # contained: validated with its order
            return True
        return self.valid(idx, med)

    def dose_steps(
        self, where: str, rtype: str, r: dict[str, Any], drug: str, name: str, as_entered: dict[str, str] | None
    ) -> list[tuple[tuple[float, float, str, str, str | None], dt.date, dt.date | None]] | None:
        """[(dose, first day, last day or None)], one per dosage step (ordered by ``sequence``), or
        per day of an administration over several days; None after a problem or skip."""
        if rtype == "MedicationAdministration":
            return self.administration_days(where, r, drug, name)
        key = "dosageInstruction" if rtype == "MedicationRequest" else "dosage"
        dosages = [(j, d) for j, d in enumerate(r.get(key) or []) if isinstance(d, dict)]
        # Steps in the order of their sequence number (a written taper: 20 -> 10 -> 5 mg).
        dosages.sort(key=lambda jd: (jd[1].get("sequence") is None, jd[1].get("sequence") or 0, jd[0]))
        if not dosages:
            dosages = [(0, {})]
        order_start, order_start_col, order_end, order_end_col = _order_period(rtype, r)
        steps: list[tuple[tuple[float, float, str, str, str | None], dt.date, dt.date | None]] = []
        prev_end: dt.date | None = None
        for n, (j, dosage) in enumerate(dosages):
            col = f"{key}[{j}]"
            per_day = _per_day(dosage.get("timing"))
            if per_day is None:
                self.out.skip(rtype, "timing that is not a regular frequency (e.g. as needed)")
                return None
            dar = (dosage.get("doseAndRate") or [{}])[0]
            dose = self.dose_of(where, rtype, dar.get("doseQuantity"), f"{col}.doseAndRate[0].doseQuantity", per_day,
                                _route(dosage.get("route")), drug, name, as_entered)
            if dose is None:
                return None
            repeat = (dosage.get("timing") or {}).get("repeat") or {}
            bounds = got if isinstance(got := repeat.get("boundsPeriod"), dict) else {}
            start_text, start_col = bounds.get("start"), f"{col}.timing.repeat.boundsPeriod.start"
            end_text, end_col = bounds.get("end"), f"{col}.timing.repeat.boundsPeriod.end"
            start: dt.date | None = None
            if start_text:
                start = self.date_of(where, start_col, start_text)
                if start is None:
                    return None
            elif n == 0 and order_start:
                start = self.date_of(where, order_start_col, order_start)
                if start is None:
                    return None
            elif n > 0 and prev_end is not None:
                start = prev_end + dt.timedelta(days=1)  # the next step follows the previous one
            if start is None:
                if n == 0:
                    self.out.skip(rtype, "no start date")
                else:
                    self.problem(where, f"{col}.timing.repeat.boundsPeriod.start", None,
                                 f"dosage step {n + 1} has no start and the step before it no end: it cannot be dated")
                return None
            end: dt.date | None = None
            if end_text:
                end = self.date_of(where, end_col, end_text)
                if end is None:
                    return None
            else:
                bd = repeat.get("boundsDuration")
                if isinstance(bd, dict) and bd.get("value") is not None:
                    days = _PERIOD_DAYS.get(str(bd.get("code") or bd.get("unit") or "d"))
                    if days is not None and float(bd["value"]) * days >= 1:
                        end = start + dt.timedelta(days=round(float(bd["value"]) * days) - 1)
                        end_col = f"{col}.timing.repeat.boundsDuration"
                if end is None and n == len(dosages) - 1 and order_end:
                    end = self.date_of(where, order_end_col, order_end)
                    end_col = order_end_col
                    if end is None:
                        return None
            if end is not None and end < start:
                self.problem(where, end_col, end_text or str(end), f"ends before it starts ({start.isoformat()})")
                return None
            if steps and steps[-1][2] is None and start <= steps[-1][1]:
                self.problem(where, start_col, start_text, "a dosage step starts before the step before it")
                return None
            steps.append((dose, start, end))
            prev_end = end
        return steps

    def administration_days(
        self, where: str, r: dict[str, Any], drug: str, name: str
    ) -> list[tuple[tuple[float, float, str, str, str | None], dt.date, dt.date | None]] | None:
        """One administration: its dose on its day; over an effectivePeriod of several days (or
        with a rate over a duration), the amount given on each day, in proportion to the hours of
        the period that fall on that day."""
        dosage = got if isinstance(got := r.get("dosage"), dict) else {}
        route = _route(dosage.get("route"))
        if r.get("effectiveDateTime"):
            start_text, start_col, end_text = r["effectiveDateTime"], "effectiveDateTime", None
        elif isinstance(r.get("effectivePeriod"), dict) and r["effectivePeriod"].get("start"):
            start_text, start_col = r["effectivePeriod"]["start"], "effectivePeriod.start"
            end_text = r["effectivePeriod"].get("end")
        else:
            self.out.skip("MedicationAdministration", "no start date")
            return None
        t0 = self.datetime_of(where, start_col, start_text)
        t1 = self.datetime_of(where, "effectivePeriod.end", end_text) if end_text else None
        if t0 is None or (end_text and t1 is None):
            return None
        if t1 is not None and t1 < t0:
            self.problem(where, "effectivePeriod.end", end_text, f"ends before it starts ({t0.isoformat(sep=' ')})")
            return None
        rate = dosage.get("rateQuantity")
        if isinstance(rate, dict) and rate.get("value") is not None and t1 is not None and t1 > t0:
            per_hour = _rate_mg_per_hour(rate)
            if per_hour is None:
                if dosage.get("dose") is None:
                    self.out.skip("MedicationAdministration", f"rate unit {rate.get('unit') or rate.get('code')!r} "
                                  "not convertible to mg per hour")
                    return None
            else:
                hours = (t1 - t0).total_seconds() / 3600
                dose = self.dose_of(where, "MedicationAdministration",
                                    {"value": Decimal(str(per_hour * hours)), "unit": "mg"}, "dosage.rateQuantity", 1.0,
                                    route, drug, name, None)
                if dose is None:
                    return None
                shown = f"{_plain(rate['value'])} {rate.get('unit') or rate.get('code')}"
                return self.split_by_day((dose[0], dose[1], shown, "mg", route), t0, t1)
        dose = self.dose_of(where, "MedicationAdministration", dosage.get("dose"), "dosage.dose", 1.0, route, drug, name, None)
        if dose is None:
            return None
        if t1 is None or t1.date() == t0.date():
            return [(dose, t0.date(), t0.date())]
        return self.split_by_day(dose, t0, t1)

    @staticmethod
    def split_by_day(
        dose: tuple[float, float, str, str, str | None], t0: dt.datetime, t1: dt.datetime
    ) -> list[tuple[tuple[float, float, str, str, str | None], dt.date, dt.date | None]]:
        total = (t1 - t0).total_seconds()
        days: list[tuple[tuple[float, float, str, str, str | None], dt.date, dt.date | None]] = []
        day = t0.date()
        while day <= t1.date():
            lo = max(t0, dt.datetime.combine(day, dt.time()))
            hi = min(t1, dt.datetime.combine(day + dt.timedelta(days=1), dt.time()))
            share = (hi - lo).total_seconds() / total if total else 1.0
            if share > 0:
                days.append(((dose[0] * share, dose[1] * share, dose[2], dose[3], dose[4]), day, day))
            day += dt.timedelta(days=1)
        return days

    def dose_of(
        self, where: str, rtype: str, q: Any, column: str, per_day: float, route: str | None, drug: str, name: str,
        as_entered: dict[str, str] | None,
    ) -> tuple[float, float, str, str, str | None] | None:
        """(mg/day, mg/kg/day, dose as entered, unit as entered, route), or None after a problem/skip."""
        recognised = drug in RECOGNISED_DRUGS
        if not isinstance(q, dict) or q.get("value") is None:
            reason = f"no dose (a {drug} order without a dose cannot be placed on the schedule)" if recognised else "no dose"
            self.out.skip(rtype, reason)
            return None
        try:
            amount = float(Decimal(str(q["value"])))
        except (InvalidOperation, ValueError):
            self.problem(where, f"{column}.value", q.get("value"), "not a number")
            return None
        if amount < 0:
            self.problem(where, f"{column}.value", q.get("value"), "a dose cannot be negative")
            return None
        unit = str(q.get("code") or q.get("unit") or "").strip()
        u = catalogue.normalise_unit(unit)
        value_text = str(_plain(q["value"]))
        if u in _MASS_UNITS:
            factor, weight_based = _MASS_UNITS[u]
            daily = amount * factor * per_day
            shown_unit = unit if weight_based else "mg"
            dose_text = f"{value_text} {unit}" + ("" if per_day == 1 else f" x {per_day:g}/day")
            if as_entered is None and not weight_based and per_day == 1 and u in ("mg", "g"):
                dose_text, shown_unit = value_text, u
            return (0.0, daily, dose_text, shown_unit, route) if weight_based else (daily, 0.0, dose_text, shown_unit, route)
        if u in _COUNT_UNITS or u.strip("{}") in _COUNT_UNITS:
            strengths = _STRENGTH.findall(name)
            if len(strengths) == 1:
                # One tablet of "Prednisone 5 MG Oral Tablet" is 5 mg: the strength is coded in the name.
                daily = amount * float(strengths[0]) * per_day
                return daily, 0.0, f"{value_text} x {strengths[0]} mg" + ("" if per_day == 1 else f" x {per_day:g}/day"), "mg", route
            reason = "dose in tablets or units without a single strength in mg in the product's name"
            self.out.skip(rtype, reason if not recognised else f"{drug}: {reason}")
            return None
        if recognised:
            self.problem(where, f"{column}.unit", unit,
                         f"dose unit not usable for {drug} (accepted: mg, g, mcg, mg/kg, g/kg, or tablets of a named strength)")
            return None
        self.out.skip(rtype, f"dose unit {unit!r} not convertible to mg")
        return None

    def finish_schedules(self) -> None:
        for (mrn, drug), intervals in self.intervals.items():
            for row in _schedule_rows(intervals):
                iv, start, mg, per_kg = row
                if mg and per_kg:
                    self.lenient = "MedicationRequest" if iv.optional else None
                    self.problem(iv.where, "dose", None,
                                 f"{drug} on {start.isoformat()}: doses in mg and in mg/kg overlap and cannot be added up")
                    self.lenient = None
                    continue
                self.out.meds.append(
                    med := MedIn(
                        mrn=mrn,
                        drug=drug,
                        drug_as_entered=iv.drug_as_entered,
                        start_date=start,
                        daily_dose_mg=mg,
                        dose_as_entered=iv.dose_as_entered if (mg or per_kg or iv.exact) else "0",
                        unit_as_entered=iv.unit_as_entered,
                        route=iv.route,
                        source="fhir",
                        source_id=iv.source_id,
                        where=iv.where,
                        dose_per_kg=per_kg or None,
                    )
                )
                if iv.optional:
                    self.out.optional_meds.add(id(med))

    def administration_context(self, r: dict[str, Any]) -> None:
        """Before orders are read: the last day each MedicationAdministration gives the order it
        names (a stopped order without an end date ends on it)."""
        rtype = "MedicationAdministration"
        if r.get("status") in _SKIP_STATUS[rtype]:
            return
        order = self.reference_to(r.get("request"))
        period = got if isinstance(got := r.get("effectivePeriod"), dict) else {}
        when = str(r.get("effectiveDateTime") or period.get("end") or period.get("start") or "")
        if isinstance(order, dict) and _FHIR_DATE.fullmatch(when[:10]):
            day = dt.date.fromisoformat(when[:10])
            if day > self.last_administration.get(id(order), dt.date.min):
                self.last_administration[id(order)] = day
