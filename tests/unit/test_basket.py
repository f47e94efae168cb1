from __future__ import annotations

from dataclasses import replace

import pytest

from domain.basket import evaluate_basket, new_categories, redeemed_shares
from domain.describe import debt_repaid_phrase, describe_reward
from domain.errors import FailedPrecondition, InvalidArgument
from domain.model import (
    Basket,
    BasketEvaluation,
    Catalog,
    Condition,
    CustomerState,
    LineResult,
    PointsPolicy,
    Reward,
    RewardType,
)
from domain.rewards import prorate
from tests.unit import NOW, POLICY, basket, catalog, dress_shoes_offer, line, pos_ctx, samantha, simple_offer

DRESS = line("dress-1", "dresses", 120_00)
SHOES = line("shoes-1", "shoes", 80_00)


def evaluate(
    cat: Catalog, items: Basket, customer: CustomerState | None = None, policy: PointsPolicy = POLICY
) -> BasketEvaluation:
    return evaluate_basket(cat, replace(customer or samantha(), currency=items.currency), items, pos_ctx(), policy)


def by_id(evaluation: BasketEvaluation) -> dict[str, LineResult]:
    return {result.line_id: result for result in evaluation.lines}


def percent_off(pct: int, target: str = "") -> Reward:
    return Reward(RewardType.PERCENT_OFF, target_category=target, percent_off=pct)


def amount_off(amount: int, target: str = "") -> Reward:
    return Reward(RewardType.AMOUNT_OFF, target_category=target, amount_off_minor=amount)


def bonus(points: int, target: str = "") -> Reward:
    return Reward(RewardType.BONUS_POINTS, target_category=target, bonus_points=points)


def multiplier(percent: int, target: str = "") -> Reward:
    return Reward(RewardType.POINTS_MULTIPLIER, target_category=target, multiplier_percent=percent)


# --- reward wording -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reward", "text"),
    [
        (multiplier(200, "dresses"), "double points on dresses"),
        (multiplier(300), "triple points"),
        (multiplier(150), "1.5x points"),
        (multiplier(125), "1.25x points"),
        (multiplier(1000), "10x points"),
        (bonus(500), "500 bonus points"),
        (percent_off(10), "10% off"),
        (amount_off(500, "shoes"), "USD 5.00 off on shoes"),
    ],
)
def test_rewards_in_words(reward: Reward, text: str) -> None:
    assert describe_reward(reward, "USD") == text


# --- near misses ----------------------------------------------------------------------------------------------


def test_shoes_alone_meet_the_condition_but_miss_the_target() -> None:
    evaluation = evaluate(catalog(dress_shoes_offer()), basket(SHOES))
    assert evaluation.applied_offers == ()
    assert [m.hint for m in evaluation.near_misses] == ["add 1 item from dresses to earn double points on dresses"]


def test_near_miss_counts_the_quantity_shortfall() -> None:
    offer = dress_shoes_offer(condition=Condition(required_category="shoes", min_quantity=3))
    evaluation = evaluate(catalog(offer), basket(DRESS, SHOES))
    assert [m.hint for m in evaluation.near_misses] == ["add 2 items from shoes to earn double points on dresses"]


def test_near_miss_names_the_spend_shortfall() -> None:
    offer = dress_shoes_offer(condition=Condition(required_category="shoes", min_spend_minor=92_50))
    evaluation = evaluate(catalog(offer), basket(DRESS, SHOES))
    assert [m.hint for m in evaluation.near_misses] == [
        "spend USD 12.50 more on shoes to earn double points on dresses"
    ]


def test_near_miss_names_both_shortfalls() -> None:
    offer = simple_offer("big", amount_off(10_00), Condition(min_quantity=3, min_spend_minor=250_00))
    evaluation = evaluate(catalog(offer), basket(DRESS, SHOES))
    assert [m.hint for m in evaluation.near_misses] == [
        "add 1 more item and spend USD 50.00 more to earn USD 10.00 off"
    ]


# --- discounts and bonus proration -----------------------------------------------------------------------------


