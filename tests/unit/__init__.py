"""Engine unit tests. Shared builders for the story world: Samantha, the SoHo store, the dress-and-shoes offer."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from domain.model import (
    Basket,
    BasketEvaluation,
    Catalog,
    Channel,
    Condition,
    CustomerState,
    Daypart,
    Eligibility,
    GeoPoint,
    LineItem,
    Offer,
    OfferContext,
    PointsPolicy,
    PurchaseFacts,
    Reward,
    RewardType,
    Store,
    TierRule,
)

NOW = datetime(2025, 6, 1, 15, 0, tzinfo=UTC)
POLICY = PointsPolicy()

SOHO = Store("soho", "SoHo", GeoPoint(40.7233, -74.0030), "America/New_York")
MIDTOWN = Store("midtown", "Midtown", GeoPoint(40.7549, -73.9840), "America/New_York")
SAMANTHA_HOME = GeoPoint(40.7413, -74.0030)  # 2.0 km north of SoHo
NEAR_SOHO = GeoPoint(40.7377, -74.0030)  # 1.6 km north of SoHo
BOSTON = GeoPoint(42.3601, -71.0589)  # ~305 km from SoHo
COVENT_GARDEN = Store("london", "Covent Garden", GeoPoint(51.5117, -0.1240), "Europe/London")
NEAR_COVENT_GARDEN = GeoPoint(51.5130, -0.1240)

# The tier policy of the tier tests: thresholds on rolling 12-month spend (USD minor units), earn multipliers.
SILVER = TierRule("silver", 0, 100)
GOLD = TierRule("gold", 1_000_000, 150)
PLATINUM = TierRule("platinum", 5_000_000, 200)
TIERS = (SILVER, GOLD, PLATINUM)

WEEKDAYS = frozenset(range(5))  # Mon..Fri
HAPPY_HOUR = Daypart(WEEKDAYS, 17 * 60, 19 * 60)  # Mon–Fri 17:00–19:00, store time
EVERY_EVENING = Daypart(frozenset(), 17 * 60, 19 * 60)  # every day 17:00–19:00


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """An instant, written in UTC: tests state the wall clock they expect in a comment, never compute it."""
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def samantha(**changes: Any) -> CustomerState:
    customer = CustomerState(
        customer_id="samantha",
        display_name="Samantha",
        tier="gold",
        lifetime_value_minor=2_500_000,
        points_balance=1_000,
        categories=frozenset({"dresses"}),
        home=SAMANTHA_HOME,
        propensity={"shoes": 0.4},
    )
    return replace(customer, **changes)


def dress_shoes_offer(**changes: Any) -> Offer:
    offer = Offer(
        offer_id="dress-shoes-2x",
        title="Double points on dresses",
        description="Buy any shoes and earn double points on dresses.",
        eligibility=Eligibility(
            min_lifetime_value_minor=1_000_000,
            max_distance_km=5.0,
            purchased_any_categories=frozenset({"dresses"}),
            not_purchased_categories=frozenset({"shoes"}),
        ),
        condition=Condition(required_category="shoes", min_quantity=1),
        reward=Reward(type=RewardType.POINTS_MULTIPLIER, target_category="dresses", multiplier_percent=200),
        per_customer_limit=1,
    )
    return replace(offer, **changes)


def simple_offer(offer_id: str, reward: Reward, condition: Condition | None = None, **changes: Any) -> Offer:
    """An offer open to everyone: only the reward and condition matter."""
    return Offer(offer_id, f"Offer {offer_id}", "", Eligibility(), condition or Condition(), reward, **changes)


def catalog(
    *offers: Offer, stores: tuple[Store, ...] = (SOHO, MIDTOWN), version: int = 7, tiers: tuple[TierRule, ...] = ()
) -> Catalog:
    return Catalog(version=version, offers=offers, stores={store.store_id: store for store in stores}, tiers=tiers)


def line(line_id: str, category: str, unit_price_minor: int, quantity: int = 1) -> LineItem:
    return LineItem(line_id, f"sku-{line_id}", category, quantity, unit_price_minor)


def basket(*lines: LineItem, points_to_redeem: int = 0, currency: str = "USD", store_id: str = "soho") -> Basket:
    return Basket("samantha", store_id, "till-1", currency, tuple(lines), points_to_redeem)


def pos_ctx(now: datetime = NOW, store_id: str = "soho") -> OfferContext:
    return OfferContext(now=now, channel=Channel.POS, store_id=store_id)


def app_ctx(now: datetime = NOW, location: GeoPoint | None = None) -> OfferContext:
    return OfferContext(now=now, channel=Channel.APP, location=location)


def purchase_facts(
    cat: Catalog, items: Basket, evaluation: BasketEvaluation, transaction_id: str = "txn-1"
) -> PurchaseFacts:
    """What a commit of `items` (evaluated as `evaluation` against `cat`) stores for later returns: the terms of the
    applied offers the catalog defines (a tier bonus, "tier:gold", is not one and has no terms)."""
    return PurchaseFacts(
        transaction_id=transaction_id,
        customer_id=evaluation.customer_id,
        basket=items,
        lines=evaluation.lines,
        offers={a.offer_id: cat.by_id[a.offer_id] for a in evaluation.applied_offers if a.offer_id in cat.by_id},
        points_redeemed=evaluation.points_redeemed,
        redeemed_value_minor=evaluation.redeemed_value_minor,
        occurred_at=evaluation.evaluated_at,
    )
