"""Identifiers derived from callers' ids, bounded to the length the profile of record keeps (pure: hashing only)."""

from __future__ import annotations

import hashlib

MAX_EVENT_ID = 200  # applied_events.event_id
MAX_ID = 128  # ids of record (transaction, return)


def bounded(prefix: str, *parts: str, limit: int) -> str:
    """`prefix:part:part` when it fits in `limit` characters, else `prefix:#<sha256 of the parts>` (same input,
    same id, so idempotency holds either way)."""
    plain = ":".join((prefix, *parts))
    if len(plain) <= limit:
        return plain
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return f"{prefix}:#{digest}"[:limit]


def purchase_event_id(customer_id: str, transaction_id: str) -> str:
    return bounded("purchase", customer_id, transaction_id, limit=MAX_EVENT_ID)


def return_event_id(customer_id: str, return_id: str) -> str:
    return bounded("return", customer_id, return_id, limit=MAX_EVENT_ID)


def void_return_id(transaction_id: str) -> str:
    """The return id of a purchase's void: one per purchase, within the 128 characters a return id may have."""
    return bounded("void", transaction_id, limit=MAX_ID)
