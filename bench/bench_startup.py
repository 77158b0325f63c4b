"""Start-up as a clinician feels it (issue 8): from `streamlit run` to the first paint in Chromium.

Each run starts a fresh server process (``streamlit run``, headless, on a free localhost port) and
a fresh browser context in one headless Chromium (Debian's, through Playwright; the browser itself
is started once, before any timing), and times from just before the server process is spawned to:

- floor: a page that only prints a title (``st.title``): the framework's own start-up and paint;
- sign-in: dashboard/app.py's sign-in form painted (the gate every page sits behind);
- ward: the ward overview's table painted after signing in with a real account (the password is
  typed and verified by the product: argon2), on a temporary database holding ``--patients``
  (30: a ward) x ``--days`` (60) days of the synthetic benchmark cohort. The ward is evaluated
  cold: this is the server's first run.

The server is polled for readiness every 20 ms, then the page is loaded; runs alternate floor and
app; the figures are medians over ``--runs`` and the ratios sign-in / floor and ward / floor.

Usage: ``python bench/bench_startup.py [--runs 5] [--patients 30]``; ``python -m bench startup``;
``--quick`` (2 runs, 3 patients) is the smoke test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench.cohort import BENCH_PASSWORD, BENCH_USER, build_database, median  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
FLOOR_TITLE = "DRESS monitor"
FLOOR_APP = f'import streamlit as st\n\nst.title("{FLOOR_TITLE}")\n'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``streamlit run SCRIPT`` in its own process group, stopped (the whole group) on exit."""

    def __init__(self, script: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(self.port),
             "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                raise SystemExit(f"streamlit did not start:\n{out[-3000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        if self.proc.stdout:
            self.proc.stdout.close()


def _no_exception(page: object) -> None:
    errors = page.query_selector_all('[data-testid="stException"]')  # type: ignore[attr-defined]
    if errors:
        raise SystemExit(f"page raised: {[e.inner_text()[:500] for e in errors]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--patients", type=int, default=30)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--quick", action="store_true", help="2 runs, 3 patients: a smoke test, not a measurement")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.patients, args.days = 2, 3, 10
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is not installed: start-up not measured", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench_startup_") as tmp_name:
        tmp = Path(tmp_name)
        floor_script = tmp / "floor.py"
        floor_script.write_text(FLOOR_APP, encoding="utf-8")
        db = tmp / "ward.db"
        n_labs, _ = build_database(db, args.patients, args.days, user=True, today=dt.date.today())
        print(f"database: {args.patients} active patients x {args.days} days ({n_labs} results), one clinician account")
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "PYTHONDONTWRITEBYTECODE": "1"}
        app_script = ROOT / "dashboard" / "app.py"

        times: dict[str, list[float]] = {"floor": [], "sign-in": [], "ward": []}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:

                def run(script: Path, then: Callable[[object, float], None]) -> None:
                    context = browser.new_context(viewport={"width": 1366, "height": 768})
                    page = context.new_page()
                    t0 = time.perf_counter()
                    server = Server(script, env)
                    try:
                        server.wait_ready()
                        page.goto(server.base + "/", wait_until="commit")
                        then(page, t0)
                    finally:
                        context.close()
                        server.stop()

                def floor(page: object, t0: float) -> None:
                    page.wait_for_selector(f"h1:has-text('{FLOOR_TITLE}')", timeout=120_000)  # type: ignore[attr-defined]
                    times["floor"].append(time.perf_counter() - t0)

                def app(page: object, t0: float) -> None:
                    user_box = page.get_by_role("textbox", name="User name")  # type: ignore[attr-defined]
                    user_box.wait_for(timeout=120_000)
                    times["sign-in"].append(time.perf_counter() - t0)
                    user_box.fill(BENCH_USER)
                    page.get_by_role("textbox", name="Password").fill(BENCH_PASSWORD)  # type: ignore[attr-defined]
                    page.get_by_role("button", name="Sign in").click()  # type: ignore[attr-defined]
                    page.wait_for_selector("table.dm-ward tr.dm-row", timeout=120_000)  # type: ignore[attr-defined]
                    times["ward"].append(time.perf_counter() - t0)
                    _no_exception(page)
                    shown = len(page.query_selector_all("table.dm-ward tr.dm-row"))  # type: ignore[attr-defined]
                    if shown != args.patients:
                        raise SystemExit(f"the ward shows {shown} patients, expected {args.patients}")

                # Warm-up (not timed): the OS file cache for Python, Streamlit and the project.
                run(floor_script, lambda page, t0: floor(page, t0))
                run(app_script, lambda page, t0: app(page, t0))
                for k in times:
                    times[k].clear()
                for _ in range(args.runs):
                    run(floor_script, floor)
                    run(app_script, app)
            finally:
                browser.close()

    f, s, w = median(times["floor"]), median(times["sign-in"]), median(times["ward"])
    print(f"start-up to first paint (median of {args.runs}, alternated): floor (a title only) {f:.2f} s, "
          f"sign-in form {s:.2f} s, ward overview after signing in {w:.2f} s")
    print(f"  sign-in / floor = {s / f:.2f}; ward / floor = {w / f:.2f} (sign-in to ward: {w - s:.2f} s, "
          f"typing and argon2 verification included)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
