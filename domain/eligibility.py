"""Who may use an offer, where and when, with the reasons shown to the customer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain.describe import MINUTES_PER_DAY, dayparts_refusal, format_km, until_phrase
from domain.geo import distance_km
from domain.model import Catalog, CustomerState, Daypart, GeoPoint, Offer, OfferContext, OfferStatus, RewardType, Store

# The rule a refusal comes from (Verdict.rule), in the order check_eligibility applies them.
ARCHIVED = "archived"
STATUS = "status"
WINDOW = "window"
CHANNEL = "channel"
LIFETIME_VALUE = "lifetime_value"
TIER = "tier"
STORE = "store"
DISTANCE = "distance"
HISTORY = "history"
DAYPART = "daypart"
CUSTOMER_LIMIT = "customer_limit"
TOTAL_LIMIT = "total_limit"
# Checked last, so a refusal by one of these means every rule about who she is, where and when has passed: the offer
# would be hers but for the hour, her own uses or the budget. The basket tells her so when it meets the condition.
WOULD_QUALIFY_BUT = frozenset({DAYPART, CUSTOMER_LIMIT, TOTAL_LIMIT})


@dataclass(frozen=True, slots=True)
class Verdict:
    eligible: bool
    reasons: tuple[str, ...]  # human positives for display, e.g. ("you buy dresses", "1.6 km from SoHo")
    refusal: str = ""  # why not, e.g. "lifetime value below 1000000", "already used 1 of 1", "ended"
    rule: str = field(default="", compare=False)  # which rule refused (ARCHIVED, DAYPART, …); "" when eligible


def as_aware(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC, so a naive and an aware time never fail to compare."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def reference_point(customer: CustomerState, ctx: OfferContext, catalog: Catalog) -> GeoPoint | None:
    """The point distances are measured from: the request's location, else her home.

    Not the till's store: "members near a store" means where she lives or is when she asks, so a visitor at the
    till does not qualify by standing in the shop.
    """
    if ctx.location is not None:
        return ctx.location
    return customer.home


def nearest_eligible_store(offer: Offer, point: GeoPoint, catalog: Catalog) -> tuple[Store, float] | None:
    """The closest store the offer is valid at that has a location (ties: lower store_id), and its distance."""
    store_ids = offer.eligibility.store_ids or frozenset(catalog.stores)
    best: tuple[float, str, Store] | None = None
    for store_id in store_ids:
        store = catalog.stores.get(store_id)
        if store is None or store.location is None:
            continue
        candidate = (distance_km(point, store.location), store.store_id, store)
        if best is None or candidate[:2] < best[:2]:
            best = candidate
    return None if best is None else (best[2], best[0])


def _window_refusal(offer: Offer, now: datetime) -> str:
    moment = as_aware(now)
    if offer.starts_at is not None and moment < as_aware(offer.starts_at):
        return "not started"
    if offer.ends_at is not None and moment >= as_aware(offer.ends_at):
        return "ended"
    return ""


def _status_refusal(offer: Offer) -> str:
    if offer.status == OfferStatus.ACTIVE:
        return ""
    try:
        return OfferStatus(offer.status).name.lower()  # "draft", "paused"
    except ValueError:
        return "not active"


def member_tier(customer: CustomerState, catalog: Catalog) -> str:
    """Her tier as offers see it: with a tier policy, the tier she earns at now (also when reached by spend and
    not yet named on her profile); without one, the CRM's."""
    if not catalog.tiers:
        return customer.tier
    from domain.tiers import current_tier  # tiers -> validation -> eligibility: import at call time

    rule = current_tier(customer, catalog.tiers)
    return rule.name if rule else customer.tier


