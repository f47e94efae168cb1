"""Rate limits: how many calls an API key, and calls about one customer, may make per second.

Two token buckets per call, both checked and both taken from at once (store/lua/take_rate_tokens.lua): the
caller's key (its own `rate_limit_per_second`, or the server default when that is 0) and the customer the request
names, if it names one. A bucket holds up to `burst` calls and refills at `per_second`; a call takes one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from domain.access import ApiKey, Role
from domain.errors import ResourceExhausted


class BucketKind(Enum):
    """Which bucket refused a call: a metric label and a word in the message, never the key or the customer."""

    KEY = "key"
    CUSTOMER = "customer"


@dataclass(frozen=True, slots=True)
class Rate:
    """`per_second` calls a second on average, up to `burst` at once (a full bucket). Both positive."""

    per_second: int
    burst: int


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket a call takes a token from: its kind, whose it is (a key id, a customer id) and its rate."""

    kind: BucketKind
    owner: str
    rate: Rate


@dataclass(frozen=True, slots=True)
class Refusal:
    """The bucket that refused a call (of those that did, the one that refills last) and when a retry can pass."""

    kind: BucketKind
    retry_after_ms: int


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The server's limits (settings). Burst is given in seconds of the rate, so a key with its own rate gets a
    burst in proportion: rate_limit_per_second=2 with 2 burst seconds allows 4 calls at once, then 2 a second."""

    per_key: int = 100
    """Calls per second of a key whose own rate_limit_per_second is 0."""
    key_burst_seconds: int = 2
    """A key's bucket holds this many seconds of its rate."""
    per_customer: int = 5
    """Calls per second about one customer, whichever keys make them; 0 = no customer limit."""
    customer_burst_seconds: int = 4
    """A customer's bucket holds this many seconds of her rate."""

    def for_key(self, key: ApiKey) -> Bucket:
        per_second = key.rate_limit_per_second if key.rate_limit_per_second > 0 else self.per_key
        return Bucket(BucketKind.KEY, key.key_id, Rate(per_second, per_second * self.key_burst_seconds))

    def for_customer(self, customer_id: str) -> Bucket | None:
        if not customer_id or self.per_customer <= 0:
            return None
        rate = Rate(self.per_customer, self.per_customer * self.customer_burst_seconds)
        return Bucket(BucketKind.CUSTOMER, customer_id, rate)


FAIL_OPEN_ROLES = frozenset({Role.POS, Role.APP})
"""Roles whose calls go ahead unchecked when the limits cannot be checked (Redis refuses or is unreachable): a
till must keep selling and the app keep showing offers. Admin calls are refused then (UNAVAILABLE): the admin
API needs Redis for its own work anyway, and it is the role a stolen key would do most harm with."""


class RateLimited(ResourceExhausted):
    """A rate limit refused the call before anything ran (→ RESOURCE_EXHAUSTED with the retry delay)."""

    def __init__(self, refusal: Refusal) -> None:
        whose = "this API key" if refusal.kind is BucketKind.KEY else "this customer"
        super().__init__(f"rate limit of {whose} exceeded; retry in {refusal.retry_after_ms} ms")
        self.kind = refusal.kind
        self.retry_after_ms = refusal.retry_after_ms