def test_percent_off_is_split_exactly_and_points_follow_the_discount() -> None:
    items = basket(line("a", "bags", 33_33), line("b", "bags", 33_33), line("c", "bags", 33_34))
    evaluation = evaluate(catalog(simple_offer("ten", percent_off(10))), items)
    lines = by_id(evaluation)
    assert evaluation.total_discount_minor == 10_00  # 100.00 * 10%
    assert sum(r.discount_minor for r in lines.values()) == 10_00
    assert [lines[k].discount_minor for k in "abc"] == [3_33, 3_33, 3_34]
    # Base points are earned on what she pays (30.00 each), not on the 33.33 list price.
    assert [lines[k].base_points for k in "abc"] == [30, 30, 30]
    assert evaluation.total_due_minor == 90_00
    (applied,) = evaluation.applied_offers
    assert applied.discount_minor == 10_00
    assert applied.explanation.startswith("10% off: no minimum purchase; USD 3.33 off line a")


def test_amount_off_never_exceeds_the_target_lines() -> None:
    offer = simple_offer("fifty", amount_off(500_00, "shoes"))
    evaluation = evaluate(catalog(offer), basket(DRESS, SHOES))
    lines = by_id(evaluation)
    assert lines["shoes-1"].discount_minor == 80_00
    assert lines["dress-1"].discount_minor == 0
    assert lines["shoes-1"].base_points == 0
    assert evaluation.total_due_minor == 120_00


def test_amount_off_remainder_goes_by_line_id_not_basket_position() -> None:
    offer = simple_offer("one", amount_off(1_00))
    forward = evaluate(
        catalog(offer), basket(line("x", "bags", 5_00), line("y", "bags", 5_00), line("z", "bags", 5_00))
    )
    backward = evaluate(
        catalog(offer), basket(line("z", "bags", 5_00), line("y", "bags", 5_00), line("x", "bags", 5_00))
    )
    assert [by_id(forward)[k].discount_minor for k in "xyz"] == [34, 33, 33]
    assert by_id(forward) == by_id(backward)


def test_stacked_discounts_use_what_is_left() -> None:
    first = simple_offer("a-half", percent_off(50), priority=2)
    second = simple_offer("b-half", percent_off(50), priority=1)
    evaluation = evaluate(catalog(first, second), basket(line("bag", "bags", 100_00)))
    assert [a.discount_minor for a in evaluation.applied_offers] == [50_00, 25_00]
    assert evaluation.total_due_minor == 25_00


def test_bonus_points_spread_in_proportion_and_sum_exactly() -> None:
    items = basket(line("a", "bags", 30_00), line("b", "bags", 10_00), line("c", "hats", 10_00))
    evaluation = evaluate(catalog(simple_offer("bonus", bonus(101, "bags"))), items)
    lines = by_id(evaluation)
    assert [lines[k].bonus_points for k in "abc"] == [76, 25, 0]
    assert evaluation.applied_offers[0].bonus_points == 101
    assert evaluation.points_earned == 50 + 101


def test_prorate_edge_cases() -> None:
    assert prorate(10, [1, 1, 1]) == [4, 3, 3]
    assert prorate(7, [0, 0]) == [4, 3]
    assert prorate(0, [5, 5]) == [0, 0]
    assert prorate(5, []) == []


# --- stacking --------------------------------------------------------------------------------------------------


def test_exclusive_group_keeps_only_the_offer_worth_most() -> None:
    ten_percent = simple_offer("pct", percent_off(10), exclusive_group="summer")  # 20.00 on 200.00
    bonus_500 = simple_offer("pts", bonus(500), exclusive_group="summer", priority=9)  # 500 points = 5.00
    evaluation = evaluate(catalog(ten_percent, bonus_500), basket(DRESS, SHOES))
    assert [a.offer_id for a in evaluation.applied_offers] == ["pct"]
    assert evaluation.near_misses == ()
    assert all(r.bonus_points == 0 for r in evaluation.lines)


