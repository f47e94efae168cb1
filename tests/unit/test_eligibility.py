from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from domain.eligibility import Verdict, check_eligibility
from domain.geo import distance_km
from domain.model import Channel, CustomerState, Eligibility, GeoPoint, Offer, OfferContext, Reward, RewardType
from tests.unit import (
    BOSTON,
    MIDTOWN,
    NEAR_SOHO,
    NOW,
    SOHO,
    app_ctx,
    catalog,
    dress_shoes_offer,
    pos_ctx,
    samantha,
)


def verdict(
    offer: Offer | None = None,
    customer: CustomerState | None = None,
    ctx: OfferContext | None = None,
    redemptions_used: dict[str, int] | None = None,
) -> Verdict:
    offer = offer or dress_shoes_offer()
    customer = customer or samantha()
    return check_eligibility(offer, customer, ctx or app_ctx(), catalog(), redemptions_used=redemptions_used)


def with_rules(**changes: Any) -> Offer:
    offer = dress_shoes_offer()
    return replace(offer, eligibility=replace(offer.eligibility, **changes))


def test_distance_is_great_circle() -> None:
    assert distance_km(SOHO.location or GeoPoint(0, 0), SOHO.location or GeoPoint(0, 0)) == 0.0
    # New York to London is about 5570 km.
    assert distance_km(GeoPoint(40.7128, -74.0060), GeoPoint(51.5074, -0.1278)) == pytest.approx(5570, rel=0.01)
    assert distance_km(GeoPoint(0, 0), GeoPoint(0, 180)) == pytest.approx(20015.1, rel=1e-4)


def test_eligible_with_reasons() -> None:
    assert verdict() == Verdict(True, ("you buy dresses", "2.0 km from SoHo"))


def test_reason_lists_every_matching_category_sorted() -> None:
    offer = with_rules(purchased_any_categories=frozenset({"dresses", "bags", "hats"}))
    result = verdict(offer, samantha(categories=frozenset({"dresses", "bags"})))
    assert result.reasons[0] == "you buy bags, dresses"


@pytest.mark.parametrize(
    ("offer", "customer", "refusal"),
    [
        (dress_shoes_offer(archived=True), samantha(), "archived"),
        (dress_shoes_offer(), samantha(lifetime_value_minor=10), "lifetime value below 1000000"),
        (dress_shoes_offer(), samantha(home=None), "no location"),
        (dress_shoes_offer(), samantha(home=BOSTON), "301.8 km from Midtown, beyond 5 km"),
        (dress_shoes_offer(), samantha(categories=frozenset()), "has not bought dresses"),
        (dress_shoes_offer(), samantha(categories=frozenset({"dresses", "shoes"})), "already bought shoes"),
        (dress_shoes_offer(), samantha(offer_uses={"dress-shoes-2x": 1}), "already used 1 of 1"),
        (with_rules(tiers=frozenset({"platinum"})), samantha(), "only for platinum members"),
        (with_rules(channels=frozenset({Channel.POS})), samantha(), "only on POS"),
    ],
)
def test_refusals(offer: Offer, customer: CustomerState, refusal: str) -> None:
    assert verdict(offer, customer) == Verdict(False, (), refusal)


def test_time_window_is_half_open() -> None:
    offer = dress_shoes_offer(starts_at=NOW, ends_at=NOW + timedelta(hours=1))
    assert verdict(offer, ctx=app_ctx(now=NOW)).eligible
    assert verdict(offer, ctx=app_ctx(now=NOW - timedelta(seconds=1))).refusal == "not started"
    assert verdict(offer, ctx=app_ctx(now=NOW + timedelta(hours=1))).refusal == "ended"


def test_naive_times_are_read_as_utc() -> None:
    offer = dress_shoes_offer(ends_at=(NOW + timedelta(minutes=1)).replace(tzinfo=None))
    assert verdict(offer, ctx=app_ctx(now=NOW)).eligible
    assert verdict(offer, ctx=app_ctx(now=NOW + timedelta(minutes=1))).refusal == "ended"


def test_total_limit_sold_out() -> None:
    offer = dress_shoes_offer(total_redemption_limit=100)
    assert verdict(offer, redemptions_used={"dress-shoes-2x": 99}).eligible
    assert verdict(offer, redemptions_used={"dress-shoes-2x": 100}).refusal == "sold out"


def test_store_restriction_applies_only_when_the_request_names_a_store() -> None:
    offer = with_rules(store_ids=frozenset({"midtown"}), max_distance_km=0.0)
    assert verdict(offer, ctx=pos_ctx(store_id="soho")).refusal == "not offered at store soho"
    assert verdict(offer, ctx=pos_ctx(store_id="midtown")).eligible
    assert verdict(offer, ctx=app_ctx()).eligible


def test_distance_point_is_the_request_location_else_home_never_the_till() -> None:
    far_home = samantha(home=BOSTON)
    assert verdict(customer=far_home, ctx=app_ctx(location=NEAR_SOHO)).reasons[1] == "1.6 km from SoHo"
    # A visitor from Boston at the SoHo till is not a member living near a store.
    assert not verdict(customer=far_home, ctx=pos_ctx(store_id="soho")).eligible
    assert verdict(customer=samantha(), ctx=pos_ctx(store_id="soho")).eligible


def test_distance_names_the_nearest_eligible_store() -> None:
    at_midtown = app_ctx(location=MIDTOWN.location)
    assert verdict(ctx=at_midtown).reasons[1] == "0.0 km from Midtown"
    only_soho = with_rules(store_ids=frozenset({"soho"}))
    assert verdict(only_soho, ctx=at_midtown).reasons[1].endswith("km from SoHo")


def test_no_restrictions_means_no_reasons() -> None:
    offer = dress_shoes_offer(eligibility=Eligibility())
    assert verdict(offer, samantha(home=None, categories=frozenset())) == Verdict(True, ())


def test_a_fixed_reward_is_limited_per_day_and_a_multiplier_is_not() -> None:

    fixed = replace(dress_shoes_offer(), reward=Reward(RewardType.BONUS_POINTS, bonus_points=500))
    used_today = replace(samantha(), offer_uses_today={fixed.offer_id: 1})
    limited = replace(app_ctx(), fixed_reward_uses_per_day=1)
    refused = verdict(fixed, used_today, limited)
    assert not refused.eligible and "today" in refused.refusal
    assert verdict(fixed, used_today, replace(limited, fixed_reward_uses_per_day=2)).eligible
    assert verdict(fixed, used_today, replace(limited, fixed_reward_uses_per_day=0)).eligible  # off
    assert verdict(fixed, samantha(), limited).eligible  # not used today
    multiplier = replace(samantha(), offer_uses_today={dress_shoes_offer().offer_id: 5})
    assert verdict(dress_shoes_offer(), multiplier, limited).eligible  # follows the lines: splitting gains nothing
