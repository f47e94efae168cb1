from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from domain.errors import InvalidArgument
from domain.model import (
    Basket,
    Condition,
    CustomerState,
    Eligibility,
    GeoPoint,
    LineItem,
    Offer,
    Reward,
    RewardType,
    Store,
)
from domain.validation import (
    validate_basket,
    validate_customer,
    validate_id,
    validate_location,
    validate_offer,
    validate_store,
)
from tests.unit import NOW, SOHO, basket, dress_shoes_offer, line, samantha

GOOD_BASKET = basket(line("dress-1", "dresses", 120_00), line("shoes-1", "shoes", 80_00))


def field_of(check: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(InvalidArgument) as caught:
        check(*args, **kwargs)
    return caught.value.field


def check_basket(value: Basket, field_prefix: str = "basket") -> None:
    validate_basket(value, max_lines=3, max_quantity=10, max_unit_price_minor=1_000_00, field_prefix=field_prefix)


def with_line(index: int, **changes: Any) -> Basket:
    lines = list(GOOD_BASKET.lines)
    lines[index] = replace(lines[index], **changes)
    return replace(GOOD_BASKET, lines=tuple(lines))


def test_good_inputs_pass() -> None:
    check_basket(GOOD_BASKET)
    check_basket(replace(GOOD_BASKET, terminal_id=""))
    validate_offer(dress_shoes_offer(starts_at=NOW, ends_at=NOW + timedelta(days=7)))
    validate_store(SOHO)
    validate_customer(samantha())
    validate_location(None, "location")
    assert validate_id("a-b_c.1", "x") == "a-b_c.1"


@pytest.mark.parametrize("value", ["", "   ", "has space", "tab\there", "nul\x00", "nbsp\u00a0", "x" * 129])
def test_bad_ids(value: str) -> None:
    assert field_of(validate_id, value, "offer.offer_id") == "offer.offer_id"


def test_id_length_limit_is_configurable() -> None:
    validate_id("x" * 10, "f", max_len=10)
    with pytest.raises(InvalidArgument, match="at most 9 characters"):
        validate_id("x" * 10, "f", max_len=9)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (replace(GOOD_BASKET, customer_id=""), "basket.customer_id"),
        (replace(GOOD_BASKET, store_id="so ho"), "basket.store_id"),
        (replace(GOOD_BASKET, terminal_id="till\n1"), "basket.terminal_id"),
        (replace(GOOD_BASKET, currency="XXX"), "basket.currency"),
        (replace(GOOD_BASKET, currency="usd"), "basket.currency"),
        (replace(GOOD_BASKET, lines=()), "basket.lines"),
        (replace(GOOD_BASKET, lines=GOOD_BASKET.lines * 2), "basket.lines"),
        (with_line(1, line_id=""), "basket.lines[1].line_id"),
        (with_line(1, line_id="dress-1"), "basket.lines[1].line_id"),
        (with_line(0, sku=" "), "basket.lines[0].sku"),
        (with_line(1, category=""), "basket.lines[1].category"),
        (with_line(1, category="c" * 65), "basket.lines[1].category"),
        (with_line(1, quantity=0), "basket.lines[1].quantity"),
        (with_line(0, quantity=11), "basket.lines[0].quantity"),
        (with_line(0, unit_price_minor=-1), "basket.lines[0].unit_price_minor"),
        (with_line(0, unit_price_minor=1_000_01), "basket.lines[0].unit_price_minor"),
        (replace(GOOD_BASKET, points_to_redeem=-5), "basket.points_to_redeem"),
    ],
)
def test_bad_basket_fields(bad: Basket, field: str) -> None:
    assert field_of(check_basket, bad) == field


def test_basket_field_prefix() -> None:
    bad = with_line(0, quantity=0)
    assert field_of(check_basket, bad, "request.basket") == "request.basket.lines[0].quantity"


def test_basket_line_fields_count_from_the_bad_line() -> None:
    lines = (*GOOD_BASKET.lines, LineItem("hat-1", "sku-hat", "hats", 0, 5_00))
    assert field_of(check_basket, replace(GOOD_BASKET, lines=lines)) == "basket.lines[2].quantity"


def reward(**changes: Any) -> Offer:
    return dress_shoes_offer(reward=replace(dress_shoes_offer().reward, **changes))