def test_exclusive_group_points_can_beat_a_discount() -> None:
    small_discount = simple_offer("pct", percent_off(1), exclusive_group="g")  # 2.00
    many_points = simple_offer("pts", bonus(5_000), exclusive_group="g")  # 50.00
    evaluation = evaluate(catalog(small_discount, many_points), basket(DRESS, SHOES))
    assert [a.offer_id for a in evaluation.applied_offers] == ["pts"]
    assert evaluation.total_discount_minor == 0


def test_exclusive_group_tie_goes_to_the_lower_offer_id() -> None:
    b = simple_offer("b-offer", bonus(100), exclusive_group="g", priority=5)
    a = simple_offer("a-offer", bonus(100), exclusive_group="g")
    evaluation = evaluate(catalog(b, a), basket(DRESS))
    assert [x.offer_id for x in evaluation.applied_offers] == ["a-offer"]


def test_exclusive_group_hides_near_misses_once_a_member_applies() -> None:
    applies = simple_offer("now", bonus(100), exclusive_group="g")
    unmet = simple_offer("later", bonus(900), Condition(min_quantity=5), exclusive_group="g")
    unmet_alone = simple_offer("other", bonus(900), Condition(min_quantity=5))
    evaluation = evaluate(catalog(applies, unmet, unmet_alone), basket(DRESS))
    assert [a.offer_id for a in evaluation.applied_offers] == ["now"]
    assert [m.offer_id for m in evaluation.near_misses] == ["other"]


def test_a_line_is_multiplied_once_and_the_first_multiplier_wins() -> None:
    triple = simple_offer("triple", multiplier(300, "dresses"), priority=10)
    double = simple_offer("double", multiplier(200, "dresses"))
    evaluation = evaluate(catalog(double, triple), basket(DRESS, SHOES))
    assert [a.offer_id for a in evaluation.applied_offers] == ["triple"]
    assert by_id(evaluation)["dress-1"].bonus_points == 240
    assert by_id(evaluation)["dress-1"].offer_ids == ("triple",)
    assert evaluation.near_misses == ()


def test_a_later_multiplier_takes_only_unclaimed_lines() -> None:
    dresses = simple_offer("a-dresses", multiplier(200, "dresses"))
    everything = simple_offer("b-all", multiplier(150))
    evaluation = evaluate(catalog(everything, dresses), basket(DRESS, SHOES))
    lines = by_id(evaluation)
    assert lines["dress-1"].bonus_points == 120
    assert lines["shoes-1"].bonus_points == 40
    assert lines["shoes-1"].offer_ids == ("b-all",)
    assert [(a.offer_id, a.bonus_points) for a in evaluation.applied_offers] == [("a-dresses", 120), ("b-all", 40)]


def test_bonus_and_multiplier_stack_on_one_line() -> None:
    evaluation = evaluate(catalog(simple_offer("x2", multiplier(200)), simple_offer("plus", bonus(10))), basket(DRESS))
    (result,) = evaluation.lines
    assert (result.base_points, result.bonus_points) == (120, 130)
    assert result.offer_ids == ("plus", "x2")


def test_multiplier_uses_points_after_discounts_from_any_offer() -> None:
    # The discount applies after the multiplier in priority order, yet the multiplier sees the discounted base.
    evaluation = evaluate(
        catalog(simple_offer("x2", multiplier(200), priority=5), simple_offer("half", percent_off(50))),
        basket(DRESS),
    )
    (result,) = evaluation.lines
    assert (result.discount_minor, result.base_points, result.bonus_points) == (60_00, 60, 60)


def test_zero_decimal_currency_earns_per_yen() -> None:
    items = Basket("samantha", "soho", "", "JPY", (line("a", "bags", 1_500),))
    evaluation = evaluate(catalog(), items, policy=PointsPolicy(earn_points_per_unit=1, redeem_points_per_unit=1))
    assert evaluation.points_earned == 1_500


# --- redemption ------------------------------------------------------------------------------------------------


def test_redeeming_more_points_than_the_balance_is_refused() -> None:
    with pytest.raises(FailedPrecondition) as caught:
        evaluate(catalog(), basket(DRESS, points_to_redeem=500), samantha(points_balance=120))
    assert caught.value.reason == "insufficient_points"
    assert caught.value.message == "insufficient points: 120 available, asked to redeem 500"


