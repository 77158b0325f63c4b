"""Cohort-building helpers shared by the benchmarks (not a benchmark itself: no ``bench_`` prefix).

Every cohort is the synthetic benchmark cohort of ``monitoring.demo.generate_cohort`` (MRNs
SYN-000001 ..., labelled synthetic), written through the product's own write path
(``monitoring.store.write_batch``) into a temporary SQLite file migrated by Alembic exactly like the
product's database, so the benchmarks measure the indexes and schema the product runs on.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from sqlmodel import Session  # noqa: E402

from monitoring import schema  # noqa: E402
from monitoring.db import create_db_engine  # noqa: E402
from monitoring.demo import generate_cohort  # noqa: E402
from monitoring.store import write_batch  # noqa: E402

# Fixed reference date: the cohort, and so the figures, do not depend on the day of the run.
TODAY = dt.date(2026, 6, 30)
BENCH_USER = "bench.clinician"
# Meets the password policy (monitoring.auth.check_password_policy); a throw-away database only.
BENCH_PASSWORD = "correct horse battery staple 42"


def build_database(
    path: Path, patients: int, days: int, *, seed: int = 3, today: dt.date = TODAY, user: bool = False,
    mrn_offset: int = 0,
) -> tuple[int, int]:
    """Write a cohort of ``patients`` x ``days`` into the SQLite file ``path`` (created and migrated);
    returns (results, dose rows) written. ``user`` also creates a clinician account
    (BENCH_USER / BENCH_PASSWORD) so a benchmark can sign in. ``mrn_offset`` shifts the MRNs
    (SYN-<offset + i>) so cohorts can be added to a database that holds one already."""
    from monitoring import auth

    engine = create_db_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    pts, labs, meds = generate_cohort(patients, days, seed=seed, today=today)
    if mrn_offset:
        rename = {p.mrn: f"SYN-{int(p.mrn.removeprefix('SYN-')) + mrn_offset:06d}" for p in pts}
        pts = [_with_mrn(p, rename[p.mrn]) for p in pts]
        labs = [_with_mrn(r, rename[r.mrn]) for r in labs]
        meds = [_with_mrn(r, rename[r.mrn]) for r in meds]
    with Session(engine) as session:
        if user and auth.get_user(session, BENCH_USER) is None:
            auth.create_user(session, actor="bench", username=BENCH_USER, role=auth.CLINICIAN, password=BENCH_PASSWORD)
        write_batch(session, patients=pts, labs=labs, meds=meds, username="bench", source="bench")
        session.commit()
    engine.dispose()
    return len(labs), len(meds)


def _with_mrn(record: object, mrn: str) -> object:
    import dataclasses

    return dataclasses.replace(record, mrn=mrn)  # type: ignore[type-var]


def alternate(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Time each function ``runs`` times, alternated (a, b, a, b, ...) so that drift on a shared
    machine falls on every side alike; returns the seconds per run."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
