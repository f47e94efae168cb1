"""A member's data protection requests: everything held about her as one JSON document (ExportCustomer), and
erasure (ForgetCustomer).

Erasure keeps the books: her purchases, returns, ledger and adjustments stay in SQL, re-keyed to an anonymous id
(`forgotten-<random>`) on a customer row without her name, home or propensities, so the ledger still adds up to
that row's balance; nothing links the anonymous id back to her (it is not returned, not logged). Her hot state goes.
It waits for the outbox: while records of hers are not in SQL yet it is refused (FAILED_PRECONDITION, retry), since
a record written after the re-keying would recreate her under her old id.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from domain.errors import FailedPrecondition, NotFound
from domain.model import CustomerState
from domain.validation import validate_id, validate_reason
from usecases.ports import Clock, CustomerHotState, ErasedIds, PrivacyStore

EXPORT_FORMAT = "pos-offers.customer-export.v1"
ANONYMOUS_PREFIX = "forgotten-"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def live_profile(state: CustomerState) -> dict[str, Any]:
    """Her state as the till sees it now (Redis): newer than SQL's while her latest changes are on their way."""
    home = None if state.home is None else {"latitude": state.home.latitude, "longitude": state.home.longitude}
    return {
        "customer_id": state.customer_id,
        "display_name": state.display_name,
        "tier": state.tier,
        "currency": state.currency,
        "lifetime_value_minor": state.lifetime_value_minor,
        "points_balance": state.points_balance,
        "points_debt": state.points_debt,
        "points_available": state.points_available,
        "purchase_count": state.purchase_count,
        "last_purchase_at": _iso(state.last_purchase_at),
        "home_location": home,
        "propensity": dict(sorted(state.propensity.items())),
        "categories": sorted(state.categories),
        "offer_uses": dict(sorted(state.offer_uses.items())),
        "spend_12m_minor": state.spend_12m_minor,
        "pending_points": [{"points": p, "available_at": _iso(at)} for at, p in state.pending_points],
    }


class CustomerPrivacy:
    def __init__(self, hot: CustomerHotState, store: PrivacyStore, clock: Clock) -> None:
        self._hot = hot
        self._store = store
        self._clock = clock

    async def export(self, customer_id: str) -> str:
        """Everything held about her (format in docs/security.md); NOT_FOUND when neither Redis nor SQL has her."""
        validate_id(customer_id, "customer_id")
        now = self._clock()
        state = (await self._hot.read(customer_id, now=now)).state
        held = await self._store.export_customer(customer_id, now=now)
        if held is None and state is None:
            raise NotFound("customer", customer_id)
        held = held or {}
        document = {
            "format": EXPORT_FORMAT,
            "customer_id": customer_id,
            "exported_at": _iso(now),
            "writes_pending": await self._hot.has_pending_changes(customer_id),
            "profile": held.get("profile"),
            "live_profile": live_profile(state) if state is not None else None,
            "categories": held.get("categories", []),
            "purchases": held.get("purchases", []),
            "returns": held.get("returns", []),
            "ledger": held.get("ledger", []),
            "adjustments": held.get("adjustments", []),
            "pending_points": held.get("pending_points", []),
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    async def forget(self, customer_id: str, reason: str) -> datetime:
        """Erases her (see the module's docstring); NOT_FOUND for an unknown or already forgotten id."""
        validate_id(customer_id, "customer_id")
        validate_reason(reason)
        now = self._clock()
        if not await self._hot.begin_erasure(customer_id, now=now):
            raise FailedPrecondition(
                "writes of this customer are still on their way to the profile of record; retry shortly",
                reason="writes_pending",
            )
        anonymous_id = f"{ANONYMOUS_PREFIX}{uuid.uuid4().hex}"
        erased: ErasedIds | None = ErasedIds()
        try:
            erased = await self._store.forget_customer(customer_id, anonymous_id=anonymous_id, at=now)
        finally:
            # Also after a failure: the mark lifts, and she is rebuilt from SQL (unchanged) as before.
            await self._hot.finish_erasure(customer_id, anonymous_id=anonymous_id, erased=erased or ErasedIds())
        if erased is None:
            raise NotFound("customer", customer_id)
        return now