def test_redeeming_more_than_the_bill_is_refused() -> None:
    cheap = basket(line("socks", "socks", 3_00), points_to_redeem=400)
    with pytest.raises(FailedPrecondition) as caught:
        evaluate(catalog(), cheap, samantha(points_balance=1_000))
    assert caught.value.reason == "redeem_exceeds_bill"
    assert "USD 4.00" in caught.value.message


def test_redemption_after_discount_pays_part_of_the_bill() -> None:
    items = basket(DRESS, points_to_redeem=1_000)
    evaluation = evaluate(catalog(simple_offer("ten", amount_off(10_00))), items, samantha(points_balance=1_500))
    assert evaluation.redeemed_value_minor == 10_00
    assert evaluation.total_due_minor == 120_00 - 10_00 - 10_00
    # Rule 5 (loyalty team): points are earned on what she pays in money, after the discount AND the 10.00 she
    # paid with points: 120.00 - 10.00 - 10.00 = 100.00 earns 100 (it was 110, on 110.00, before the rule).
    assert evaluation.points_earned == 100
    assert (evaluation.balance_before, evaluation.points_redeemed, evaluation.balance_after) == (1_500, 1_000, 600)


def test_redeeming_the_whole_bill_is_allowed() -> None:
    items = basket(line("socks", "socks", 3_00), points_to_redeem=300)
    evaluation = evaluate(catalog(), items, samantha(points_balance=300))
    assert evaluation.total_due_minor == 0
    # Rule 5: a bill paid entirely with points earns nothing (it earned 3 points before the rule).
    assert (evaluation.points_earned, evaluation.lines[0].base_points) == (0, 0)
    assert evaluation.balance_after == 0


def test_points_are_earned_on_what_is_paid_after_discounts_and_redeemed_points() -> None:
    # The loyalty team's rule: the 100.00 paid with points is split over the lines by what they cost after
    # discounts (120.00 and 80.00: 60.00 and 40.00), and each line earns on the rest; the multiplier follows.
    items = basket(DRESS, SHOES, points_to_redeem=10_000)
    evaluation = evaluate(catalog(dress_shoes_offer()), items, samantha(points_balance=10_000))
    lines = by_id(evaluation)
    assert (lines["dress-1"].base_points, lines["dress-1"].bonus_points) == (60, 60)
    assert (lines["shoes-1"].base_points, lines["shoes-1"].bonus_points) == (40, 0)
    assert evaluation.points_earned == 160
    assert evaluation.balance_after == 10_000 - 10_000 + 160


def test_the_redeemed_value_is_split_after_discounts_with_exact_remainders() -> None:
    # 10% off the bags only: the bag costs 90.00 after it, the hat 10.00; 33.33 paid with points splits 29.997 and
    # 3.333 -> 29.99 + 3.33 = 33.32, and the last minor unit goes to the larger remainder (the bag).
    items = basket(line("bag", "bags", 100_00), line("hat", "hats", 10_00), points_to_redeem=3_333)
    evaluation = evaluate(catalog(simple_offer("ten", percent_off(10, "bags"))), items, samantha(points_balance=5_000))
    discounts = [r.discount_minor for r in evaluation.lines]
    assert discounts == [10_00, 0]
    assert redeemed_shares(evaluation.redeemed_value_minor, items.lines, discounts) == [30_00, 3_33]
    assert [r.base_points for r in evaluation.lines] == [60, 6]  # 60.00 and 6.67 paid in money


def test_equal_remainders_go_by_line_id_not_basket_position() -> None:
    forward = (line("a", "bags", 5_00), line("b", "bags", 5_00))
    backward = tuple(reversed(forward))
    assert redeemed_shares(1, forward, [0, 0]) == [1, 0]
    assert redeemed_shares(1, backward, [0, 0]) == [0, 1]
    assert redeemed_shares(0, forward, [5_00, 5_00]) == [0, 0]


# --- bookkeeping -----------------------------------------------------------------------------------------------


