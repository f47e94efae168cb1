"""The product story as pure functions: Samantha, a gold member who buys dresses, and the dress-and-shoes offer."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.basket import evaluate_basket
from domain.model import CustomerState, Offer, OfferContext
from domain.ranking import list_active_offers
from tests.unit import (
    BOSTON,
    NEAR_SOHO,
    NOW,
    POLICY,
    app_ctx,
    basket,
    catalog,
    dress_shoes_offer,
    line,
    pos_ctx,
    samantha,
)


def listed(offer: Offer, customer: CustomerState, ctx: OfferContext) -> list[str]:
    return [active.offer_id for active in list_active_offers(catalog(offer), customer, ctx, page_size=20)]


def test_samantha_sees_the_offer_with_why() -> None:
    (active,) = list_active_offers(catalog(dress_shoes_offer()), samantha(), app_ctx(), page_size=20)
    assert active.offer_id == "dress-shoes-2x"
    assert active.title == "Double points on dresses"
    assert active.reason == "you buy dresses; 2.0 km from SoHo"
    assert active.remaining_uses == 1
    assert active.score > 0


def test_reason_uses_the_app_location_over_home() -> None:
    (active,) = list_active_offers(catalog(dress_shoes_offer()), samantha(), app_ctx(location=NEAR_SOHO), page_size=5)
    assert active.reason == "you buy dresses; 1.6 km from SoHo"


@pytest.mark.parametrize(
    ("customer", "ctx"),
    [
        pytest.param(samantha(lifetime_value_minor=999_999), app_ctx(), id="ltv-below-threshold"),
        pytest.param(samantha(home=BOSTON), app_ctx(), id="lives-in-boston"),
        pytest.param(samantha(home=None), app_ctx(), id="no-location-at-all"),
        pytest.param(samantha(categories=frozenset({"dresses", "shoes"})), app_ctx(), id="already-buys-shoes"),
        pytest.param(samantha(categories=frozenset({"bags"})), app_ctx(), id="never-bought-dresses"),
        pytest.param(samantha(offer_uses={"dress-shoes-2x": 1}), app_ctx(), id="used-up"),
    ],
)
def test_not_listed_for(customer: CustomerState, ctx: OfferContext) -> None:
    assert listed(dress_shoes_offer(), customer, ctx) == []


def test_not_listed_outside_its_window() -> None:
    window = {"starts_at": NOW - timedelta(days=1), "ends_at": NOW + timedelta(days=1)}
    offer = dress_shoes_offer(**window)
    assert listed(offer, samantha(), app_ctx()) == ["dress-shoes-2x"]
    assert listed(offer, samantha(), app_ctx(now=NOW - timedelta(days=2))) == []
    assert listed(offer, samantha(), app_ctx(now=NOW + timedelta(days=1))) == []


def test_a_dress_alone_earns_no_offer_but_hints_at_shoes() -> None:
    evaluation = evaluate_basket(
        catalog(dress_shoes_offer()), samantha(), basket(line("dress-1", "dresses", 120_00)), pos_ctx(), POLICY
    )
    assert evaluation.applied_offers == ()
    (miss,) = evaluation.near_misses
    assert miss.offer_id == "dress-shoes-2x"
    assert miss.hint == "add 1 item from shoes to earn double points on dresses"
    (dress,) = evaluation.lines
    assert (dress.base_points, dress.bonus_points, dress.offer_ids) == (120, 0, ())
    assert evaluation.points_earned == 120


def test_dress_and_shoes_double_the_dress_points() -> None:
    evaluation = evaluate_basket(
        catalog(dress_shoes_offer()),
        samantha(),
        basket(line("dress-1", "dresses", 120_00), line("shoes-1", "shoes", 80_00)),
        pos_ctx(),
        POLICY,
    )
    dress, shoes = evaluation.lines
    assert dress.line_id == "dress-1"
    assert dress.base_points == 120
    assert dress.bonus_points == dress.base_points
    assert dress.offer_ids == ("dress-shoes-2x",)
    assert (shoes.base_points, shoes.bonus_points, shoes.offer_ids) == (80, 0, ())
    (applied,) = evaluation.applied_offers
    assert applied.offer_id == "dress-shoes-2x"
    assert applied.bonus_points == 120
    assert applied.explanation == "Double points on dresses: basket has 1 item from shoes; +120 points on line dress-1"
    assert evaluation.near_misses == ()
    assert evaluation.points_earned == 320 == sum(r.base_points + r.bonus_points for r in evaluation.lines)
    assert evaluation.balance_after == 1_000 + 320
    assert evaluation.total_due_minor == 200_00


def test_once_used_the_basket_earns_only_base_points() -> None:
    evaluation = evaluate_basket(
        catalog(dress_shoes_offer()),
        samantha(offer_uses={"dress-shoes-2x": 1}),
        basket(line("dress-1", "dresses", 120_00), line("shoes-1", "shoes", 80_00)),
        pos_ctx(),
        POLICY,
    )
    assert evaluation.applied_offers == ()
    assert evaluation.near_misses == ()
    assert evaluation.points_earned == 200
