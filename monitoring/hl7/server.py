"""The MLLP listener (PRODUCT.md §9): HL7 v2 messages in, one ACK per message out.

Framing (MLLP: ``<VT> message <FS><CR>``) is read here on asyncio streams rather than with
python-hl7's ``HL7StreamReader.readblock``, because the listener must tell an idle connection
(normal: engines keep one open for hours) from a half-sent message (the sender stalled), and must
answer an oversized message with AR naming its control ID, which ``readblock`` discards.
python-hl7 parses each message and builds each ACK (monitoring/hl7/message.py, ack.py).

Storing runs on ONE worker thread: every sender's messages are written one after another (SQLite
has one writer anyway), while the event loop keeps reading, timing out and answering. Messages that
arrive while the worker is storing wait, and are then stored together in one transaction (at most
``MAX_BATCH``): one commit and one alert-episode step for all of them instead of one per message
(a message that arrives at an idle listener is stored at once, alone). Should anything in such a
transaction fail, it is rolled back whole and each of its messages is stored again alone, in its
own transaction, with its own answer. A message is acknowledged AA only after its transaction has
committed (SQLite WAL, ``synchronous = NORMAL``: durable when the listener process dies, as the
fault tests show; a power loss may lose the last commits); a database that stays locked longer
than ``store_wait`` seconds gets AE "not stored, send again", never a false AA.

Logs name the control ID, sender, ACK code and counts, never a patient or a value.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from monitoring.episodes import defer_reconciliation
from monitoring.episodes_follow import EpisodeFollower
from monitoring.hl7.ack import build_ack
from monitoring.hl7.codes import CodeMap
from monitoring.hl7.feed import Outcome, store_message

__all__ = ["VT", "FS_CR", "MAX_BATCH", "ListenerConfig", "Storer", "frame", "make_storer", "run_listener", "serve"]

log = logging.getLogger("monitoring.hl7")

VT = b"\x0b"
FS_CR = b"\x1c\x0d"


def frame(message: bytes | str) -> bytes:
    """A message in its MLLP envelope."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    return VT + data + FS_CR


@dataclass(frozen=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 2575
    max_bytes: int = 1_048_576  # a message over this is refused (AR) and the connection closed
    read_timeout: float = 30.0  # seconds to finish a message once its first byte has arrived
    idle_timeout: float = 3600.0  # seconds a connection may stay open with nothing sent (0: forever)
    store_wait: float = 60.0  # seconds to keep trying while the database is locked, then AE


MAX_BATCH = 50  # messages stored in one transaction at most (a design choice: bounded latency)


class Storer:
    """Stores messages and returns (ACK, outcome) for each: ``storer(raw)`` one message in its own
    transaction, ``storer.many(raws)`` several in one (see the module docstring)."""

    def __init__(self, one: Callable[[bytes], tuple[bytes, Outcome]], many: Callable[[Sequence[bytes]], list[tuple[bytes, Outcome]]] | None = None):
        self._one = one
        self._many = many

    def __call__(self, raw: bytes) -> tuple[bytes, Outcome]:
        return self._one(raw)

    def many(self, raws: Sequence[bytes]) -> list[tuple[bytes, Outcome]]:
        if self._many is None or len(raws) == 1:
            return [self._one(raw) for raw in raws]
        return self._many(raws)


def _log(outcome: Outcome) -> None:
    log.info(
        "MSH-10 %s: %s %s%s",
        outcome.control_id or "?",
        outcome.code,
        outcome.text,
        " (already received)" if outcome.duplicate else "",
    )


def make_storer(
    engine: Engine,
    codes: CodeMap,
    *,
    store_wait: float = 60.0,
    via: str = "mllp",
    follower: EpisodeFollower | None = None,
) -> Storer:
    """Stores one message in its own transaction (``storer(raw)``), or several in one
    (``storer.many(raws)``), and returns (ACK, outcome) for each. ``follower``: the patients
    written are evaluated by it, in its own thread, instead of before the ACK (see
    monitoring/episodes_follow.py); None: before the ACK, as every other write path."""

    def session() -> Session:
        s = Session(engine, expire_on_commit=False)
        if follower is not None:
            defer_reconciliation(s, follower.submit)
        return s

    def many(raws: Sequence[bytes]) -> list[tuple[bytes, Outcome]]:
        try:
            with session() as session_:
                outcomes = [store_message(session_, raw, codes=codes, via=via) for raw in raws]
                session_.commit()
        except Exception as exc:  # noqa: BLE001 - rolled back whole; each message is stored again alone
            log.info("%d messages not stored together (%s); storing each alone", len(raws), type(exc).__name__)
            return [store(raw) for raw in raws]
        answers = []
        for raw, outcome in zip(raws, outcomes, strict=True):
            _log(outcome)
            answers.append((build_ack(raw, outcome.code, outcome.text, outcome.errors).encode("utf-8"), outcome))
        return answers

    def store(raw: bytes) -> tuple[bytes, Outcome]:
        deadline = time.monotonic() + store_wait
        delay = 0.05
        while True:
            try:
                with session() as session_:
                    outcome = store_message(session_, raw, codes=codes, via=via)
                    if outcome.code == "AR" or outcome.duplicate:
                        session_.rollback()
                    else:
                        session_.commit()
                break
            except (OperationalError, IntegrityError) as exc:
                # Locked, or another listener stored the same control ID a moment ago: try again
                # (the second try meets the stored message and answers as for a duplicate).
                if time.monotonic() + delay > deadline:
                    log.warning("database unavailable, message not stored: %s", type(exc).__name__)
                    outcome = Outcome("AE", "not stored: the database is unavailable; send the message again")
                    break
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            except Exception as exc:  # noqa: BLE001 - a bug must not take the listener down
                log.exception("message not stored: internal error %s", type(exc).__name__)
                outcome = Outcome("AE", "not stored: internal error; send the message again")
                break
        ack = build_ack(raw, outcome.code, outcome.text, outcome.errors)
        _log(outcome)
        return ack.encode("utf-8"), outcome

    return Storer(store, many)


class _Connection:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        config: ListenerConfig,
        submit: Callable[[bytes], asyncio.Future[bytes]],
    ):
        self.reader, self.writer, self.config, self.submit = reader, writer, config, submit
        self.peer = writer.get_extra_info("peername")

    async def _read(self, timeout: float | None) -> bytes:
        return await asyncio.wait_for(self.reader.read(65536), timeout)

    async def answer(self, ack: bytes) -> None:
        self.writer.write(frame(ack))
        await self.writer.drain()

    async def run(self) -> None:
        cfg = self.config
        buf = bytearray()
        started: float | None = None  # when the message being received began
        loop = asyncio.get_running_loop()
        try:
            while True:
                # Complete messages already in the buffer are answered before reading more.
                while True:
                    while buf[:1] in (b"\r", b"\n", b" ", b"\t"):
                        del buf[:1]  # line ends between frames are harmless
                    if not buf:
                        started = None
                        break
                    if buf[:1] != VT:
                        log.warning("connection from %s: not MLLP (no <VT> start block); closed", self.peer)
                        return
                    if started is None:
                        started = loop.time()
                    end = buf.find(FS_CR)
                    if end < 0:
                        if len(buf) - 1 > cfg.max_bytes:
                            await self.refuse_oversized(bytes(buf[1 : 1 + 4096]))
                            return
                        break
                    if end - 1 > cfg.max_bytes:
                        await self.refuse_oversized(bytes(buf[1 : 1 + 4096]))
                        return
                    restart = buf.rfind(VT, 1, end)
                    if restart > 0:
                        # A new start block before this end: the message before it was cut off.
                        log.warning("connection from %s: a message was cut off by the next one; the cut one is dropped", self.peer)
                        del buf[:restart]
                        end -= restart
                    block = bytes(buf[1:end])
                    del buf[: end + 2]
                    started = None
                    ack = await self.submit(block)
                    await self.answer(ack)
                if started is None:
                    timeout = cfg.idle_timeout or None
                else:
                    timeout = max(0.0, cfg.read_timeout - (loop.time() - started))
                try:
                    chunk = await self._read(timeout)
                except TimeoutError:
                    if started is None:
                        log.info("connection from %s idle for %.0f s; closed", self.peer, cfg.idle_timeout)
                    else:
                        log.warning("connection from %s: message not completed within %.0f s; dropped, connection closed", self.peer, cfg.read_timeout)
                    return
                if not chunk:
                    if buf.strip():
                        log.warning("connection from %s closed in the middle of a message; nothing stored", self.peer)
                    return
                buf += chunk
        except (ConnectionError, asyncio.IncompleteReadError):
            log.info("connection from %s lost", self.peer)
        finally:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def refuse_oversized(self, head: bytes) -> None:
        log.warning("connection from %s: message over %d bytes refused (AR); connection closed", self.peer, self.config.max_bytes)
        ack = build_ack(head, "AR", f"message larger than the limit of {self.config.max_bytes} bytes; not stored")
        try:
            await self.answer(ack.encode("utf-8"))
        except ConnectionError:
            pass


