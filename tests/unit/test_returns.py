"""Returns: points taken back, redeemed points refunded, offers that stop holding, points debt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import pytest

from domain.basket import evaluate_basket
from domain.describe import not_kept_phrase
from domain.errors import FailedPrecondition, InvalidArgument
from domain.model import (
    Basket,
    BasketEvaluation,
    Catalog,
    Condition,
    CustomerState,
    LineResult,
    PurchaseFacts,
    ReturnedLine,
    ReturnOutcome,
    ReturnRequestLine,
    Reward,
    RewardType,
)
from domain.returns import evaluate_return, remaining_lines
from tests.unit import POLICY, basket, catalog, dress_shoes_offer, line, pos_ctx, purchase_facts, samantha, simple_offer

DRESS = line("dress-1", "dresses", 120_00)
SHOES = line("shoes-1", "shoes", 89_00)
OFFER_LOST = "Double points on dresses no longer applies"


def buy(cat: Catalog, items: Basket, customer: CustomerState) -> tuple[PurchaseFacts, CustomerState, BasketEvaluation]:
    """Commit `items`: the purchase's facts and the customer as the purchase leaves her."""
    evaluation = evaluate_basket(cat, customer, items, pos_ctx(), POLICY)
    after = replace(customer, points_balance=evaluation.balance_after, points_debt=customer.points_debt)
    return purchase_facts(cat, items, evaluation), after, evaluation


def story(balance: int = 1_000) -> tuple[PurchaseFacts, CustomerState]:
    facts, customer, evaluation = buy(
        catalog(dress_shoes_offer()), basket(DRESS, SHOES), samantha(points_balance=balance)
    )
    assert evaluation.points_earned == 329
    return facts, customer


def give_back(
    facts: PurchaseFacts, customer: CustomerState, returned: Mapping[str, int], *request: tuple[str, int]
) -> tuple[ReturnOutcome, CustomerState]:
    outcome = evaluate_return(facts, customer, returned, [ReturnRequestLine(i, q) for i, q in request])
    return outcome, replace(customer, points_balance=outcome.balance_after, points_debt=outcome.debt_after)


def in_sequence(
    facts: PurchaseFacts, customer: CustomerState, steps: Sequence[Sequence[tuple[str, int]]]
) -> tuple[list[ReturnOutcome], CustomerState]:
    outcomes: list[ReturnOutcome] = []
    returned: Mapping[str, int] = {}
    for step in steps:
        outcome, customer = give_back(facts, customer, returned, *step)
        outcomes.append(outcome)
        returned = outcome.returned_after
    return outcomes, customer


# --- the story -------------------------------------------------------------------------------------------------


def test_returning_the_shoes_takes_back_the_dress_bonus_too() -> None:
    facts, customer = story()
    outcome, _ = give_back(facts, customer, {}, ("shoes-1", 1))
    assert outcome.points_reversed == 89 + 120
    assert outcome.lines == (ReturnedLine("shoes-1", 1, points_reversed=89, value_minor=89_00),)
    assert outcome.value_minor == 89_00
    assert outcome.offers_lost == ("dress-shoes-2x",)
    assert outcome.explanations == (
        "returned 1 × sku-shoes-1: 89 points taken back",
        f"{OFFER_LOST} (no item from shoes kept): its 120 bonus points are taken back",
    )
    assert outcome.points_refunded == 0
    assert (outcome.balance_before, outcome.balance_after) == (1_329, 1_120)
    assert (outcome.debt_before, outcome.debt_after) == (0, 0)
    assert outcome.returned_after == {"shoes-1": 1}


def test_returning_the_dress_loses_the_offer_with_its_bonus_on_the_dress() -> None:
    facts, customer = story()
    outcome, _ = give_back(facts, customer, {}, ("dress-1", 1))
    # The shoes still meet the condition, but no dress is kept for the offer to double.
    assert outcome.points_reversed == 240
    assert outcome.lines == (ReturnedLine("dress-1", 1, points_reversed=240, value_minor=120_00),)
    assert outcome.offers_lost == ("dress-shoes-2x",)
    assert outcome.explanations == (
        "returned 1 × sku-dress-1: 240 points taken back",
        f"{OFFER_LOST} (no item from dresses kept)",
    )
    assert outcome.balance_after == 1_329 - 240


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param([[("dress-1", 1), ("shoes-1", 1)]], id="both-at-once"),
        pytest.param([[("shoes-1", 1)], [("dress-1", 1)]], id="shoes-then-dress"),
        pytest.param([[("dress-1", 1)], [("shoes-1", 1)]], id="dress-then-shoes"),
    ],
)
def test_returning_both_takes_back_exactly_what_was_earned(steps: list[list[tuple[str, int]]]) -> None:
    facts, customer = story()
    outcomes, after = in_sequence(facts, customer, steps)
    assert sum(o.points_reversed for o in outcomes) == 329
    assert sum(o.value_minor for o in outcomes) == 209_00
    assert [lost for o in outcomes for lost in o.offers_lost] == ["dress-shoes-2x"]
    assert after.points_balance == 1_000
    assert outcomes[-1].returned_after == {"dress-1": 1, "shoes-1": 1}


