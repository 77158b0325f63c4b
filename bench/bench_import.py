"""CSV import speed against a bare csv + sqlite3 program (the speed issue's ratio).

Generates synthetic labs CSVs (100,000 and 1,000,000 rows; 200 synthetic patients, a mix of tests
and units so conversions run) in a temporary directory, then times as whole processes, alternated,
median of 3 runs each:

- ``python -m monitoring --db FILE import patients.csv labs.csv`` (the product: validation,
  conversion, conflict checks, audit, one transaction), on a freshly initialised database;
- a bare program: ``csv`` module + ``sqlite3`` ``executemany`` into an equivalent table (the same
  ``patient`` and ``lab_result`` tables and indexes: a copy of the freshly initialised database),
  one transaction, no checks.

Prints each median and the ratio product / bare, for wall-clock time and for CPU time (user +
system of the process; on a shared, loaded machine the CPU ratio is the steadier figure). Usage: ``python bench/bench_import.py [--rows N ...]``.

``--unindexed-bare``: the bare program writes into a ``lab_result`` table without its secondary
indexes (what a program that only appends would do), so the ratio also counts the index upkeep the
product must do to find conflicts and serve the pages.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (test, unit, low, high): values inside physiological bounds, some in non-canonical units.
TESTS = (
    ("alt", "U/L", 10, 900),
    ("alt", "ukat/L", 0.2, 15),
    ("ast", "U/L", 10, 700),
    ("creatinine", "mg/dL", 0.5, 4),
    ("creatinine", "umol/L", 40, 350),
    ("eosinophils", "10^9/L", 0.0, 4),
    ("eosinophils", "cells/uL", 0, 4000),
    ("ferritin", "ng/mL", 20, 5000),
    ("1742-6", "U/L", 10, 900),
    ("temperature", "Cel", 36, 40),
)
PATIENTS = 200

BARE_PROGRAM = r'''
import csv, sqlite3, sys
db, patients_csv, labs_csv = sys.argv[1], sys.argv[2], sys.argv[3]
con = sqlite3.connect(db)
con.execute("PRAGMA journal_mode = WAL")
con.execute("PRAGMA synchronous = NORMAL")
with con:
    with open(patients_csv, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        con.executemany(
            "INSERT INTO patient (mrn, name, culprit_drugs, setting, active, synthetic, created_at, updated_at)"
            " VALUES (?, ?, '[]', 'inpatient', 1, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            [(r[0], r[1]) for r in reader],
        )
    ids = dict(con.execute("SELECT mrn, id FROM patient"))
    with open(labs_csv, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        rows = [(ids[r[0]], r[2], r[1], float(r[3]), r[4], r[3], r[4], "csv") for r in reader]
    con.executemany(
        "INSERT INTO lab_result (patient_id, test, taken_at, value, unit, original_value, original_unit, source,"
        " hidden, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, CURRENT_TIMESTAMP)",
        rows,
    )
con.close()
'''


def write_csvs(directory: Path, rows: int, seed: int = 7) -> tuple[Path, Path]:
    rnd = random.Random(seed)
    patients = directory / "patients.csv"
    with patients.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["mrn", "name", "weight_kg", "onset_date"])
        for i in range(PATIENTS):
            w.writerow([f"SYN{i:05d}", f"Synthetic Patient {i}", 70, "2025-01-01"])
    labs = directory / f"labs_{rows}.csv"
    start = dt.datetime(2025, 1, 1, 6, 0)
    with labs.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["mrn", "taken_at", "test", "value", "unit"])
        per_patient = rows // PATIENTS + 1
        n = 0
        for i in range(PATIENTS):
            for k in range(per_patient):
                if n == rows:
                    break
                # Unique (patient, test, time): one panel slot per minute-step.
                test, unit, lo, hi = TESTS[k % len(TESTS)]
                when = start + dt.timedelta(minutes=k)
                w.writerow([f"SYN{i:05d}", when.isoformat(timespec="minutes"), test, f"{rnd.uniform(lo, hi):.2f}", unit])
                n += 1
    return patients, labs


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def _drop_lab_indexes(db: Path) -> None:
    con = sqlite3.connect(db)
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'lab_result' AND sql IS NOT NULL")]
    for name in names:
        con.execute(f'DROP INDEX "{name}"')
    con.commit()
    con.close()


def bench(rows: int, repeats: int, tmp: Path, unindexed_bare: bool = False) -> dict[str, tuple[float, float]]:
    patients, labs = write_csvs(tmp, rows)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    template = tmp / "template.db"
    if not template.exists():
        subprocess.run([sys.executable, "-m", "monitoring", "--db", str(template), "init"], cwd=ROOT, env=env, check=True, capture_output=True)
        con = sqlite3.connect(template)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
    bare_script = tmp / "bare.py"
    bare_script.write_text(BARE_PROGRAM)
    times: dict[str, list[tuple[float, float]]] = {"product": [], "bare": []}
    for r in range(repeats):
        pdb, bdb = tmp / f"product_{r}.db", tmp / f"bare_{r}.db"
        shutil.copyfile(template, pdb)
        shutil.copyfile(template, bdb)
        if unindexed_bare:
            _drop_lab_indexes(bdb)
        pair = [
            ("product", [sys.executable, "-m", "monitoring", "--db", str(pdb), "import", str(patients), str(labs)]),
            ("bare", [sys.executable, str(bare_script), str(bdb), str(patients), str(labs)]),
        ]
        if r % 2:
            pair.reverse()  # alternate which goes first, so caches favour neither
        for name, cmd in pair:
            times[name].append(run(cmd, env))
        for p in tmp.glob(f"*_{r}.db*"):
            p.unlink()
    return {
        name: (statistics.median(t[0] for t in runs), statistics.median(t[1] for t in runs))
        for name, runs in times.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--unindexed-bare", action="store_true", help="the bare program's lab_result table has no secondary index")
    args = parser.parse_args()
    bare = "bare csv+sqlite3 (unindexed)" if args.unindexed_bare else "bare csv+sqlite3"
    with tempfile.TemporaryDirectory(prefix="bench_import_") as d:
        tmp = Path(d)
        for rows in args.rows:
            m = bench(rows, args.repeats, tmp, args.unindexed_bare)
            (pw, pc), (bw, bc) = m["product"], m["bare"]
            print(
                f"labs CSV {rows:>9,} rows (median of {args.repeats}): "
                f"import {pw:6.2f} s wall / {pc:6.2f} s CPU; {bare} {bw:6.2f} s wall / {bc:6.2f} s CPU; "
                f"ratio {pw / bw:.2f} wall, {pc / bc:.2f} CPU",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
