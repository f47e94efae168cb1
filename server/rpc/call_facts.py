"""What a call says about itself, bounded: its request id, and where it comes from for the access log."""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from typing import Any

import grpc

from domain.validation import MAX_ID_CHARS

# A status message or log field quotes at most this much of what the caller sent: a 1 MB field must not come back
# in a status (some clients drop a connection over ~64 kB of trailers) nor fill the log.
MAX_MESSAGE_CHARS = 300
MAX_FACT_CHARS = MAX_ID_CHARS  # as long as an id may be


def bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


PRINTABLE_ID = re.compile(rf"[\x20-\x7e]{{1,{MAX_ID_CHARS}}}")


def request_id_of(details: grpc.HandlerCallDetails) -> tuple[str, bool]:
    """(the call's request id, whether the caller's was usable). The caller's id comes back in the trailers, which
    gRPC sends only in printable ASCII: a tab or a non-ASCII byte there ended the call INTERNAL (and 1 MB of it
    would fill the log). A malformed one is answered INVALID_ARGUMENT under a fresh id."""
    for key, value in details.invocation_metadata or ():
        if key == "x-request-id" and value:
            if isinstance(value, str) and PRINTABLE_ID.fullmatch(value):
                return value, True
            return uuid.uuid4().hex, False
    return uuid.uuid4().hex, True


def named_customer(request: Any) -> str:
    """The customer a request names (basket.customer_id, else customer_id), "" when none or not a message."""
    try:
        source = request.basket if "basket" in request.DESCRIPTOR.fields_by_name else request
        customer = getattr(source, "customer_id", "") if "customer_id" in source.DESCRIPTOR.fields_by_name else ""
    except AttributeError:  # not a protobuf message: an undecodable request
        return ""
    return customer if isinstance(customer, str) else ""


class RequestFacts:
    """Where a request comes from, for the access log: store, terminal and (hashed, or no) customer."""

    def __init__(self, customer_ids: str, salt: str) -> None:
        self._hash_customers = customer_ids == "hash"
        # Without a configured salt, a random one per process: hashes then cannot be looked up from a list of
        # ids (but only correlate within one process). Set POS_OFFERS_LOG_HASH_SALT to correlate across servers.
        self._salt = salt.encode() or os.urandom(16)

    def of(self, request: Any) -> dict[str, str]:
        try:
            source = request.basket if "basket" in request.DESCRIPTOR.fields_by_name else request
            names = source.DESCRIPTOR.fields_by_name
        except AttributeError:  # not a protobuf message
            return {}
        facts = {
            key: bounded(getattr(source, key), MAX_FACT_CHARS) for key in ("store_id", "terminal_id") if key in names
        }
        customer = named_customer(request)
        if customer and self._hash_customers:
            facts["customer_hash"] = hashlib.sha256(self._salt + customer.encode()).hexdigest()[:16]
        return {k: v for k, v in facts.items() if v}