def _profile_refusal(offer: Offer, customer: CustomerState, ctx: OfferContext, catalog: Catalog) -> tuple[str, str]:
    """(rule, refusal) of the cheap checks that need no geometry: archive, status, dates, channel, value, tier,
    store; both empty when they all pass."""
    rules = offer.eligibility
    if offer.archived:
        return ARCHIVED, "archived"
    status = _status_refusal(offer)
    if status:
        return STATUS, status
    window = _window_refusal(offer, ctx.now)
    if window:
        return WINDOW, window
    if rules.channels and ctx.channel not in rules.channels:
        return CHANNEL, "only on " + ", ".join(sorted(channel.name for channel in rules.channels))
    if customer.lifetime_value_minor < rules.min_lifetime_value_minor:
        return LIFETIME_VALUE, f"lifetime value below {rules.min_lifetime_value_minor}"
    # The member's tier is worked out only for offers that ask for one (most don't): not once per offer.
    if rules.tiers and member_tier(customer, catalog) not in rules.tiers:
        return TIER, "only for " + ", ".join(sorted(rules.tiers)) + " members"
    if rules.store_ids and ctx.store_id and ctx.store_id not in rules.store_ids:
        return STORE, f"not offered at store {ctx.store_id}"
    return "", ""


def _distance_check(offer: Offer, customer: CustomerState, ctx: OfferContext, catalog: Catalog) -> tuple[str, str]:
    """(reason, refusal) for max_distance_km; both empty when the offer has no distance rule."""
    limit = offer.eligibility.max_distance_km
    if limit <= 0:
        return "", ""
    point = reference_point(customer, ctx, catalog)
    if point is None:
        return "", "no location"
    nearest = nearest_eligible_store(offer, point, catalog)
    if nearest is None:
        return "", "no eligible store with a location"
    store, distance = nearest
    name = store.name or store.store_id
    if distance > limit:
        return "", f"{format_km(distance)} from {name}, beyond {limit:g} km"
    return f"{format_km(distance)} from {name}", ""


def _history_check(offer: Offer, customer: CustomerState) -> tuple[str, str]:
    """(reason, refusal) for the purchase-history rules."""
    rules = offer.eligibility
    reason = ""
    if rules.purchased_any_categories:
        matching = sorted(rules.purchased_any_categories & customer.categories)
        if not matching:
            return "", "has not bought " + " or ".join(sorted(rules.purchased_any_categories))
        reason = "you buy " + ", ".join(matching)
    bought = sorted(rules.not_purchased_categories & customer.categories)
    if bought:
        return "", "already bought " + ", ".join(bought)
    return reason, ""


def relevant_store(offer: Offer, customer: CustomerState, ctx: OfferContext, catalog: Catalog) -> Store | None:
    """The store whose clock an offer's dayparts follow: the till's store when the request names a known one, else
    the eligible store nearest to her reference point (request location, else home); None (UTC) when neither."""
    if ctx.store_id:
        store = catalog.stores.get(ctx.store_id)
        if store is not None:
            return store
    point = reference_point(customer, ctx, catalog)
    if point is None:
        return None
    nearest = nearest_eligible_store(offer, point, catalog)
    return None if nearest is None else nearest[0]


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return UTC  # validate_store refuses unknown zones; an old record must not break the till


def local_time(moment: datetime, store: Store | None) -> datetime:
    """`moment` on the store's wall clock (UTC without a store). The instant is converted, never offset by hand,
    so daylight saving changes are exact."""
    return as_aware(moment).astimezone(UTC if store is None else _zone(store.timezone))


def _minutes_left(daypart: Daypart, local: datetime) -> int:
    """Minutes until `daypart` closes if the local time falls inside it (its weekday counted from the day the window
    started: Friday 22:00–02:00 covers Saturday 01:00), else 0."""
    minute = local.hour * 60 + local.minute
    start, end = daypart.start_minute, daypart.end_minute
    weekday = local.weekday()
    if start < end:
        inside = start <= minute < end
    elif minute >= start:  # wraps past midnight: the evening part, started today
        inside = True
    else:  # the part after midnight belongs to yesterday's window
        inside = minute < end
        weekday = (weekday - 1) % 7
    if not inside or (daypart.weekdays and weekday not in daypart.weekdays):
        return 0
    return (end - minute) % MINUTES_PER_DAY or MINUTES_PER_DAY