def test_the_second_return_takes_back_only_what_is_left() -> None:
    facts, customer = story()
    (first, second), _ = in_sequence(facts, customer, [[("shoes-1", 1)], [("dress-1", 1)]])
    assert second.lines == (ReturnedLine("dress-1", 1, points_reversed=120, value_minor=120_00),)
    assert second.offers_lost == ()
    assert second.explanations == ("returned 1 × sku-dress-1: 120 points taken back",)
    assert (first.points_reversed, second.points_reversed) == (209, 120)


# --- partial quantities --------------------------------------------------------------------------------------


def test_a_line_of_three_returned_one_by_one_adds_up_exactly() -> None:
    ten_off = simple_offer("ten", Reward(RewardType.PERCENT_OFF, percent_off=10))
    three_bags = simple_offer(
        "three-bags",
        Reward(RewardType.BONUS_POINTS, target_category="bags", bonus_points=100),
        Condition(required_category="bags", min_quantity=3),
    )
    bags = line("bags-1", "bags", 10_00, quantity=3)
    facts, customer, evaluation = buy(catalog(ten_off, three_bags), basket(bags), samantha())
    (result,) = evaluation.lines
    assert (result.base_points, result.bonus_points, result.discount_minor) == (27, 100, 3_00)
    assert result.bonus_by_offer == (("three-bags", 100),)

    outcomes, after = in_sequence(facts, customer, [[("bags-1", 1)]] * 3)
    # The first bag back breaks the three-bag condition: all 100 bonus points go with it.
    assert [o.points_reversed for o in outcomes] == [27 - 18 + 100, 18 - 9, 9]
    assert [o.value_minor for o in outcomes] == [9_00, 9_00, 9_00]
    assert [o.offers_lost for o in outcomes] == [("three-bags",), (), ("ten",)]
    assert outcomes[0].explanations[1] == "Offer three-bags no longer applies (only 2 items from bags kept, 3 needed)"
    assert sum(o.points_reversed for o in outcomes) == evaluation.points_earned
    assert sum(o.value_minor for o in outcomes) == evaluation.subtotal_minor - evaluation.total_discount_minor
    assert after.points_balance == customer.points_balance - evaluation.points_earned
    assert [o.returned_after for o in outcomes] == [{"bags-1": 1}, {"bags-1": 2}, {"bags-1": 3}]


def test_rounding_never_loses_a_point_across_partial_returns() -> None:
    bags = line("bags-1", "bags", 3_33, quantity=7)  # 23.31: 23 points, 7 units
    facts, customer, evaluation = buy(catalog(), basket(bags), samantha())
    outcomes, _ = in_sequence(facts, customer, [[("bags-1", 2)], [("bags-1", 2)], [("bags-1", 3)]])
    assert [o.points_reversed for o in outcomes] == [23 - 16, 16 - 9, 9]
    assert sum(o.points_reversed for o in outcomes) == evaluation.points_earned == 23
    assert sum(o.value_minor for o in outcomes) == 23_31


def test_remaining_lines_is_what_a_void_returns() -> None:
    items = basket(DRESS, line("bags-1", "bags", 10_00, quantity=3), SHOES)
    facts, customer, evaluation = buy(catalog(dress_shoes_offer()), items, samantha())
    assert remaining_lines(facts, {}) == (
        ReturnRequestLine("dress-1", 1),
        ReturnRequestLine("bags-1", 3),
        ReturnRequestLine("shoes-1", 1),
    )
    first, customer = give_back(facts, customer, {}, ("bags-1", 2), ("dress-1", 1))
    rest = remaining_lines(facts, first.returned_after)
    assert rest == (ReturnRequestLine("bags-1", 1), ReturnRequestLine("shoes-1", 1))
    void = evaluate_return(facts, customer, first.returned_after, rest)
    assert first.points_reversed + void.points_reversed == evaluation.points_earned
    assert remaining_lines(facts, void.returned_after) == ()


# --- redeemed points -------------------------------------------------------------------------------------------


