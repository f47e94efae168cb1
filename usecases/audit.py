"""The audit log: who did what, to what, when and from where.

Two ways in. Admin calls (off the till path) are written to SQL synchronously before they are answered
(`AuditTrail.record`): if the log cannot be written the call fails UNAVAILABLE. Refused calls and velocity alerts
happen on the till path, which never waits for SQL: they are counted in memory per minute (`RefusalTally`) and
each finished minute goes to Redis as outbox entries the write-behind writer applies to the same table, once.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from domain.errors import InvalidArgument, Unavailable
from domain.validation import validate_id
from telemetry import metrics
from usecases.ports import AuditEvent, AuditLog, AuditOutbox, AuditPosition, Clock

log = logging.getLogger(__name__)

DEFAULT_PAGE = 100
MAX_PAGE = 1_000


def new_event_id() -> str:
    return uuid.uuid4().hex


def encode_token(position: AuditPosition) -> str:
    raw = json.dumps({"t": position.occurred_at.isoformat(), "id": position.event_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_token(token: str) -> AuditPosition | None:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return AuditPosition(datetime.fromisoformat(data["t"]).astimezone(UTC), str(data["id"]))
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise InvalidArgument("page_token", "is not a token this service issued") from None


class AuditTrail:
    """Writes admin calls to the audit log of record and reads it back."""

    def __init__(self, log_of_record: AuditLog) -> None:
        self._log = log_of_record

    async def record(self, event: AuditEvent) -> None:
        """Appends `event` before the call is answered; Unavailable when the log cannot take it."""
        try:
            await self._log.append_audit([event])
        except Exception as exc:
            # The facts go to the log, so the change is not untraceable (the caller is told to retry).
            metrics.AUDIT_WRITE_FAILURES.inc()
            log.error(
                "audit log write failed: %s",
                type(exc).__name__,
                extra={"action": event.action, "key_id": event.key_id, "outcome": event.outcome},
            )
            raise Unavailable("the audit log cannot be written; retry") from None

    async def page(
        self, *, since: datetime | None, key_id: str, page_size: int, page_token: str
    ) -> tuple[list[AuditEvent], str]:
        """Oldest first; the token of the next page ("" after the last)."""
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        if key_id:
            validate_id(key_id, "key_id")
        limit = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        after = decode_token(page_token)
        events = await self._log.audit_events(since=since, key_id=key_id, after=after, limit=limit + 1)
        if len(events) <= limit:
            return events, ""
        last = events[limit - 1]
        return events[:limit], encode_token(AuditPosition(last.occurred_at, last.event_id))


@dataclass(frozen=True, slots=True)
class TallyKey:
    """What one aggregated audit event stands for: a minute, a key ("" unknown), an action, a target, a peer."""

    minute: datetime
    key_id: str
    key_name: str
    action: str
    target: str
    peer: str
    outcome: str
    detail: str = "{}"


MAX_TALLY_ENTRIES = 10_000  # distinct (minute, key, method, peer, reason) held at once
OVERFLOW_PEER = "(more peers than the tally holds)"


class RefusalTally:
    """Counts till-path audit events (refused calls, velocity alerts) in memory per minute; `flush` sends each
    finished minute to Redis as one entry per distinct event, with its count. No I/O when counting."""

    def __init__(self, outbox: AuditOutbox, clock: Clock) -> None:
        self._outbox = outbox
        self._clock = clock
        self._counts: Counter[TallyKey] = Counter()

    def count(
        self,
        action: str,
        *,
        key_id: str = "",
        key_name: str = "",
        target: str = "",
        peer: str = "",
        outcome: str = "",
        detail: str = "{}",
    ) -> None:
        minute = self._clock().replace(second=0, microsecond=0)
        entry = TallyKey(minute, key_id, key_name, action, target, peer, outcome, detail)
        if entry not in self._counts and len(self._counts) >= MAX_TALLY_ENTRIES:
            # Many peers (or a long Redis outage) must not grow memory without bound: the rest of them are
            # counted under one entry whose peer says so.
            entry = dataclasses.replace(entry, peer=OVERFLOW_PEER, key_id="", key_name="")
        self._counts[entry] += 1

    @property
    def pending(self) -> int:
        return sum(self._counts.values())

    async def flush(self, *, everything: bool = False) -> int:
        """Sends the finished minutes (all of them with `everything`: tests, shutdown); returns the events sent.
        If Redis refuses, the counts are kept for the next flush."""
        current = self._clock().replace(second=0, microsecond=0) + (timedelta(minutes=1) if everything else timedelta())
        done = {k: n for k, n in self._counts.items() if k.minute < current}
        if not done:
            return 0
        events = [
            AuditEvent(
                event_id=new_event_id(),
                occurred_at=k.minute,
                action=k.action,
                key_id=k.key_id,
                key_name=k.key_name,
                target=k.target,
                peer=k.peer,
                outcome=k.outcome,
                detail=k.detail,
                count=n,
            )
            for k, n in sorted(done.items(), key=lambda item: (item[0].minute, item[0].action, item[0].key_id))
        ]
        await self._outbox.append_audit_outbox(events)
        self._counts.subtract(done)  # counts added meanwhile (the current minute, with `everything`) stay
        for k in [k for k, n in self._counts.items() if n <= 0]:
            del self._counts[k]
        return len(events)
