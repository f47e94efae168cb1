"""Basket evaluation: which offers a purchase earns, points and discounts per line, near misses, redemption.

Everything here is integer arithmetic and independent of the order of basket lines: every split and tie-break
walks lines in canonical order (by line_id), while results keep the basket's order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from server.engine import money
from server.engine.describe import (
    add_items_phrase,
    capitalize,
    describe_basket_against,
    describe_reward,
    spend_more_phrase,
)
from server.engine.eligibility import check_eligibility
from server.engine.errors import FailedPrecondition, InvalidArgument
from server.engine.model import (
    AppliedOffer,
    Basket,
    BasketEvaluation,
    Catalog,
    Condition,
    CustomerState,
    LineItem,
    LineResult,
    NearMiss,
    Offer,
    OfferContext,
    PointsPolicy,
    RewardType,
)
from server.engine.rewards import base_points, multiplier_bonus, prorate, value_scaled

# Explanations name at most this many lines, then "and N more lines".
_EXPLAIN_LINES = 5


@dataclass(slots=True)
class _Line:
    item: LineItem
    total: int
    discount: int = 0
    claimed: bool = False  # by a POINTS_MULTIPLIER offer; a line is multiplied at most once

    @property
    def remaining(self) -> int:
        return self.total - self.discount


@dataclass(slots=True)
class _Candidate:
    """An eligible offer whose condition the basket meets and which has at least one target line."""

    offer: Offer
    units: int
    spend_minor: int


@dataclass(slots=True)
class _Grant:
    """What one applied offer gives, by line index."""

    candidate: _Candidate
    bonus: dict[int, int] = field(default_factory=dict)
    discount: dict[int, int] = field(default_factory=dict)
    multiplied: list[int] = field(default_factory=list)


def _in_category(line: LineItem, category: str) -> bool:
    return not category or line.category == category


def _line_key(line: LineItem) -> tuple[str, str, str, int, int]:
    # line_id is unique in a validated basket; the rest only keeps an unvalidated one deterministic.
    return (line.line_id, line.category, line.sku, line.quantity, line.unit_price_minor)


def new_categories(customer: CustomerState, basket: Basket) -> tuple[str, ...]:
    """Categories in the basket the customer has not bought before, sorted."""
    return tuple(sorted({line.category for line in basket.lines} - customer.categories))


def _minor_per_unit(currency: str) -> int:
    if not money.is_known_currency(currency):
        raise InvalidArgument("basket.currency", f"unknown currency {currency!r}")
    return money.minor_per_unit(currency)


def _check_policy(policy: PointsPolicy) -> None:
    if policy.earn_points_per_unit < 0 or policy.redeem_points_per_unit <= 0:
        raise ValueError(f"bad points policy: {policy}")


def _check_balance(customer: CustomerState, basket: Basket, mpu: int, policy: PointsPolicy) -> None:
    if basket.points_to_redeem < 0:
        raise InvalidArgument("basket.points_to_redeem", "must not be negative")
    if (basket.points_to_redeem * mpu) % policy.redeem_points_per_unit:
        # Otherwise part of the points would buy less than one minor unit and vanish.
        step = policy.redeem_points_per_unit // math.gcd(policy.redeem_points_per_unit, mpu)
        raise InvalidArgument("basket.points_to_redeem", f"must be a multiple of {step} in {basket.currency}")
    if basket.points_to_redeem > customer.points_balance:
        raise FailedPrecondition(
            f"insufficient points: balance {customer.points_balance}, asked to redeem {basket.points_to_redeem}",
            reason="insufficient_points",
        )


def _required(condition: Condition, lines: Sequence[LineItem]) -> tuple[int, int]:
    """Units and spend the basket holds in the condition's category."""
    matching = [line for line in lines if _in_category(line, condition.required_category)]
    return sum(line.quantity for line in matching), sum(line.total_minor for line in matching)


def _miss_hint(offer: Offer, units: int, spend: int, has_target: bool, currency: str) -> str:
    condition, reward = offer.condition, offer.reward
    parts: list[str] = []
    if units < condition.min_quantity:
        parts.append(add_items_phrase(condition.min_quantity - units, condition.required_category))
    if spend < condition.min_spend_minor:
        parts.append(spend_more_phrase(condition.min_spend_minor - spend, condition.required_category, currency))
    # Adding the required items also adds targets when both categories are the same.
    if not has_target and not (parts and reward.target_category == condition.required_category):
        parts.append(add_items_phrase(1, reward.target_category))
    return " and ".join(parts) + " to earn " + describe_reward(reward, currency)


