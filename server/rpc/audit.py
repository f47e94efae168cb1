"""The audit step of the interceptor: every OfferAdmin call that changes something (or reads personal data) is
written to the audit log before it is answered, and every refused call is counted for it.

Generic on purpose: an admin RPC is audited unless it is named in READ_ONLY, so a new one is audited by default;
its target is the first id field found in the request (or the response, for a key the call created) and its
detail only numbers, flags and enums of the request and response plus a few named safe strings: never a secret,
a name, contact data or a location.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor

from domain.errors import InvalidArgument, Unauthenticated, Unavailable
from domain.validation import MAX_ID_CHARS
from server.rpc.authorization import CALLER, Guard
from telemetry.logs import REQUEST_ID
from usecases.audit import AuditTrail, RefusalTally, new_event_id
from usecases.ports import AuditEvent, Clock

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
StatusOf = Callable[[BaseException], tuple[grpc.StatusCode, str]]

ADMIN_SERVICE = "OfferAdmin"
# Admin reads of nothing personal: not audited. Everything else of OfferAdmin is, including RPCs added later.
READ_ONLY = frozenset(
    {
        "OfferAdmin/GetOffer",
        "OfferAdmin/ListOffers",
        "OfferAdmin/GetTierPolicy",
        "OfferAdmin/ListApiKeys",
        "OfferAdmin/ListAuditEvents",
    }
)
TARGET_FIELDS = ("offer_id", "store_id", "customer_id", "key_id", "adjustment_id")
SAFE_STRINGS = frozenset({"reason"})  # free text an admin writes for the record (AdjustPoints)
_NUMERIC = {
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_ENUM,
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
}
MAX_TEXT = MAX_ID_CHARS


def audited(method: str) -> bool:
    """`method` is "Service/Method" (the service's short name)."""
    return method.startswith(ADMIN_SERVICE + "/") and method not in READ_ONLY


def _messages(message: Any) -> list[Any]:
    """The message and its set sub-messages (one level down: UpsertOfferRequest.offer ...)."""
    found = [message]
    for field, value in message.ListFields():
        if field.type == FieldDescriptor.TYPE_MESSAGE and not field.is_repeated:
            found.append(value)
    return found


def target_of(request: Any, response: Any | None) -> str:
    for message in (request, response):
        if message is None:
            continue
        for part in _messages(message):
            names = part.DESCRIPTOR.fields_by_name
            for name in TARGET_FIELDS:
                if name in names and getattr(part, name):
                    return str(getattr(part, name))[:MAX_TEXT]
    return ""


def _facts(message: Any, prefix: str) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for part in _messages(message):
        path = prefix if part is message else f"{prefix}.{_field_name(message, part)}"
        for field, value in part.ListFields():
            if field.is_repeated:
                continue
            if field.type in _NUMERIC:
                facts[f"{path}.{field.name}"] = value
            elif field.name in SAFE_STRINGS and isinstance(value, str):
                facts[f"{path}.{field.name}"] = value[:MAX_TEXT]
    return facts


def _field_name(parent: Any, child: Any) -> str:
    return next((f.name for f, v in parent.ListFields() if v is child), "?")


def detail_of(request: Any, response: Any | None, error: BaseException | None) -> str:
    facts = _facts(request, "request")
    if response is not None:
        facts.update(_facts(response, "response"))
    if isinstance(error, InvalidArgument):
        facts["invalid_field"] = error.field[:MAX_TEXT]
    return json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str)


def peer_host(peer: str) -> str:
    """ "ipv4:10.0.0.5" from "ipv4:10.0.0.5:53122": refusals aggregate per address, not per connection."""
    head, sep, tail = peer.rpartition(":")
    return head if sep and tail.isdigit() and ":" in head else peer


class AdminAudit:
    """What the interceptor asks of the audit log: wrap an admin method, count a refusal."""

    def __init__(
        self,
        trail: AuditTrail,
        tally: RefusalTally,
        guard: Guard | None,
        clock: Clock,
        undo: Mapping[str, Callable[[Any], Awaitable[object]]] | None = None,
    ) -> None:
        """`undo`: per method, what takes back a change the audit log could not record when a retry cannot be
        trusted to (CreateApiKey: a retry makes another key; the first, whose secret nobody saw, is revoked)."""
        self._trail = trail
        self._tally = tally
        self._guard = guard
        self._clock = clock
        self._undo = undo or {}

    def wrap(self, method: str, inner: Behavior, status_of: StatusOf) -> Behavior:
        """`inner`, audited when `method` is an admin change."""
        if not audited(method):
            return inner

        async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                response = await inner(request, context)
            except asyncio.CancelledError:
                # The caller left, or the server's call limit ended the call: the change may be done all the same
                # (a script ran, a worker thread goes on), so it is recorded as CANCELLED, shielded from the
                # cancellation, before the call ends.
                await self._record_cancelled(method, request, context)
                raise
            except Exception as exc:
                await self._record(method, request, None, context, status_of(exc)[0].name, exc)
                raise
            try:
                await self._record(method, request, response, context, "OK", None)
            except Unavailable:
                if (undo := self._undo.get(method)) is not None:
                    await undo(response)
                raise
            return response

        return behavior

    async def _record_cancelled(self, method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        row = asyncio.ensure_future(self._record(method, request, None, context, "CANCELLED", None))
        with contextlib.suppress(Exception, asyncio.CancelledError):  # logged and counted by the trail
            await asyncio.shield(row)

    async def _record(
        self,
        method: str,
        request: Any,
        response: Any | None,
        context: grpc.aio.ServicerContext[Any, Any],
        outcome: str,
        error: BaseException | None,
    ) -> None:
        caller = CALLER.get()
        await self._trail.record(
            AuditEvent(
                event_id=new_event_id(),
                occurred_at=self._clock(),
                action=method,
                key_id=caller.key_id if caller else "",
                key_name=caller.name[:MAX_TEXT] if caller else "",
                target=target_of(request, response),
                peer=context.peer()[:MAX_TEXT],
                request_id=REQUEST_ID.get() or "",
                outcome=outcome,
                detail=detail_of(request, response, error),
            )
        )

    def refused(
        self, method: str, exc: Exception, metadata: Sequence[tuple[str, str | bytes]] | None, peer: str
    ) -> None:
        """Counted in memory (no I/O on the till path); flushed per minute through Redis to the audit table."""
        known = CALLER.get() or (self._guard.presented(metadata) if self._guard else None)
        unauthenticated = isinstance(exc, Unauthenticated)
        reason = exc.reason if isinstance(exc, Unauthenticated) else "role or store"
        self._tally.count(
            "refused.unauthenticated" if unauthenticated else "refused.permission_denied",
            key_id=known.key_id if known else "",
            key_name=known.name[:MAX_TEXT] if known else "",
            target=method,
            peer=peer_host(peer)[:MAX_TEXT],
            outcome="UNAUTHENTICATED" if unauthenticated else "PERMISSION_DENIED",
            detail=json.dumps({"reason": reason}),
        )
