"""Run every benchmark: ``python -m bench [NAME ...]`` (``make bench``).

Each benchmark is a script ``bench/bench_<name>.py`` run as its own process (so start-up costs and
caches do not leak between them) and prints its figures as ratios measured in the same run: these
machines are shared and noisy, so no absolute time is a target.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if argv:
        wanted = {a.removeprefix("bench_").removesuffix(".py") for a in argv}
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in wanted]
        missing = wanted - {s.stem.removeprefix("bench_") for s in scripts}
        if missing:
            known = ", ".join(s.stem.removeprefix("bench_") for s in sorted(BENCH_DIR.glob("bench_*.py")))
            print(f"unknown benchmark(s): {', '.join(sorted(missing))} (known: {known})", file=sys.stderr)
            return 2
    status = 0
    for script in scripts:
        print(f"=== {script.stem}", flush=True)
        rc = subprocess.call([sys.executable, str(script)], cwd=BENCH_DIR.parent)
        if rc != 0:
            print(f"!!! {script.stem} exited {rc}", flush=True)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
