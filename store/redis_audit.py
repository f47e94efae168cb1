"""The audit outbox (usecases.ports.AuditOutbox): till-path audit events appended to a Redis stream of their own,
which the write-behind writer drains into SQL's audit table (store/writer.py, store/sql_outbox.py)."""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from store.keys import Keys
from store.records import AuditRecord, dump_record
from telemetry.observe import redis_call
from usecases.ports import AuditEvent


def audit_record(event: AuditEvent) -> AuditRecord:
    return AuditRecord(
        event_id=event.event_id,
        occurred_at=event.occurred_at.isoformat(),
        action=event.action,
        key_id=event.key_id,
        key_name=event.key_name,
        target=event.target,
        peer=event.peer,
        request_id=event.request_id,
        outcome=event.outcome,
        detail=event.detail,
        count=event.count,
    )


class RedisAuditOutbox:
    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._redis = client
        self._stream = keys.audit_outbox().stream

    async def append_audit_outbox(self, events: Sequence[AuditEvent]) -> None:
        """One entry per event, in one round trip (a retry after a lost reply may add an entry twice: its event id
        is the same, so SQL gets it once)."""
        if not events:
            return
        pipe = self._redis.pipeline(transaction=False)
        for event in events:
            pipe.xadd(self._stream, {"r": dump_record(audit_record(event))})
        with redis_call("append_audit_outbox"):
            await pipe.execute()
