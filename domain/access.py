"""Who may call what: API key roles, their store bindings, and the role × RPC policy.

Pure rules; the server reads the key from the call's metadata and the store from the request, then asks here.
An RPC the policy does not name is admin-only: a new RPC is closed until its issue opens it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum


class Role(Enum):
    ADMIN = "admin"
    POS = "pos"
    APP = "app"


class StoreScope(Enum):
    """What a store-bound (pos) key must own for the call to be allowed."""

    NONE = "none"  # no store check (reads, listing offers for any store)
    BASKET = "basket"  # the basket's store
    PURCHASE = "purchase"  # the store the purchase was made at (voids)
    RETURNING = "returning"  # the store taking goods back (returns of any store's purchase)


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    name: str
    role: Role
    store_ids: frozenset[str] = frozenset()
    expires_at: datetime | None = None
    rate_limit_per_second: int = 0  # 0 = the server default
    created_at: datetime | None = None
    revoked_at: datetime | None = None
    created_by: str = ""

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class Grant:
    roles: frozenset[Role]
    scope: StoreScope = StoreScope.NONE


_TILL = frozenset({Role.ADMIN, Role.POS})
_READERS = frozenset({Role.ADMIN, Role.POS, Role.APP})

# "Service/Method" -> who may call it. Everything else (all of OfferAdmin, and any RPC added later) is admin-only.
POLICY: Mapping[str, Grant] = {
    "OfferService/ListActiveOffers": Grant(_READERS),
    "OfferService/GetProfile": Grant(_READERS),
    "OfferService/EvaluateBasket": Grant(_TILL, StoreScope.BASKET),
    "OfferService/CommitPurchase": Grant(_TILL, StoreScope.BASKET),
    "OfferService/ReturnPurchase": Grant(_TILL, StoreScope.RETURNING),
    "OfferService/VoidPurchase": Grant(_TILL, StoreScope.PURCHASE),
}
ADMIN_ONLY = Grant(frozenset({Role.ADMIN}))


def grant_for(method: str) -> Grant:
    """`method` is "Service/Method" (the service's short name)."""
    return POLICY.get(method, ADMIN_ONLY)


def may_call(key: ApiKey, method: str) -> bool:
    return key.role in grant_for(method).roles


def acts_for_store(key: ApiKey, store_id: str, narrowed_to: frozenset[str] | None = None) -> bool:
    """Whether a store-bound key may act for `store_id`. Only pos keys are bound; mutual TLS can narrow them
    further to the stores its client certificate names (`narrowed_to`)."""
    if key.role is not Role.POS:
        return True
    stores = key.store_ids if narrowed_to is None else key.store_ids & narrowed_to
    return store_id in stores