def _screen(
    offers: Sequence[Offer],
    customer: CustomerState,
    basket: Basket,
    ctx: OfferContext,
    catalog: Catalog,
    redemptions_used: Mapping[str, int] | None,
) -> tuple[list[_Candidate], list[tuple[Offer, NearMiss]]]:
    """Eligible offers split into those the basket earns and near misses (with what would earn them)."""
    candidates: list[_Candidate] = []
    misses: list[tuple[Offer, NearMiss]] = []
    for offer in offers:
        if not check_eligibility(offer, customer, ctx, catalog, redemptions_used=redemptions_used).eligible:
            continue
        units, spend = _required(offer.condition, basket.lines)
        met = units >= offer.condition.min_quantity and spend >= offer.condition.min_spend_minor
        has_target = any(_in_category(line, offer.reward.target_category) for line in basket.lines)
        if met and has_target:
            candidates.append(_Candidate(offer, units, spend))
        else:
            hint = _miss_hint(offer, units, spend, has_target, basket.currency)
            misses.append((offer, NearMiss(offer.offer_id, offer.title, hint)))
    return candidates, misses


def _standalone_value(offer: Offer, lines: Sequence[_Line], mpu: int, policy: PointsPolicy) -> int:
    """What the offer would be worth on this basket by itself (scaled, see rewards.value_scaled)."""
    reward = offer.reward
    targets = [line.total for line in lines if _in_category(line.item, reward.target_category)]
    points = discount = 0
    if reward.type == RewardType.POINTS_MULTIPLIER:
        points = sum(multiplier_bonus(base_points(t, mpu, policy), reward.multiplier_percent) for t in targets)
    elif reward.type == RewardType.BONUS_POINTS:
        points = reward.bonus_points
    elif reward.type == RewardType.PERCENT_OFF:
        discount = sum(targets) * reward.percent_off // 100
    elif reward.type == RewardType.AMOUNT_OFF:
        discount = min(reward.amount_off_minor, sum(targets))
    return value_scaled(discount, points, mpu, policy)


def _exclusive_losers(
    candidates: Sequence[_Candidate], lines: Sequence[_Line], mpu: int, policy: PointsPolicy
) -> set[str]:
    """Offer ids that lose their exclusive group to one worth more (tie: the lower offer_id wins)."""
    groups: dict[str, list[Offer]] = {}
    for candidate in candidates:
        if candidate.offer.exclusive_group:
            groups.setdefault(candidate.offer.exclusive_group, []).append(candidate.offer)
    losers: set[str] = set()
    for members in groups.values():
        ranked = sorted(members, key=lambda o: (-_standalone_value(o, lines, mpu, policy), o.offer_id))
        losers.update(offer.offer_id for offer in ranked[1:])
    return losers


def _apply(candidate: _Candidate, lines: list[_Line], order: Sequence[int]) -> _Grant | None:
    """Give one offer's reward to its target lines, in canonical line order; None if nothing is left to take."""
    reward = candidate.offer.reward
    targets = [i for i in order if _in_category(lines[i].item, reward.target_category)]
    grant = _Grant(candidate)
    if reward.type == RewardType.POINTS_MULTIPLIER:
        grant.multiplied = [i for i in targets if not lines[i].claimed]
        if not grant.multiplied:
            return None
        for i in grant.multiplied:
            lines[i].claimed = True
    elif reward.type == RewardType.BONUS_POINTS:
        shares = prorate(reward.bonus_points, [lines[i].total for i in targets])
        grant.bonus = dict(zip(targets, shares, strict=True))
    elif reward.type in (RewardType.PERCENT_OFF, RewardType.AMOUNT_OFF):
        remaining = [lines[i].remaining for i in targets]
        if reward.type == RewardType.PERCENT_OFF:
            amount = sum(remaining) * reward.percent_off // 100
        else:
            amount = min(reward.amount_off_minor, sum(remaining))
        for i, share in zip(targets, prorate(amount, remaining), strict=True):
            share = min(share, lines[i].remaining)  # prorate already guarantees it; a discount never goes negative
            lines[i].discount += share
            grant.discount[i] = share
    else:
        return None
    return grant


def _explain(grant: _Grant, lines: Sequence[_Line], order: Sequence[int], currency: str) -> str:
    offer = grant.candidate.offer
    effects: list[str] = []
    for i in order:
        line_id = lines[i].item.line_id
        if grant.bonus.get(i, 0):
            effects.append(f"+{grant.bonus[i]} points on line {line_id}")
        if grant.discount.get(i, 0):
            effects.append(f"{money.format_minor(grant.discount[i], currency)} off line {line_id}")
    if len(effects) > _EXPLAIN_LINES:
        hidden = len(effects) - _EXPLAIN_LINES
        effects = [*effects[:_EXPLAIN_LINES], f"and {hidden} more {'line' if hidden == 1 else 'lines'}"]
    basket_text = describe_basket_against(offer.condition, grant.candidate.units, grant.candidate.spend_minor, currency)
    effect_text = ", ".join(effects) if effects else "nothing to add on this basket"
    return f"{capitalize(describe_reward(offer.reward, currency))}: {basket_text}; {effect_text}"