def current_daypart(dayparts: Sequence[Daypart], local: datetime) -> Daypart | None:
    """The daypart `local` falls in (the one open longest when several are; ties: the first), else None."""
    best: tuple[int, Daypart] | None = None
    for daypart in dayparts:
        left = _minutes_left(daypart, local)
        if left and (best is None or left > best[0]):
            best = (left, daypart)
    return None if best is None else best[1]


def _daypart_check(offer: Offer, customer: CustomerState, ctx: OfferContext, catalog: Catalog) -> tuple[str, str]:
    """(reason, refusal) for the offer's dayparts in the relevant store's local time; both empty without dayparts."""
    if not offer.dayparts:
        return "", ""
    local = local_time(ctx.now, relevant_store(offer, customer, ctx, catalog))
    daypart = current_daypart(offer.dayparts, local)
    if daypart is None:
        return "", dayparts_refusal(offer.dayparts)
    return f"happy hour {until_phrase(daypart.end_minute)}", ""


FIXED_PER_BASKET = frozenset({RewardType.BONUS_POINTS, RewardType.AMOUNT_OFF})
"""Rewards a basket earns whole once it meets the condition: splitting a basket in two could earn them twice. A
multiplier or a percentage follows the lines, so a split basket never earns more of it than the whole."""


def limited_per_day(offer: Offer) -> bool:
    """Whether the per-day limit on a member's uses (OfferContext.fixed_reward_uses_per_day) applies to `offer`."""
    return offer.reward.type in FIXED_PER_BASKET


def _limit_refusal(
    offer: Offer, customer: CustomerState, redemptions_used: Mapping[str, int], per_day: int
) -> tuple[str, str]:
    if per_day > 0 and limited_per_day(offer):
        today = customer.offer_uses_today.get(offer.offer_id, 0)
        if today >= per_day:
            return CUSTOMER_LIMIT, f"already used {today} of {per_day} today"
    if offer.per_customer_limit > 0:
        used = customer.offer_uses.get(offer.offer_id, 0)
        if used >= offer.per_customer_limit:
            return CUSTOMER_LIMIT, f"already used {used} of {offer.per_customer_limit}"
    if offer.total_redemption_limit > 0 and redemptions_used.get(offer.offer_id, 0) >= offer.total_redemption_limit:
        return TOTAL_LIMIT, "sold out"
    return "", ""


def check_eligibility(
    offer: Offer,
    customer: CustomerState,
    ctx: OfferContext,
    catalog: Catalog,
    *,
    redemptions_used: Mapping[str, int] | None = None,
) -> Verdict:
    """Whether `customer` may use `offer` now, in `ctx`; the first failing rule gives the refusal and its rule.

    Rules in order: archived, status (only ACTIVE offers), dates, channel, lifetime value, tier, store, distance,
    purchase history, daypart (in the relevant store's local time, see relevant_store), per-customer limit, total
    limit. Reasons list the history match first, then the distance, then until when the daypart lasts.
    """
    rule, refusal = _profile_refusal(offer, customer, ctx, catalog)
    if refusal:
        return Verdict(False, (), refusal, rule)
    near_reason, refusal = _distance_check(offer, customer, ctx, catalog)
    if refusal:
        return Verdict(False, (), refusal, DISTANCE)
    history_reason, refusal = _history_check(offer, customer)
    if refusal:
        return Verdict(False, (), refusal, HISTORY)
    daypart_reason, refusal = _daypart_check(offer, customer, ctx, catalog)
    if refusal:
        return Verdict(False, (), refusal, DAYPART)
    rule, refusal = _limit_refusal(offer, customer, redemptions_used or {}, ctx.fixed_reward_uses_per_day)
    if refusal:
        return Verdict(False, (), refusal, rule)
    reasons = (history_reason, near_reason, daypart_reason)
    return Verdict(True, tuple(reason for reason in reasons if reason))
