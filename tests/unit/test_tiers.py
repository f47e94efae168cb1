"""Loyalty tiers: thresholds on rolling 12-month spend, tier earn multipliers, upgrades at the till."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from domain.basket import evaluate_basket
from domain.describe import multiplier_phrase, tier_bonus_phrase, tier_bonus_title, tier_upgrade_phrase
from domain.errors import InvalidArgument
from domain.model import (
    AppliedOffer,
    Basket,
    BasketEvaluation,
    Catalog,
    CustomerState,
    LineResult,
    Offer,
    ReturnRequestLine,
    Reward,
    RewardType,
    TierRule,
)
from domain.returns import evaluate_return, remaining_lines
from domain.tiers import (
    current_tier,
    is_tier_offer_id,
    tier_bonus,
    tier_for,
    tier_offer_id,
    tier_reached,
    validate_tiers,
)
from domain.validation import validate_customer, validate_offer
from tests.unit import (
    GOLD,
    PLATINUM,
    POLICY,
    SILVER,
    TIERS,
    basket,
    catalog,
    dress_shoes_offer,
    line,
    pos_ctx,
    purchase_facts,
    samantha,
    simple_offer,
)

DRESS = line("dress-1", "dresses", 120_00)
SHOES = line("shoes-1", "shoes", 89_00)
GOLD_SPEND = 1_200_000  # USD 12,000.00 in the last 12 months: gold, far from platinum


def member(tier: str = "gold", spend: int = GOLD_SPEND, **changes: Any) -> CustomerState:
    return samantha(tier=tier, spend_12m_minor=spend, **changes)


def evaluate(
    items: Basket, customer: CustomerState, *offers: Offer, tiers: Sequence[TierRule] = TIERS
) -> BasketEvaluation:
    return evaluate_basket(catalog(*offers, tiers=tuple(tiers)), customer, items, pos_ctx(), POLICY)


def bonuses(evaluation: BasketEvaluation) -> dict[str, tuple[tuple[str, int], ...]]:
    return {r.line_id: r.bonus_by_offer for r in evaluation.lines}


# --- tier_for, tier_reached, tier_bonus --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spend", "tier"),
    [
        (-1, None),  # returns may leave a month negative; below every threshold
        (0, SILVER),
        (999_999, SILVER),
        (1_000_000, GOLD),  # the threshold itself is reached
        (4_999_999, GOLD),
        (5_000_000, PLATINUM),
        (10**15, PLATINUM),
    ],
)
def test_tier_for_picks_the_highest_threshold_reached(spend: int, tier: TierRule | None) -> None:
    assert tier_for(spend, TIERS) == tier
    assert tier_for(spend, (PLATINUM, SILVER, GOLD)) == tier  # the policy may come in any order


def test_tier_for_without_a_policy_or_below_its_lowest_threshold() -> None:
    assert tier_for(10**9, ()) is None
    assert tier_for(999_999, (PLATINUM, GOLD)) is None


def test_current_tier_is_the_profiles_when_the_policy_has_it_else_derived_from_spend() -> None:
    assert current_tier(member("silver", 6_000_000), TIERS) == SILVER  # the CRM set it: kept as it is
    assert current_tier(member("platinum", 0), TIERS) == PLATINUM
    assert current_tier(member("vip", GOLD_SPEND), TIERS) == GOLD  # unknown to the policy: from spend
    assert current_tier(member("", 0), TIERS) == SILVER
    assert current_tier(member("", 0), (GOLD, PLATINUM)) is None
    assert current_tier(member("Gold", GOLD_SPEND * 5), TIERS) == PLATINUM  # names match exactly


def test_tier_reached_never_goes_down() -> None:
    assert tier_reached(SILVER, 1_000_000, TIERS) == GOLD
    assert tier_reached(GOLD, 0, TIERS) == GOLD
    assert tier_reached(PLATINUM, 1_500_000, TIERS) == PLATINUM
    assert tier_reached(None, 0, (GOLD, PLATINUM)) is None
    assert tier_reached(None, 7_000_000, (GOLD, PLATINUM)) == PLATINUM


@pytest.mark.parametrize(
    ("base", "rule", "bonus"),
    [(120, GOLD, 60), (89, GOLD, 44), (1, GOLD, 0), (120, PLATINUM, 120), (120, SILVER, 0), (120, None, 0)],
)
def test_tier_bonus_rounds_down(base: int, rule: TierRule | None, bonus: int) -> None:
    assert tier_bonus(base, rule) == bonus


def test_tier_offer_ids() -> None:
    assert tier_offer_id("gold") == "tier:gold"
    assert is_tier_offer_id("tier:gold") and not is_tier_offer_id("dress-shoes-2x")


# --- validate_tiers ----------------------------------------------------------------------------------------------


def tier_field(rules: Sequence[TierRule]) -> str:
    with pytest.raises(InvalidArgument) as caught:
        validate_tiers(rules)
    return caught.value.field


def test_good_policies_pass() -> None:
    validate_tiers(TIERS)
    validate_tiers((PLATINUM, SILVER, GOLD))
    validate_tiers(())
    validate_tiers((TierRule("g" * 64, 10**15, 1000), TierRule("base", 0, 100)))
    validate_tiers((GOLD,))  # no tier at 0: members below the lowest threshold have none


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ((TierRule("", 0, 100),), "tiers[0].name"),
        ((SILVER, TierRule("   ", 1, 100)), "tiers[1].name"),
        ((SILVER, TierRule("gold plus", 1, 100)), "tiers[1].name"),
        ((SILVER, TierRule("g" * 65, 1, 100)), "tiers[1].name"),
        ((SILVER, TierRule("silver", 1, 100)), "tiers[1].name"),  # duplicate name
        ((TierRule("silver", -1, 100),), "tiers[0].min_spend_12m_minor"),
        ((TierRule("silver", 10**15 + 1, 100),), "tiers[0].min_spend_12m_minor"),
        ((SILVER, GOLD, TierRule("platinum", 1_000_000, 200)), "tiers[2].min_spend_12m_minor"),  # duplicate
        ((SILVER, GOLD, TierRule("platinum", 5_000_000, 99)), "tiers[2].earn_multiplier_percent"),
        ((SILVER, GOLD, TierRule("platinum", 5_000_000, 1001)), "tiers[2].earn_multiplier_percent"),
        ((TierRule("silver", 0, 0),), "tiers[0].earn_multiplier_percent"),
    ],
)
def test_bad_policies_name_the_field(rules: Sequence[TierRule], field: str) -> None:
    assert tier_field(rules) == field


def test_offer_ids_of_tier_bonuses_are_reserved() -> None:
    with pytest.raises(InvalidArgument, match="tier bonuses") as caught:
        validate_offer(dress_shoes_offer(offer_id="tier:gold"))
    assert caught.value.field == "offer.offer_id"
    validate_offer(dress_shoes_offer(offer_id="gold-tier:x"))


def test_a_crm_import_carries_a_non_negative_12_month_spend() -> None:
    validate_customer(member("vip", 0))
    with pytest.raises(InvalidArgument) as caught:
        validate_customer(member("gold", -1))
    assert caught.value.field == "customer.spend_12m_minor"


# --- earning at her tier -----------------------------------------------------------------------------------------


def test_a_gold_member_earns_half_again_on_base_points() -> None:
    result = evaluate(basket(DRESS), member())

    assert result.lines == (LineResult("dress-1", 120, 60, 0, ("tier:gold",), (("tier:gold", 60),)),)
    assert result.applied_offers == (
        AppliedOffer("tier:gold", "Gold member bonus", 60, 0, "gold members earn 1.5x base points: +60 points"),
    )
    assert result.points_earned == 180
    assert result.balance_after == 1_000 + 180
    assert (result.tier_before, result.tier_after) == ("gold", "gold")
    assert result.not_applied == () and result.near_misses == ()


def test_the_tier_bonus_stacks_with_the_double_points_offer() -> None:
    without_shoes = evaluate(basket(DRESS), member(), dress_shoes_offer())
    assert without_shoes.points_earned == 120 + 60
    assert [m.offer_id for m in without_shoes.near_misses] == ["dress-shoes-2x"]

    result = evaluate(basket(DRESS, SHOES), member(), dress_shoes_offer())
    assert bonuses(result) == {
        "dress-1": (("tier:gold", 60), ("dress-shoes-2x", 120)),  # the offer doubles the base, not the tier bonus
        "shoes-1": (("tier:gold", 44),),  # 89 × 50% rounded down
    }
    assert [(r.base_points, r.bonus_points) for r in result.lines] == [(120, 180), (89, 44)]
    assert result.lines[0].offer_ids == ("tier:gold", "dress-shoes-2x")
    assert [(a.offer_id, a.bonus_points) for a in result.applied_offers] == [
        ("tier:gold", 104),
        ("dress-shoes-2x", 120),
    ]
    assert result.applied_offers[0].explanation == "gold members earn 1.5x base points: +104 points"
    assert result.points_earned == 120 + 60 + 120 + 89 + 44


def test_the_tier_bonus_is_on_what_was_paid() -> None:
    # USD 20.00 off the dress and USD 20.00 paid with points: base 80, tier bonus 40.
    amount_off = simple_offer("take-20", Reward(RewardType.AMOUNT_OFF, "dresses", amount_off_minor=20_00))
    result = evaluate(basket(DRESS, points_to_redeem=2_000), member(points_balance=5_000), amount_off)
    assert (result.lines[0].base_points, result.lines[0].bonus_points) == (80, 40)
    assert [a.offer_id for a in result.applied_offers] == ["tier:gold", "take-20"]
    assert result.points_earned == 120


def test_platinum_earns_double_and_silver_nothing_extra() -> None:
    platinum = evaluate(basket(DRESS), member("platinum", 6_000_000))
    assert platinum.points_earned == 240
    assert platinum.applied_offers[0].explanation == "platinum members earn double base points: +120 points"

    silver = evaluate(basket(DRESS), member("silver", 0))
    assert silver.points_earned == 120
    assert silver.applied_offers == () and silver.lines[0].bonus_by_offer == () and silver.lines[0].offer_ids == ()
    assert (silver.tier_before, silver.tier_after) == ("silver", "silver")


def test_the_tier_bonus_repays_a_points_debt_like_any_earning() -> None:
    result = evaluate(basket(DRESS), member(points_debt=150))
    assert (result.points_earned, result.points_debt_repaid, result.balance_after) == (180, 150, 1_000 + 30)


def test_the_policys_order_does_not_matter() -> None:
    items = basket(DRESS, SHOES)
    for customer in (member(), member("", 4_990_000), member("vip", 0)):
        assert evaluate(items, customer, tiers=(PLATINUM, SILVER, GOLD)) == evaluate(items, customer)


# --- upgrades ----------------------------------------------------------------------------------------------------


def test_a_purchase_that_crosses_the_threshold_upgrades_from_the_next_purchase() -> None:
    customer = member("silver", 990_000)
    result = evaluate(basket(DRESS, SHOES), customer)  # USD 209.00: 990,000 + 20,900 >= 1,000,000

    assert (result.tier_before, result.tier_after) == ("silver", "gold")
    assert tier_upgrade_phrase(result.tier_before, result.tier_after) == "upgraded from silver to gold"
    assert result.points_earned == 209  # silver rates this time
    assert result.applied_offers == ()

    upgraded = replace(customer, tier=result.tier_after, spend_12m_minor=990_000 + 20_900)
    assert evaluate(basket(DRESS), upgraded).points_earned == 180  # gold from now on


def test_the_threshold_counts_the_net_value_not_what_points_paid() -> None:
    at_threshold = basket(line("dress-1", "dresses", 100_00))
    assert evaluate(at_threshold, member("silver", 990_000)).tier_after == "gold"  # exactly 1,000,000
    one_off = simple_offer("one-off", Reward(RewardType.AMOUNT_OFF, amount_off_minor=1_00))
    assert evaluate(at_threshold, member("silver", 990_000), one_off).tier_after == "silver"  # 999,900
    # Paying with points is a tender, not a discount: the merchandise still counts in full.
    paid_with_points = replace(at_threshold, points_to_redeem=1_000)
    assert evaluate(paid_with_points, member("silver", 990_000)).tier_after == "gold"


def test_a_big_purchase_can_skip_a_tier() -> None:
    result = evaluate(basket(line("coat", "coats", 4_500_000)), member("silver", 600_000))
    assert (result.tier_before, result.tier_after) == ("silver", "platinum")


def test_the_till_never_lowers_a_tier() -> None:
    result = evaluate(basket(DRESS), member("platinum", 0))  # the CRM made her platinum
    assert (result.tier_before, result.tier_after) == ("platinum", "platinum")
    assert result.points_earned == 240


def test_a_crm_tier_below_what_her_spend_reaches_is_kept_until_she_buys() -> None:
    result = evaluate(basket(DRESS), member("silver", 6_000_000))
    assert result.points_earned == 120  # silver, as the CRM says
    assert (result.tier_before, result.tier_after) == ("silver", "platinum")


def test_a_crm_tier_the_policy_does_not_have_is_derived_from_spend() -> None:
    result = evaluate(basket(DRESS), member("vip", GOLD_SPEND))
    assert (result.tier_before, result.tier_after) == ("gold", "gold")
    assert result.points_earned == 180

    newcomer = evaluate(basket(DRESS), member("", 0))
    assert (newcomer.tier_before, newcomer.tier_after) == ("silver", "silver")


def test_below_the_lowest_threshold_she_has_no_tier_until_she_reaches_one() -> None:
    policy = (GOLD, PLATINUM)
    below = evaluate(basket(DRESS), member("", 0), tiers=policy)
    assert (below.tier_before, below.tier_after) == ("", "")
    assert below.points_earned == 120

    crossing = evaluate(basket(DRESS), member("", 990_000), tiers=policy)
    assert (crossing.tier_before, crossing.tier_after) == ("", "gold")
    assert tier_upgrade_phrase(crossing.tier_before, crossing.tier_after) == "upgraded to gold"


def test_without_a_policy_tiers_stay_as_the_crm_set_them() -> None:
    for tier, spend in (("gold", 6_000_000), ("", 990_000), ("vip", 0)):
        result = evaluate(basket(DRESS, SHOES), member(tier, spend), dress_shoes_offer(), tiers=())
        assert (result.tier_before, result.tier_after) == (tier, tier)
        assert result.points_earned == 329  # the story's numbers: no tier bonus
        assert [a.offer_id for a in result.applied_offers] == ["dress-shoes-2x"]
        assert all(not is_tier_offer_id(o) for r in result.lines for o, _ in r.bonus_by_offer)


# --- returns -----------------------------------------------------------------------------------------------------


def test_a_return_takes_the_tier_bonus_back_with_its_units() -> None:
    dresses = line("dress-1", "dresses", 120_00, quantity=3)
    cat = catalog(tiers=TIERS)
    customer = member()
    evaluation = evaluate_basket(cat, customer, basket(dresses), pos_ctx(), POLICY)
    assert (evaluation.lines[0].base_points, evaluation.lines[0].bonus_points) == (360, 180)
    facts = purchase_facts(cat, basket(dresses), evaluation)
    assert dict(facts.offers) == {}  # the tier bonus has no terms: returned like base points

    holder = replace(customer, points_balance=evaluation.balance_after)
    reversed_points: list[int] = []
    returned: dict[str, int] = {}
    for _ in range(3):
        outcome = evaluate_return(facts, holder, returned, [ReturnRequestLine("dress-1", 1)])
        assert outcome.offers_lost == ()
        reversed_points.append(outcome.points_reversed)
        returned = dict(outcome.returned_after)
        holder = replace(holder, points_balance=outcome.balance_after)
    assert reversed_points == [180, 180, 180]
    assert holder.points_balance == customer.points_balance


def test_returning_the_shoes_keeps_the_dresss_tier_bonus_but_not_the_offers() -> None:
    cat = catalog(dress_shoes_offer(), tiers=TIERS)
    items = basket(DRESS, SHOES)
    customer = member()
    evaluation = evaluate_basket(cat, customer, items, pos_ctx(), POLICY)
    facts = purchase_facts(cat, items, evaluation)
    assert set(facts.offers) == {"dress-shoes-2x"}

    holder = replace(customer, points_balance=evaluation.balance_after)
    outcome = evaluate_return(facts, holder, {}, [ReturnRequestLine("shoes-1", 1)])
    assert outcome.offers_lost == ("dress-shoes-2x",)
    assert outcome.points_reversed == 89 + 44 + 120  # shoes' base and tier bonus, and the dress's double points
    rest = evaluate_return(facts, holder, outcome.returned_after, remaining_lines(facts, outcome.returned_after))
    assert rest.points_reversed == 120 + 60  # the dress's base and tier bonus
    assert outcome.points_reversed + rest.points_reversed == evaluation.points_earned


# --- text --------------------------------------------------------------------------------------------------------


def test_tier_phrases() -> None:
    assert tier_bonus_title("gold") == "Gold member bonus"
    assert tier_bonus_phrase("gold", 150, 60) == "gold members earn 1.5x base points: +60 points"
    assert tier_bonus_phrase("platinum", 200, 1) == "platinum members earn double base points: +1 point"
    assert tier_bonus_phrase("gold", 125, 30) == "gold members earn 1.25x base points: +30 points"
    assert tier_upgrade_phrase("silver", "gold") == "upgraded from silver to gold"
    assert tier_upgrade_phrase("", "gold") == "upgraded to gold"
    assert tier_upgrade_phrase("gold", "gold") == "" and tier_upgrade_phrase("", "") == ""
    assert multiplier_phrase(150) == "1.5x points" and multiplier_phrase(300) == "triple points"


def test_a_catalog_with_tiers_is_still_a_catalog() -> None:
    cat = catalog(dress_shoes_offer(), tiers=TIERS)
    assert isinstance(cat, Catalog) and cat.tiers == TIERS and cat.offer("tier:gold") is None


def test_offers_for_a_tier_see_the_tier_her_spend_reached_not_only_the_crm_one() -> None:
    from domain.eligibility import check_eligibility
    from domain.model import Eligibility

    policy = (
        TierRule("silver", 0, 100),
        TierRule("gold", 1_000_000, 150),
    )
    gold_only = replace(dress_shoes_offer(), eligibility=Eligibility(tiers=frozenset({"gold"})))
    by_spend = replace(samantha(), tier="", spend_12m_minor=1_200_000)
    cat = catalog(gold_only, tiers=policy)
    assert check_eligibility(gold_only, by_spend, pos_ctx(), cat).eligible
    assert not check_eligibility(gold_only, replace(by_spend, spend_12m_minor=10), pos_ctx(), cat).eligible
    # Without a policy only the CRM's tier counts.
    assert not check_eligibility(gold_only, by_spend, pos_ctx(), catalog(gold_only)).eligible
