"""Profiles of record as a rebuild reads them from SQL, for tests that rebuild a member in the hot state."""

from __future__ import annotations

from typing import Any

from usecases.snapshot import CustomerSnapshot


def customer_snapshot(customer_id: str, **fields: Any) -> CustomerSnapshot:
    """A member SQL knows with nothing on record but what `fields` says (no purchases, no points)."""
    empty: dict[str, Any] = {
        "display_name": "",
        "tier": "",
        "currency": "USD",
        "lifetime_value_minor": 0,
        "points_balance": 0,
        "purchase_count": 0,
        "last_purchase_at": None,
        "home_latitude": None,
        "home_longitude": None,
        "categories": [],
        "propensity": {},
        "offer_uses": {},
    }
    return CustomerSnapshot(customer_id=customer_id, **(empty | fields))
