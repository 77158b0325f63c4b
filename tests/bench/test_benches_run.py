"""The page and start-up benchmarks run end to end on tiny sizes (``--quick``), so they never rot.

No timing is asserted (shared machines: the figures are for people, printed by ``make bench``);
what is asserted is that each script completes, exercises the real pages and prints its ratios.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")


def _run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, f"bench/{script}", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_bench_pages_quick_prints_every_ratio() -> None:
    out = _run("bench_pages.py", "--quick")
    assert re.search(r"ratio 5 others / 2 others = \d+\.\d\d", out), out
    assert re.search(r"evaluate / read = \d+\.\d\d", out), out
    assert re.search(r"warm / cold = \d+\.\d+", out), out
    # The incremental evaluation is checked by the script itself: one write, one patient evaluated.
    assert "(1 of 5 patients evaluated again)" in out, out


@pytest.mark.skipif(not CHROMIUM.exists() and not os.environ.get("CI"),
                    reason="Debian chromium not installed (in CI this must run)")
def test_bench_startup_quick_reaches_the_ward_in_chromium() -> None:
    out = _run("bench_startup.py", "--quick")
    assert re.search(r"sign-in / floor = \d+\.\d\d; ward / floor = \d+\.\d\d", out), out


def test_bench_pages_refuses_an_unknown_option() -> None:
    done = subprocess.run([sys.executable, "bench/bench_pages.py", "--no-such-option"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--no-such-option" in done.stderr


def test_bench_hl7_quick_prints_rate_and_latency_ratios() -> None:
    out = _run("bench_hl7.py", "--quick")
    assert "200 results stored and checked" in out, out
    assert re.search(r"ratio store / bare = \d+\.\d\d", out), out
    assert re.search(r"ACK latency p50: with storage [\d.]+ ms, bare [\d.]+ ms: ratio = [\d.]+", out), out
    assert re.search(r"ACK latency p99: .* ratio = [\d.]+", out), out
    assert re.search(r"server CPU per message .*: ratio bare / store = \d+\.\d\d", out), out
    assert re.search(r"alert episodes .*lag from commit to evaluated p50 \d+ ms.*match a fresh evaluation", out), out


def test_bench_drugs_quick_prints_its_ratios() -> None:
    out = _run("bench_drugs.py", "--quick")
    assert re.search(r"cached / cold = \d+\.\d+", out), out
    assert re.search(r"resolver / whole parse = \d+\.\d+", out), out
