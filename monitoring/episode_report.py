"""How each alert code is handled (PRODUCT.md §10): the numbers a unit needs to tune its profile.

Per code, over the episodes opened in a period: how often it fired, how often it was acknowledged
and with which reasons, the median time from opening to the first acknowledgement, how often it
was snoozed and reopened by new evidence, and how many are still open with nobody's answer.
Acknowledgements, snoozes and reopenings are counted from the audit trail (every one is there,
also when an episode was acknowledged, reopened and acknowledged again).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlmodel import Session, col

from monitoring import episodes
from monitoring.models import AlertEpisode, AuditEntry

CSV_COLUMNS = (
    "code",
    "fired",
    "acknowledged",
    "acknowledged_by_reason",
    "median_hours_to_acknowledgement",
    "snoozed",
    "reopened",
    "open_unacknowledged",
)


@dataclass
class CodeStats:
    code: str
    fired: int = 0
    acknowledged: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    median_hours_to_ack: float | None = None
    snoozed: int = 0
    reopened: int = 0
    open_unacknowledged: int = 0

    def reasons_text(self) -> str:
        return "; ".join(f"{episodes.ACK_REASONS.get(r, r).removesuffix(' …')}: {n}" for r, n in sorted(self.by_reason.items()))


def code_stats(
    session: Session, *, since: dt.datetime | None = None, until: dt.datetime | None = None, as_of: dt.date | None = None
) -> list[CodeStats]:
    """One row per alert code with an episode opened in [since, until) (UTC), most fired first."""
    stmt = select(AlertEpisode)
    if since is not None:
        stmt = stmt.where(col(AlertEpisode.opened_at) >= since)
    if until is not None:
        stmt = stmt.where(col(AlertEpisode.opened_at) < until)
    eps = {e.id: e for e in session.execute(stmt).scalars()}
    day = as_of or dt.date.today()
    stats: dict[str, CodeStats] = {}
    for ep in eps.values():
        st = stats.setdefault(ep.code, CodeStats(ep.code))
        st.fired += 1
        if ep.closed_at is None and episodes.effective_state(ep, day) == episodes.OPEN:
            st.open_unacknowledged += 1
    first_ack: dict[int, dt.datetime] = {}
    if eps:
        actions = (episodes.ACKNOWLEDGE, episodes.SNOOZE, episodes.REOPEN)
        entries = session.execute(
            select(AuditEntry)
            .where(col(AuditEntry.entity) == episodes.ENTITY, col(AuditEntry.action).in_(actions))
            .order_by(col(AuditEntry.at), col(AuditEntry.id))
        ).scalars()
        for e in entries:
            ep_id = int(e.entity_id) if e.entity_id and e.entity_id.isdigit() else None
            ep = eps.get(ep_id) if ep_id is not None else None
            if ep is None:
                continue
            st = stats[ep.code]
            if e.action == episodes.ACKNOWLEDGE:
                st.acknowledged += 1
                st.by_reason[str((e.after or {}).get("ack_reason", "?"))] += 1
                first_ack.setdefault(ep.id or 0, e.at)
            elif e.action == episodes.SNOOZE:
                st.snoozed += 1
            else:
                st.reopened += 1
    waits: dict[str, list[float]] = defaultdict(list)
    for ep_id, at in first_ack.items():
        ep = eps[ep_id]
        waits[ep.code].append(max(0.0, (at - ep.opened_at).total_seconds() / 3600.0))
    for code, hours in waits.items():
        stats[code].median_hours_to_ack = statistics.median(hours)
    return sorted(stats.values(), key=lambda s: (-s.fired, s.code))


def to_csv(rows: Sequence[CodeStats]) -> str:
    from monitoring.spreadsheet import formula_safe

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                formula_safe(r.code),
                r.fired,
                r.acknowledged,
                formula_safe(r.reasons_text()),
                "" if r.median_hours_to_ack is None else f"{r.median_hours_to_ack:.1f}",
                r.snoozed,
                r.reopened,
                r.open_unacknowledged,
            ]
        )
    return buf.getvalue()