def rules(**changes: Any) -> Offer:
    return dress_shoes_offer(eligibility=replace(Eligibility(), **changes))


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (dress_shoes_offer(offer_id="two words"), "offer.offer_id"),
        (dress_shoes_offer(title="  "), "offer.title"),
        (reward(type=RewardType.UNSPECIFIED), "offer.reward.type"),
        (reward(multiplier_percent=100), "offer.reward.multiplier_percent"),
        (reward(multiplier_percent=10_001), "offer.reward.multiplier_percent"),
        (dress_shoes_offer(reward=Reward(RewardType.BONUS_POINTS)), "offer.reward.bonus_points"),
        (dress_shoes_offer(reward=Reward(RewardType.PERCENT_OFF, percent_off=0)), "offer.reward.percent_off"),
        (dress_shoes_offer(reward=Reward(RewardType.PERCENT_OFF, percent_off=101)), "offer.reward.percent_off"),
        (dress_shoes_offer(reward=Reward(RewardType.AMOUNT_OFF)), "offer.reward.amount_off_minor"),
        (dress_shoes_offer(condition=Condition(min_quantity=-1)), "offer.condition.min_quantity"),
        (dress_shoes_offer(condition=Condition(min_spend_minor=-1)), "offer.condition.min_spend_minor"),
        (dress_shoes_offer(per_customer_limit=-1), "offer.per_customer_limit"),
        (dress_shoes_offer(total_redemption_limit=-1), "offer.total_redemption_limit"),
        (rules(max_distance_km=-0.5), "offer.eligibility.max_distance_km"),
        (rules(max_distance_km=math.inf), "offer.eligibility.max_distance_km"),
        (rules(max_distance_km=math.nan), "offer.eligibility.max_distance_km"),
        (rules(min_lifetime_value_minor=-1), "offer.eligibility.min_lifetime_value_minor"),
        (rules(store_ids=frozenset({""})), "offer.eligibility.store_ids"),
        (dress_shoes_offer(starts_at=NOW, ends_at=NOW), "offer.ends_at"),
        (dress_shoes_offer(starts_at=NOW, ends_at=NOW - timedelta(seconds=1)), "offer.ends_at"),
    ],
)
def test_bad_offer_fields(bad: Offer, field: str) -> None:
    assert field_of(validate_offer, bad) == field


def test_other_reward_types_validate() -> None:
    validate_offer(dress_shoes_offer(reward=Reward(RewardType.BONUS_POINTS, bonus_points=1)))
    validate_offer(dress_shoes_offer(reward=Reward(RewardType.PERCENT_OFF, percent_off=100)))
    validate_offer(dress_shoes_offer(reward=Reward(RewardType.AMOUNT_OFF, amount_off_minor=1)))
    validate_offer(dress_shoes_offer(starts_at=NOW))


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (replace(SOHO, store_id=""), "store.store_id"),
        (replace(SOHO, name=""), "store.name"),
        (replace(SOHO, timezone="Mars/Olympus_Mons"), "store.timezone"),
        (replace(SOHO, timezone=""), "store.timezone"),
        (replace(SOHO, timezone="../../etc/passwd"), "store.timezone"),
        (replace(SOHO, location=GeoPoint(91.0, 0.0)), "store.location.latitude"),
        (replace(SOHO, location=GeoPoint(math.nan, 0.0)), "store.location.latitude"),
        (replace(SOHO, location=GeoPoint(0.0, -180.5)), "store.location.longitude"),
        (replace(SOHO, location=GeoPoint(0.0, math.inf)), "store.location.longitude"),
    ],
)
def test_bad_store_fields(bad: Store, field: str) -> None:
    assert field_of(validate_store, bad) == field


def test_store_without_location_is_fine() -> None:
    validate_store(Store("web", "Web shop", None, "UTC"))


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (samantha(customer_id="sam antha"), "customer.customer_id"),
        (samantha(lifetime_value_minor=-1), "customer.lifetime_value_minor"),
        (samantha(points_balance=-1), "customer.points_balance"),
        (samantha(home=GeoPoint(-90.1, 0.0)), "customer.home.latitude"),
        (samantha(home=GeoPoint(0.0, 181.0)), "customer.home.longitude"),
        (samantha(propensity={"shoes": 1.2}), "customer.propensity[shoes]"),
        (samantha(propensity={"shoes": -0.1}), "customer.propensity[shoes]"),
        (samantha(propensity={"bags": math.nan}), "customer.propensity[bags]"),
    ],
)
def test_bad_customer_fields(bad: CustomerState, field: str) -> None:
    assert field_of(validate_customer, bad) == field


def test_location_field_names_the_coordinate() -> None:
    assert field_of(validate_location, GeoPoint(0.0, 200.0), "request.location") == "request.location.longitude"
