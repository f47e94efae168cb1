"""Input checks at the edge of the engine. Each failure names the exact field, e.g. `basket.lines[2].quantity`."""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from domain import money
from domain.eligibility import as_aware
from domain.errors import InvalidArgument
from domain.model import Basket, CustomerState, GeoPoint, LineItem, Offer, OfferStatus, RewardType, Store

MAX_CATEGORY_LEN = 64
MAX_MULTIPLIER_PERCENT = 10_000
# Money and points stay far below 2**53: Redis Lua compares numbers as doubles, and no sum of them may ever
# overflow a 64-bit HINCRBY half-way through a script.
MAX_AMOUNT = 10**15
MAX_BONUS_POINTS = 10**9
MINUTES_PER_DAY = 24 * 60
# Ids the engine gives to bonuses that are not offers (tier bonuses: "tier:gold", see domain.tiers), recorded
# beside offers' bonuses on receipts; an admin offer may not take one.
RESERVED_OFFER_ID_PREFIX = "tier:"
_KNOWN_STATUSES = frozenset(int(status) for status in OfferStatus)


MAX_ID_CHARS = 128
"""The longest id (customer, store, key, transaction) the service takes."""


def validate_id(value: str, field: str, *, max_len: int = MAX_ID_CHARS) -> str:
    """An identifier: non-blank, at most `max_len` characters, no whitespace or control characters."""
    if not value or not value.strip():
        raise InvalidArgument(field, "must not be empty")
    if len(value) > max_len:
        raise InvalidArgument(field, f"must be at most {max_len} characters")
    # isprintable() is False for control and format characters and for every whitespace except " ".
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise InvalidArgument(field, "must not contain whitespace or control characters")
    return value


def _validate_text(value: str, field: str, *, max_len: int | None = None, blank_ok: bool = False) -> None:
    if not blank_ok and (not value or not value.strip()):
        raise InvalidArgument(field, "must not be blank")
    if max_len is not None and len(value) > max_len:
        raise InvalidArgument(field, f"must be at most {max_len} characters")
    # Control characters (NUL above all) are refused by PostgreSQL text columns: stop them at the door.
    if any(not ch.isprintable() for ch in value):
        raise InvalidArgument(field, "must not contain control characters")


def _validate_amount(value: int, field: str, *, maximum: int = MAX_AMOUNT) -> None:
    if not 0 <= value <= maximum:
        raise InvalidArgument(field, f"must be between 0 and {maximum}")


def _validate_category(value: str, field: str) -> None:
    """A category name that may be empty ("every line"), but not whitespace only."""
    if value and not value.strip():
        raise InvalidArgument(field, "must not be blank")
    _validate_text(value, field, max_len=MAX_CATEGORY_LEN, blank_ok=True)


def _validate_non_negative(value: int, field: str) -> None:
    if value < 0:
        raise InvalidArgument(field, "must not be negative")


def validate_location(point: GeoPoint | None, field: str) -> None:
    """A WGS84 point with finite coordinates in range; None (no location) is accepted."""
    if point is None:
        return
    if not math.isfinite(point.latitude) or not -90.0 <= point.latitude <= 90.0:
        raise InvalidArgument(f"{field}.latitude", "must be between -90 and 90")
    if not math.isfinite(point.longitude) or not -180.0 <= point.longitude <= 180.0:
        raise InvalidArgument(f"{field}.longitude", "must be between -180 and 180")


def _validate_line(line: LineItem, field: str, *, max_quantity: int, max_unit_price_minor: int) -> None:
    validate_id(line.line_id, f"{field}.line_id")
    _validate_text(line.sku, f"{field}.sku", max_len=128)
    _validate_text(line.category, f"{field}.category", max_len=MAX_CATEGORY_LEN)
    if not 1 <= line.quantity <= max_quantity:
        raise InvalidArgument(f"{field}.quantity", f"must be between 1 and {max_quantity}")
    if not 0 <= line.unit_price_minor <= max_unit_price_minor:
        raise InvalidArgument(f"{field}.unit_price_minor", f"must be between 0 and {max_unit_price_minor}")


