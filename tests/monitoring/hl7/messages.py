"""Hand-made HL7 v2 messages for the tests (synthetic patients, invented values)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hl7"
TODAY = dt.date.today()
D = TODAY - dt.timedelta(days=1)  # the day the samples were taken
TS = D.strftime("%Y%m%d")


def obx(
    n: int,
    code: str,
    value: str,
    unit: str = "",
    *,
    vt: str = "NM",
    ref: str = "",
    flags: str = "",
    status: str = "F",
    time: str | None = None,
    sub_id: str = "",
) -> str:
    when = f"{TS}0730" if time is None else time
    return f"OBX|{n}|{vt}|{code}|{sub_id}|{value}|{unit}|{ref}|{flags}|||{status}|||{when}"


def oru(
    observations: Sequence[str],
    *,
    control_id: str = "MSG-1",
    mrn: str = "HL7-001",
    pid3: str | None = None,
    name: str = "SYNTHETIC^ALPHA",
    order: str = "ORD-1^LAB",
    obr_time: str | None = None,
    sender: str = "LIS|MAINLAB",
    mtype: str = "ORU^R01^ORU_R01",
) -> str:
    ident = pid3 if pid3 is not None else f"{mrn}^^^HOSP^MR"
    segments = [
        f"MSH|^~\\&|{sender}|DRESS|WARD|{TS}0800||{mtype}|{control_id}|P|2.5.1",
        f"PID|1||{ident}||{name}||19700101|F",
        f"OBR|1|PL-1|{order}|PANEL^Panel^L|||{obr_time if obr_time is not None else TS + '0700'}",
        *observations,
    ]
    return "\r".join(segments) + "\r"


def adt(
    event: str = "A01",
    *,
    control_id: str = "ADT-1",
    mrn: str = "HL7-001",
    name: str = "SYNTHETIC^ALPHA",
    birth: str = "19700101",
    sex: str = "F",
    sender: str = "ADT|HOSP",
) -> str:
    segments = [
        f"MSH|^~\\&|{sender}|DRESS|WARD|{TS}0600||ADT^{event}^ADT_A01|{control_id}|P|2.5.1",
        f"EVN|{event}|{TS}0600",
        f"PID|1||{mrn}^^^HOSP^MR~123-45-6789^^^SSA^SS||{name}||{birth}|{sex}",
        "PV1|1|I|WARD^1^1",
    ]
    return "\r".join(segments) + "\r"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()
