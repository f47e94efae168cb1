"""Who may use an offer, where and when, with the reasons shown to the customer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from server.engine.describe import format_km
from server.engine.geo import distance_km
from server.engine.model import Catalog, CustomerState, GeoPoint, Offer, OfferContext, Store


@dataclass(frozen=True, slots=True)
class Verdict:
    eligible: bool
    reasons: tuple[str, ...]  # human positives for display, e.g. ("you buy dresses", "1.6 km from SoHo")
    refusal: str = ""  # why not, e.g. "lifetime value below 1000000", "already used 1 of 1", "ended"


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


def _profile_refusal(offer: Offer, customer: CustomerState, ctx: OfferContext) -> str:
    """The cheap checks that need no geometry: archive, time window, channel, value, tier, store."""
    rules = offer.eligibility
    if offer.archived:
        return "archived"
    window = _window_refusal(offer, ctx.now)
    if window:
        return window
    if rules.channels and ctx.channel not in rules.channels:
        return "only on " + ", ".join(sorted(channel.name for channel in rules.channels))
    if customer.lifetime_value_minor < rules.min_lifetime_value_minor:
        return f"lifetime value below {rules.min_lifetime_value_minor}"
    if rules.tiers and customer.tier not in rules.tiers:
        return "only for " + ", ".join(sorted(rules.tiers)) + " members"
    if rules.store_ids and ctx.store_id and ctx.store_id not in rules.store_ids:
        return f"not offered at store {ctx.store_id}"
    return ""


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


def _limit_refusal(offer: Offer, customer: CustomerState, redemptions_used: Mapping[str, int]) -> str:
    if offer.per_customer_limit > 0:
        used = customer.offer_uses.get(offer.offer_id, 0)
        if used >= offer.per_customer_limit:
            return f"already used {used} of {offer.per_customer_limit}"
    if offer.total_redemption_limit > 0 and redemptions_used.get(offer.offer_id, 0) >= offer.total_redemption_limit:
        return "sold out"
    return ""


def check_eligibility(
    offer: Offer,
    customer: CustomerState,
    ctx: OfferContext,
    catalog: Catalog,
    *,
    redemptions_used: Mapping[str, int] | None = None,
) -> Verdict:
    """Whether `customer` may use `offer` now, in `ctx`; the first failing rule gives the refusal.

    Rules in order: archived, time window, channel, lifetime value, tier, store, distance, purchase history,
    per-customer limit, total limit. Reasons list the history match first, then the distance.
    """
    refusal = _profile_refusal(offer, customer, ctx)
    if refusal:
        return Verdict(False, (), refusal)
    near_reason, refusal = _distance_check(offer, customer, ctx, catalog)
    if refusal:
        return Verdict(False, (), refusal)
    history_reason, refusal = _history_check(offer, customer)
    if refusal:
        return Verdict(False, (), refusal)
    refusal = _limit_refusal(offer, customer, redemptions_used or {})
    if refusal:
        return Verdict(False, (), refusal)
    return Verdict(True, tuple(reason for reason in (history_reason, near_reason) if reason))
