"""The real listener as a subprocess on a free port, and an MLLP client for the tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from monitoring.hl7.server import FS_CR, VT, frame

PROJECT_ROOT = Path(__file__).resolve().parents[3]


class Listener:
    """``python -m monitoring --db URL listen --port 0 ...`` with its log in a file."""

    def __init__(self, db_url: str, log: Path, *args: str, env: dict[str, str] | None = None):
        self.db_url, self.log_path, self.args = db_url, log, args
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 60.0) -> Listener:
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitoring", "--db", self.db_url, "listen", "--port", "0", *self.args],
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=log,
            env=self.env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[start:].decode(errors="replace")
            m = re.search(r"listening on [\d.]+:(\d+)", text)
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"listener exited {self.proc.returncode}: {text}")
            time.sleep(0.05)
        raise RuntimeError("listener did not start: " + self.log_path.read_text(errors="replace"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()  # SIGKILL: no clean-up at all
        self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def connect(self, timeout: float = 60.0) -> Client:
        return Client("127.0.0.1", self.port, timeout)


class Client:
    """A plain MLLP client that reads each ACK to its end (python-hl7's MLLPClient reads once)."""

    def __init__(self, host: str, port: int, timeout: float = 60.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def send(self, message: str | bytes) -> bytes:
        self.sock.sendall(frame(message))
        return self.read_ack()

    def read_ack(self) -> bytes:
        while FS_CR not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the listener closed the connection")
            self.buf += chunk
        end = self.buf.index(FS_CR)
        block, self.buf = self.buf[:end], self.buf[end + 2 :]
        assert block.startswith(VT)
        return block[1:]

    def closed_by_peer(self) -> bool:
        """True when the listener has closed the connection (EOF), waiting up to the socket timeout."""
        try:
            return self.sock.recv(65536) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
