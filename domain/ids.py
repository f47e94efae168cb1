"""Identifiers derived from callers' ids, bounded to the length the profile of record keeps (pure: hashing only)."""

from __future__ import annotations

import hashlib

MAX_EVENT_ID = 200  # applied_events.event_id, points_ledger.entry_id
MAX_ID = 128  # ids of record (transaction, return)
_LONGEST_KIND = len(":reverse")  # of a ledger entry id's suffix


def bounded(prefix: str, *parts: str, limit: int) -> str:
    """`prefix:part:part` when it fits in `limit` characters and reads back one way only (no part but the last holds
    a ':', the first does not start with '#'), else `prefix:#<sha256 of the parts>`: the same parts give the same
    id, and different parts different ids (store "a:b" with transaction "c" is not store "a" with "b:c")."""
    plain = ":".join((prefix, *parts))
    ambiguous = any(":" in part for part in parts[:-1]) or (bool(parts) and parts[0].startswith("#"))
    if len(plain) <= limit and not ambiguous:
        return plain
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return f"{prefix}:#{digest}"[:limit]


def purchase_event_id(customer_id: str, store_id: str, transaction_id: str) -> str:
    """A purchase's outbox event: "sale:…" (until store-scoped ids, "purchase:<customer>:<transaction>")."""
    return bounded("sale", customer_id, store_id, transaction_id, limit=MAX_EVENT_ID)


def return_event_id(customer_id: str, store_id: str, transaction_id: str, return_id: str) -> str:
    """A return's outbox event, scoped by its purchase: "rtn:…" (until then, "return:<customer>:<return id>")."""
    return bounded("rtn", customer_id, store_id, transaction_id, return_id, limit=MAX_EVENT_ID)


def purchase_entry_id(store_id: str, transaction_id: str, kind: str) -> str:
    """A purchase's ledger entry: "sale:<store>:<transaction>:<kind>" (until then "<transaction>:<kind>")."""
    return f"{bounded('sale', store_id, transaction_id, limit=MAX_EVENT_ID - _LONGEST_KIND)}:{kind}"


def return_entry_id(store_id: str, transaction_id: str, return_id: str, kind: str) -> str:
    """A return's ledger entry: "rtn:<store>:<transaction>:<return id>:<kind>" (until then "<return id>:<kind>")."""
    return f"{bounded('rtn', store_id, transaction_id, return_id, limit=MAX_EVENT_ID - _LONGEST_KIND)}:{kind}"


def void_return_id(transaction_id: str) -> str:
    """The return id of a purchase's void: one per purchase, within the 128 characters a return id may have."""
    return bounded("void", transaction_id, limit=MAX_ID)
