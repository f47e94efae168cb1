"""Basket evaluation: which offers a purchase earns, points and discounts per line, near misses, redemption.

Everything here is integer arithmetic and independent of the order of basket lines: every split and tie-break
walks lines in canonical order (by line_id), while results keep the basket's order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from domain import money
from domain.catalog_index import candidate_offers
from domain.describe import (
    add_items_phrase,
    capitalize,
    describe_basket_against,
    describe_reward,
    spend_more_phrase,
    tier_bonus_phrase,
    tier_bonus_title,
    worth_phrase,
)
from domain.eligibility import WOULD_QUALIFY_BUT, check_eligibility
from domain.errors import FailedPrecondition, InvalidArgument
from domain.model import (
    AppliedOffer,
    Basket,
    BasketEvaluation,
    Catalog,
    Condition,
    CustomerState,
    LineItem,
    LineResult,
    NearMiss,
    NotApplied,
    Offer,
    OfferContext,
    PointsPolicy,
    RewardType,
    TierRule,
)
from domain.rewards import base_points, multiplier_bonus, prorate, value_scaled
from domain.tiers import current_tier, tier_bonus, tier_offer_id, tier_reached

# Explanations name at most this many lines, then "and N more lines".
_EXPLAIN_LINES = 5


@dataclass(slots=True)
class _Line:
    item: LineItem
    total: int
    discount: int = 0
    claimed_by: Offer | None = None  # the POINTS_MULTIPLIER offer multiplying it; a line is multiplied at most once

    @property
    def remaining(self) -> int:
        return self.total - self.discount


@dataclass(slots=True)
class _Candidate:
    """An eligible offer whose condition the basket meets and which has at least one target line."""

    offer: Offer
    units: int
    spend_minor: int


@dataclass(frozen=True, slots=True)
class _Worth:
    """What an offer is worth on a basket by itself: discount and points, and both as one comparable number."""

    discount_minor: int
    points: int
    scaled: int  # rewards.value_scaled of the two

    def phrase(self, currency: str, mpu: int, policy: PointsPolicy) -> str:
        points_value = self.points * mpu // policy.redeem_points_per_unit
        return worth_phrase(self.discount_minor, self.points, points_value, currency)


@dataclass(slots=True)
class _Contest:
    """One exclusive group on this basket: the member that applies and the members it beat, with their worth."""

    group: str
    winner: Offer
    winner_worth: _Worth
    losers: list[tuple[Offer, _Worth]] = field(default_factory=list)


@dataclass(slots=True)
class _Grant:
    """What one applied offer gives, by line index."""

    candidate: _Candidate
    bonus: dict[int, int] = field(default_factory=dict)
    discount: dict[int, int] = field(default_factory=dict)
    multiplied: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _TierBonus:
    """What her tier adds: each line's base points times the tier's multiplier, under the pseudo offer `tier:<name>`.
    Not an offer: exclusive groups and multiplier claims never involve it; it stacks with every offer."""

    rule: TierRule | None
    points: tuple[int, ...]  # per line, basket order

    @property
    def offer_id(self) -> str:
        return tier_offer_id(self.rule.name) if self.rule else ""

    def on_line(self, i: int) -> tuple[tuple[str, int], ...]:
        return ((self.offer_id, self.points[i]),) if self.points[i] else ()

    def applied(self) -> tuple[AppliedOffer, ...]:
        total = sum(self.points)
        if self.rule is None or not total:
            return ()
        name, multiplier = self.rule.name, self.rule.earn_multiplier_percent
        return (
            AppliedOffer(self.offer_id, tier_bonus_title(name), total, 0, tier_bonus_phrase(name, multiplier, total)),
        )


def _tier_standing(catalog: Catalog, customer: CustomerState, net_minor: int) -> tuple[TierRule | None, str, str]:
    """The tier she earns at now, and the names of her tier before and after this purchase (its net value added to
    her 12-month spend; never lower than before). Without a tier policy: her profile's tier, unchanged."""
    if not catalog.tiers:
        return None, customer.tier, customer.tier
    before = current_tier(customer, catalog.tiers)
    after = tier_reached(before, customer.spend_12m_minor + net_minor, catalog.tiers)
    return before, before.name if before else "", after.name if after else ""


