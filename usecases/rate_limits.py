"""Rate limits of a call: the caller's key and the customer the request names, checked together before the call
runs (after authentication and permission, before validation)."""

from __future__ import annotations

from typing import Literal

from domain.access import ApiKey
from domain.errors import Unavailable
from domain.limits import FAIL_OPEN_ROLES, Bucket, RateLimited, RateLimits
from usecases.ports import RateBuckets

Admission = Literal["admitted", "unchecked"]
"""admitted: the buckets had room and one token was taken from each; unchecked: they could not be checked and the
caller's role goes ahead anyway (FAIL_OPEN_ROLES)."""


class RateLimiter:
    def __init__(self, buckets: RateBuckets, limits: RateLimits) -> None:
        self._buckets = buckets
        self.limits = limits

    async def admit(self, key: ApiKey, customer_id: str) -> Admission:
        """Takes one call from the key's bucket and the customer's (when the request names one), or neither:
        RateLimited with the delay after which a retry can pass. When the buckets cannot be checked, a till or
        app key goes ahead ("unchecked") and an admin key gets Unavailable."""
        wanted: list[Bucket] = [self.limits.for_key(key)]
        customer = self.limits.for_customer(customer_id)
        if customer is not None:
            wanted.append(customer)
        try:
            refusal = await self._buckets.take(wanted)
        except Unavailable:
            if key.role in FAIL_OPEN_ROLES:
                return "unchecked"
            raise Unavailable("rate limits cannot be checked right now; retry") from None
        if refusal is not None:
            raise RateLimited(refusal)
        return "admitted"
