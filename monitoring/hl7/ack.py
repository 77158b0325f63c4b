"""HL7 v2 acknowledgements (original mode): AA stored, AE stored except the OBX named, AR not read.

The ACK is built by python-hl7 (``Message.create_ack``) from the received MSH, so it mirrors the
sender's separators, version and processing ID and carries its control ID in MSA-2. MSA-3 says what
happened in words; each OBX sent to the intake review list gets an ERR segment naming it (ERR-2
location ``OBX^n``, ERR-3 code 207 "application internal error" of HL7 table 0357, ERR-4 severity
E, ERR-8 the reason), so the interface engine's log shows which result needs a person.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import hl7
from hl7.util import generate_message_control_id

__all__ = ["AckError", "build_ack", "parse_ack"]

# HL7 table 0357: 207 = application internal error; 100 = segment sequence error (unreadable).
_APPLICATION_ERROR = "207^Application internal error^HL70357"
_MSA_TEXT_MAX = 80  # MSA-3 is ST(80) in v2.5


@dataclass(frozen=True)
class AckError:
    location: str  # "OBX^3" (segment and its position among OBX)
    reason: str


def _header(raw: str) -> hl7.Message | None:
    """The received MSH as a message python-hl7 can answer; None when there is none to answer."""
    first = raw.replace("\r\n", "\r").replace("\n", "\r").lstrip("\ufeff").split("\r", 1)[0]
    if first.startswith("MSH") and len(first) >= 8:
        try:
            msg = hl7.parse(first)
            msg.segment("MSH")
            return msg
        except Exception:  # noqa: BLE001 - answered with a header of our own
            return None
    return None


def _control_id(raw: str) -> str:
    """MSH-10 read straight from the first line, for a header python-hl7 cannot answer."""
    first = raw.lstrip("\ufeff\r\n").split("\r", 1)[0].split("\n", 1)[0]
    if not first.startswith("MSH") or len(first) < 4:
        return ""
    fields = first.split(first[3])
    return fields[9].strip()[:199] if len(fields) > 9 else ""


def build_ack(raw: bytes | str, code: str, text: str = "", errors: Sequence[AckError] = ()) -> str:
    """The ACK message (segments separated by CR) answering ``raw``."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    src = _header(raw)
    segments: list[str] = []
    if src is not None:
        try:
            segments = [str(seg) for seg in src.create_ack(code, application="DRESS_MONITOR", facility="")]
        except Exception:  # noqa: BLE001 - an MSH too broken to mirror (no MSH-9 trigger, ...)
            segments = []
    if src is None or not segments:
        # Nothing to mirror: a plain ACK, MSA-2 empty (the sender's control ID could not be read).
        src = hl7.parse("MSH|^~\\&|||||||ACK||P|2.5")
        now = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
        segments = [
            f"MSH|^~\\&|DRESS_MONITOR||||{now}||ACK|{generate_message_control_id()}|P|2.5",
            f"MSA|{code}|{src.escape(_control_id(raw))}",
        ]
    msa = segments[1]
    if text:
        msa += "|" + src.escape(text[:_MSA_TEXT_MAX])
    segments[1] = msa
    for err in errors:
        # ERR-2 is our own location (components intended); ERR-8 is text and is escaped.
        segments.append(f"ERR||{err.location}|{_APPLICATION_ERROR}|E||||{src.escape(err.reason)}")
    return "\r".join(segments) + "\r"


def parse_ack(data: bytes | str) -> tuple[str, str, str, list[str]]:
    """(MSA-1 code, MSA-2 control ID, MSA-3 text, ERR-8 texts) of an ACK: for tests and the client."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="replace")
    msg = hl7.parse(data.replace("\n", "\r").strip("\r"))
    msa = msg.segment("MSA")

    def get(seg: hl7.Segment, f: int) -> str:
        try:
            return str(seg.extract_field(1, f))
        except IndexError:
            return ""

    errs = [get(seg, 8) for seg in msg if str(seg(0)) == "ERR"]
    return get(msa, 1), get(msa, 2), get(msa, 3), errs