def _line_result(i: int, line: _Line, base: int, grants: Sequence[_Grant], tier: _TierBonus) -> LineResult:
    """One line's points and discount; its tier bonus comes first among its bonuses."""
    offer_bonus = tuple((grant.candidate.offer.offer_id, grant.bonus[i]) for grant in grants if grant.bonus.get(i, 0))
    touched = tuple(
        grant.candidate.offer.offer_id for grant in grants if grant.bonus.get(i, 0) or grant.discount.get(i, 0)
    )
    bonus_by_offer = tier.on_line(i) + offer_bonus
    return LineResult(
        line_id=line.item.line_id,
        base_points=base,
        bonus_points=sum(points for _, points in bonus_by_offer),
        discount_minor=line.discount,
        offer_ids=tuple(offer_id for offer_id, _ in tier.on_line(i)) + touched,
        bonus_by_offer=bonus_by_offer,
    )


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
    available = customer.points_available
    if basket.points_to_redeem > available:
        pending = customer.points_balance - available
        held = f" ({pending} more pending until the returns window ends)" if pending else ""
        raise FailedPrecondition(
            f"insufficient points: {available} available{held}, asked to redeem {basket.points_to_redeem}",
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


@dataclass(slots=True)
class _Screened:
    candidates: list[_Candidate] = field(default_factory=list)
    misses: list[tuple[Offer, NearMiss]] = field(default_factory=list)
    # Offers the basket would earn but for their daypart, her own uses or the total budget: (offer, refusal).
    held_back: list[tuple[Offer, str]] = field(default_factory=list)


def _screen(
    offers: Sequence[Offer],
    customer: CustomerState,
    basket: Basket,
    ctx: OfferContext,
    catalog: Catalog,
    redemptions_used: Mapping[str, int] | None,
) -> _Screened:
    """Eligible offers split into those the basket earns and near misses (with what would earn them), plus the
    offers the basket would earn that are held back by a WOULD_QUALIFY_BUT rule. Other ineligible offers vanish."""
    screened = _Screened()
    for offer in offers:
        verdict = check_eligibility(offer, customer, ctx, catalog, redemptions_used=redemptions_used)
        if not verdict.eligible and verdict.rule not in WOULD_QUALIFY_BUT:
            continue
        units, spend = _required(offer.condition, basket.lines)
        met = units >= offer.condition.min_quantity and spend >= offer.condition.min_spend_minor
        has_target = any(_in_category(line, offer.reward.target_category) for line in basket.lines)
        if not verdict.eligible:
            if met and has_target:
                screened.held_back.append((offer, verdict.refusal))
        elif met and has_target:
            screened.candidates.append(_Candidate(offer, units, spend))
        else:
            hint = _miss_hint(offer, units, spend, has_target, basket.currency)
            screened.misses.append((offer, NearMiss(offer.offer_id, offer.title, hint)))
    return screened


def _standalone_worth(offer: Offer, lines: Sequence[_Line], mpu: int, policy: PointsPolicy) -> _Worth:
    """What the offer would be worth on this basket by itself (list prices, before any other offer)."""
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
    return _Worth(discount, points, value_scaled(discount, points, mpu, policy))


def _exclusive_contests(
    candidates: Sequence[_Candidate], lines: Sequence[_Line], mpu: int, policy: PointsPolicy
) -> dict[str, _Contest]:
    """Per exclusive group: the member worth most on this basket by itself (tie: the lower offer_id) and the
    members it beat, best first."""
    groups: dict[str, list[tuple[Offer, _Worth]]] = {}
    for candidate in candidates:
        offer = candidate.offer
        if offer.exclusive_group:
            groups.setdefault(offer.exclusive_group, []).append((offer, _standalone_worth(offer, lines, mpu, policy)))
    contests: dict[str, _Contest] = {}
    for group, members in groups.items():
        (winner, worth), *losers = sorted(members, key=lambda member: (-member[1].scaled, member[0].offer_id))
        contests[group] = _Contest(group, winner, worth, losers)
    return contests


def _apply(candidate: _Candidate, lines: list[_Line], order: Sequence[int]) -> _Grant | None:
    """Give one offer's reward to its target lines, in canonical line order; None if nothing is left to take."""
    reward = candidate.offer.reward
    targets = [i for i in order if _in_category(lines[i].item, reward.target_category)]
    grant = _Grant(candidate)
    if reward.type == RewardType.POINTS_MULTIPLIER:
        grant.multiplied = [i for i in targets if lines[i].claimed_by is None]
        if not grant.multiplied:
            return None
        for i in grant.multiplied:
            lines[i].claimed_by = candidate.offer
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


def _explain(grant: _Grant, lines: Sequence[_Line], order: Sequence[int], currency: str, won: str = "") -> str:
    """What the offer gave, line by line; `won` (what it beat in its exclusive group) is appended when given."""
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
    text = f"{capitalize(describe_reward(offer.reward, currency))}: {basket_text}; {effect_text}"
    return f"{text}; {won}" if won else text


def _won_phrase(contest: _Contest, currency: str, mpu: int, policy: PointsPolicy) -> str:
    """ "won exclusive group g1 over 'Y' (USD 20.00 off vs 500 points worth USD 5.00)"."""
    mine = contest.winner_worth.phrase(currency, mpu, policy)
    beaten = " and ".join(
        f"'{loser.title}' ({mine} vs {worth.phrase(currency, mpu, policy)})" for loser, worth in contest.losers
    )
    return f"won exclusive group {contest.group} over {beaten}"


def _lost_phrase(contest: _Contest, worth: _Worth, currency: str, mpu: int, policy: PointsPolicy) -> str:
    """ "exclusive group g1: 'X' is worth more to the customer (USD 20.00 off vs 500 points worth USD 5.00)"."""
    winner = contest.winner_worth
    how = "is worth more to the customer" if winner.scaled > worth.scaled else "is worth as much and wins the tie"
    versus = f"{winner.phrase(currency, mpu, policy)} vs {worth.phrase(currency, mpu, policy)}"
    return f"exclusive group {contest.group}: '{contest.winner.title}' {how} ({versus})"


def _claimed_phrase(candidate: _Candidate, lines: Sequence[_Line], grants: Sequence[_Grant]) -> str:
    """ "its lines already earn 'Y'": a multiplier whose every target line another multiplier took first."""
    targets = {i for i, line in enumerate(lines) if _in_category(line.item, candidate.offer.reward.target_category)}
    claimers = [grant.candidate.offer.title for grant in grants if targets.intersection(grant.multiplied)]
    return "its lines already earn " + " and ".join(f"'{title}'" for title in claimers)


def redeemed_shares(redeemed_value_minor: int, lines: Sequence[LineItem], discounts: Sequence[int]) -> list[int]:
    """Each line's part (basket order) of the value paid with points, in proportion to what the line costs after
    discounts: exact (the shares sum to `redeemed_value_minor`), largest remainder, ties by line_id. No share
    exceeds its line's cost when the value does not exceed the bill."""
    order = sorted(range(len(lines)), key=lambda i: _line_key(lines[i]))
    weights = [lines[i].total_minor - discounts[i] for i in order]
    shares = [0] * len(lines)
    for i, share in zip(order, prorate(redeemed_value_minor, weights), strict=True):
        shares[i] = share
    return shares


def _redeemed_value(basket: Basket, bill_minor: int, mpu: int, policy: PointsPolicy) -> int:
    value = basket.points_to_redeem * mpu // policy.redeem_points_per_unit
    if value > bill_minor:
        raise FailedPrecondition(
            f"points worth {money.format_minor(value, basket.currency)} exceed the bill of "
            f"{money.format_minor(bill_minor, basket.currency)}",
            reason="redeem_exceeds_bill",
        )
    return value


def _checked_minor_per_unit(customer: CustomerState, basket: Basket, policy: PointsPolicy) -> int:
    """Minor units per unit of the basket's currency, once the policy, the currency and the points to redeem check
    out (ValueError, InvalidArgument or FailedPrecondition otherwise)."""
    _check_policy(policy)
    mpu = _minor_per_unit(basket.currency)
    if customer.currency and basket.currency != customer.currency:
        # Lifetime value and points are kept in one currency per member; mixing would corrupt both.
        raise InvalidArgument("basket.currency", f"must be {customer.currency}, the currency of the customer's profile")
    _check_balance(customer, basket, mpu, policy)
    return mpu


def _apply_offers(
    screened: _Screened,
    contests: Mapping[str, _Contest],
    lines: list[_Line],
    order: Sequence[int],
    currency: str,
    mpu: int,
    policy: PointsPolicy,
) -> tuple[list[_Grant], dict[str, str]]:
    """Apply the candidates in priority order, but not those that lost their exclusive group: what each applied offer
    gives, and why each offer the basket earns did not apply (by offer_id)."""
    lost = {
        loser.offer_id: _lost_phrase(contest, worth, currency, mpu, policy)
        for contest in contests.values()
        for loser, worth in contest.losers
    }
    not_applied: dict[str, str] = dict(lost)
    grants: list[_Grant] = []
    for candidate in screened.candidates:
        if candidate.offer.offer_id in lost:
            continue
        grant = _apply(candidate, lines, order)
        if grant is not None:
            grants.append(grant)
        elif candidate.offer.reward.type == RewardType.POINTS_MULTIPLIER:
            not_applied[candidate.offer.offer_id] = _claimed_phrase(candidate, lines, grants)
    for offer, refusal in screened.held_back:
        not_applied[offer.offer_id] = refusal
    return grants, not_applied


@dataclass(frozen=True, slots=True)
class _Settled:
    """The bill once discounts are in: what is paid with points, and each line's base points on the rest."""

    subtotal_minor: int
    discount_minor: int
    redeemed_value_minor: int
    bases: tuple[int, ...]  # per line, basket order

    @property
    def net_minor(self) -> int:
        """The purchase's net value: subtotal less discounts (what counts toward her tier)."""
        return self.subtotal_minor - self.discount_minor


def _settle(basket: Basket, lines: Sequence[_Line], mpu: int, policy: PointsPolicy) -> _Settled:
    """Base points are earned on what the customer pays in money: each line's total less its discount and less its
    share of the value paid with points. FailedPrecondition when the points are worth more than the bill."""
    subtotal = sum(line.total for line in lines)
    total_discount = sum(line.discount for line in lines)
    redeemed_value = _redeemed_value(basket, subtotal - total_discount, mpu, policy)
    shares = redeemed_shares(redeemed_value, basket.lines, [line.discount for line in lines])
    bases = tuple(base_points(line.remaining - share, mpu, policy) for line, share in zip(lines, shares, strict=True))
    return _Settled(subtotal, total_discount, redeemed_value, bases)


def _multiply(grants: Sequence[_Grant], bases: Sequence[int]) -> None:
    """Multiplier bonuses, on the base points of the lines each multiplier claimed."""
    for grant in grants:
        for i in grant.multiplied:
            grant.bonus[i] = multiplier_bonus(bases[i], grant.candidate.offer.reward.multiplier_percent)


def _applied_offers(
    grants: Sequence[_Grant],
    contests: Mapping[str, _Contest],
    lines: Sequence[_Line],
    order: Sequence[int],
    currency: str,
    mpu: int,
    policy: PointsPolicy,
) -> tuple[AppliedOffer, ...]:
    """The offers that applied, in the order they applied, each with what it gave and what it beat."""
    won = {
        contest.winner.offer_id: _won_phrase(contest, currency, mpu, policy)
        for contest in contests.values()
        if contest.losers
    }
    return tuple(
        AppliedOffer(
            offer_id=grant.candidate.offer.offer_id,
            title=grant.candidate.offer.title,
            bonus_points=sum(grant.bonus.values()),
            discount_minor=sum(grant.discount.values()),
            explanation=_explain(grant, lines, order, currency, won.get(grant.candidate.offer.offer_id, "")),
        )
        for grant in grants
    )


def _near_misses(misses: Sequence[tuple[Offer, NearMiss]], grants: Sequence[_Grant]) -> tuple[NearMiss, ...]:
    # A near miss in a group that already paid out would tempt the customer toward nothing extra.
    paid_groups = {grant.candidate.offer.exclusive_group for grant in grants} - {""}
    return tuple(miss for offer, miss in misses if offer.exclusive_group not in paid_groups)


def _why_not(offers: Sequence[Offer], not_applied: Mapping[str, str]) -> tuple[NotApplied, ...]:
    """The offers that did not apply, in priority order, with why."""
    return tuple(
        NotApplied(offer.offer_id, offer.title, not_applied[offer.offer_id])
        for offer in offers
        if offer.offer_id in not_applied
    )


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What the evaluation tells about offers and tiers."""

    lines: tuple[LineResult, ...]
    applied: tuple[AppliedOffer, ...]
    near: tuple[NearMiss, ...]
    not_applied: tuple[NotApplied, ...]
    tier_before: str
    tier_after: str


def _evaluation(
    customer: CustomerState, basket: Basket, ctx: OfferContext, catalog: Catalog, settled: _Settled, outcome: _Outcome
) -> BasketEvaluation:
    """The evaluation with its points and totals."""
    points_earned = sum(result.base_points + result.bonus_points for result in outcome.lines)
    # A points debt (what a return took back beyond the balance) is repaid first from what this purchase earns.
    debt_before = max(customer.points_debt, 0)
    debt_repaid = min(debt_before, points_earned)
    return BasketEvaluation(
        customer_id=customer.customer_id,
        currency=basket.currency,
        lines=outcome.lines,
        applied_offers=outcome.applied,
        near_misses=outcome.near,
        points_earned=points_earned,
        points_redeemed=basket.points_to_redeem,
        redeemed_value_minor=settled.redeemed_value_minor,
        balance_before=customer.points_balance,
        balance_after=customer.points_balance - basket.points_to_redeem + points_earned - debt_repaid,
        subtotal_minor=settled.subtotal_minor,
        total_discount_minor=settled.discount_minor,
        total_due_minor=settled.net_minor - settled.redeemed_value_minor,
        evaluated_at=ctx.now,
        catalog_version=catalog.version,
        points_debt_before=debt_before,
        points_debt_repaid=debt_repaid,
        not_applied=outcome.not_applied,
        tier_before=outcome.tier_before,
        tier_after=outcome.tier_after,
        points_available_before=customer.points_available,
    )


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
    come before base points, which are earned on what the customer pays in money: the line's total less its
    discount and less its share of the value paid with points (see redeemed_shares); multiplier bonuses use those
    base points. Each line records which offer gave it how many bonus points (`bonus_by_offer`), what a later return
    takes back. A points debt left by an earlier return is repaid first from the points earned; the rest reaches
    the balance.

    `not_applied` says, in priority order, why offers the basket earns did not apply: lost their exclusive group,
    their lines already multiplied, or held back by their daypart, her own uses or the total budget (only when the
    basket meets their condition). An offer the basket misses stays a near miss only.

    With a tier policy (`catalog.tiers`) she earns at her current tier (her profile's tier if the policy has it, else
    the one her 12-month spend reaches): each line gets base × (multiplier − 100) // 100 more points, recorded
    under the pseudo offer `tier:<name>` (in `bonus_by_offer`, `offer_ids` and, first, `applied_offers`), on top of
    any offer. `tier_after` is the tier her spend reaches with this purchase's net value (subtotal less discounts),
    never lower than `tier_before`; an upgrade counts from her next purchase. Without a policy both are her
    profile's tier and nothing is added.
    Raises FailedPrecondition for insufficient points or points worth more than the bill.
    """
    mpu = _checked_minor_per_unit(customer, basket, policy)
    lines = [_Line(item, item.total_minor) for item in basket.lines]
    order = sorted(range(len(lines)), key=lambda i: _line_key(basket.lines[i]))
    offers = candidate_offers(catalog, customer, ctx, priority_order=True)
    screened = _screen(offers, customer, basket, ctx, catalog, redemptions_used)
    contests = _exclusive_contests(screened.candidates, lines, mpu, policy)
    grants, not_applied = _apply_offers(screened, contests, lines, order, basket.currency, mpu, policy)
    settled = _settle(basket, lines, mpu, policy)
    _multiply(grants, settled.bases)
    tier_rule, tier_before, tier_after = _tier_standing(catalog, customer, settled.net_minor)
    tier = _TierBonus(tier_rule, tuple(tier_bonus(base, tier_rule) for base in settled.bases))
    outcome = _Outcome(
        lines=tuple(_line_result(i, line, settled.bases[i], grants, tier) for i, line in enumerate(lines)),
        applied=tier.applied() + _applied_offers(grants, contests, lines, order, basket.currency, mpu, policy),
        near=_near_misses(screened.misses, grants),
        not_applied=_why_not(offers, not_applied),
        tier_before=tier_before,
        tier_after=tier_after,
    )
    return _evaluation(customer, basket, ctx, catalog, settled, outcome)