def test_redeemed_points_are_refunded_pro_rata_then_in_full() -> None:
    items = basket(DRESS, SHOES, points_to_redeem=10_000)  # USD 100.00 of the 209.00 paid with points
    facts, customer, evaluation = buy(catalog(), items, samantha(points_balance=15_000))
    # Base points are earned on what was paid in money: 100.00 of points split 57.42 / 42.58 → 62 + 46 points.
    assert customer.points_balance == 15_000 - 10_000 + 108
    (shoes, dress), after = in_sequence(facts, customer, [[("shoes-1", 1)], [("dress-1", 1)]])
    # The shoes were 89.00 of 209.00: 10_000 - 10_000 * 120_00 // 209_00 points come back.
    assert shoes.points_refunded == 10_000 - 5_741 == 4_259
    assert shoes.explanations[-1] == "4259 redeemed points refunded"
    assert shoes.balance_after == 5_108 + 4_259 - 46
    assert dress.points_refunded == 5_741
    assert shoes.points_refunded + dress.points_refunded == evaluation.points_redeemed
    assert after.points_balance == 15_000


def test_points_coming_back_repay_a_debt_first() -> None:
    facts, customer, _ = buy(catalog(), basket(DRESS, SHOES, points_to_redeem=10_000), samantha(points_balance=15_000))
    outcome, _ = give_back(facts, replace(customer, points_debt=50), {}, ("shoes-1", 1))
    assert outcome.points_refunded - outcome.points_reversed == 4_259 - 46 == 4_213
    assert (outcome.balance_after, outcome.debt_after) == (5_108 + 4_213 - 50, 0)
    assert "50 points repay the points debt of 50" in outcome.explanations


def test_refund_of_a_purchase_worth_nothing_waits_for_the_last_unit() -> None:
    freebies = line("free-1", "samples", 0, quantity=2)
    items = basket(freebies)
    evaluation = evaluate_basket(catalog(), samantha(), items, pos_ctx(), POLICY)
    # Redeeming against a zero bill is refused at the till; a stored receipt could still say so (old rules).
    facts = replace(purchase_facts(catalog(), items, evaluation), points_redeemed=300)
    outcomes, _ = in_sequence(facts, samantha(points_balance=0), [[("free-1", 1)], [("free-1", 1)]])
    assert [o.points_refunded for o in outcomes] == [0, 300]


# --- points debt -----------------------------------------------------------------------------------------------


def test_a_balance_too_small_floors_at_zero_and_records_the_debt() -> None:
    facts, customer = story()
    spent = replace(customer, points_balance=292)  # she spent 1_037 of her 1_329 points since
    (shoes, dress), after = in_sequence(facts, spent, [[("shoes-1", 1)], [("dress-1", 1)]])
    assert (shoes.balance_after, shoes.debt_after) == (83, 0)
    assert (dress.balance_before, dress.balance_after) == (83, 0)
    assert (dress.debt_before, dress.debt_after) == (0, 37)
    assert dress.explanations[-1] == "points debt of 37: the points these items earned had already been spent"
    assert (after.points_balance, after.points_debt) == (0, 37)


def test_debt_grows_when_the_balance_is_already_empty() -> None:
    facts, customer = story()
    outcome, _ = give_back(facts, replace(customer, points_balance=0, points_debt=10), {}, ("shoes-1", 1))
    assert (outcome.balance_after, outcome.debt_before, outcome.debt_after) == (0, 10, 219)
    assert outcome.explanations[-1] == (
        "points debt grows by 209 to 219: the points these items earned had already been spent"
    )


def test_the_debt_is_repaid_from_the_next_purchase() -> None:
    facts, customer = story()
    _, indebted = give_back(facts, replace(customer, points_balance=100), {}, ("shoes-1", 1))
    assert (indebted.points_balance, indebted.points_debt) == (0, 109)
    evaluation = evaluate_basket(catalog(), indebted, basket(DRESS), pos_ctx(), POLICY)
    assert (evaluation.points_earned, evaluation.points_debt_before, evaluation.points_debt_repaid) == (120, 109, 109)
    assert evaluation.balance_after == 11


# --- facts from older receipts ---------------------------------------------------------------------------------


def test_bonus_without_attribution_is_taken_back_with_its_line() -> None:
    facts, customer = story()
    legacy = replace(facts, lines=tuple(replace(r, bonus_by_offer=()) for r in facts.lines))
    outcome, _ = give_back(legacy, customer, {}, ("shoes-1", 1))
    assert outcome.points_reversed == 89  # no record of which offer gave the dress its bonus
    assert outcome.offers_lost == ("dress-shoes-2x",)
    outcomes, _ = in_sequence(legacy, customer, [[("shoes-1", 1)], [("dress-1", 1)]])
    assert sum(o.points_reversed for o in outcomes) == 329


def test_corrupt_facts_are_a_value_error() -> None:
    facts, customer = story()
    with pytest.raises(ValueError, match="recorded return"):
        evaluate_return(facts, customer, {"dress-1": 2}, [ReturnRequestLine("shoes-1", 1)])
    missing = replace(facts, lines=(LineResult("dress-1", 120, 120, 0),))
    with pytest.raises(ValueError, match="do not match"):
        evaluate_return(missing, customer, {}, [ReturnRequestLine("shoes-1", 1)])


