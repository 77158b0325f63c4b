"""``listen``: the HL7 v2 lab feed (PRODUCT.md §9), over MLLP or from a folder."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import TYPE_CHECKING

from monitoring.cli import EXIT_OK, BadInput

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from monitoring.episodes_follow import EpisodeFollower
    from monitoring.hl7.codes import CodeMap


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "listen",
        help="receive HL7 v2 results (ORU^R01) and patients (ADT^A01/A04/A08) over MLLP, or from a folder",
        description=(
            "A long-running HL7 v2 listener. Each message is stored through the intake path in one "
            "transaction and answered AA (stored), AE (stored except the OBX named, which wait in the "
            "intake review list) or AR (cannot be read; nothing stored). Local OBX-3 codes are mapped "
            "by lab_codes.toml ($DRESS_LAB_CODES, else the shipped example)."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=2575, help="TCP port (default 2575; 0 picks a free one)")
    p.add_argument("--folder", metavar="DIR", help="instead of MLLP, store the files an engine drops in DIR (moved to done/ or failed/)")
    p.add_argument("--codes", metavar="TOML", help="lab code map (default $DRESS_LAB_CODES, else the shipped example)")
    p.add_argument("--max-bytes", type=int, default=1_048_576, help="largest message accepted (default 1 MiB)")
    p.add_argument("--read-timeout", type=float, default=30.0, help="seconds to finish a message once begun (default 30)")
    p.add_argument("--idle-timeout", type=float, default=3600.0, help="seconds an idle connection stays open (default 3600; 0 = forever)")
    p.add_argument("--store-wait", type=float, default=60.0, help="seconds to wait for a locked database before answering AE (default 60)")
    p.add_argument(
        "--evaluate-every",
        type=float,
        metavar="SECONDS",
        help=(
            "the alert episodes of the patients written are evaluated beside the listener: a quarter of a second "
            "after the writes stop, at the latest SECONDS after the oldest write not yet evaluated "
            "(default 2, a design choice: DEFAULT_INTERVAL in monitoring/episodes_follow.py; 0: as soon as written)"
        ),
    )
    p.add_argument("--interval", type=float, default=1.0, help="--folder: seconds between passes (default 1)")
    p.add_argument("--once", action="store_true", help="--folder: one pass, then exit")
    p.set_defaults(func=cmd_listen)


def cmd_listen(args: argparse.Namespace) -> int:
    from monitoring.hl7.codes import CodeMapError, load_code_map

    try:
        codes = load_code_map(args.codes)
    except CodeMapError as exc:
        raise BadInput(exc.lines) from None
    if args.evaluate_every is not None and args.evaluate_every < 0:
        raise BadInput(f"--evaluate-every: value {args.evaluate_every}: must be 0 or more seconds")
    if args.max_bytes < 1024:
        raise BadInput(f"--max-bytes: value {args.max_bytes}: at least 1024")
    from monitoring.schema import open_database

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    from monitoring.episodes_follow import DEFAULT_INTERVAL, EpisodeFollower

    engine = open_database(args.db)
    # Alert episodes of the patients written are evaluated in a thread of their own, so that an
    # ACK never waits for an evaluation (monitoring/episodes_follow.py); stopped (queue finished) on exit.
    every = DEFAULT_INTERVAL if args.evaluate_every is None else args.evaluate_every
    follower = EpisodeFollower(engine, interval=every).start()
    try:
        return _run(args, engine, codes, follower)
    finally:
        follower.close()


def _run(args: argparse.Namespace, engine: Engine, codes: CodeMap, follower: EpisodeFollower) -> int:
    from monitoring.hl7.server import ListenerConfig, make_storer, run_listener

    if args.folder:
        from pathlib import Path

        from monitoring.hl7.folder import process_folder, watch_folder

        folder = Path(args.folder)
        if not folder.is_dir():
            raise BadInput(f"--folder: value {args.folder!r}: not a directory")
        store = make_storer(engine, codes, store_wait=args.store_wait, via="folder", follower=follower)
        if args.once:
            r = process_folder(folder, store, settle=0.0)
            print(f"{r.done} file(s) done, {r.failed} failed, {r.retried} left for the next pass")
            return EXIT_OK
        stopping = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.append(True))
        print(f"watching {folder} for HL7 v2 files (code map {codes.path})", file=sys.stderr, flush=True)
        watch_folder(folder, store, interval=args.interval, should_stop=lambda: bool(stopping))
        return EXIT_OK
    config = ListenerConfig(
        host=args.host,
        port=args.port,
        max_bytes=args.max_bytes,
        read_timeout=args.read_timeout,
        idle_timeout=args.idle_timeout,
        store_wait=args.store_wait,
    )
    store = make_storer(engine, codes, store_wait=args.store_wait, follower=follower)

    def ready(port: int) -> None:
        # The one line a supervisor (or a test) waits for.
        print(f"listening on {args.host}:{port} (code map {codes.path})", file=sys.stderr, flush=True)

    run_listener(config, store, ready=ready)
    return EXIT_OK
