"""``listen --folder DIR``: the same storing for interface engines that drop files.

Each file in DIR (not hidden, not still being written: unchanged for ``settle`` seconds) holds one
message or several (a batch: FHS/BHS/BTS/FTS lines are ignored, each MSH starts a message). Each
message is stored in its own transaction exactly as over MLLP. Then the file moves:

- ``done/NAME`` when every message was stored (AA), or stored with items sent to the intake review
  list (AE: ``done/NAME.reason.txt`` lists them);
- ``failed/NAME`` with ``failed/NAME.reason.txt`` when a message could not be read (AR);
- nowhere when the database was unavailable: the file stays and is tried again on the next pass
  (messages already stored from it are recognised by their control ID and not stored twice).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from monitoring.hl7.feed import Outcome

__all__ = ["FolderResult", "process_folder", "split_messages", "watch_folder"]

log = logging.getLogger("monitoring.hl7")

_BATCH = re.compile(rb"^(FHS|BHS|BTS|FTS)\b")


@dataclass
class FolderResult:
    done: int = 0
    failed: int = 0
    retried: int = 0


def split_messages(data: bytes) -> list[bytes]:
    """The messages of a file: each begins at a line starting with MSH; batch headers dropped."""
    lines = re.split(rb"\r\n|\r|\n", data.lstrip(b"\xef\xbb\xbf"))
    messages: list[list[bytes]] = []
    junk: list[bytes] = []
    for line in lines:
        if not line.strip() or _BATCH.match(line):
            continue
        if line.startswith(b"MSH"):
            messages.append([line])
        elif messages:
            messages[-1].append(line)
        else:
            junk.append(line)
    if junk or not messages:
        # Not HL7 before the first MSH: the whole file is one unreadable message (answered AR).
        return [data]
    return [b"\r".join(m) + b"\r" for m in messages]


def _free(path: Path) -> Path:
    if not path.exists():
        return path
    for k in range(1, 10_000):
        candidate = path.with_name(f"{path.name}.{k}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(path)


def _move(src: Path, folder: Path, reasons: list[str]) -> Path:
    folder.mkdir(exist_ok=True)
    target = _free(folder / src.name)
    os.replace(src, target)
    if reasons:
        target.with_name(target.name + ".reason.txt").write_text("\n".join(reasons) + "\n", encoding="utf-8")
    return target


def process_folder(
    directory: Path,
    store: Callable[[bytes], tuple[bytes, Outcome]],
    *,
    settle: float = 1.0,
    now: Callable[[], float] = time.time,
) -> FolderResult:
    """One pass over ``directory``."""
    result = FolderResult()
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name.endswith(".reason.txt"):
            continue
        try:
            if now() - path.stat().st_mtime < settle:
                continue  # still being written
            data = path.read_bytes()
        except OSError:
            continue
        reasons: list[str] = []
        failed = transient = False
        for k, raw in enumerate(split_messages(data), start=1):
            _ack, outcome = store(raw)
            label = f"message {k} (MSH-10 {outcome.control_id or '?'})"
            if outcome.code == "AR":
                failed = True
                reasons.append(f"{path.name}: {label}: AR: {outcome.text}")
            elif outcome.code == "AE" and outcome.text.startswith("not stored"):
                transient = True
                break
            elif outcome.code == "AE":
                reasons.append(f"{path.name}: {label}: AE: {outcome.text}")
                reasons.extend(f"{path.name}: {label}: {e.location}: {e.reason}" for e in outcome.errors)
        if transient:
            result.retried += 1
            log.warning("%s: database unavailable; the file stays and is tried again", path.name)
            continue
        _move(path, directory / ("failed" if failed else "done"), reasons)
        if failed:
            result.failed += 1
        else:
            result.done += 1
        log.info("%s: %s", path.name, "failed" if failed else "done")
    return result


def watch_folder(
    directory: Path,
    store: Callable[[bytes], tuple[bytes, Outcome]],
    *,
    interval: float = 1.0,
    settle: float = 1.0,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Pass over ``directory`` every ``interval`` seconds until ``should_stop()``."""
    while not should_stop():
        process_folder(directory, store, settle=settle)
        time.sleep(interval)
