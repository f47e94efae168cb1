"""Why an offer the basket earns did not apply (BasketEvaluation.not_applied), and what a winner beat."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from domain.basket import evaluate_basket
from domain.model import (
    Basket,
    BasketEvaluation,
    Catalog,
    Condition,
    CustomerState,
    Eligibility,
    NotApplied,
    OfferStatus,
    Reward,
    RewardType,
)
from tests.unit import (
    HAPPY_HOUR,
    POLICY,
    basket,
    catalog,
    dress_shoes_offer,
    line,
    pos_ctx,
    samantha,
    simple_offer,
    utc,
)

DRESS = line("dress-1", "dresses", 120_00)
SHOES = line("shoes-1", "shoes", 80_00)
SUNDAY_MORNING = utc(2025, 6, 1, 15, 0)  # 11:00 at SoHo (New York): outside Mon–Fri 17:00–19:00
MONDAY_EVENING = utc(2025, 6, 2, 21, 30)  # 17:30 at SoHo


def evaluate(
    cat: Catalog,
    items: Basket,
    customer: CustomerState | None = None,
    used: Mapping[str, int] | None = None,
    now: datetime = SUNDAY_MORNING,
) -> BasketEvaluation:
    return evaluate_basket(cat, customer or samantha(), items, pos_ctx(now=now), POLICY, redemptions_used=used)


def reasons(evaluation: BasketEvaluation) -> dict[str, str]:
    return {n.offer_id: n.reason for n in evaluation.not_applied}


def percent_off(pct: int, target: str = "") -> Reward:
    return Reward(RewardType.PERCENT_OFF, target_category=target, percent_off=pct)


def bonus(points: int, target: str = "") -> Reward:
    return Reward(RewardType.BONUS_POINTS, target_category=target, bonus_points=points)


def multiplier(percent: int, target: str = "") -> Reward:
    return Reward(RewardType.POINTS_MULTIPLIER, target_category=target, multiplier_percent=percent)


# --- exclusive groups -------------------------------------------------------------------------------------------


def test_the_loser_of_an_exclusive_group_is_told_who_won_and_by_how_much() -> None:
    ten_percent = simple_offer("pct", percent_off(10), exclusive_group="summer")  # 20.00 on 200.00
    bonus_500 = simple_offer("pts", bonus(500), exclusive_group="summer", priority=9)  # 500 points = 5.00
    evaluation = evaluate(catalog(ten_percent, bonus_500), basket(DRESS, SHOES))
    assert [a.offer_id for a in evaluation.applied_offers] == ["pct"]
    assert evaluation.not_applied == (
        NotApplied(
            "pts",
            "Offer pts",
            "exclusive group summer: 'Offer pct' is worth more to the customer "
            "(USD 20.00 off vs 500 points worth USD 5.00)",
        ),
    )


def test_the_winner_explanation_names_what_it_beat() -> None:
    small_discount = simple_offer("pct", percent_off(1), exclusive_group="g")  # 2.00
    many_points = simple_offer("pts", bonus(5_000), exclusive_group="g")  # 50.00
    evaluation = evaluate(catalog(small_discount, many_points), basket(DRESS, SHOES))
    (winner,) = evaluation.applied_offers
    assert winner.offer_id == "pts"
    assert winner.explanation == (
        "5000 bonus points: no minimum purchase; +3000 points on line dress-1, +2000 points on line shoes-1; "
        "won exclusive group g over 'Offer pct' (5000 points worth USD 50.00 vs USD 2.00 off)"
    )
    assert reasons(evaluation) == {
        "pct": "exclusive group g: 'Offer pts' is worth more to the customer "
        "(5000 points worth USD 50.00 vs USD 2.00 off)"
    }


def test_every_loser_is_named_in_priority_order() -> None:
    best = simple_offer("best", percent_off(20), exclusive_group="g")  # 40.00
    middle = simple_offer("middle", percent_off(10), exclusive_group="g", priority=1)  # 20.00
    worst = simple_offer("worst", bonus(100), exclusive_group="g", priority=5)  # 1.00
    evaluation = evaluate(catalog(best, middle, worst), basket(DRESS, SHOES))
    assert [n.offer_id for n in evaluation.not_applied] == ["worst", "middle"]
    assert evaluation.applied_offers[0].explanation.endswith(
        "won exclusive group g over 'Offer middle' (USD 40.00 off vs USD 20.00 off) "
        "and 'Offer worst' (USD 40.00 off vs 100 points worth USD 1.00)"
    )


def test_a_tie_is_told_as_a_tie() -> None:
    b = simple_offer("b-offer", bonus(100), exclusive_group="g", priority=5)
    a = simple_offer("a-offer", bonus(100), exclusive_group="g")
    evaluation = evaluate(catalog(b, a), basket(DRESS))
    assert reasons(evaluation) == {
        "b-offer": "exclusive group g: 'Offer a-offer' is worth as much and wins the tie "
        "(100 points worth USD 1.00 vs 100 points worth USD 1.00)"
    }


def test_a_winner_without_rivals_says_nothing_extra() -> None:
    alone = simple_offer("alone", percent_off(10), exclusive_group="g")
    evaluation = evaluate(catalog(alone), basket(DRESS))
    assert "exclusive" not in evaluation.applied_offers[0].explanation
    assert evaluation.not_applied == ()


# --- lines already multiplied -----------------------------------------------------------------------------------


def test_a_multiplier_whose_lines_are_taken_says_by_whom() -> None:
    triple = simple_offer("triple", multiplier(300, "dresses"), priority=10)
    double = simple_offer("double", multiplier(200, "dresses"))
    evaluation = evaluate(catalog(double, triple), basket(DRESS, SHOES))
    assert [a.offer_id for a in evaluation.applied_offers] == ["triple"]
    assert evaluation.not_applied == (NotApplied("double", "Offer double", "its lines already earn 'Offer triple'"),)


def test_lines_taken_by_several_multipliers_name_them_all() -> None:
    on_dresses = simple_offer("dresses-x3", multiplier(300, "dresses"), priority=3)
    on_shoes = simple_offer("shoes-x2", multiplier(200, "shoes"), priority=2)
    everything = simple_offer("all-x2", multiplier(200))
    evaluation = evaluate(catalog(everything, on_shoes, on_dresses), basket(DRESS, SHOES))
    assert reasons(evaluation) == {"all-x2": "its lines already earn 'Offer dresses-x3' and 'Offer shoes-x2'"}


def test_a_multiplier_with_some_lines_left_applies_and_is_not_explained() -> None:
    dresses = simple_offer("a-dresses", multiplier(200, "dresses"))
    everything = simple_offer("b-all", multiplier(150))
    evaluation = evaluate(catalog(everything, dresses), basket(DRESS, SHOES))
    assert [a.offer_id for a in evaluation.applied_offers] == ["a-dresses", "b-all"]
    assert evaluation.not_applied == ()


# --- would qualify, but ----------------------------------------------------------------------------------------


def test_sold_out_is_told_only_when_the_basket_meets_the_condition() -> None:
    offer = dress_shoes_offer(total_redemption_limit=100)
    used = {"dress-shoes-2x": 100}
    evaluation = evaluate(catalog(offer), basket(DRESS, SHOES), used=used)
    assert evaluation.applied_offers == ()
    assert evaluation.not_applied == (NotApplied("dress-shoes-2x", "Double points on dresses", "sold out"),)
    # A dress alone does not meet the condition: a sold-out offer is neither a near miss nor explained.
    alone = evaluate(catalog(offer), basket(DRESS), used=used)
    assert (alone.near_misses, alone.not_applied) == ((), ())


def test_a_used_up_offer_is_told_when_the_basket_would_earn_it() -> None:
    used_up = samantha(offer_uses={"dress-shoes-2x": 1})
    evaluation = evaluate(catalog(dress_shoes_offer()), basket(DRESS, SHOES), used_up)
    assert reasons(evaluation) == {"dress-shoes-2x": "already used 1 of 1"}
    assert reasons(evaluate(catalog(dress_shoes_offer()), basket(DRESS), used_up)) == {}


def test_outside_its_daypart_the_offer_says_when_it_runs() -> None:
    offer = dress_shoes_offer(dayparts=(HAPPY_HOUR,))
    evaluation = evaluate(catalog(offer), basket(DRESS, SHOES))
    assert evaluation.applied_offers == ()
    assert reasons(evaluation) == {"dress-shoes-2x": "only Mon–Fri 17:00–19:00 (store time)"}
    # During the happy hour it applies.
    during = evaluate(catalog(offer), basket(DRESS, SHOES), now=MONDAY_EVENING)
    assert [a.offer_id for a in during.applied_offers] == ["dress-shoes-2x"]
    assert during.not_applied == ()
    # Without shoes it is not shown at all, not even as a near miss.
    assert reasons(evaluate(catalog(offer), basket(DRESS))) == {}


def test_an_offer_she_may_not_have_is_not_explained_whatever_else_holds() -> None:
    not_for_her = dress_shoes_offer(
        eligibility=replace(Eligibility(), tiers=frozenset({"platinum"})), dayparts=(HAPPY_HOUR,)
    )
    paused = simple_offer("paused", bonus(100), status=OfferStatus.PAUSED)
    evaluation = evaluate(catalog(not_for_her, paused), basket(DRESS, SHOES))
    assert (evaluation.applied_offers, evaluation.near_misses, evaluation.not_applied) == ((), (), ())


def test_a_missing_target_line_stays_a_near_miss_only() -> None:
    evaluation = evaluate(catalog(dress_shoes_offer()), basket(SHOES))
    assert [m.offer_id for m in evaluation.near_misses] == ["dress-shoes-2x"]
    assert evaluation.not_applied == ()


def test_reasons_come_in_priority_order() -> None:
    sold_out = simple_offer("sold", bonus(10), priority=1, total_redemption_limit=5)
    evening = simple_offer("evening", bonus(10), priority=7, dayparts=(HAPPY_HOUR,))
    winner = simple_offer("winner", percent_off(10), exclusive_group="g", priority=3)
    loser = simple_offer("loser", bonus(10), exclusive_group="g", priority=4)
    first = simple_offer("x3", multiplier(300), priority=9)
    second = simple_offer("x2", multiplier(200), priority=2)
    cat = catalog(sold_out, evening, winner, loser, first, second)
    evaluation = evaluate(cat, basket(DRESS, SHOES), used={"sold": 5})
    assert [n.offer_id for n in evaluation.not_applied] == ["evening", "loser", "x2", "sold"]
    assert [a.offer_id for a in evaluation.applied_offers] == ["x3", "winner"]
    assert evaluate(cat, basket(SHOES, DRESS), used={"sold": 5}).not_applied == evaluation.not_applied


def test_explanations_do_not_change_what_applies() -> None:
    cat = catalog(dress_shoes_offer(total_redemption_limit=1), simple_offer("ten", percent_off(10)))
    with_reason = evaluate(cat, basket(DRESS, SHOES), used={"dress-shoes-2x": 1})
    without = evaluate(catalog(simple_offer("ten", percent_off(10))), basket(DRESS, SHOES))
    assert replace(with_reason, not_applied=()) == without
    assert with_reason.not_applied[0].reason == "sold out"


def test_a_condition_met_elsewhere_still_needs_its_spend() -> None:
    big_spend = simple_offer("big", bonus(100), Condition(min_spend_minor=500_00), total_redemption_limit=1)
    evaluation = evaluate(catalog(big_spend), basket(DRESS, SHOES), used={"big": 1})
    assert evaluation.not_applied == ()
