"""The audit log of record in SQL (blocking; the async port wraps it in a worker thread). Insert and select only:
the service never updates or deletes an audit row."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from store.sql_common import EngineViews, aware
from store.sql_models import AuditEventRow
from usecases.ports import AuditEvent, AuditPosition


def audit_row(event: AuditEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "occurred_at": aware(event.occurred_at),
        "key_id": event.key_id,
        "key_name": event.key_name,
        "action": event.action,
        "target": event.target,
        "peer": event.peer,
        "request_id": event.request_id,
        "outcome": event.outcome,
        "detail": event.detail,
        "count": event.count,
    }


def _event(row: Any) -> AuditEvent:
    return AuditEvent(
        event_id=row.event_id,
        occurred_at=row.occurred_at,
        action=row.action,
        key_id=row.key_id,
        key_name=row.key_name,
        target=row.target,
        peer=row.peer,
        request_id=row.request_id,
        outcome=row.outcome,
        detail=row.detail,
        count=row.count,
    )


class SqlAuditLog:
    def __init__(self, engine: sa.Engine) -> None:
        self._sql = EngineViews(engine)

    def append(self, events: Sequence[AuditEvent]) -> None:
        if not events:
            return
        with self._sql.writer.begin() as conn:
            conn.execute(sa.insert(AuditEventRow), [audit_row(e) for e in events])

    def page(self, *, since: datetime | None, key_id: str, after: AuditPosition | None, limit: int) -> list[AuditEvent]:
        """Oldest first (time, then id), after `after`, at most `limit`."""
        at, ident = col(AuditEventRow.occurred_at), col(AuditEventRow.event_id)
        query = sa.select(AuditEventRow.__table__)  # type: ignore[attr-defined]
        if since is not None:
            query = query.where(at >= aware(since))
        if key_id:
            query = query.where(col(AuditEventRow.key_id) == key_id)
        if after is not None:
            when = aware(after.occurred_at)
            query = query.where(sa.or_(at > when, sa.and_(at == when, ident > after.event_id)))
        query = query.order_by(at, ident).limit(limit)
        with self._sql.reader.connect() as conn:
            return [_event(row) for row in conn.execute(query)]
