"""Demo data for a first run: the SoHo store, Samantha (a high-value member who only buys dresses) and her offer.

Idempotent: the store and offer are (re)written, the member only created when she does not exist yet, so a
restart of `make run` keeps what she bought.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.errors import NotFound
from domain.model import (
    Condition,
    CustomerState,
    Eligibility,
    GeoPoint,
    Offer,
    Reward,
    RewardType,
    Store,
)
from usecases.admin import AdminApp
from usecases.customers import Customers

STORE_ID = "soho"
CUSTOMER_ID = "samantha"
OFFER_ID = "dress-shoes-2x"
SOHO = GeoPoint(40.7233, -74.0030)
SAMANTHA_HOME = GeoPoint(40.7411, -73.9897)  # Flatiron, about 2.3 km from the store


def demo_store() -> Store:
    return Store(store_id=STORE_ID, name="SoHo", location=SOHO, timezone="America/New_York")


def demo_offer(now: datetime) -> Offer:
    return Offer(
        offer_id=OFFER_ID,
        title="Double points on dresses when you buy shoes",
        description="Buy any pair of shoes and every dress in the same basket earns double points.",
        eligibility=Eligibility(
            min_lifetime_value_minor=1_000_000,  # USD 10,000.00
            max_distance_km=5.0,
            purchased_any_categories=frozenset({"dresses"}),
            not_purchased_categories=frozenset({"shoes"}),
        ),
        condition=Condition(required_category="shoes", min_quantity=1),
        reward=Reward(type=RewardType.POINTS_MULTIPLIER, target_category="dresses", multiplier_percent=200),
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=365),
        per_customer_limit=1,
        priority=10,
    )


def demo_customer(customer_id: str = CUSTOMER_ID) -> CustomerState:
    return CustomerState(
        customer_id=customer_id,
        display_name="Samantha",
        tier="gold",
        currency="USD",
        lifetime_value_minor=2_500_000,  # USD 25,000.00
        points_balance=500,
        categories=frozenset({"dresses"}),
        home=SAMANTHA_HOME,
        propensity={"dresses": 0.9, "shoes": 0.35},
    )


async def load_demo(admin: AdminApp, customers: Customers) -> None:
    await admin.upsert_store(demo_store())
    try:
        await admin.get_offer(OFFER_ID)
    except NotFound:
        await admin.upsert_offer(demo_offer(datetime.now(UTC)))
    try:
        await customers.customer(CUSTOMER_ID)
    except NotFound:
        await customers.upsert_customer(demo_customer())
