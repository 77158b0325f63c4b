"""HL7 v2 lab feed: messages per second with storage, and ACK latency, against a bare listener.

Two servers, each its own process, on the same framing code and the same library (python-hl7):

- ``store``: ``python -m monitoring listen`` on a migrated temporary SQLite file (WAL), storing
  every message through the intake path (messages that waited together in one transaction), and
  evaluating the alert episodes of the patients written beside it (monitoring/episodes_follow.py,
  a pass at most every 2 s under this load: the default of ``--evaluate-every``);
- ``bare``: the same MLLP server (``monitoring.hl7.server.serve``) whose storer parses the message
  with python-hl7 and builds the AA with it, never touching a database: what python-hl7's own MLLP
  server does for a handler (``hl7.mllp.HL7StreamReader.readmessage`` parses every message it
  reads) before the handler does anything with it.

The same senders (``--senders`` connections at once, each waiting for every ACK, as an interface
engine does) send the same synthetic ORU^R01 messages of 10 OBX each to one and then the other,
alternated over ``--rounds`` rounds; the medians are compared. Printed: messages per second of
each and their ratio (goal: storing at least 25 % of the bare rate), ACK latency p50 and p99 of
each and their ratios, and how far the alert episodes ran behind the ACKs (the listener's own
summary at stop: lag from a patient's commit to its evaluation, p50, p99, max); the run fails
unless, once the listener has stopped, every patient's open episodes are what an evaluation gives. ``--profile`` runs the storing path in-process under cProfile and prints
where the time goes (storing and evaluating each message in turn, as every other write path does). ``--quick``: tiny sizes, for the smoke test.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VT, FS_CR = b"\x0b", b"\x1c\x0d"
PATIENTS = 20
TESTS = [
    ("1742-6^ALT^LN", "U/L", 80.0), ("1920-8^AST^LN", "U/L", 60.0), ("6768-6^ALP^LN", "U/L", 100.0),
    ("2324-2^GGT^LN", "U/L", 50.0), ("1975-2^Bilirubin^LN", "umol/L", 15.0), ("2160-0^Creatinine^LN", "umol/L", 90.0),
    ("711-2^Eosinophils^LN", "10*9/L", 1.6), ("6690-2^WBC^LN", "10*9/L", 9.5), ("2276-4^Ferritin^LN", "ug/L", 700.0),
    ("1988-5^CRP^LN", "mg/L", 12.0),
]


def _day(k: int) -> str:
    import datetime as dt

    return (dt.date.today() - dt.timedelta(days=1 + k % 300)).strftime("%Y%m%d")


def adt(k: int) -> bytes:
    return (
        f"MSH|^~\\&|ADT|HOSP|DRESS|WARD|20261201060000||ADT^A01^ADT_A01|BENCH-ADT-{k}|P|2.5.1\r"
        f"PID|1||BENCH-{k:03d}^^^HOSP^MR||SYNTHETIC^BENCH {k}||19700101|F\r"
    ).encode()


def oru(tag: str, n: int) -> bytes:
    """Message ``n`` of a run: patient n mod 20, a day of its own, 10 results."""
    day = _day(n // PATIENTS)
    lines = [
        f"MSH|^~\\&|LIS|MAINLAB|DRESS|WARD|{day}0800||ORU^R01^ORU_R01|{tag}-{n}|P|2.5.1",
        f"PID|1||BENCH-{n % PATIENTS:03d}^^^HOSP^MR||SYNTHETIC^BENCH||19700101|F",
        f"OBR|1|PL-{tag}-{n}|FL-{tag}-{n}^MAINLAB|PANEL^Panel^L|||{day}0700",
    ]
    for k, (code, unit, value) in enumerate(TESTS, start=1):
        lines.append(f"OBX|{k}|NM|{code}||{value + (n % 7):g}|{unit}||N|||F|||{day}0730")
    return ("\r".join(lines) + "\r").encode()


def _ack(sock: socket.socket, buf: bytearray) -> bytes:
    while FS_CR not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    end = buf.index(FS_CR)
    block = bytes(buf[1:end])
    del buf[: end + 2]
    return block


def drive(port: int, messages: list[bytes], senders: int) -> tuple[float, list[float], int]:
    """(wall seconds, per-message ACK latencies, number of AA) with ``senders`` connections at once."""
    latencies: list[float] = []
    aa = [0]
    lock = threading.Lock()
    chunks = [messages[k::senders] for k in range(senders)]

    def run(chunk: list[bytes]) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
            buf = bytearray()
            own: list[float] = []
            ok = 0
            for m in chunk:
                t0 = time.perf_counter()
                s.sendall(VT + m + FS_CR)
                ack = _ack(s, buf)
                own.append(time.perf_counter() - t0)
                ok += b"MSA|AA|" in ack
            with lock:
                latencies.extend(own)
                aa[0] += ok

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, aa[0]


def _wait_port(log: Path, proc: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = re.search(r"listening on [\d.]+:(\d+)", log.read_text(errors="replace"))
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}: {log.read_text(errors='replace')}")
        time.sleep(0.05)
    raise SystemExit("server did not start")


def start(kind: str, db_url: str, tmp: Path, evaluate_every: float | None = None) -> tuple[subprocess.Popen[bytes], int]:
    log = tmp / f"{kind}.log"
    if kind == "store":
        cmd = [sys.executable, "-m", "monitoring", "--db", db_url, "listen", "--port", "0"]
        if evaluate_every is not None:
            cmd += ["--evaluate-every", str(evaluate_every)]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--bare-server"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=out, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    return proc, _wait_port(log, proc)


def bare_server() -> None:
    """The bare listener: the product's MLLP server, python-hl7's parse and ACK, no storage."""
    import logging

    import hl7

    from monitoring.hl7.ack import build_ack
    from monitoring.hl7.feed import Outcome
    from monitoring.hl7.server import ListenerConfig, run_listener

    logging.basicConfig(level=logging.WARNING)

    def store(raw: bytes) -> tuple[bytes, Outcome]:
        # Parsed as python-hl7's MLLP reader parses every message (hl7.mllp.streams readmessage).
        hl7.parse(raw.decode("utf-8", errors="replace"))
        return build_ack(raw, "AA", "stored 10").encode(), Outcome("AA", "stored 10")

    run_listener(ListenerConfig(port=0), store, ready=lambda port: print(f"listening on 127.0.0.1:{port}", file=sys.stderr, flush=True))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def episodes_behind(engine: Any) -> list[str]:
    """Patients whose open episodes differ from an evaluation now (empty: all up to date)."""
    import datetime as dt

    from sqlmodel import Session

    from monitoring.episodes import open_episodes
    from monitoring.guideline import load_profile
    from monitoring.records import load_records
    from monitoring.rules import evaluate

    prof, today, out = load_profile(), dt.date.today(), []
    with Session(engine) as s:
        records = load_records(s, None, active_only=True)
        stored: dict[int, set[str]] = {}
        for e in open_episodes(s):
            stored.setdefault(e.patient_id, set()).add(e.code)
        for r in records:
            want = {a.code for a in evaluate(r, today, prof)}
            if r.patient.id is not None and want != stored.get(r.patient.id, set()):
                out.append(f"{r.patient.mrn}: evaluated {sorted(want)}, open episodes {sorted(stored.get(r.patient.id, set()))}")
    return out


def profile(db_url: str, n: int) -> None:
    from sqlmodel import Session

    from monitoring.db import create_db_engine
    from monitoring.hl7.codes import load_code_map
    from monitoring.hl7.feed import store_message

    engine = create_db_engine(db_url)
    codes = load_code_map()
    messages = [oru("PROF", k) for k in range(n)]
    prof = cProfile.Profile()
    prof.enable()
    for m in messages:
        with Session(engine) as s:
            store_message(s, m, codes=codes)
            s.commit()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(28)
    print(f"profile of {n} messages stored in-process (cumulative):")
    print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--messages", type=int, default=600, help="messages per server per round (default 600)")
    ap.add_argument("--senders", type=int, default=4, help="connections sending at once (default 4)")
    ap.add_argument("--rounds", type=int, default=3, help="alternated rounds, medians compared (default 3)")
    ap.add_argument("--evaluate-every", type=float, metavar="SECONDS", help="the listener's --evaluate-every (default: its own default)")
    ap.add_argument("--profile", action="store_true", help="also profile the storing path in-process")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.bare_server:
        bare_server()
        return 0
    if args.quick:
        args.messages, args.senders, args.rounds = 20, 2, 1
    from monitoring.db import create_db_engine
    from monitoring.episodes_follow import DEFAULT_INTERVAL
    from monitoring.schema import upgrade

    with tempfile.TemporaryDirectory(prefix="bench_hl7_") as tmpdir:
        tmp = Path(tmpdir)
        db_url = f"sqlite:///{tmp / 'bench.db'}"
        eng = create_db_engine(db_url)
        upgrade(eng)
        eng.dispose()
        store_proc, store_port = start("store", db_url, tmp, args.evaluate_every)
        bare_proc, bare_port = start("bare", db_url, tmp)
        try:
            _t, _l, ok = drive(store_port, [adt(k) for k in range(PATIENTS)], 1)
            assert ok == PATIENTS, "the benchmark patients were not admitted"
            rates: dict[str, list[float]] = {"store": [], "bare": []}
            lat: dict[str, list[float]] = {"store": [], "bare": []}
            cpu: dict[str, list[float]] = {"store": [], "bare": []}  # server CPU seconds per message
            pids = {"store": store_proc.pid, "bare": bare_proc.pid}
            for r in range(args.rounds):
                msgs = [oru(f"R{r}", k + r * args.messages) for k in range(args.messages)]
                for kind, port in (("bare", bare_port), ("store", store_port)) if r % 2 == 0 else (("store", store_port), ("bare", bare_port)):
                    before = cpu_seconds(pids[kind])
                    wall, latencies, aa = drive(port, msgs, args.senders)
                    if kind == "store":
                        # The episodes of this round's patients are evaluated beside the listener:
                        # their CPU is counted once it has caught up (a pass waits at most about
                        # --evaluate-every after the last message; the lag printed at the end says).
                        time.sleep(2 * (DEFAULT_INTERVAL if args.evaluate_every is None else args.evaluate_every) + 1)
                    cpu[kind].append((cpu_seconds(pids[kind]) - before) / len(msgs))
                    if aa != len(msgs):
                        print(f"{kind}: only {aa} of {len(msgs)} messages acknowledged AA", file=sys.stderr)
                        return 1
                    rates[kind].append(len(msgs) / wall)
                    lat[kind].extend(latencies)
        finally:
            for p in (store_proc, bare_proc):
                p.terminate()
                p.wait(timeout=120)
        # The listener evaluates the patients written in a thread of its own (episodes_follow):
        # its summary at stop says how far behind the ACKs the alert episodes ran.
        follow = re.findall(r"alert episodes: (.*)", (tmp / "store.log").read_text(errors="replace"))
        from sqlalchemy import func, select
        from sqlmodel import Session

        from monitoring.models import LabResult

        eng = create_db_engine(db_url)
        with Session(eng) as s:
            n_labs = int(s.execute(select(func.count()).select_from(LabResult)).scalar_one())
        behind = episodes_behind(eng)
        eng.dispose()
        if behind:
            print(f"alert episodes not up to date after the listener stopped: {behind}", file=sys.stderr)
            return 1
        expected = 10 * args.messages * args.rounds
        if n_labs != expected:
            print(f"stored {n_labs} results, expected {expected}", file=sys.stderr)
            return 1
        store_rate, bare_rate = statistics.median(rates["store"]), statistics.median(rates["bare"])
        every = "its default" if args.evaluate_every is None else f"{args.evaluate_every:g} s"
        print(f"HL7 v2 over MLLP, {args.messages} messages x 10 OBX per round, {args.senders} senders at once, "
              f"{args.rounds} alternated round(s), listener --evaluate-every {every}; {n_labs} results stored and checked")
        print(f"messages/s: with storage {store_rate:.0f}, bare {bare_rate:.0f}: "
              f"ratio store / bare = {store_rate / bare_rate:.2f} (goal >= 0.25)")
        store_cpu, bare_cpu = statistics.median(cpu["store"]), statistics.median(cpu["bare"])
        print(f"server CPU per message (steadier on a loaded machine; storage includes its alert episodes' evaluation): "
              f"with storage {store_cpu * 1000:.2f} ms, bare {bare_cpu * 1000:.2f} ms: ratio bare / store = {bare_cpu / store_cpu:.2f} (goal >= 0.25)")
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            a, b = pct(lat["store"], q) * 1000, pct(lat["bare"], q) * 1000
            print(f"ACK latency {name}: with storage {a:.1f} ms, bare {b:.2f} ms: ratio = {a / b:.1f}")
        print(f"alert episodes (evaluated beside the listener): {follow[-1] if follow else 'no summary logged'}; "
              f"open episodes of all {PATIENTS} patients match a fresh evaluation")
        if args.profile:
            profile(db_url, 50 if args.quick else 300)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
