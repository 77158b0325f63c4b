"""The intake review list (PRODUCT.md §6 edition 2): what an import run with ``--skip-invalid``
(or a feed, e.g. the HL7 v2 listener) refused, kept as received until a clinician corrects and
stores it, or discards it with a reason. Nothing refused is lost: every item stays in the table
with its status, and adding, storing and discarding are each audited (monitoring/audit.py).

The API other sources call is one small function::

    add_review_item(session, source="lab.hl7 (MSH-10 123)", location="OBX[3]", field="OBX-6",
                    value="mmol/l", reason="unit not known for creatinine", kind="lab", mrn="MRN1")

It writes in the caller's transaction (the caller commits, together with what it did store).
A correction is stored through the same write services as the dashboard's forms
(monitoring/services.py), so it obeys exactly the checks of any other entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from monitoring import audit, intake
from monitoring.auth import authorise_write
from monitoring.models import ReviewItem, utcnow
from monitoring.store import BatchRejected, Problem

__all__ = [
    "KINDS",
    "OPEN",
    "DISCARDED",
    "STORED",
    "add_review_item",
    "discard_item",
    "get_item",
    "open_count",
    "open_items",
    "store_dose_correction",
    "store_lab_correction",
    "store_patient_correction",
]

OPEN, STORED, DISCARDED = "open", "stored", "discarded"
KINDS: tuple[str, ...] = ("lab", "medication", "patient", "allergy", "condition", "file", "other")
ENTITY = "intake_review_item"
_TEXT = 255


def _clip(text: Any, width: int = _TEXT) -> str | None:
    if text is None:
        return None
    s = str(text)
    return s if len(s) <= width else s[: width - 1] + "…"


def _json(value: Any) -> Any:
    """A record as received, for the JSON column: FHIR decimals as JSON numbers (the exact text of
    the refused value is in ``value``)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return audit.jsonable(value)


def add_review_item(
    session: Session,
    *,
    source: str,
    location: str,
    reason: str,
    field: str | None = None,
    value: Any = None,
    kind: str = "other",
    mrn: str | None = None,
    record: Mapping[str, Any] | Sequence[Any] | None = None,
    username: str | None = None,
) -> int:
    """Put one refused item in the review list (in the caller's transaction); returns its id.

    ``source`` names the file or message, ``location`` the resource or row within it, ``field``
    the element or column at fault, ``value`` the value as received, ``reason`` why it was
    refused; ``record`` the whole resource or row as received (kept so a clinician can see it and
    nothing is lost).
    """
    if kind not in KINDS:
        raise ValueError(f"review item kind {kind!r} is not one of {', '.join(KINDS)}")
    item = ReviewItem(
        source=_clip(source) or "",
        location=_clip(location) or "",
        field=_clip(field),
        value=None if value is None else str(value),
        reason=str(reason),
        kind=kind,
        mrn=_clip(mrn, 64),
        record=_json(record) if isinstance(record, Mapping) else ({"values": _json(list(record))} if record is not None else None),
        created_by=_clip(username, 64),
    )
    session.add(item)
    session.flush()
    assert item.id is not None
    audit.record(
        session,
        username=username,
        action="review_add",
        entity=ENTITY,
        entity_id=item.id,
        after={"source": item.source, "location": item.location, "field": item.field, "value": item.value,
               "reason": item.reason},
    )
    return item.id


def open_items(session: Session, *, limit: int = 500) -> list[ReviewItem]:
    """Open items, oldest first (the order they were refused)."""
    stmt = select(ReviewItem).where(col(ReviewItem.status) == OPEN).order_by(col(ReviewItem.id)).limit(limit)
    return list(session.execute(stmt).scalars())


def open_count(session: Session) -> int:
    return int(session.execute(select(func.count()).select_from(ReviewItem).where(col(ReviewItem.status) == OPEN)).scalar_one())


def get_item(session: Session, item_id: int) -> ReviewItem:
    item = session.get(ReviewItem, item_id)
    if item is None:
        raise BatchRejected([Problem("review list", "item", item_id, "no such review item")])
    return item


def _open_item(session: Session, item_id: int) -> ReviewItem:
    item = get_item(session, item_id)
    if item.status != OPEN:
        raise BatchRejected([Problem(f"review item {item_id}", "status", item.status, "already resolved")])
    return item


