"""Which offers a customer sees, best first."""

from __future__ import annotations

import math
from collections.abc import Mapping

from domain import money
from domain.catalog_index import candidate_offers
from domain.eligibility import check_eligibility, nearest_eligible_store, reference_point
from domain.model import (
    ActiveOffer,
    Catalog,
    CustomerState,
    Offer,
    OfferContext,
    PointsPolicy,
    RewardType,
)
from domain.rewards import base_points, multiplier_bonus

DEFAULT_LIKELIHOOD = 0.3
AFFINITY_LIFT = 0.25  # share of the remaining doubt removed when she already buys the target category
PROXIMITY_LIFT = 0.2  # share removed when she stands at an eligible store, fading to 0 at PROXIMITY_RANGE_KM
PROXIMITY_RANGE_KM = 10.0
NOMINAL_BASKET_UNITS = 100  # value is estimated on a purchase of 100.00 (or the minimum spend, if higher)
PRIORITY_WEIGHT = 0.001  # a tie-breaker: 1000 priority steps are worth one minor unit
DEFAULT_POLICY = PointsPolicy()


def _propensity(customer: CustomerState, category: str) -> float | None:
    value = customer.propensity.get(category) if category else None
    if value is None or not math.isfinite(value):
        return None
    return min(max(value, 0.0), 1.0)


def engagement_likelihood(offer: Offer, customer: CustomerState, distance_km: float | None) -> float:
    """Chance (0..1) she acts on the offer.

    Start from her propensity for the category she must buy (condition.required_category), else for the
    reward's target category, else DEFAULT_LIKELIHOOD. Then lift it towards 1: by AFFINITY_LIFT when she already
    buys the target category, and by PROXIMITY_LIFT × (1 - distance / PROXIMITY_RANGE_KM) when an eligible store
    is nearby.
    """
    p = _propensity(customer, offer.condition.required_category)
    if p is None:
        p = _propensity(customer, offer.reward.target_category)
    likelihood = DEFAULT_LIKELIHOOD if p is None else p
    if offer.reward.target_category and offer.reward.target_category in customer.categories:
        likelihood += (1.0 - likelihood) * AFFINITY_LIFT
    if distance_km is not None:
        nearness = max(0.0, 1.0 - distance_km / PROXIMITY_RANGE_KM)
        likelihood += (1.0 - likelihood) * PROXIMITY_LIFT * nearness
    return likelihood


def estimated_value_minor(offer: Offer, currency: str, policy: PointsPolicy) -> float:
    """The reward's worth in minor units on a nominal purchase of the target category.

    The nominal purchase is NOMINAL_BASKET_UNITS whole units, or the condition's min_spend if higher. Points
    (multiplier bonus on the nominal purchase's base points, or bonus points) are valued at the redemption rate.
    """
    mpu = money.minor_per_unit(currency) if money.is_known_currency(currency) else 100
    nominal = max(NOMINAL_BASKET_UNITS * mpu, offer.condition.min_spend_minor)
    reward = offer.reward
    if reward.type == RewardType.POINTS_MULTIPLIER:
        points = multiplier_bonus(base_points(nominal, mpu, policy), reward.multiplier_percent)
        return points * mpu / policy.redeem_points_per_unit
    if reward.type == RewardType.BONUS_POINTS:
        return reward.bonus_points * mpu / policy.redeem_points_per_unit
    if reward.type == RewardType.PERCENT_OFF:
        return nominal * reward.percent_off / 100
    if reward.type == RewardType.AMOUNT_OFF:
        return float(min(reward.amount_off_minor, nominal))
    return 0.0


def list_active_offers(
    catalog: Catalog,
    customer: CustomerState,
    ctx: OfferContext,
    *,
    page_size: int,
    policy: PointsPolicy = DEFAULT_POLICY,
    redemptions_used: Mapping[str, int] | None = None,
) -> tuple[ActiveOffer, ...]:
    """Offers `customer` may use now, best first, at most `page_size`.

    score = engagement_likelihood × estimated_value_minor + PRIORITY_WEIGHT × priority, where the likelihood's
    distance is from her reference point (request location, else home) to the nearest eligible store. Ties go to
    the lower offer_id, so the order is deterministic. Only ACTIVE offers inside their dates and dayparts are
    listed; a daypart follows the till's store's clock, else the nearest eligible store's (see
    eligibility.relevant_store), and the reason then says until when it runs ("happy hour until 19:00").
    """
    if page_size <= 0:
        return ()
    point = reference_point(customer, ctx, catalog)
    ranked: list[tuple[float, str, ActiveOffer]] = []
    for offer in candidate_offers(catalog, customer, ctx, priority_order=False):
        verdict = check_eligibility(offer, customer, ctx, catalog, redemptions_used=redemptions_used)
        if not verdict.eligible:
            continue
        nearest = nearest_eligible_store(offer, point, catalog) if point is not None else None
        likelihood = engagement_likelihood(offer, customer, None if nearest is None else nearest[1])
        score = likelihood * estimated_value_minor(offer, customer.currency, policy) + PRIORITY_WEIGHT * offer.priority
        remaining = 0
        if offer.per_customer_limit > 0:
            remaining = offer.per_customer_limit - customer.offer_uses.get(offer.offer_id, 0)
        active = ActiveOffer(
            offer_id=offer.offer_id,
            title=offer.title,
            description=offer.description,
            ends_at=offer.ends_at,
            score=score,
            reason="; ".join(verdict.reasons) or "available to all members",
            remaining_uses=remaining,
        )
        ranked.append((-score, offer.offer_id, active))
    ranked.sort(key=lambda item: item[:2])
    return tuple(active for _, _, active in ranked[:page_size])