def validate_basket(
    basket: Basket,
    *,
    max_lines: int,
    max_quantity: int,
    max_unit_price_minor: int,
    field_prefix: str = "basket",
) -> None:
    """A basket as a till sends it; raises InvalidArgument for the first bad field."""
    validate_id(basket.customer_id, f"{field_prefix}.customer_id")
    validate_id(basket.store_id, f"{field_prefix}.store_id")
    if basket.terminal_id:
        validate_id(basket.terminal_id, f"{field_prefix}.terminal_id")
    if not money.is_known_currency(basket.currency):
        raise InvalidArgument(f"{field_prefix}.currency", f"unknown currency {basket.currency!r}")
    if not basket.lines:
        raise InvalidArgument(f"{field_prefix}.lines", "must hold at least one line")
    if len(basket.lines) > max_lines:
        raise InvalidArgument(f"{field_prefix}.lines", f"must hold at most {max_lines} lines")
    seen: set[str] = set()
    for index, line in enumerate(basket.lines):
        field = f"{field_prefix}.lines[{index}]"
        _validate_line(line, field, max_quantity=max_quantity, max_unit_price_minor=max_unit_price_minor)
        if line.line_id in seen:
            raise InvalidArgument(f"{field}.line_id", f"duplicate line_id {line.line_id!r}")
        seen.add(line.line_id)
    _validate_amount(basket.points_to_redeem, f"{field_prefix}.points_to_redeem")
    if sum(line.total_minor for line in basket.lines) > MAX_AMOUNT:
        raise InvalidArgument(f"{field_prefix}.lines", f"basket total must be at most {MAX_AMOUNT} minor units")


def _validate_reward(offer: Offer) -> None:
    reward = offer.reward
    _validate_category(reward.target_category, "offer.reward.target_category")
    if reward.type == RewardType.POINTS_MULTIPLIER:
        if not 100 < reward.multiplier_percent <= MAX_MULTIPLIER_PERCENT:
            raise InvalidArgument(
                "offer.reward.multiplier_percent", f"must be above 100 and at most {MAX_MULTIPLIER_PERCENT}"
            )
    elif reward.type == RewardType.BONUS_POINTS:
        if not 0 < reward.bonus_points <= MAX_BONUS_POINTS:
            raise InvalidArgument("offer.reward.bonus_points", f"must be between 1 and {MAX_BONUS_POINTS}")
    elif reward.type == RewardType.PERCENT_OFF:
        if not 1 <= reward.percent_off <= 100:
            raise InvalidArgument("offer.reward.percent_off", "must be between 1 and 100")
    elif reward.type == RewardType.AMOUNT_OFF:
        if not 0 < reward.amount_off_minor <= MAX_AMOUNT:
            raise InvalidArgument("offer.reward.amount_off_minor", f"must be between 1 and {MAX_AMOUNT}")
    else:
        raise InvalidArgument("offer.reward.type", "must be set")


def _validate_eligibility(offer: Offer) -> None:
    eligibility = offer.eligibility
    _validate_amount(eligibility.min_lifetime_value_minor, "offer.eligibility.min_lifetime_value_minor")
    if not math.isfinite(eligibility.max_distance_km) or eligibility.max_distance_km < 0:
        raise InvalidArgument("offer.eligibility.max_distance_km", "must be a finite number, zero or more")
    for store_id in sorted(eligibility.store_ids):
        validate_id(store_id, "offer.eligibility.store_ids")
    for category in sorted(eligibility.purchased_any_categories):
        _validate_text(category, "offer.eligibility.purchased_any_categories", max_len=MAX_CATEGORY_LEN)
    for category in sorted(eligibility.not_purchased_categories):
        _validate_text(category, "offer.eligibility.not_purchased_categories", max_len=MAX_CATEGORY_LEN)


def _validate_dayparts(offer: Offer) -> None:
    for index, daypart in enumerate(offer.dayparts):
        field = f"offer.dayparts[{index}]"
        if any(not 0 <= day <= 6 for day in daypart.weekdays):
            raise InvalidArgument(f"{field}.weekdays", "each must be between 0 (Monday) and 6 (Sunday)")
        if not 0 <= daypart.start_minute < MINUTES_PER_DAY:
            raise InvalidArgument(f"{field}.start_minute", f"must be between 0 and {MINUTES_PER_DAY - 1}")
        if not 0 < daypart.end_minute <= MINUTES_PER_DAY:
            raise InvalidArgument(f"{field}.end_minute", f"must be between 1 and {MINUTES_PER_DAY}")
        if daypart.start_minute == daypart.end_minute:
            # end < start is a window past midnight; end == start would be either nothing or the whole day.
            raise InvalidArgument(f"{field}.end_minute", "must differ from start_minute")


