"""Audit events (usecases.ports.AuditEvent) as protobuf."""

from __future__ import annotations

from posoffers.v1 import admin_service_pb2 as admin_pb

from server.rpc.convert import set_timestamp
from usecases.ports import AuditEvent


def audit_event_to_pb(event: AuditEvent) -> admin_pb.AuditEvent:
    message = admin_pb.AuditEvent(
        event_id=event.event_id,
        key_id=event.key_id,
        key_name=event.key_name,
        action=event.action,
        target=event.target,
        peer=event.peer,
        request_id=event.request_id,
        outcome=event.outcome,
        detail=event.detail,
        count=event.count,
    )
    set_timestamp(message.occurred_at, event.occurred_at)
    return message
