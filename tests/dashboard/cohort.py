"""A small cohort written through the write services, shared by the dashboard tests.

Relative to a reference date so the ward's "today" and "yesterday" are always meaningful:
- CRIT-1 "Cora Critical": ALT 400 U/L with the laboratory's ULN 35, troponin T above its ULN
  (cardiac involvement: critical), methylprednisolone from day 0 then IVIG, carbamazepine culprit.
- WARN-1 "Walt Warning": eosinophils rising from 1.0 to 1.8 x10^9/L today (crossed 1.5: a new
  eosinophilia warning since yesterday), clinic patient.
- CALM-1 "Carl Calm": normal results, no alerts.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from monitoring import auth, services

USER = "dr.test"


def signed_in_app(query: dict[str, str] | None = None) -> AppTest:
    """The dashboard (not yet run) for the cohort's clinician, on the database of DATABASE_URL,
    with ``query`` as the address's query string."""
    from tests.dashboard.apptest import app_test, sign_in

    at = sign_in(app_test(), USER)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    return at


def write_cohort(session: Session, today: dt.date) -> None:
    # Writes are signed by an account that may write (monitoring.auth): a clinician.
    auth.create_user(session, actor="test", username=USER, role=auth.CLINICIAN, password=None)
    d = lambda n: today - dt.timedelta(days=n)  # noqa: E731 - days before today
    services.add_patient(
        session, username=USER, mrn="CRIT-1", name="Cora Critical", sex="female", birth_date="1960-05-01",
        weight_kg=70, onset_date=d(10), culprit_drugs="Tegretol", setting="inpatient",
    )
    services.add_patient(
        session, username=USER, mrn="WARN-1", name="Walt Warning", sex="male", birth_date="1980-01-01",
        weight_kg=80, onset_date=d(30), culprit_drugs="allopurinol", setting="clinic",
    )
    services.add_patient(
        session, username=USER, mrn="CALM-1", name="Carl Calm", sex="male", birth_date="1990-01-01",
        weight_kg=75, onset_date=d(60), culprit_drugs="lamotrigine", setting="clinic",
        baseline_creatinine_mg_dl=0.9,
    )

    def lab(mrn: str, days: int, test: str, value: float | str, unit: str, ref_high: float | None = None) -> None:
        # Today's results at midnight: never "in the future", whenever the test runs.
        services.add_lab_result(
            session, username=USER, mrn=mrn, test=test,
            taken_at=dt.datetime.combine(d(days), dt.time(6, 0) if days else dt.time(0, 0)),
            value=value, unit=unit, ref_high=ref_high,
        )

    for days, alt in ((8, 250), (4, 380), (1, 400)):
        lab("CRIT-1", days, "alt", alt, "U/L", ref_high=35)
    lab("CRIT-1", 1, "troponin_t", 40, "ng/L")
    lab("CRIT-1", 8, "creatinine", 0.8, "mg/dL")
    lab("CRIT-1", 1, "creatinine", 1.0, "mg/dL")
    services.add_dose_change(session, username=USER, mrn="CRIT-1", drug="methylprednisolone", start_date=d(8),
                             dose=80, unit="mg", route="intravenous")
    services.add_dose_change(session, username=USER, mrn="CRIT-1", drug="omeprazole", start_date=d(8), dose=40, unit="mg")
    services.add_dose_change(session, username=USER, mrn="CRIT-1", drug="IVIG", start_date=d(1), dose=70, unit="g",
                             route="intravenous")

    lab("WARN-1", 10, "eosinophils", 1.0, "10^9/L")
    lab("WARN-1", 0, "eosinophils", 1800, "cells/uL")
    lab("WARN-1", 0, "alt", 30, "U/L")

    lab("CALM-1", 20, "alt", 25, "U/L")
    lab("CALM-1", 2, "alt", 22, "U/L")
    lab("CALM-1", 2, "eosinophils", 0.2, "10^9/L")
    lab("CALM-1", 2, "creatinine", 0.9, "mg/dL")
    session.commit()