def validate_offer(offer: Offer) -> None:
    """An offer from the admin API; raises InvalidArgument for the first bad field."""
    validate_id(offer.offer_id, "offer.offer_id")
    if offer.offer_id.startswith(RESERVED_OFFER_ID_PREFIX):
        raise InvalidArgument("offer.offer_id", f"must not start with {RESERVED_OFFER_ID_PREFIX!r} (tier bonuses)")
    _validate_text(offer.title, "offer.title", max_len=200)
    _validate_text(offer.description, "offer.description", max_len=2000, blank_ok=True)
    _validate_reward(offer)
    _validate_category(offer.condition.required_category, "offer.condition.required_category")
    _validate_non_negative(offer.condition.min_quantity, "offer.condition.min_quantity")
    _validate_amount(offer.condition.min_spend_minor, "offer.condition.min_spend_minor")
    _validate_eligibility(offer)
    _validate_non_negative(offer.per_customer_limit, "offer.per_customer_limit")
    _validate_non_negative(offer.total_redemption_limit, "offer.total_redemption_limit")
    starts, ends = offer.starts_at, offer.ends_at
    if starts is not None and ends is not None and as_aware(ends) <= as_aware(starts):
        raise InvalidArgument("offer.ends_at", "must be after starts_at")
    if offer.status not in _KNOWN_STATUSES:
        raise InvalidArgument("offer.status", "must be one of " + ", ".join(status.name for status in OfferStatus))
    _validate_dayparts(offer)


def validate_store(store: Store) -> None:
    """A store from the admin API."""
    validate_id(store.store_id, "store.store_id")
    _validate_text(store.name, "store.name", max_len=200)
    try:
        ZoneInfo(store.timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError/OSError: keys like "../x" or a directory name are rejected before lookup.
        raise InvalidArgument("store.timezone", f"unknown IANA time zone {store.timezone!r}") from None
    validate_location(store.location, "store.location")


def validate_customer(customer: CustomerState) -> None:
    """A customer imported from a CRM."""
    validate_id(customer.customer_id, "customer.customer_id")
    _validate_amount(customer.lifetime_value_minor, "customer.lifetime_value_minor")
    _validate_amount(customer.points_balance, "customer.points_balance")
    if customer.points_balance > MAX_ADJUSTMENT_POINTS:
        # An opening balance is a manual grant of points: no larger than one AdjustPoints may be.
        raise InvalidArgument("customer.points_balance", f"an opening balance is at most {MAX_ADJUSTMENT_POINTS}")
    _validate_text(customer.display_name, "customer.display_name", max_len=256, blank_ok=True)
    _validate_text(customer.tier, "customer.tier", max_len=MAX_CATEGORY_LEN, blank_ok=True)
    _validate_non_negative(customer.purchase_count, "customer.purchase_count")
    _validate_amount(customer.spend_12m_minor, "customer.spend_12m_minor")
    if customer.currency and not money.is_known_currency(customer.currency):
        raise InvalidArgument("customer.currency", f"unknown currency {customer.currency!r}")
    for category in sorted(customer.categories):
        _validate_text(category, "customer.categories", max_len=MAX_CATEGORY_LEN)
    validate_location(customer.home, "customer.home")
    for category, value in sorted(customer.propensity.items()):
        if not math.isfinite(value) or not 0.0 <= value <= 1.0:
            raise InvalidArgument(f"customer.propensity[{category}]", "must be between 0 and 1")


MAX_ADJUSTMENT_POINTS = 10_000_000
"""The most points one manual adjustment may move either way (USD 100,000 at 100 points a dollar)."""
MAX_REASON_LEN = 500


def validate_reason(reason: str, field: str = "reason") -> None:
    """Why an operator moved points or erased a member: required, bounded, printable (kept in SQL and the audit)."""
    _validate_text(reason, field, max_len=MAX_REASON_LEN)


def validate_adjustment(adjustment_id: str, customer_id: str, points: int, reason: str) -> None:
    """A manual points adjustment (AdjustPoints)."""
    validate_id(adjustment_id, "adjustment_id")
    validate_id(customer_id, "customer_id")
    if points == 0 or not -MAX_ADJUSTMENT_POINTS <= points <= MAX_ADJUSTMENT_POINTS:
        raise InvalidArgument(
            "points", f"must be non-zero and between -{MAX_ADJUSTMENT_POINTS} and {MAX_ADJUSTMENT_POINTS}"
        )
    validate_reason(reason)
