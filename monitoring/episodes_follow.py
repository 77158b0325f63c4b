"""Alert episodes kept current by a thread of their own, for the lab feed (PRODUCT.md §9, §10).

A write brings its patients' episodes up to date right after it commits (monitoring.episodes):
the writer waits for that evaluation. The HL7 listener cannot afford to: a laboratory sends a
patient's results in bursts (one ORU per panel, minutes of results in seconds), and each
evaluation reads the patient's whole record and runs every rule, several times the cost of
storing the message. So the listener acknowledges a message as soon as its results are committed,
and an ``EpisodeFollower`` evaluates the patients written in a background thread: every patient
written while an evaluation was running is evaluated once, in the next one, with everything
committed by then. Nothing is skipped or sampled: each patient written is evaluated after its
last write, through the same ``episodes.reconcile_patients`` every other write path uses.

What it changes for a clinician: an episode opens (and a notification can leave) a moment after
the ACK, instead of before it; the lag is logged when the listener stops (p50, p99, max). What it
does not change: the ward and the notifier evaluate every patient they show or check whatever the
episodes say, and bring the episodes up to date themselves; a listener killed with evaluations
pending loses none of its stored results, and on start the follower evaluates every active patient
once, so what a killed listener left is caught up.

A failure (the database busy beyond its timeout, unreachable) puts the patients back, and the
evaluation is tried again after ``retry_delay`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from monitoring.episodes import reconcile_patients
from monitoring.models import Patient

log = logging.getLogger(__name__)

LAGS_KEPT = 100_000  # lag samples kept for the summary (one float each)
# When a pass starts (design choices, ``listen --evaluate-every`` sets the first):
# - QUIET seconds after the last write, when the writes have stopped (a burst of a patient's
#   results, then silence: evaluated once, a quarter of a second after the burst);
# - at the latest DEFAULT_INTERVAL seconds after the oldest write not yet evaluated, when they do
#   not stop (a laboratory sending without pause: one pass every 2 s, each patient once);
# - never sooner than PAUSE_FACTOR times the last pass's length after it ended (under a sustained
#   load the evaluation takes at most a third of the listener's time).
# An episode then lags its result by a quarter of a second to about two seconds, against the ward
# board's 30 s refresh and the notifier's minutes.
DEFAULT_INTERVAL = 2.0
QUIET = 0.25
PAUSE_FACTOR = 2.0


class EpisodeFollower:
    """Evaluates, in one background thread, the patients handed to ``submit``, each pass every
    patient written since the last one: ``quiet`` seconds after the writes stop, at the latest
    ``interval`` seconds after the oldest unevaluated write, never sooner than twice the last
    pass's length after it (see QUIET, DEFAULT_INTERVAL, PAUSE_FACTOR).

    ``start()`` begins (and queues every active patient: catch-up after a restart); ``close()``
    finishes what is queued, then stops; ``wait_idle()`` returns once nothing is queued or
    running (tests, the benchmark)."""

    def __init__(
        self,
        engine: Engine,
        *,
        interval: float = DEFAULT_INTERVAL,
        quiet: float = QUIET,
        retry_delay: float = 1.0,
        catch_up: bool = True,
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval {interval}: must be 0 or more seconds")
        self._engine = engine
        self._interval = interval
        self._quiet = min(quiet, interval)
        self._last_write = float("-inf")
        self._next_pass = float("-inf")  # when the next pass may start
        self._retry_delay = retry_delay
        self._catch_up = catch_up
        self._pending: dict[int, float] = {}  # patient id -> when first written and not yet evaluated
        self._cond = threading.Condition()
        self._running = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.evaluations = 0  # evaluation passes done
        self.patients_evaluated = 0
        self.failures = 0
        self._lags: deque[float] = deque(maxlen=LAGS_KEPT)

    # --- the writer's side ----------------------------------------------------------------------

    def submit(self, patient_ids: Iterable[int]) -> None:
        """Patients whose data was just committed: evaluate them (once, however often written)."""
        now = time.monotonic()
        with self._cond:
            for pid in patient_ids:
                self._pending.setdefault(int(pid), now)
            self._last_write = now
            self._cond.notify_all()

    # --- life cycle ------------------------------------------------------------------------------

    def start(self) -> EpisodeFollower:
        if self._thread is None:
            if self._catch_up:
                self.submit(self._active_patients())
            self._thread = threading.Thread(target=self._run, name="episodes", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float | None = 60.0) -> None:
        """Evaluate what is queued, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("alert episodes: %d patient(s) not evaluated at stop; the next evaluation will", len(self._pending))
        log.info("alert episodes: %s", self.summary())

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """True once nothing is queued or being evaluated (False: still busy after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def lags(self) -> list[float]:
        """Seconds from a patient's first unevaluated write to the end of its evaluation."""
        with self._cond:
            return list(self._lags)

    def summary(self) -> str:
        lags = sorted(self.lags())
        if not lags:
            return f"{self.evaluations} evaluation(s), {self.patients_evaluated} patient evaluation(s), {self.failures} failure(s)"

        def q(p: float) -> float:
            return lags[min(len(lags) - 1, int(round(p * (len(lags) - 1))))] * 1000

        return (
            f"{self.evaluations} evaluation(s), {self.patients_evaluated} patient evaluation(s), "
            f"{self.failures} failure(s); lag from commit to evaluated p50 {q(0.5):.0f} ms, "
            f"p99 {q(0.99):.0f} ms, max {lags[-1] * 1000:.0f} ms"
        )

    # --- the thread ------------------------------------------------------------------------------

    def _active_patients(self) -> list[int]:
        try:
            with Session(self._engine) as s:
                return [int(i) for i in s.execute(select(col(Patient.id)).where(col(Patient.active).is_(True))).scalars()]
        except Exception:  # noqa: BLE001 - catch-up is a courtesy; the ward and the notifier evaluate anyway
            log.exception("alert episodes: active patients not read for the catch-up")
            return []

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending:
                    return
                # What is written meanwhile joins this pass (the module's QUIET, DEFAULT_INTERVAL
                # and PAUSE_FACTOR say when it starts).
                while not self._stopping:
                    oldest = min(self._pending.values())
                    due = max(self._next_pass, min(oldest + self._interval, self._last_write + self._quiet))
                    left = due - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch, self._pending = self._pending, {}
                self._running = True
                started = time.monotonic()
            ok = False
            try:
                reconcile_patients(self._engine, batch, give_way=False)
                ok = True
            except Exception:  # noqa: BLE001 - the results are stored; their bookkeeping is tried again
                self.failures += 1
                log.exception("alert episodes of %d patient(s) not updated; trying again in %.1f s", len(batch), self._retry_delay)
            done = time.monotonic()
            with self._cond:
                self._running = False
                self._next_pass = max(started + self._interval, done + PAUSE_FACTOR * (done - started))
                if ok:
                    self.evaluations += 1
                    self.patients_evaluated += len(batch)
                    self._lags.extend(done - t for t in batch.values())
                else:
                    for pid, t in batch.items():
                        self._pending.setdefault(pid, t)
                self._cond.notify_all()
            if not ok:
                if self._stopping:
                    with self._cond:
                        log.warning("alert episodes: %d patient(s) not evaluated at stop; the next evaluation will", len(self._pending))
                        self._pending.clear()
                        self._cond.notify_all()
                    return
                time.sleep(self._retry_delay)