def test_evaluation_records_time_version_and_customer() -> None:
    evaluation = evaluate(catalog(version=42), basket(DRESS))
    assert (evaluation.evaluated_at, evaluation.catalog_version) == (NOW, 42)
    assert (evaluation.customer_id, evaluation.currency) == ("samantha", "USD")


def test_new_categories_are_those_never_bought() -> None:
    items = basket(DRESS, SHOES, line("hat", "hats", 10_00), line("shoes-2", "shoes", 1_00))
    assert new_categories(samantha(), items) == ("hats", "shoes")
    assert new_categories(samantha(categories=frozenset({"dresses", "shoes", "hats"})), items) == ()


def test_a_basket_in_another_currency_than_the_profile_is_refused() -> None:
    with pytest.raises(InvalidArgument) as caught:
        evaluate_basket(catalog(), samantha(), basket(DRESS, currency="EUR"), pos_ctx(), POLICY)
    assert caught.value.field == "basket.currency"


def test_points_that_would_buy_less_than_a_minor_unit_are_refused() -> None:
    # 100 points pay JPY 1: 150 points would lose 50 of them.
    yen = basket(line("a", "bags", 1_500), currency="JPY", points_to_redeem=150)
    with pytest.raises(InvalidArgument) as caught:
        evaluate(catalog(), yen, samantha(points_balance=1_000))
    assert caught.value.field == "basket.points_to_redeem" and "multiple of 100" in caught.value.message
    paid = evaluate(catalog(), replace(yen, points_to_redeem=200), samantha(points_balance=1_000))
    assert paid.redeemed_value_minor == 2


# --- bonus attribution and points debt -------------------------------------------------------------------------


def test_each_line_records_which_offer_gave_its_bonus() -> None:
    cat = catalog(dress_shoes_offer(), simple_offer("plus", bonus(10, "dresses"), priority=1))
    evaluation = evaluate(cat, basket(DRESS, SHOES))
    lines = by_id(evaluation)
    assert lines["dress-1"].bonus_by_offer == (("plus", 10), ("dress-shoes-2x", 120))
    assert lines["shoes-1"].bonus_by_offer == ()
    assert all(sum(points for _, points in r.bonus_by_offer) == r.bonus_points for r in evaluation.lines)


def test_discount_offers_give_no_bonus_attribution() -> None:
    evaluation = evaluate(catalog(simple_offer("ten", percent_off(10))), basket(DRESS))
    (result,) = evaluation.lines
    assert (result.offer_ids, result.bonus_by_offer) == (("ten",), ())


def test_a_points_debt_is_repaid_first_from_the_points_earned() -> None:
    evaluation = evaluate(catalog(), basket(DRESS), samantha(points_balance=0, points_debt=50))
    assert (evaluation.points_earned, evaluation.points_debt_before, evaluation.points_debt_repaid) == (120, 50, 50)
    assert (evaluation.balance_before, evaluation.balance_after) == (0, 70)


def test_a_debt_larger_than_the_earnings_takes_them_all() -> None:
    items = basket(DRESS, points_to_redeem=300)
    evaluation = evaluate(catalog(), items, samantha(points_balance=500, points_debt=1_000))
    # Rule 5: 3.00 of the 120.00 is paid with points, so she earns 117 (120 before the rule), all to the debt.
    assert (evaluation.points_earned, evaluation.points_debt_before, evaluation.points_debt_repaid) == (117, 1_000, 117)
    assert evaluation.balance_after == 500 - 300
    assert describe_debt_repaid(evaluation) == "117 points repay the points debt of 1000; 883 still owed"


def test_without_debt_nothing_is_repaid() -> None:
    evaluation = evaluate(catalog(), basket(DRESS))
    assert (evaluation.points_debt_before, evaluation.points_debt_repaid) == (0, 0)
    assert evaluation.balance_after == 1_000 + 120


def describe_debt_repaid(evaluation: BasketEvaluation) -> str:
    return debt_repaid_phrase(evaluation.points_debt_repaid, evaluation.points_debt_before)