# --- validation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("returned", "request_lines", "field", "problem"),
    [
        pytest.param({}, [], "lines", "must name at least one line", id="empty"),
        pytest.param(
            {},
            [("dress-1", 1), ("hat-9", 1)],
            "lines[1].line_id",
            "purchase txn-1 has no line 'hat-9'",
            id="unknown-line",
        ),
        pytest.param(
            {},
            [("dress-1", 1), ("dress-1", 1)],
            "lines[1].line_id",
            "line dress-1 is named more than once",
            id="duplicate",
        ),
        pytest.param({}, [("dress-1", 0)], "lines[0].quantity", "must be at least 1", id="zero"),
        pytest.param({}, [("dress-1", -1)], "lines[0].quantity", "must be at least 1", id="negative"),
        pytest.param({}, [("dress-1", 2)], "lines[0].quantity", "only 1 of line dress-1 left to return", id="too-many"),
        pytest.param(
            {"shoes-1": 1},
            [("shoes-1", 1)],
            "lines[0].quantity",
            "line shoes-1 has been returned in full",
            id="line-already-returned",
        ),
    ],
)
def test_invalid_requests_name_the_field(
    returned: dict[str, int], request_lines: list[tuple[str, int]], field: str, problem: str
) -> None:
    facts, customer = story()
    with pytest.raises(InvalidArgument) as caught:
        evaluate_return(facts, customer, returned, [ReturnRequestLine(i, q) for i, q in request_lines])
    assert (caught.value.field, caught.value.message) == (field, f"{field}: {problem}")


def test_the_quantity_left_counts_earlier_returns() -> None:
    bags = line("bags-1", "bags", 10_00, quantity=3)
    facts, customer, _ = buy(catalog(), basket(bags), samantha())
    with pytest.raises(InvalidArgument) as caught:
        evaluate_return(facts, customer, {"bags-1": 1}, [ReturnRequestLine("bags-1", 3)], field_prefix="return.lines")
    assert caught.value.field == "return.lines[0].quantity"
    assert caught.value.message.endswith("only 2 of line bags-1 left to return")


@pytest.mark.parametrize("request_lines", [[], [("dress-1", 1)]])
def test_a_purchase_returned_in_full_is_a_failed_precondition(request_lines: list[tuple[str, int]]) -> None:
    facts, customer = story()
    with pytest.raises(FailedPrecondition) as caught:
        evaluate_return(
            facts, customer, {"dress-1": 1, "shoes-1": 1}, [ReturnRequestLine(i, q) for i, q in request_lines]
        )
    assert caught.value.reason == "already_returned"
    assert caught.value.message == "purchase txn-1 has been returned in full"


# --- wording ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "target", "units", "spend", "has_target", "text"),
    [
        (Condition("shoes", 1), "dresses", 0, 0, True, "no item from shoes kept"),
        (Condition("shoes", 0, 80_00), "dresses", 0, 0, True, "no item from shoes kept"),
        (Condition("shoes", 0, 80_00), "dresses", 1, 50_00, True, "only USD 50.00 kept from shoes, USD 80.00 needed"),
        (Condition("", 3), "", 2, 0, True, "only 2 items kept, 3 needed"),
        (Condition("", 1), "", 0, 0, False, "no item kept"),
        (Condition("shoes", 1), "dresses", 1, 0, False, "no item from dresses kept"),
        (
            Condition("shoes", 2),
            "dresses",
            1,
            0,
            False,
            "only 1 item from shoes kept, 2 needed and no item from dresses kept",
        ),
    ],
)
def test_why_an_offer_stops_holding(
    condition: Condition, target: str, units: int, spend: int, has_target: bool, text: str
) -> None:
    reward = Reward(RewardType.POINTS_MULTIPLIER, target, multiplier_percent=200)
    assert not_kept_phrase(condition, reward, units, spend, has_target, "USD") == text


def test_a_discount_offer_is_given_back_only_with_the_last_discounted_unit() -> None:
    # "10% off when you buy 3 bags", once per customer: returning one bag keeps 10% off the other two, so the
    # offer's use is not given back (else she could earn a once-per-customer offer again and again).
    ten_off = simple_offer(
        "bags-10",
        Reward(RewardType.PERCENT_OFF, target_category="bags", percent_off=10),
        Condition(required_category="bags", min_quantity=3),
        per_customer_limit=1,
    )
    bags = line("bags-1", "bags", 5_000, quantity=3)
    facts, customer, evaluation = buy(catalog(ten_off), basket(bags), samantha())
    assert [a.offer_id for a in evaluation.applied_offers] == ["bags-10"]
    (one, rest), _ = in_sequence(facts, customer, [[("bags-1", 1)], [("bags-1", 2)]])
    assert one.offers_lost == () and rest.offers_lost == ("bags-10",)