def _close(session: Session, item: ReviewItem, *, username: str, status: str, resolution: str, action: str) -> None:
    before = {"status": item.status}
    item.status = status
    item.resolved_at = utcnow()
    item.resolved_by = _clip(username, 64)
    item.resolution = resolution
    session.add(item)
    audit.record(
        session,
        username=username,
        action=action,
        entity=ENTITY,
        entity_id=item.id,
        before=before,
        after={"status": status, "resolution": resolution, "source": item.source, "location": item.location,
               "value": item.value},
        reason=resolution,
    )
    session.flush()


def discard_item(session: Session, *, username: str, item_id: int, reason: str) -> None:
    """Discard an item with a reason (required): it stays in the table, marked discarded, audited."""
    try:
        why = intake.free_text("reason", reason, required="a reason is required to discard an item") or ""
    except intake.FieldError as exc:
        raise BatchRejected([Problem(f"review item {item_id}", exc.column, exc.value, exc.reason)]) from None
    authorise_write(session, username=username, action="discard", entity=ENTITY, detail={"item": str(item_id)})
    item = _open_item(session, item_id)
    _close(session, item, username=username, status=DISCARDED, resolution=why, action="review_discard")


def store_lab_correction(
    session: Session,
    *,
    username: str,
    item_id: int,
    mrn: str,
    test: str,
    taken_at: dt.datetime | dt.date | str,
    value: float | str,
    unit: str,
    ref_low: float | str | None = None,
    ref_high: float | str | None = None,
) -> int:
    """Store the corrected result through the dashboard's entry service; the item is then closed
    as stored (audited). Returns the lab result id. A correction that is still wrong is refused
    with the service's reason and the item stays open."""
    from monitoring.services import add_lab_result

    item = _open_item(session, item_id)
    lab_id = add_lab_result(session, username=username, mrn=mrn, test=test, taken_at=taken_at, value=value, unit=unit,
                            ref_low=ref_low, ref_high=ref_high)
    _close(session, item, username=username, status=STORED, resolution=f"lab_result {lab_id}", action="review_store")
    return lab_id


def store_dose_correction(
    session: Session,
    *,
    username: str,
    item_id: int,
    mrn: str,
    drug: str,
    start_date: dt.date | str,
    dose: float | str,
    unit: str = "mg",
    route: str | None = None,
) -> int:
    """Like ``store_lab_correction`` for a dose-schedule row."""
    from monitoring.services import add_dose_change

    item = _open_item(session, item_id)
    row_id = add_dose_change(session, username=username, mrn=mrn, drug=drug, start_date=start_date, dose=dose, unit=unit,
                             route=route)
    _close(session, item, username=username, status=STORED, resolution=f"medication_row {row_id}", action="review_store")
    return row_id


def store_patient_correction(session: Session, *, username: str, item_id: int, mrn: str, name: str, **fields: Any) -> int:
    """Like ``store_lab_correction`` for a patient (a refused identity): creates the patient."""
    from monitoring.services import add_patient

    item = _open_item(session, item_id)
    pid = add_patient(session, username=username, mrn=mrn, name=name, **fields)
    _close(session, item, username=username, status=STORED, resolution=f"patient {pid}", action="review_store")
    return pid


def correction_defaults(item: ReviewItem) -> dict[str, str]:
    """The fields of the correction form of an item, filled from the record as received (a CSV
    row's cells; a FHIR resource's time, value, unit, drug and dose), for the clinician to fix."""
    rec = item.record or {}
    out: dict[str, str] = {"mrn": item.mrn or str(rec.get("mrn") or "")}
    if rec.get("resourceType"):
        q = got if isinstance(got := rec.get("valueQuantity"), dict) else {}
        code = next((c.get("code") for c in (rec.get("code") or {}).get("coding") or [] if isinstance(c, dict)), "")
        period = got if isinstance(got := rec.get("effectivePeriod"), dict) else {}
        when = rec.get("effectiveDateTime") or period.get("start") or rec.get("effectiveInstant") or rec.get("authoredOn") or ""
        out.update({"test": str(code or ""), "taken_at": str(when)[:19], "value": str(q.get("value", rec.get("valueString", ""))),
                    "unit": str(q.get("unit") or q.get("code") or "")})
        if item.kind == "patient":
            names = rec.get("name") or [{}]
            n = names[0] if isinstance(names[0], dict) else {}
            out["name"] = str(n.get("text") or " ".join([*(n.get("given") or []), n.get("family") or ""]).strip())
            out["mrn"] = out["mrn"] or str(rec.get("id") or "")
    else:
        out.update({k: str(v) for k, v in rec.items() if isinstance(v, str)})
    return out
