"""Drug resolver cost on import-sized input: every medication row of every import is resolved.

Prints ratios measured in one run (no absolute-time claim): a cold resolution of the corpus
strings vs the cached ones, and the resolver's share of reading a CSV medication file.

    python bench/bench_drugs.py [--quick]
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitoring import drugs  # noqa: E402
from monitoring.importers.csv_import import parse_csv  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "drug_names" / "corpus.csv"


def main() -> None:
    quick = "--quick" in sys.argv
    texts = [r["text"] for r in csv.DictReader(CORPUS.open(encoding="utf-8"))]
    drugs.drug_table()
    drugs._resolve_text.cache_clear()
    drugs.resolve_coded.cache_clear()
    t0 = time.perf_counter()
    for t in texts:
        drugs.resolve(t)
    cold = time.perf_counter() - t0
    passes = 5 if quick else 200
    t0 = time.perf_counter()
    for _ in range(passes):
        for t in texts:
            drugs.resolve(t)
    warm = (time.perf_counter() - t0) / passes
    print(f"resolver: {len(texts)} corpus strings, cached / cold = {warm / cold:.4f}")

    rows = 2_000 if quick else 50_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "meds.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["mrn", "start_date", "drug", "daily_dose", "unit"])
            for i in range(rows):
                w.writerow([f"M{i % 500}", f"2026-0{1 + i % 9}-{1 + i % 28:02d}", texts[i % len(texts)], "100", "mg"])
        drugs._resolve_text.cache_clear()
        drugs.resolve_coded.cache_clear()
        t0 = time.perf_counter()
        parse_csv(path, as_of=None)
        parse_time = time.perf_counter() - t0
        drugs._resolve_text.cache_clear()
        drugs.resolve_coded.cache_clear()
        t0 = time.perf_counter()
        for i in range(rows):
            drugs.normalise_drug(texts[i % len(texts)])
        resolve_time = time.perf_counter() - t0
    print(f"csv medications: {rows} rows, resolver / whole parse = {resolve_time / parse_time:.3f}")


if __name__ == "__main__":
    main()
