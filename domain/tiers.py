"""Loyalty tiers from the admin's policy: which tier a rolling 12-month spend reaches, what a tier adds to the
points a purchase earns, and whether a purchase moves the member up.

A member's current tier is the one her profile names when the policy has it (the CRM or a yearly review set it),
else the highest tier her rolling 12-month spend reaches. She earns at her current tier: every line's base points
times the tier's multiplier, the extra recorded under the pseudo offer id `tier:<name>`. A purchase that takes her
spend past a higher threshold upgrades her from the next purchase on; the till never lowers a tier.

Pure: integers only, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain.errors import InvalidArgument
from domain.model import CustomerState, TierRule
from domain.rewards import multiplier_bonus
from domain.validation import MAX_AMOUNT, RESERVED_OFFER_ID_PREFIX, validate_id

# Tier bonuses are recorded like an offer's bonus under this id prefix; admin offer ids may not use it.
TIER_OFFER_PREFIX = RESERVED_OFFER_ID_PREFIX
MAX_TIER_NAME_LEN = 64
MIN_TIER_MULTIPLIER_PERCENT = 100
MAX_TIER_MULTIPLIER_PERCENT = 1000


def _rank(rule: TierRule) -> tuple[int, int, str]:
    # Thresholds are unique in a validated policy; the rest only keeps an unvalidated one deterministic.
    return (rule.min_spend_12m_minor, rule.earn_multiplier_percent, rule.name)


def tier_offer_id(name: str) -> str:
    """The pseudo offer id a tier's bonus is recorded under: "tier:gold"."""
    return f"{TIER_OFFER_PREFIX}{name}"


def is_tier_offer_id(offer_id: str) -> bool:
    return offer_id.startswith(TIER_OFFER_PREFIX)


def tier_for(spend_12m_minor: int, rules: Sequence[TierRule]) -> TierRule | None:
    """The highest tier (by threshold) whose threshold the spend reaches; None if it reaches none. Any order."""
    reached = [rule for rule in rules if rule.min_spend_12m_minor <= spend_12m_minor]
    return max(reached, key=_rank) if reached else None


def tier_named(name: str, rules: Sequence[TierRule]) -> TierRule | None:
    """The policy's tier called `name` (exact match); None for "" or a name the policy does not have."""
    return next((rule for rule in rules if name and rule.name == name), None)


def current_tier(customer: CustomerState, rules: Sequence[TierRule]) -> TierRule | None:
    """Her tier now: the one her profile names if the policy has it, else the one her 12-month spend reaches."""
    return tier_named(customer.tier, rules) or tier_for(customer.spend_12m_minor, rules)


def tier_reached(before: TierRule | None, spend_12m_after_minor: int, rules: Sequence[TierRule]) -> TierRule | None:
    """Her tier once a purchase brings her 12-month spend to `spend_12m_after_minor`: the tier that spend reaches,
    but never below `before` (no downgrades at the till)."""
    reached = tier_for(spend_12m_after_minor, rules)
    if reached is None or (before is not None and _rank(reached) <= _rank(before)):
        return before
    return reached


def tier_bonus(base_points: int, rule: TierRule | None) -> int:
    """Extra points a line earns at this tier: base × (multiplier − 100) // 100; 0 without a tier or at 100%."""
    if rule is None or rule.earn_multiplier_percent <= 100:
        return 0
    return multiplier_bonus(base_points, rule.earn_multiplier_percent)


def validate_tiers(rules: Sequence[TierRule], field_prefix: str = "tiers") -> None:
    """A tier policy from the admin API; raises InvalidArgument for the first bad field (`tiers[1].name`).

    Names are ids of at most 64 characters and unique; thresholds are 0..10**15 and unique (so every spend
    reaches at most one highest tier); multipliers are 100..1000 percent. Rules may come in any order.
    """
    names: set[str] = set()
    thresholds: set[int] = set()
    for index, rule in enumerate(rules):
        field = f"{field_prefix}[{index}]"
        validate_id(rule.name, f"{field}.name", max_len=MAX_TIER_NAME_LEN)
        if rule.name in names:
            raise InvalidArgument(f"{field}.name", f"duplicate tier name {rule.name!r}")
        names.add(rule.name)
        if not 0 <= rule.min_spend_12m_minor <= MAX_AMOUNT:
            raise InvalidArgument(f"{field}.min_spend_12m_minor", f"must be between 0 and {MAX_AMOUNT}")
        if rule.min_spend_12m_minor in thresholds:
            raise InvalidArgument(
                f"{field}.min_spend_12m_minor", f"another tier already starts at {rule.min_spend_12m_minor}"
            )
        thresholds.add(rule.min_spend_12m_minor)
        if not MIN_TIER_MULTIPLIER_PERCENT <= rule.earn_multiplier_percent <= MAX_TIER_MULTIPLIER_PERCENT:
            raise InvalidArgument(
                f"{field}.earn_multiplier_percent",
                f"must be between {MIN_TIER_MULTIPLIER_PERCENT} and {MAX_TIER_MULTIPLIER_PERCENT}",
            )
