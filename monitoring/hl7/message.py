"""Reading an HL7 v2 message into plain data (PRODUCT.md §9).

python-hl7 (the ``hl7`` package) parses the segments, fields, repetitions and components and
undoes the escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\X..\\: ``Segment.extract_field``
unescapes every value it returns). This module only picks out the fields the product uses and
turns HL7 data types into text the intake path reads: a timestamp becomes ISO 8601 with its UTC
offset, an SN value becomes ``<0.01``. Nothing here touches the database or the catalogue.

A message that cannot be read raises ``Unreadable`` with the reason: the listener answers AR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import hl7
from hl7.containers import Component, Field, Message, Repetition, Segment
from hl7.util import unescape

__all__ = [
    "SUPPORTED",
    "Observation",
    "ParsedMessage",
    "PatientFields",
    "Unreadable",
    "hl7_datetime",
    "parse_message",
    "reference_range",
]

# Message types the product reads: results, and the admissions that create or update a patient.
SUPPORTED: frozenset[tuple[str, str]] = frozenset({("ORU", "R01"), ("ADT", "A01"), ("ADT", "A04"), ("ADT", "A08")})

# PID-3 identifier types (HL7 table 0203) that name the hospital's medical record number. "MRN" is
# not in the table but is what older feeds send (the v2.3 ADT samples in public test suites).
MRN_TYPES: frozenset[str] = frozenset({"MR", "MRN"})

_TS = re.compile(
    r"(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?(?:\.\d{1,4})?(?P<tz>[+-]\d{4})?",
    re.ASCII,
)
_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_RANGE = re.compile(rf"\s*({_NUM})\s*-\s*({_NUM})\s*", re.ASCII)
_UPPER = re.compile(rf"\s*<=?\s*({_NUM})\s*", re.ASCII)
_LOWER = re.compile(rf"\s*>=?\s*({_NUM})\s*", re.ASCII)
_COMPARATORS = ("<", ">", "<=", ">=", "=", "<>")


class Unreadable(ValueError):
    """The message cannot be read (AR): ``reason`` names the segment and field."""


@dataclass(frozen=True)
class PatientFields:
    """PID as received: the MRN (PID-3 of type MR) and the fields a patient record keeps."""

    mrn: str | None
    mrn_problem: str | None  # why no MRN was found (names PID-3)
    name: str | None  # "Family, Given" from PID-5
    sex: str | None  # PID-8 as sent (F, M, O, U, A, N)
    birth_date: str | None  # PID-7 as YYYY-MM-DD, when a full date was sent


@dataclass(frozen=True)
class Observation:
    """One OBX with the order (OBR) it belongs to."""

    index: int  # position among the message's OBX segments, from 1 (how the ACK names it)
    set_id: str  # OBX-1
    value_type: str  # OBX-2
    codes: tuple[tuple[str, str, str], ...]  # OBX-3 (identifier, text, coding system), primary then alternate
    sub_id: str  # OBX-4
    value: str  # OBX-5 as text for the intake path: "182", "<0.01", "Detected"
    value_problem: str | None  # why OBX-5 cannot be read (a range, an unsupported data type)
    units: str  # OBX-6.1
    reference_range: str  # OBX-7 as sent
    abnormal_flags: tuple[str, ...]  # OBX-8 repetitions (H, L, HH, LL, A, N, ...)
    status: str  # OBX-11 (F, C, P, X, D, W, R, I, ...)
    observed_at: str  # OBX-14 as sent (HL7 TS)
    order_id: str  # filler order number OBR-3 (else placer OBR-2), with its namespace
    order_observed_at: str  # OBR-7 as sent
    value_problem_field: str = "OBX-5"  # the field ``value_problem`` is in (OBX-2 for a value type not read)

    @property
    def where(self) -> str:
        code = self.codes[0][0] if self.codes else ""
        return f"OBX {self.index} (set ID {self.set_id or '-'}, {code or 'no code'})"

    @property
    def time(self) -> str:
        """OBX-14, else OBR-7 (PRODUCT.md §9)."""
        return self.observed_at or self.order_observed_at


@dataclass(frozen=True)
class ParsedMessage:
    control_id: str  # MSH-10
    sender: str  # MSH-3^MSH-4 (sending application and facility)
    message_type: str  # MSH-9.1
    trigger: str  # MSH-9.2
    version: str  # MSH-12
    patient: PatientFields | None
    observations: tuple[Observation, ...] = field(default_factory=tuple)
    message: Message | None = field(default=None, compare=False, repr=False)  # for the ACK

    @property
    def kind(self) -> str:
        return f"{self.message_type}^{self.trigger}"


def _get(seg: Segment, f: int, r: int = 1, c: int = 1, s: int = 1) -> str:
    """One value of ``seg``, unescaped; '' when absent."""
    try:
        return str(_extract(seg, f, r, c, s)).strip()
    except (IndexError, KeyError):
        return ""


_item = list.__getitem__


def _extract(seg: Segment, f: int, r: int, c: int, s: int) -> str:
    """``seg.extract_field(1, f, r, c, s)`` of python-hl7 (its rules: a deeper tree gives its first
    leaf, a shallower one its leaf when the rest of the path is 1), the same value or the same
    IndexError, without the Accessor and the 1-based wrappers it builds on every call (a message
    of 10 OBX reads ~180 values: half the cost of reading it). Anything else (MSH-1/MSH-2, a
    position below 1, a tree of another shape) is left to python-hl7 itself; tests/monitoring/hl7/
    test_message.py compares the two on every position of every sample message."""
    if f < 1 or r < 1 or c < 1 or s < 1 or (f <= 2 and str(_item(seg, 0)) == "MSH"):
        return str(seg.extract_field(1, f, r, c, s))
    if f >= len(seg):
        if r == 1 and c == 1 and s == 1:
            return ""  # a non-present optional value
        raise IndexError(f"field {f} not present")
    fld = _item(seg, f)
    if not isinstance(fld, Field):
        return str(seg.extract_field(1, f, r, c, s))
    rep = _item(fld, r - 1)
    if not isinstance(rep, Repetition):
        if c == 1 and s == 1:
            return str(unescape(seg, rep))
        raise IndexError(f"field {f} reaches a leaf before the path ends")
    if c > len(rep):
        if s == 1:
            return ""
        raise IndexError(f"component {c} of field {f} not present")
    component = _item(rep, c - 1)
    if not isinstance(component, Component):
        if s == 1:
            return str(unescape(seg, component))
        raise IndexError(f"component {c} of field {f} reaches a leaf before the path ends")
    if s <= len(component):
        return str(unescape(seg, _item(component, s - 1)))
    return ""


def _repetitions(seg: Segment, f: int) -> int:
    if f >= len(seg):
        return 0
    value = seg(f)
    return len(value) if isinstance(value, list) else 1


def _raw(seg: Segment, f: int) -> str:
    """A field exactly as sent (separators included), '' when absent."""
    return str(seg(f)) if f < len(seg) else ""


def hl7_datetime(text: str, *, what: str) -> str:
    """An HL7 TS/DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) as ISO 8601, offset kept.

    A result needs at least its calendar date: ``what`` names the field in the error.
    """
    s = text.strip()
    m = _TS.fullmatch(s)
    if not m or m["d"] is None:
        raise ValueError(f"{what}: {s!r} is not an HL7 date-time with at least a date (YYYYMMDD[HHMM[SS]][+/-ZZZZ])")
    out = f"{m['y']}-{m['mo']}-{m['d']}"
    if m["h"] is not None:
        out += f"T{m['h']}:{m['mi'] or '00'}:{m['s'] or '00'}"
    tz = m["tz"]
    if tz:
        out += ("T00:00:00" if m["h"] is None else "") + f"{tz[:3]}:{tz[3:]}"
    return out


def reference_range(text: str) -> tuple[str | None, str | None]:
    """(low, high) from OBX-7 as laboratories write it: ``7-56``, ``<50``, ``>60``; else (None, None)."""
    s = text.strip()
    if m := _RANGE.fullmatch(s):
        return m[1], m[2]
    if m := _UPPER.fullmatch(s):
        return None, m[1]
    if m := _LOWER.fullmatch(s):
        return m[1], None
    return None, None


def _value(seg: Segment, value_type: str) -> tuple[str, str | None, str]:
    """(OBX-5 as text for the intake path, a problem or None, the field the problem is in).
    Repetitions beyond the first are refused. The problem does not repeat the field's name: the
    review list and the ACK put it in front."""
    vt = value_type.upper()
    if _repetitions(seg, 5) > 1:
        return _raw(seg, 5), "several repetitions; one value per OBX is expected", "OBX-5"
    if vt == "SN":
        comparator, num1, separator, num2 = (_get(seg, 5, 1, k) for k in (1, 2, 3, 4))
        if separator or num2:
            return _raw(seg, 5), f"a structured numeric range or ratio ({_raw(seg, 5)!r}) is not a single result", "OBX-5"
        if comparator and comparator not in _COMPARATORS:
            return _raw(seg, 5), f"unknown comparator {comparator!r} (HL7 SN: <, >, <=, >=, =, <>)", "OBX-5"
        if comparator == "<>":
            return _raw(seg, 5), "comparator '<>' (not equal) is not a result value", "OBX-5"
        return (comparator if comparator != "=" else "") + num1, None, "OBX-5"
    if vt in ("CE", "CWE", "CNE"):
        return _get(seg, 5, 1, 2) or _get(seg, 5, 1, 1), None, "OBX-5"
    if vt in ("NM", "ST", "TX", "FT", ""):
        return _get(seg, 5), None, "OBX-5"
    return _raw(seg, 5), f"value type {value_type!r} is not read (NM, SN, ST, TX, FT, CE, CWE are)", "OBX-2"


def _patient(pid: Segment | None) -> PatientFields | None:
    if pid is None:
        return None
    mrn: str | None = None
    types: list[str] = []
    for r in range(1, _repetitions(pid, 3) + 1):
        ident, kind = _get(pid, 3, r, 1), _get(pid, 3, r, 5).upper()
        types.append(f"{ident or '(empty)'} of type {kind or '(none)'}")
        if ident and kind in MRN_TYPES and mrn is None:
            mrn = ident
    problem = None
    if mrn is None:
        problem = (
            "PID-3 has no identifier of type MR"
            + (f" (received: {'; '.join(types)})" if types else " (PID-3 is empty)")
        )
    family, given = _get(pid, 5, 1, 1), _get(pid, 5, 1, 2)
    name = ", ".join(p for p in (family, given) if p) or None
    birth = _get(pid, 7)
    birth_iso = None
    if len(birth) >= 8 and birth[:8].isdigit():
        birth_iso = f"{birth[:4]}-{birth[4:6]}-{birth[6:8]}"
    return PatientFields(mrn, problem, name, _get(pid, 8) or None, birth_iso)


def _order_id(obr: Segment) -> str:
    for f in (3, 2):  # filler order number, else placer order number
        ident = _get(obr, f, 1, 1)
        if ident:
            ns = _get(obr, f, 1, 2)
            return f"{ident}^{ns}" if ns else ident
    return ""


def _split_segments(text: str) -> str:
    # Segments end with CR; files dropped by engines often use LF or CRLF.
    return text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")


def parse_message(data: bytes | str) -> ParsedMessage:
    """The fields of one message the product uses. ``Unreadable`` names what is wrong."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # HL7 v2 is often ISO 8859-1 (MSH-18): every byte is a Latin-1 character.
            text = data.decode("latin-1")
    else:
        text = data
    text = _split_segments(text.lstrip("\ufeff"))
    if not text.startswith("MSH") or len(text) < 8:
        raise Unreadable("not an HL7 v2 message: it does not begin with an MSH segment")
    if "\x00" in text:
        raise Unreadable("the message contains NUL bytes")
    try:
        msg = hl7.parse(text)
        msh = msg.segment("MSH")
    except Exception as exc:  # noqa: BLE001 - the library's own errors vary; all mean "cannot read"
        raise Unreadable(f"cannot parse the message: {exc}") from None
    mtype, trigger = _get(msh, 9, 1, 1).upper(), _get(msh, 9, 1, 2).upper()
    if (mtype, trigger) not in SUPPORTED:
        raise Unreadable(
            f"MSH-9: message type {mtype or '(empty)'}^{trigger or '(empty)'} is not accepted "
            f"(accepted: {', '.join(sorted(f'{a}^{b}' for a, b in SUPPORTED))})"
        )
    control_id = _get(msh, 10)
    if not control_id:
        raise Unreadable("MSH-10 (message control ID) is empty")
    sender = "^".join(p for p in (_get(msh, 3), _get(msh, 4)) if p)
    pid: Segment | None = None
    observations: list[Observation] = []
    obr_order = obr_time = ""  # of the OBR the OBX follow
    for seg in msg:
        name = str(seg(0)).upper() if len(seg) else ""
        if name == "PID":
            if pid is not None:
                raise Unreadable("more than one PID segment: one patient per message is read")
            pid = seg
        elif name == "OBR":
            obr_order, obr_time = _order_id(seg), _get(seg, 7)
        elif name == "OBX":
            vt = _get(seg, 2)
            value, problem, problem_field = _value(seg, vt)
            codes = tuple(
                (_get(seg, 3, 1, k), _get(seg, 3, 1, k + 1), _get(seg, 3, 1, k + 2).upper())
                for k in (1, 4)
                if _get(seg, 3, 1, k)
            )
            observations.append(
                Observation(
                    index=len(observations) + 1,
                    set_id=_get(seg, 1),
                    value_type=vt.upper(),
                    codes=codes,
                    sub_id=_get(seg, 4),
                    value=value,
                    value_problem=problem,
                    value_problem_field=problem_field,
                    units=_get(seg, 6, 1, 1),
                    reference_range=_get(seg, 7),
                    abnormal_flags=tuple(
                        f for f in (_get(seg, 8, r) for r in range(1, _repetitions(seg, 8) + 1)) if f
                    ),
                    status=_get(seg, 11).upper(),
                    observed_at=_get(seg, 14),
                    order_id=obr_order,
                    order_observed_at=obr_time,
                )
            )
    if pid is None:
        raise Unreadable("no PID segment: the patient is not named")
    return ParsedMessage(
        control_id=control_id,
        sender=sender,
        message_type=mtype,
        trigger=trigger,
        version=_get(msh, 12),
        patient=_patient(pid),
        observations=tuple(observations),
        message=msg,
    )
