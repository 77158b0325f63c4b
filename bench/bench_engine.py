"""Alert evaluation speed against merely reading the rows (the engine issue's ratio).

Generates the synthetic benchmark cohort (``monitoring.demo.generate_cohort``: by default 300
patients x 60 days of daily ALT, AST, creatinine, eosinophils, ferritin and temperature, with a
steroid schedule and its plan) into a temporary SQLite file, migrated like the product's, then
times, alternated and repeated (median of ``--runs``):

- (a) reading every patient's rows from the database: ``load_records`` in a fresh session;
- (b) evaluating every alert rule for every patient as of the last day, records already loaded.

Prints both medians, the ratio (b)/(a) (target <= 2) and (a+b)/(a), and the number of SELECT
statements one load issues (constant whatever the number of patients: set-based loading).

Usage: ``python bench/bench_engine.py [--patients 300] [--days 60] [--runs 7]``; ``python -m bench
engine`` runs it with the defaults.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from sqlalchemy import event  # noqa: E402
from sqlmodel import Session  # noqa: E402

from monitoring import schema  # noqa: E402
from monitoring.db import create_db_engine  # noqa: E402
from monitoring.demo import generate_cohort  # noqa: E402
from monitoring.guideline import load_profile  # noqa: E402
from monitoring.records import load_records  # noqa: E402
from monitoring.rules import evaluate  # noqa: E402
from monitoring.store import write_batch  # noqa: E402

TODAY = dt.date(2026, 6, 30)  # fixed: the cohort (and so the figures) do not depend on the run date


def build(path: Path, patients: int, days: int) -> tuple[int, int]:
    engine = create_db_engine(f"sqlite:///{path}")
    schema.upgrade(engine)
    pts, labs, meds = generate_cohort(patients, days, seed=3, today=TODAY)
    with Session(engine) as session:
        write_batch(session, patients=pts, labs=labs, meds=meds, username="bench", source="bench")
        session.commit()
    engine.dispose()
    return len(labs), len(meds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_engine_") as tmp:
        path = Path(tmp) / "bench.db"
        t0 = time.perf_counter()
        n_labs, n_meds = build(path, args.patients, args.days)
        print(
            f"cohort: {args.patients} patients x {args.days} days: {n_labs} results, {n_meds} dose rows "
            f"(generated and written in {time.perf_counter() - t0:.1f} s)"
        )
        engine = create_db_engine(f"sqlite:///{path}")
        profile = load_profile()
        selects: list[str] = []

        def count(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
            if statement.lstrip().upper().startswith("SELECT"):
                selects.append(statement)

        # Warm-up: connection pool, imports, caches on both sides (not timed).
        with Session(engine) as session:
            records = load_records(session)
        for r in records:
            evaluate(r, TODAY, profile)
        event.listen(engine, "before_cursor_execute", count)
        with Session(engine) as session:
            load_records(session)
        event.remove(engine, "before_cursor_execute", count)

        read_times: list[float] = []
        eval_times: list[float] = []
        n_alerts = 0
        for _ in range(args.runs):
            start = time.perf_counter()
            with Session(engine) as session:
                records = load_records(session)
            read_times.append(time.perf_counter() - start)

            start = time.perf_counter()
            n_alerts = sum(len(evaluate(r, TODAY, profile)) for r in records)
            eval_times.append(time.perf_counter() - start)
        engine.dispose()

    a, b = statistics.median(read_times), statistics.median(eval_times)
    print(f"records loaded: {len(records)} patients, {sum(len(r.labs) for r in records)} results; SELECTs per load: {len(selects)}")
    print(f"alerts raised as of {TODAY.isoformat()}: {n_alerts}")
    print(f"(a) read rows (load_records):       median {a * 1000:8.1f} ms over {args.runs} runs")
    print(f"(b) evaluate every alert (loaded):  median {b * 1000:8.1f} ms over {args.runs} runs")
    print(f"ratio (b)/(a)   = {b / a:.2f}   (target <= 2)")
    print(f"ratio (a+b)/(a) = {(a + b) / a:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
