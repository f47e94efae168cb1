"""Properties of basket evaluation over random baskets and catalogs."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.basket import evaluate_basket, redeemed_shares
from domain.model import (
    Basket,
    BasketEvaluation,
    Catalog,
    Condition,
    CustomerState,
    Eligibility,
    LineItem,
    Offer,
    PointsPolicy,
    PurchaseFacts,
    ReturnOutcome,
    ReturnRequestLine,
    Reward,
    RewardType,
    TierRule,
)
from domain.money import minor_per_unit
from domain.returns import evaluate_return, remaining_lines
from domain.rewards import base_points
from domain.tiers import tier_for, validate_tiers
from tests.unit import catalog, pos_ctx, purchase_facts, samantha

CATEGORIES = ["dresses", "shoes", "bags"]
ENGINE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def baskets(draw: st.DrawFn) -> Basket:
    line_ids = draw(st.lists(st.text("abcdefgh", min_size=1, max_size=3), min_size=1, max_size=6, unique=True))
    lines = tuple(
        LineItem(
            line_id=line_id,
            sku=f"sku-{line_id}",
            category=draw(st.sampled_from(CATEGORIES)),
            quantity=draw(st.integers(1, 5)),
            unit_price_minor=draw(st.integers(0, 300_00)),
        )
        for line_id in line_ids
    )
    return Basket("samantha", "soho", "till-1", draw(st.sampled_from(["USD", "JPY", "KWD"])), lines)


@st.composite
def rewards(draw: st.DrawFn) -> Reward:
    kind = draw(st.sampled_from(list(RewardType)[1:]))
    target = draw(st.sampled_from(["", *CATEGORIES]))
    if kind == RewardType.POINTS_MULTIPLIER:
        return Reward(kind, target, multiplier_percent=draw(st.integers(101, 1000)))
    if kind == RewardType.BONUS_POINTS:
        return Reward(kind, target, bonus_points=draw(st.integers(1, 5_000)))
    if kind == RewardType.PERCENT_OFF:
        return Reward(kind, target, percent_off=draw(st.integers(1, 100)))
    return Reward(kind, target, amount_off_minor=draw(st.integers(1, 500_00)))


@st.composite
def offers(draw: st.DrawFn, offer_id: str) -> Offer:
    condition = Condition(
        required_category=draw(st.sampled_from(["", *CATEGORIES])),
        min_quantity=draw(st.integers(0, 4)),
        min_spend_minor=draw(st.sampled_from([0, 0, 50_00, 200_00])),
    )
    return Offer(
        offer_id=offer_id,
        title=f"Offer {offer_id}",
        description="",
        eligibility=Eligibility(),
        condition=condition,
        reward=draw(rewards()),
        priority=draw(st.integers(0, 3)),
        exclusive_group=draw(st.sampled_from(["", "", "g1", "g2"])),
    )


@st.composite
def catalogs(draw: st.DrawFn) -> Catalog:
    count = draw(st.integers(0, 5))
    return catalog(*(draw(offers(f"offer-{i}")) for i in range(count)))


policies = st.builds(PointsPolicy, earn_points_per_unit=st.integers(0, 10), redeem_points_per_unit=st.integers(1, 200))


def evaluate(cat: Catalog, customer: CustomerState, items: Basket, policy: PointsPolicy) -> BasketEvaluation:
    # The member's profile is kept in the basket's currency (a mismatch is refused, tested in test_basket).
    return evaluate_basket(cat, replace(customer, currency=items.currency), items, pos_ctx(), policy)


def redeemable(cat: Catalog, customer: CustomerState, items: Basket, policy: PointsPolicy, share: float) -> int:
    """A points_to_redeem within both the balance and the bill."""
    bill = evaluate(cat, customer, items, policy)
    due = bill.subtotal_minor - bill.total_discount_minor
    mpu = minor_per_unit(items.currency)
    most = due * policy.redeem_points_per_unit // mpu
    points = int(min(most, customer.points_balance) * share)
    step = policy.redeem_points_per_unit // math.gcd(policy.redeem_points_per_unit, mpu)
    return points - points % step  # only whole minor units can be paid with points


@ENGINE
@given(
    cat=catalogs(),
    items=baskets(),
    policy=policies,
    balance=st.integers(0, 100_000),
    share=st.floats(0, 1),
    order=st.randoms(use_true_random=False),
)
def test_evaluation_invariants(
    cat: Catalog, items: Basket, policy: PointsPolicy, balance: int, share: float, order: random.Random
) -> None:
    customer = samantha(points_balance=balance)
    items = replace(items, points_to_redeem=redeemable(cat, customer, items, policy, share))
    result = evaluate(cat, customer, items, policy)

    assert all(r.base_points >= 0 and r.bonus_points >= 0 and r.discount_minor >= 0 for r in result.lines)
    assert result.points_earned == sum(r.base_points + r.bonus_points for r in result.lines)
    assert result.subtotal_minor == sum(line.total_minor for line in items.lines)
    assert result.total_discount_minor == sum(r.discount_minor for r in result.lines) <= result.subtotal_minor
    for r, item in zip(result.lines, items.lines, strict=True):
        assert r.line_id == item.line_id
        assert r.discount_minor <= item.total_minor
    assert sum(a.bonus_points for a in result.applied_offers) == sum(r.bonus_points for r in result.lines)
    assert sum(a.discount_minor for a in result.applied_offers) == result.total_discount_minor
    assert result.total_due_minor == result.subtotal_minor - result.total_discount_minor - result.redeemed_value_minor
    assert result.total_due_minor >= 0
    assert result.balance_after == balance - items.points_to_redeem + result.points_earned >= 0
    applied_ids = {a.offer_id for a in result.applied_offers}
    applied_groups = [o.exclusive_group for o in cat.offers if o.offer_id in applied_ids and o.exclusive_group]
    assert len(applied_groups) == len(set(applied_groups)), "two offers of one exclusive group applied"

    # Same basket, lines shuffled: same results per line and same totals.
    shuffled_lines = list(items.lines)
    order.shuffle(shuffled_lines)
    again = evaluate(cat, customer, replace(items, lines=tuple(shuffled_lines)), policy)
    assert {r.line_id: r for r in again.lines} == {r.line_id: r for r in result.lines}
    assert [r.line_id for r in again.lines] == [line.line_id for line in shuffled_lines]
    assert replace(again, lines=result.lines) == result


@ENGINE
@given(cat=catalogs(), items=baskets())
def test_multiplied_lines_are_claimed_once(cat: Catalog, items: Basket) -> None:
    result = evaluate(cat, samantha(), items, PointsPolicy())
    multipliers = {o.offer_id for o in cat.offers if o.reward.type == RewardType.POINTS_MULTIPLIER}
    for r in result.lines:
        assert len(multipliers.intersection(r.offer_ids)) <= 1


@ENGINE
@given(cat=catalogs(), items=baskets(), policy=policies, balance=st.integers(0, 100_000), share=st.floats(0, 1))
def test_points_paid_with_points_earn_nothing(
    cat: Catalog, items: Basket, policy: PointsPolicy, balance: int, share: float
) -> None:
    customer = samantha(points_balance=balance)
    without = evaluate(cat, customer, items, policy)
    redeeming = replace(items, points_to_redeem=redeemable(cat, customer, items, policy, share))
    result = evaluate(cat, customer, redeeming, policy)

    assert result.points_earned <= without.points_earned
    assert [a.offer_id for a in result.applied_offers] == [a.offer_id for a in without.applied_offers]
    discounts = [r.discount_minor for r in result.lines]
    shares = redeemed_shares(result.redeemed_value_minor, items.lines, discounts)
    assert sum(shares) == result.redeemed_value_minor
    mpu = minor_per_unit(items.currency)
    for item, r, plain, part in zip(items.lines, result.lines, without.lines, shares, strict=True):
        assert r.discount_minor == plain.discount_minor
        assert 0 <= part <= item.total_minor - r.discount_minor
        assert r.base_points == base_points(item.total_minor - r.discount_minor - part, mpu, policy)
        assert r.base_points <= plain.base_points and r.bonus_points <= plain.bonus_points


@ENGINE
@given(cat=catalogs(), items=baskets(), sold_out=st.sets(st.integers(0, 4)))
def test_not_applied_explains_only_offers_that_did_not_apply(cat: Catalog, items: Basket, sold_out: set[int]) -> None:
    budgeted = {offer.offer_id for i, offer in enumerate(cat.offers) if i in sold_out}
    cat = catalog(*(replace(o, total_redemption_limit=1) if o.offer_id in budgeted else o for o in cat.offers))
    result = evaluate_basket(
        cat,
        replace(samantha(), currency=items.currency),
        items,
        pos_ctx(),
        PointsPolicy(),
        redemptions_used=dict.fromkeys(budgeted, 1),
    )
    explained = [n.offer_id for n in result.not_applied]
    applied = {a.offer_id for a in result.applied_offers}
    missed = {m.offer_id for m in result.near_misses}
    assert len(explained) == len(set(explained))
    assert not applied.intersection(explained) and not missed.intersection(explained)
    assert not applied.intersection(budgeted)
    rank = {o.offer_id: i for i, o in enumerate(cat.in_priority_order)}
    assert explained == sorted(explained, key=rank.__getitem__)
    assert all(n.reason for n in result.not_applied)
    for n in result.not_applied:
        if n.offer_id in budgeted:
            assert n.reason == "sold out"


# --- returns ---------------------------------------------------------------------------------------------------


def random_return(facts: PurchaseFacts, returned: Mapping[str, int], rng: random.Random) -> list[ReturnRequestLine]:
    """Some of what is left, in some order: at least one unit of at least one line."""
    left = list(remaining_lines(facts, returned))
    rng.shuffle(left)
    chosen = left[: rng.randint(1, len(left))]
    return [ReturnRequestLine(r.line_id, rng.randint(1, r.quantity)) for r in chosen]


@ENGINE
@given(
    cat=catalogs(),
    items=baskets(),
    policy=policies,
    balance=st.integers(0, 100_000),
    share=st.floats(0, 1),
    spent=st.floats(0, 1),
    rng=st.randoms(use_true_random=False),
)
def test_returns_in_any_steps_undo_the_purchase_exactly(
    cat: Catalog,
    items: Basket,
    policy: PointsPolicy,
    balance: int,
    share: float,
    spent: float,
    rng: random.Random,
) -> None:
    customer = replace(samantha(points_balance=balance), currency=items.currency)
    items = replace(items, points_to_redeem=redeemable(cat, customer, items, policy, share))
    evaluation = evaluate(cat, customer, items, policy)
    for result in evaluation.lines:
        assert sum(points for _, points in result.bonus_by_offer) == result.bonus_points
        assert all(points > 0 for _, points in result.bonus_by_offer)
    facts = purchase_facts(cat, items, evaluation)

    # She may have spent some of her points before returning anything: the balance may not cover the reversal.
    spending = int(evaluation.balance_after * spent)
    holder = replace(customer, points_balance=evaluation.balance_after - spending)
    returned: Mapping[str, int] = {}
    reversed_total = refunded_total = value_total = 0
    lost: list[str] = []
    while remaining_lines(facts, returned):
        request = random_return(facts, returned, rng)
        outcome = evaluate_return(facts, holder, returned, request)
        assert outcome.points_reversed >= 0 and outcome.points_refunded >= 0 and outcome.value_minor >= 0
        assert outcome.balance_after >= 0 and outcome.debt_after >= 0  # points coming back repay debt first
        assert sum(r.value_minor for r in outcome.lines) == outcome.value_minor
        assert 0 <= sum(r.points_reversed for r in outcome.lines) <= outcome.points_reversed
        assert [r.line_id for r in outcome.lines] == [r.line_id for r in request]
        net = outcome.points_refunded - outcome.points_reversed
        assert outcome.balance_after - outcome.debt_after == holder.points_balance - holder.points_debt + net
        for r in request:
            assert outcome.returned_after[r.line_id] == returned.get(r.line_id, 0) + r.quantity
        reversed_total += outcome.points_reversed
        refunded_total += outcome.points_refunded
        value_total += outcome.value_minor
        lost.extend(outcome.offers_lost)
        returned = outcome.returned_after
        holder = replace(holder, points_balance=outcome.balance_after, points_debt=outcome.debt_after)

    assert returned == {line.line_id: line.quantity for line in items.lines}
    assert reversed_total == evaluation.points_earned
    assert refunded_total == evaluation.points_redeemed
    assert value_total == evaluation.subtotal_minor - evaluation.total_discount_minor
    assert sorted(lost) == sorted(facts.offers), "every applied offer is lost exactly once"
    # Purchase, spending, then every line back: as if only the spending had happened.
    assert holder.points_balance - holder.points_debt == balance - spending


@ENGINE
@given(cat=catalogs(), items=baskets(), policy=policies, rng=st.randoms(use_true_random=False))
def test_partial_returns_add_up_to_one_full_return(
    cat: Catalog, items: Basket, policy: PointsPolicy, rng: random.Random
) -> None:
    customer = replace(samantha(points_balance=50_000), currency=items.currency)
    items = replace(items, points_to_redeem=redeemable(cat, customer, items, policy, 0.5))
    evaluation = evaluate(cat, customer, items, policy)
    facts = purchase_facts(cat, items, evaluation)
    whole = evaluate_return(facts, customer, {}, remaining_lines(facts, {}))
    returned: Mapping[str, int] = {}
    steps: list[ReturnOutcome] = []
    while remaining_lines(facts, returned):
        steps.append(evaluate_return(facts, customer, returned, random_return(facts, returned, rng)))
        returned = steps[-1].returned_after
    assert sum(s.points_reversed for s in steps) == whole.points_reversed
    assert sum(s.points_refunded for s in steps) == whole.points_refunded
    assert sum(s.value_minor for s in steps) == whole.value_minor
    for line_id, quantity in whole.returned_after.items():
        assert quantity == returned[line_id]
        assert sum(r.value_minor for s in steps for r in s.lines if r.line_id == line_id) == next(
            r.value_minor for r in whole.lines if r.line_id == line_id
        )


@ENGINE
@given(cat=catalogs(), items=baskets(), balance=st.integers(0, 10_000), debt=st.integers(0, 10_000))
def test_a_points_debt_is_repaid_before_the_balance_grows(cat: Catalog, items: Basket, balance: int, debt: int) -> None:
    result = evaluate(cat, samantha(points_balance=balance, points_debt=debt), items, PointsPolicy())
    assert result.points_debt_before == debt
    assert result.points_debt_repaid == min(debt, result.points_earned)
    assert result.balance_after == balance + result.points_earned - result.points_debt_repaid


# --- tiers -------------------------------------------------------------------------------------------------------

TIER_NAMES = ["silver", "gold", "platinum", "diamond"]


@st.composite
def tier_policies(draw: st.DrawFn) -> tuple[TierRule, ...]:
    """1..4 tiers in any order: unique names and thresholds (one often at 0), multipliers 100..1000. (Without a
    policy the profile's tier stands: test_without_a_tier_policy_the_profiles_tier_stands.)"""
    names = draw(st.lists(st.sampled_from(TIER_NAMES), min_size=1, max_size=4, unique=True))
    thresholds = draw(
        st.lists(
            st.one_of(st.just(0), st.integers(1, 3_000_000)), min_size=len(names), max_size=len(names), unique=True
        )
    )
    return tuple(
        TierRule(name, threshold, draw(st.sampled_from([100, 100, 125, 150, 200, 1000]) | st.integers(100, 1000)))
        for name, threshold in zip(names, thresholds, strict=True)
    )


@st.composite
def members(draw: st.DrawFn) -> CustomerState:
    """A member whose profile tier may be in the policy, unknown to it or empty."""
    return samantha(
        tier=draw(st.sampled_from(["", "vip", *TIER_NAMES])),
        spend_12m_minor=draw(st.integers(0, 4_000_000)),
        points_balance=draw(st.integers(0, 100_000)),
    )


def tier_rank(name: str, policy: tuple[TierRule, ...]) -> int:
    """A tier's place in threshold order; -1 for no tier."""
    thresholds = {rule.name: rule.min_spend_12m_minor for rule in policy}
    return thresholds[name] if name else -1


@ENGINE
@given(
    cat=catalogs(),
    policy=tier_policies(),
    customer=members(),
    items=baskets(),
    points=policies,
    share=st.floats(0, 1),
    order=st.randoms(use_true_random=False),
)
def test_tier_invariants(
    cat: Catalog,
    policy: tuple[TierRule, ...],
    customer: CustomerState,
    items: Basket,
    points: PointsPolicy,
    share: float,
    order: random.Random,
) -> None:
    validate_tiers(policy)
    cat = replace(cat, tiers=policy)
    items = replace(items, points_to_redeem=redeemable(cat, customer, items, points, share))
    result = evaluate(cat, customer, items, points)

    assert result.points_earned == sum(r.base_points + r.bonus_points for r in result.lines)
    assert sum(a.bonus_points for a in result.applied_offers) == sum(r.bonus_points for r in result.lines)
    for r in result.lines:
        assert sum(p for _, p in r.bonus_by_offer) == r.bonus_points
        assert all(p > 0 for _, p in r.bonus_by_offer)

    # She earns at her current tier: the profile's if the policy has it, else her spend's.
    names = {rule.name: rule for rule in policy}
    current = names.get(customer.tier) or tier_for(customer.spend_12m_minor, policy)
    assert result.tier_before == (current.name if current else "")
    tier_id = f"tier:{result.tier_before}"
    for r in result.lines:
        expected = r.base_points * (current.earn_multiplier_percent - 100) // 100 if current else 0
        assert dict(r.bonus_by_offer).get(tier_id, 0) == expected
    tier_applied = [a for a in result.applied_offers if a.offer_id.startswith("tier:")]
    assert len(tier_applied) <= 1 and all(a.discount_minor == 0 for a in tier_applied)

    # Upgrades only, to the tier the spend reaches with this purchase's net value.
    assert tier_rank(result.tier_after, policy) >= tier_rank(result.tier_before, policy)
    reached = tier_for(customer.spend_12m_minor + result.subtotal_minor - result.total_discount_minor, policy)
    if reached is not None and tier_rank(reached.name, policy) > tier_rank(result.tier_before, policy):
        assert result.tier_after == reached.name
    else:
        assert result.tier_after == result.tier_before

    # Deterministic: the same again, with the policy and the lines in another order.
    shuffled_policy = list(policy)
    order.shuffle(shuffled_policy)
    shuffled_lines = list(items.lines)
    order.shuffle(shuffled_lines)
    again = evaluate(
        replace(cat, tiers=tuple(shuffled_policy)), customer, replace(items, lines=tuple(shuffled_lines)), points
    )
    assert {r.line_id: r for r in again.lines} == {r.line_id: r for r in result.lines}
    assert replace(again, lines=result.lines) == result


@ENGINE
@given(cat=catalogs(), customer=members(), items=baskets())
def test_without_a_tier_policy_the_profiles_tier_stands(cat: Catalog, customer: CustomerState, items: Basket) -> None:
    result = evaluate(cat, customer, items, PointsPolicy())
    assert result.tier_before == result.tier_after == customer.tier
    assert not any(o.startswith("tier:") for r in result.lines for o, _ in r.bonus_by_offer)


@ENGINE
@given(
    cat=catalogs(),
    policy=tier_policies(),
    customer=members(),
    items=baskets(),
    points=policies,
    rng=st.randoms(use_true_random=False),
)
def test_returns_of_a_tier_bonus_purchase_reverse_exactly_its_points(
    cat: Catalog,
    policy: tuple[TierRule, ...],
    customer: CustomerState,
    items: Basket,
    points: PointsPolicy,
    rng: random.Random,
) -> None:
    cat = replace(cat, tiers=policy)
    customer = replace(customer, currency=items.currency)
    items = replace(items, points_to_redeem=redeemable(cat, customer, items, points, 0.5))
    evaluation = evaluate(cat, customer, items, points)
    facts = purchase_facts(cat, items, evaluation)
    holder = replace(customer, points_balance=evaluation.balance_after)

    whole = evaluate_return(facts, holder, {}, remaining_lines(facts, {}))
    assert whole.points_reversed == evaluation.points_earned
    assert whole.points_refunded == evaluation.points_redeemed
    assert whole.balance_after == customer.points_balance

    returned: Mapping[str, int] = {}
    reversed_total = 0
    while remaining_lines(facts, returned):
        outcome = evaluate_return(facts, holder, returned, random_return(facts, returned, rng))
        assert not any(o.startswith("tier:") for o in outcome.offers_lost)
        reversed_total += outcome.points_reversed
        returned = outcome.returned_after
        holder = replace(holder, points_balance=outcome.balance_after, points_debt=outcome.debt_after)
    assert reversed_total == evaluation.points_earned
    assert holder.points_balance - holder.points_debt == customer.points_balance