def _redeemed_value(basket: Basket, bill_minor: int, mpu: int, policy: PointsPolicy) -> int:
    value = basket.points_to_redeem * mpu // policy.redeem_points_per_unit
    if value > bill_minor:
        raise FailedPrecondition(
            f"points worth {money.format_minor(value, basket.currency)} exceed the bill of "
            f"{money.format_minor(bill_minor, basket.currency)}",
            reason="redeem_exceeds_bill",
        )
    return value


def evaluate_basket(
    catalog: Catalog,
    customer: CustomerState,
    basket: Basket,
    ctx: OfferContext,
    policy: PointsPolicy,
    *,
    redemptions_used: Mapping[str, int] | None = None,
) -> BasketEvaluation:
    """Evaluate `basket` for `customer` (her state before this purchase) at `ctx.now`.

    Offers apply by (-priority, offer_id). In an exclusive group only the offer worth most on this basket by
    itself applies. A line is multiplied by at most one POINTS_MULTIPLIER offer (the first to apply). Discounts
    come before base points, which are earned on what the customer pays; multiplier bonuses use those base points.
    Each line records which offer gave it how many bonus points (`bonus_by_offer`), what a later return takes back.
    A points debt left by an earlier return is repaid first from the points earned; the rest reaches the balance.
    Raises FailedPrecondition for insufficient points or points worth more than the bill.
    """
    _check_policy(policy)
    mpu = _minor_per_unit(basket.currency)
    if customer.currency and basket.currency != customer.currency:
        # Lifetime value and points are kept in one currency per member; mixing would corrupt both.
        raise InvalidArgument("basket.currency", f"must be {customer.currency}, the currency of the customer's profile")
    _check_balance(customer, basket, mpu, policy)
    lines = [_Line(item, item.total_minor) for item in basket.lines]
    order = sorted(range(len(lines)), key=lambda i: _line_key(basket.lines[i]))

    offers = catalog.in_priority_order
    candidates, misses = _screen(offers, customer, basket, ctx, catalog, redemptions_used)
    losers = _exclusive_losers(candidates, lines, mpu, policy)
    grants = [
        grant
        for candidate in candidates
        if candidate.offer.offer_id not in losers and (grant := _apply(candidate, lines, order)) is not None
    ]

    bases = [base_points(line.remaining, mpu, policy) for line in lines]
    for grant in grants:
        for i in grant.multiplied:
            grant.bonus[i] = multiplier_bonus(bases[i], grant.candidate.offer.reward.multiplier_percent)

    results = tuple(
        LineResult(
            line_id=line.item.line_id,
            base_points=bases[i],
            bonus_points=sum(grant.bonus.get(i, 0) for grant in grants),
            discount_minor=line.discount,
            offer_ids=tuple(
                grant.candidate.offer.offer_id for grant in grants if grant.bonus.get(i, 0) or grant.discount.get(i, 0)
            ),
            bonus_by_offer=tuple(
                (grant.candidate.offer.offer_id, grant.bonus[i]) for grant in grants if grant.bonus.get(i, 0)
            ),
        )
        for i, line in enumerate(lines)
    )
    applied = tuple(
        AppliedOffer(
            offer_id=grant.candidate.offer.offer_id,
            title=grant.candidate.offer.title,
            bonus_points=sum(grant.bonus.values()),
            discount_minor=sum(grant.discount.values()),
            explanation=_explain(grant, lines, order, basket.currency),
        )
        for grant in grants
    )
    # A near miss in a group that already paid out would tempt the customer toward nothing extra.
    paid_groups = {grant.candidate.offer.exclusive_group for grant in grants} - {""}
    near = tuple(miss for offer, miss in misses if offer.exclusive_group not in paid_groups)

    subtotal = sum(line.total for line in lines)
    total_discount = sum(line.discount for line in lines)
    redeemed_value = _redeemed_value(basket, subtotal - total_discount, mpu, policy)
    points_earned = sum(result.base_points + result.bonus_points for result in results)
    # A points debt (what a return took back beyond the balance) is repaid first from what this purchase earns.
    debt_before = max(customer.points_debt, 0)
    debt_repaid = min(debt_before, points_earned)
    return BasketEvaluation(
        customer_id=customer.customer_id,
        currency=basket.currency,
        lines=results,
        applied_offers=applied,
        near_misses=near,
        points_earned=points_earned,
        points_redeemed=basket.points_to_redeem,
        redeemed_value_minor=redeemed_value,
        balance_before=customer.points_balance,
        balance_after=customer.points_balance - basket.points_to_redeem + points_earned - debt_repaid,
        subtotal_minor=subtotal,
        total_discount_minor=total_discount,
        total_due_minor=subtotal - total_discount - redeemed_value,
        evaluated_at=ctx.now,
        catalog_version=catalog.version,
        points_debt_before=debt_before,
        points_debt_repaid=debt_repaid,
    )