async def serve(
    config: ListenerConfig,
    store: Callable[[bytes], tuple[bytes, Outcome]],
    *,
    ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Listen until ``stop`` is set (or the task is cancelled). ``ready`` gets the bound port.
    ``store`` is a ``Storer`` (messages that waited are stored together) or a function of one
    message (each stored alone)."""
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hl7-store")
    loop = asyncio.get_running_loop()
    storer = store if isinstance(store, Storer) else Storer(store)
    waiting: list[tuple[bytes, asyncio.Future[bytes]]] = []
    busy = closed = False

    def store_waiting() -> None:
        # On the event loop: hand what waits (at most MAX_BATCH) to the worker thread. Once the
        # listener stops, what still waits is never stored and never acknowledged (sent again).
        nonlocal busy
        if busy or closed or not waiting:
            return
        batch = waiting[:MAX_BATCH]
        del waiting[:MAX_BATCH]
        busy = True
        job = loop.run_in_executor(executor, storer.many, [raw for raw, _f in batch])

        def done(job: asyncio.Future[list[tuple[bytes, Outcome]]]) -> None:
            nonlocal busy
            busy = False
            exc = job.exception()
            answers = job.result() if exc is None else []
            for k, (_raw, fut) in enumerate(batch):
                if fut.done():
                    continue
                if exc is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(answers[k][0])
            store_waiting()

        job.add_done_callback(done)

    def submit(raw: bytes) -> asyncio.Future[bytes]:
        fut: asyncio.Future[bytes] = loop.create_future()
        waiting.append((raw, fut))
        store_waiting()
        return fut

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _Connection(reader, writer, config, submit).run()

    server = await asyncio.start_server(on_connect, config.host, config.port, limit=config.max_bytes + 65536)
    port = server.sockets[0].getsockname()[1]
    log.info("listening for HL7 v2 over MLLP on %s:%d", config.host, port)
    if ready is not None:
        ready(port)
    stop = stop or asyncio.Event()
    try:
        async with server:
            await stop.wait()
    finally:
        server.close()
        closed = True
        executor.shutdown(wait=True)  # a message being stored is finished (committed) before exit


def run_listener(config: ListenerConfig, store: Callable[[bytes], tuple[bytes, Outcome]], *, ready: Callable[[int], None] | None = None) -> None:
    """Run the listener in this thread until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):
                pass
        await serve(config, store, ready=ready, stop=stop)

    asyncio.run(main())
