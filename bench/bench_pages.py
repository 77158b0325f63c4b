"""Page reruns as a clinician feels them (issue 8): the patient timeline and the ward overview.

Each figure is a ratio of medians of alternated, repeated runs in this one process (shared, noisy
machines: no absolute time is a target). Pages run in Streamlit's AppTest on dashboard/app.py,
signed in as the dashboard tests do, on temporary SQLite files migrated like the product's and
filled with the synthetic benchmark cohort (``monitoring.demo.generate_cohort``, via bench/cohort.py).

1. Patient timeline: one patient of ``--days`` (60) days, alone with ``--few`` (50) other patients
   or with ``--many`` (5,000) others of ``--other-days`` (10) days each (short histories keep the
   set-up to seconds; what matters is the number of rows that are *not* this patient's). Warm caches,
   then the rerun after an unrelated widget change: the units toggle (both figures already built).
   Target: rerun(many) / rerun(few) <= 1.2.
2. Ward overview, ``--ward`` (300) active patients of ``--ward-days`` (60) days of daily results:
   - from the dashboard's data path: evaluating every patient (``dashboard.ward_model.ward_row``: alerts
     as of today and yesterday, course, changes) against reading their rows
     (``monitoring.records.load_records``). Target <= 2.
   - the ward page (AppTest): warm rerun with nothing changed / cold run (every cache empty),
     target <= 0.2; rerun after ONE new result / cold run, with the number of patients evaluated
     again (target: 1).

Usage: ``python bench/bench_pages.py [--runs 7]``; ``python -m bench pages``; ``--quick`` runs tiny
sizes (the smoke test: it runs end to end, the figures mean nothing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench.cohort import BENCH_USER, alternate, build_database, median, ms  # noqa: E402

APP = str(ROOT / "dashboard" / "app.py")
TARGET_MRN = "SYN-000001"


def _signed_in_app(url: str) -> object:
    """An AppTest of the real entry file, signed in as the page tests do (dashboard.auth state)."""
    from sqlmodel import Session
    from streamlit.testing.v1 import AppTest

    from dashboard import auth as dashboard_auth
    from monitoring import auth
    from monitoring.db import create_db_engine

    with Session(create_db_engine(url)) as s:
        user = auth.get_user(s, BENCH_USER)
        assert user is not None and user.id is not None
        signed = auth.SignedIn(user.id, user.username, user.role)
    at = AppTest.from_file(APP, default_timeout=600)
    os.environ["DATABASE_URL"] = url  # the server-side session is opened in the benchmark's database
    for key, value in dashboard_auth.signed_in_state(signed).items():
        at.session_state[key] = value
    return at


def _run(at: object, url: str) -> None:
    os.environ["DATABASE_URL"] = url  # the dashboard resolves its database on every run
    at.run()  # type: ignore[attr-defined]
    if at.exception:  # type: ignore[attr-defined]
        raise SystemExit(f"page failed: {[e.value for e in at.exception]}")  # type: ignore[attr-defined]


def bench_timeline(tmp: Path, few: int, many: int, days: int, other_days: int, runs: int) -> float:
    today = dt.date.today()
    urls: dict[str, str] = {}
    for label, n in (("few", few), ("many", many)):
        path = tmp / f"timeline_{label}.db"
        t0 = time.perf_counter()
        # The patient shown: the same cohort of one (same seed) in both databases.
        build_database(path, 1, days, seed=11, today=today, user=True)
        n_labs, _ = build_database(path, n, other_days, seed=12, today=today, mrn_offset=1)
        print(f"timeline db '{label}': 1 patient x {days} days + {n} others x {other_days} days "
              f"({n_labs} other results), built in {time.perf_counter() - t0:.1f} s")
        urls[label] = f"sqlite:///{path}"

    apps = {}
    state = {}
    for label, url in urls.items():
        at = _signed_in_app(url)
        at.session_state["patient_mrn"] = TARGET_MRN  # type: ignore[attr-defined]
        os.environ["DATABASE_URL"] = url
        at.switch_page("views/timeline.py")  # type: ignore[attr-defined]
        _run(at, url)
        title = " ".join(m.value for m in at.markdown)  # type: ignore[attr-defined]
        if "SYNTHETIC" not in title and "synthetic" not in title.lower():
            raise SystemExit(f"timeline ({label}) does not show the synthetic patient")
        apps[label] = at
        state[label] = "conventional"

    def toggle(label: str) -> None:
        at = apps[label]
        state[label] = "SI" if state[label] == "conventional" else "conventional"
        at.segmented_control(key="timeline_units").set_value(state[label])  # type: ignore[attr-defined]
        _run(at, urls[label])

    for _ in range(4):  # warm: both unit systems' figures and tables built and cached, on both sides
        for label in apps:
            toggle(label)
    times = alternate({label: (lambda lb=label: toggle(lb)) for label in apps}, runs)
    few_s, many_s = median(times["few"]), median(times["many"])
    ratio = many_s / few_s
    print(f"timeline rerun after the units toggle: {few} others {ms(few_s)}, {many} others {ms(many_s)}")
    print(f"  ratio {many} others / {few} others = {ratio:.2f}  (target <= 1.2: {'met' if ratio <= 1.2 else 'NOT met'})")
    return ratio


def bench_ward(tmp: Path, patients: int, days: int, runs: int) -> None:
    import streamlit as st
    from sqlmodel import Session

    from dashboard import store, ward_model
    from monitoring import services
    from monitoring.db import create_db_engine
    from monitoring.records import load_records

    today = dt.date.today()
    path = tmp / "ward.db"
    t0 = time.perf_counter()
    n_labs, n_meds = build_database(path, patients, days, seed=3, today=today, user=True)
    url = f"sqlite:///{path}"
    print(f"ward db: {patients} active patients x {days} days: {n_labs} results, {n_meds} dose rows "
          f"(built in {time.perf_counter() - t0:.1f} s)")
    os.environ["DATABASE_URL"] = url
    eng = create_db_engine(url)
    prof = store.profile()

    # (a) reading every active patient's rows; (b) the dashboard's evaluation of them. (b) runs on
    # records freshly read (not timed) each time: a record caches its per-test index and its
    # steroid course on first use, and evaluating the same objects again would time a warm cache.
    def read() -> None:
        with Session(eng) as s:
            load_records(s, active_only=True)

    eval_times: list[float] = []

    def evaluate() -> None:
        with Session(eng) as s:
            records = load_records(s, active_only=True)
        t0 = time.perf_counter()
        for r in records:
            ward_model.ward_row(r, prof, today)
        eval_times.append(time.perf_counter() - t0)

    read(), evaluate()
    eval_times.clear()
    t = alternate({"read": read, "evaluate": evaluate}, runs)
    t["evaluate"] = eval_times
    read_s, eval_s = median(t["read"]), median(t["evaluate"])
    print(f"ward data path: read rows {ms(read_s)}, evaluate every patient (today and yesterday) {ms(eval_s)}")
    print(f"  evaluate / read = {eval_s / read_s:.2f}  (target <= 2: {'met' if eval_s / read_s <= 2 else 'NOT met'}); "
          f"(read + evaluate) / read = {(read_s + eval_s) / read_s:.2f}")

    at = _signed_in_app(url)
    _run(at, url)  # imports, engine, first paint: not timed

    def cold() -> None:
        st.cache_data.clear()
        ward_model.clear_ward_cache()
        _run(at, url)

    def warm() -> None:
        _run(at, url)

    counter = iter(range(1, 10_000))

    def after_write() -> None:
        # One new result for one patient (written like the Entry page does), then the rerun.
        with Session(eng) as s:
            services.add_lab_result(
                s, username=BENCH_USER, mrn=f"SYN-{min(7, patients):06d}", test="crp",
                taken_at=dt.datetime.combine(today, dt.time(0, 0)) - dt.timedelta(minutes=next(counter)),
                value=5, unit="mg/L",
            )
            s.commit()
        st.cache_data.clear()  # what the page's write does (store.clear_caches)
        t0 = time.perf_counter()
        _run(at, url)
        times_after.append(time.perf_counter() - t0)

    times_after: list[float] = []
    t = alternate({"cold": cold, "warm": warm, "after_write": after_write}, runs)
    cold_s, warm_s, after_s = median(t["cold"]), median(t["warm"]), median(times_after)
    evaluated = ward_model.last_ward_evaluation()
    rows = len([m for m in at.markdown if "dm-ward" in m.value])  # type: ignore[attr-defined]
    if rows != 1:
        raise SystemExit("the ward table is not on the page")
    print(f"ward page: cold {ms(cold_s)}, warm rerun {ms(warm_s)}, rerun after one new result {ms(after_s)} "
          f"({len(evaluated.evaluated)} of {evaluated.patients} patients evaluated again)")
    print(f"  warm / cold = {warm_s / cold_s:.3f}  (target <= 0.2: {'met' if warm_s / cold_s <= 0.2 else 'NOT met'}); "
          f"after one write / cold = {after_s / cold_s:.3f}  (only that patient: "
          f"{'met' if len(evaluated.evaluated) == 1 else 'NOT met'})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--few", type=int, default=50)
    ap.add_argument("--many", type=int, default=5000)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--other-days", type=int, default=10)
    ap.add_argument("--ward", type=int, default=300)
    ap.add_argument("--ward-days", type=int, default=60)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 2 runs: a smoke test, not a measurement")
    ap.add_argument("--only", choices=("timeline", "ward"), help="run one part")
    args = ap.parse_args(argv)
    if args.quick:
        args.few, args.many, args.days, args.other_days, args.ward, args.ward_days, args.runs = 2, 5, 10, 3, 5, 10, 2
    logging.disable(logging.WARNING)  # Streamlit's "no runtime" notices outside `streamlit run`
    with tempfile.TemporaryDirectory(prefix="bench_pages_") as tmp:
        if args.only in (None, "timeline"):
            bench_timeline(Path(tmp), args.few, args.many, args.days, args.other_days, args.runs)
        if args.only in (None, "ward"):
            bench_ward(Path(tmp), args.ward, args.ward_days, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
