"""Protobuf <-> engine dataclasses. The only place that knows both shapes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import IntEnum
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import types_pb2 as pb

from domain import model as m
from domain.errors import InvalidArgument
from domain.pending import release_schedule

E = TypeVar("E", bound=IntEnum)


# google.protobuf.Timestamp's valid range: 0001-01-01 to 9999-12-31 UTC.
_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def to_datetime(ts: Timestamp, present: bool, field: str = "timestamp") -> datetime | None:
    if not present:
        return None
    if not (_MIN_SECONDS <= ts.seconds <= _MAX_SECONDS and 0 <= ts.nanos <= 999_999_999):
        raise InvalidArgument(field, "is not a valid timestamp")
    return ts.ToDatetime(tzinfo=UTC)


def _enum(kind: type[E], value: int, field: str) -> E:
    try:
        return kind(value)
    except ValueError:
        raise InvalidArgument(field, f"unknown value {value}") from None


def set_timestamp(ts: Timestamp, moment: datetime | None) -> None:
    if moment is not None:
        ts.FromDatetime(moment.astimezone(UTC))


def geo_from_pb(point: pb.GeoPoint, present: bool) -> m.GeoPoint | None:
    return m.GeoPoint(point.latitude, point.longitude) if present else None


def basket_from_pb(basket: pb.Basket) -> m.Basket:
    return m.Basket(
        customer_id=basket.customer_id,
        store_id=basket.store_id,
        terminal_id=basket.terminal_id,
        currency=basket.currency.strip().upper(),
        lines=tuple(
            m.LineItem(
                line_id=line.line_id,
                sku=line.sku,
                category=line.category.strip().lower(),
                quantity=line.quantity,
                unit_price_minor=line.unit_price_minor,
            )
            for line in basket.lines
        ),
        points_to_redeem=basket.points_to_redeem,
    )


def _categories(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in values)


_STATUS_FROM_PB = {
    pb.OFFER_STATUS_UNSPECIFIED: m.OfferStatus.ACTIVE,
    pb.OFFER_STATUS_ACTIVE: m.OfferStatus.ACTIVE,
    pb.OFFER_STATUS_DRAFT: m.OfferStatus.DRAFT,
    pb.OFFER_STATUS_PAUSED: m.OfferStatus.PAUSED,
}
_STATUS_TO_PB = {
    m.OfferStatus.ACTIVE: pb.OFFER_STATUS_ACTIVE,
    m.OfferStatus.DRAFT: pb.OFFER_STATUS_DRAFT,
    m.OfferStatus.PAUSED: pb.OFFER_STATUS_PAUSED,
}


def _status(value: pb.OfferStatus.ValueType) -> m.OfferStatus:
    try:
        return _STATUS_FROM_PB[value]
    except KeyError:
        raise InvalidArgument("offer.status", f"unknown value {value}") from None


def _dayparts(parts: Iterable[pb.Daypart]) -> tuple[m.Daypart, ...]:
    # The contract counts weekdays 1 = Monday .. 7 = Sunday (ISO); the engine 0 .. 6 like datetime.weekday().
    parts = list(parts)
    for i, part in enumerate(parts):
        for day in part.weekdays:
            if not 1 <= day <= 7:
                raise InvalidArgument(f"offer.dayparts[{i}].weekdays", "days are 1 (Monday) to 7 (Sunday)")
    return tuple(
        m.Daypart(frozenset(d - 1 for d in part.weekdays), part.start_minute, part.end_minute) for part in parts
    )


def offer_from_pb(offer: pb.Offer) -> m.Offer:
    e, c, r = offer.eligibility, offer.condition, offer.reward
    return m.Offer(
        offer_id=offer.offer_id,
        title=offer.title,
        description=offer.description,
        eligibility=m.Eligibility(
            min_lifetime_value_minor=e.min_lifetime_value_minor,
            tiers=frozenset(e.tiers),
            store_ids=frozenset(e.store_ids),
            max_distance_km=e.max_distance_km,
            purchased_any_categories=_categories(e.purchased_any_categories),
            not_purchased_categories=_categories(e.not_purchased_categories),
            channels=frozenset(_enum(m.Channel, ch, "offer.eligibility.channels") for ch in e.channels),
        ),
        condition=m.Condition(
            required_category=c.required_category.strip().lower(),
            min_quantity=c.min_quantity,
            min_spend_minor=c.min_spend_minor,
        ),
        reward=m.Reward(
            type=_enum(m.RewardType, r.type, "offer.reward.type"),
            target_category=r.target_category.strip().lower(),
            multiplier_percent=r.multiplier_percent,
            bonus_points=r.bonus_points,
            percent_off=r.percent_off,
            amount_off_minor=r.amount_off_minor,
        ),
        starts_at=to_datetime(offer.starts_at, offer.HasField("starts_at"), "offer.starts_at"),
        ends_at=to_datetime(offer.ends_at, offer.HasField("ends_at"), "offer.ends_at"),
        per_customer_limit=offer.per_customer_limit,
        total_redemption_limit=offer.total_redemption_limit,
        priority=offer.priority,
        exclusive_group=offer.exclusive_group,
        archived=offer.archived,
        version=offer.version,
        updated_at=to_datetime(offer.updated_at, offer.HasField("updated_at"), "offer.updated_at"),
        status=_status(offer.status),
        dayparts=_dayparts(offer.dayparts),
    )


def offer_to_pb(offer: m.Offer) -> pb.Offer:
    e, c, r = offer.eligibility, offer.condition, offer.reward
    out = pb.Offer(
        offer_id=offer.offer_id,
        title=offer.title,
        description=offer.description,
        eligibility=pb.Eligibility(
            min_lifetime_value_minor=e.min_lifetime_value_minor,
            tiers=sorted(e.tiers),
            store_ids=sorted(e.store_ids),
            max_distance_km=e.max_distance_km,
            purchased_any_categories=sorted(e.purchased_any_categories),
            not_purchased_categories=sorted(e.not_purchased_categories),
            channels=sorted(pb.Channel.ValueType(ch) for ch in e.channels),
        ),
        condition=pb.Condition(
            required_category=c.required_category, min_quantity=c.min_quantity, min_spend_minor=c.min_spend_minor
        ),
        reward=pb.Reward(
            type=pb.RewardType.ValueType(r.type),
            target_category=r.target_category,
            multiplier_percent=r.multiplier_percent,
            bonus_points=r.bonus_points,
            percent_off=r.percent_off,
            amount_off_minor=r.amount_off_minor,
        ),
        per_customer_limit=offer.per_customer_limit,
        total_redemption_limit=offer.total_redemption_limit,
        priority=offer.priority,
        exclusive_group=offer.exclusive_group,
        archived=offer.archived,
        version=offer.version,
        status=_STATUS_TO_PB[offer.status],
        dayparts=[
            pb.Daypart(
                weekdays=sorted(d + 1 for d in part.weekdays),
                start_minute=part.start_minute,
                end_minute=part.end_minute,
            )
            for part in offer.dayparts
        ],
    )
    set_timestamp(out.starts_at, offer.starts_at)
    set_timestamp(out.ends_at, offer.ends_at)
    set_timestamp(out.updated_at, offer.updated_at)
    return out


def basket_to_pb(basket: m.Basket) -> pb.Basket:
    return pb.Basket(
        customer_id=basket.customer_id,
        store_id=basket.store_id,
        terminal_id=basket.terminal_id,
        currency=basket.currency,
        points_to_redeem=basket.points_to_redeem,
        lines=[
            pb.LineItem(
                line_id=line.line_id,
                sku=line.sku,
                category=line.category,
                quantity=line.quantity,
                unit_price_minor=line.unit_price_minor,
            )
            for line in basket.lines
        ],
    )


def store_from_pb(store: pb.Store) -> m.Store:
    return m.Store(
        store_id=store.store_id,
        name=store.name,
        location=geo_from_pb(store.location, store.HasField("location")),
        timezone=store.timezone or "UTC",
    )


def store_to_pb(store: m.Store) -> pb.Store:
    out = pb.Store(store_id=store.store_id, name=store.name, timezone=store.timezone)
    if store.location is not None:
        out.location.CopyFrom(pb.GeoPoint(latitude=store.location.latitude, longitude=store.location.longitude))
    return out


def customer_from_pb(profile: pb.CustomerProfile) -> m.CustomerState:
    return m.CustomerState(
        customer_id=profile.customer_id,
        display_name=profile.display_name,
        tier=profile.tier,
        currency=profile.currency.strip().upper() or "USD",
        lifetime_value_minor=profile.lifetime_value_minor,
        points_balance=profile.points_balance,
        categories=_categories(profile.categories_purchased),
        home=geo_from_pb(profile.home_location, profile.HasField("home_location")),
        propensity={k.strip().lower(): v for k, v in profile.propensity.items()},
    )  # points_debt is never imported: it only arises from returns


def customer_to_pb(state: m.CustomerState) -> pb.CustomerProfile:
    out = pb.CustomerProfile(
        customer_id=state.customer_id,
        display_name=state.display_name,
        tier=state.tier,
        currency=state.currency,
        lifetime_value_minor=state.lifetime_value_minor,
        points_balance=state.points_balance,
        categories_purchased=sorted(state.categories),
        purchase_count=state.purchase_count,
        propensity=dict(state.propensity),
        points_debt=state.points_debt,
        spend_12m_minor=state.spend_12m_minor,
        points_available=state.points_available,
        points_pending=state.points_balance - state.points_available,
    )
    for release in release_schedule(state.points_balance, state.pending_points):
        set_timestamp(out.pending_points.add(points=release.points).available_at, release.available_at)
    set_timestamp(out.last_purchase_at, state.last_purchase_at)
    if state.home is not None:
        out.home_location.CopyFrom(pb.GeoPoint(latitude=state.home.latitude, longitude=state.home.longitude))
    return out


def evaluation_to_pb(ev: m.BasketEvaluation) -> pb.BasketEvaluation:
    out = pb.BasketEvaluation(
        lines=[
            pb.LineResult(
                line_id=line.line_id,
                base_points=line.base_points,
                bonus_points=line.bonus_points,
                discount_minor=line.discount_minor,
                offer_ids=list(line.offer_ids),
            )
            for line in ev.lines
        ],
        applied_offers=[
            pb.AppliedOffer(
                offer_id=a.offer_id,
                title=a.title,
                bonus_points=a.bonus_points,
                discount_minor=a.discount_minor,
                explanation=a.explanation,
            )
            for a in ev.applied_offers
        ],
        near_misses=[pb.NearMiss(offer_id=n.offer_id, title=n.title, hint=n.hint) for n in ev.near_misses],
        not_applied=[pb.NotApplied(offer_id=n.offer_id, title=n.title, reason=n.reason) for n in ev.not_applied],
        points_earned=ev.points_earned,
        points_redeemed=ev.points_redeemed,
        redeemed_value_minor=ev.redeemed_value_minor,
        balance_before=ev.balance_before,
        balance_after=ev.balance_after,
        subtotal_minor=ev.subtotal_minor,
        total_discount_minor=ev.total_discount_minor,
        total_due_minor=ev.total_due_minor,
        currency=ev.currency,
        customer_id=ev.customer_id,
        catalog_version=ev.catalog_version,
        points_debt_before=ev.points_debt_before,
        points_debt_repaid=ev.points_debt_repaid,
        tier_before=ev.tier_before,
        tier_after=ev.tier_after,
        points_available_before=ev.points_available_before,
    )
    set_timestamp(out.evaluated_at, ev.evaluated_at)
    set_timestamp(out.points_available_at, ev.points_available_at)
    return out


def receipt_to_pb(receipt: m.Receipt) -> svc.PurchaseReceipt:
    out = svc.PurchaseReceipt(
        transaction_id=receipt.transaction_id,
        evaluation=evaluation_to_pb(receipt.evaluation),
        new_categories=list(receipt.new_categories),
        replayed=receipt.replayed,
        applied_offer_terms=[offer_to_pb(o) for o in receipt.offers],
        line_bonuses=[
            svc.LineOfferBonus(line_id=line.line_id, offer_id=offer_id, bonus_points=points)
            for line in receipt.evaluation.lines
            for offer_id, points in line.bonus_by_offer
        ],
    )
    if receipt.basket is not None:
        out.basket.CopyFrom(basket_to_pb(receipt.basket))
    set_timestamp(out.committed_at, receipt.committed_at)
    set_timestamp(out.occurred_at, receipt.occurred_at)
    return out


def facts_from_receipt(receipt: svc.PurchaseReceipt) -> m.PurchaseFacts:
    """What a return needs to know about the purchase, read back from its stored receipt."""
    bonuses: dict[str, list[tuple[str, int]]] = {}
    for share in receipt.line_bonuses:
        bonuses.setdefault(share.line_id, []).append((share.offer_id, share.bonus_points))
    ev = receipt.evaluation
    return m.PurchaseFacts(
        transaction_id=receipt.transaction_id,
        customer_id=ev.customer_id,
        basket=basket_from_pb(receipt.basket),
        lines=tuple(
            m.LineResult(
                line_id=line.line_id,
                base_points=line.base_points,
                bonus_points=line.bonus_points,
                discount_minor=line.discount_minor,
                offer_ids=tuple(line.offer_ids),
                bonus_by_offer=tuple(bonuses.get(line.line_id, ())),
            )
            for line in ev.lines
        ),
        offers={o.offer_id: offer_from_pb(o) for o in receipt.applied_offer_terms},
        points_redeemed=ev.points_redeemed,
        redeemed_value_minor=ev.redeemed_value_minor,
        occurred_at=receipt.occurred_at.ToDatetime(tzinfo=UTC)
        if receipt.HasField("occurred_at")
        else receipt.committed_at.ToDatetime(tzinfo=UTC),
        points_available_at=ev.points_available_at.ToDatetime(tzinfo=UTC)
        if ev.HasField("points_available_at")
        else None,
        new_categories=tuple(receipt.new_categories),
    )


def return_receipt_to_pb(
    outcome: m.ReturnOutcome,
    *,
    return_id: str,
    facts: m.PurchaseFacts,
    voided: bool,
    returned_at: datetime,
    returning_store_id: str = "",
) -> svc.ReturnReceipt:
    out = svc.ReturnReceipt(
        return_id=return_id,
        transaction_id=facts.transaction_id,
        customer_id=facts.customer_id,
        store_id=facts.basket.store_id,
        returning_store_id=returning_store_id,
        lines=[
            svc.ReturnedLine(
                line_id=line.line_id,
                quantity=line.quantity,
                points_reversed=line.points_reversed,
                value_minor=line.value_minor,
            )
            for line in outcome.lines
        ],
        points_reversed=outcome.points_reversed,
        points_refunded=outcome.points_refunded,
        value_minor=outcome.value_minor,
        currency=facts.basket.currency,
        balance_before=outcome.balance_before,
        balance_after=outcome.balance_after,
        points_debt_before=outcome.debt_before,
        points_debt_after=outcome.debt_after,
        offers_lost=list(outcome.offers_lost),
        explanations=list(outcome.explanations),
        voided=voided,
    )
    set_timestamp(out.returned_at, returned_at)
    return out


def active_offer_to_pb(offer: m.ActiveOffer) -> svc.ActiveOffer:
    out = svc.ActiveOffer(
        offer_id=offer.offer_id,
        title=offer.title,
        description=offer.description,
        score=offer.score,
        reason=offer.reason,
        remaining_uses=offer.remaining_uses,
    )
    set_timestamp(out.ends_at, offer.ends_at)
    return out


def tier_to_pb(rule: m.TierRule) -> pb.TierRule:
    return pb.TierRule(
        name=rule.name,
        min_spend_12m_minor=rule.min_spend_12m_minor,
        earn_multiplier_percent=rule.earn_multiplier_percent,
    )


def tier_rules_from_pb(policy: pb.TierPolicy) -> tuple[m.TierRule, ...]:
    return tuple(m.TierRule(t.name, t.min_spend_12m_minor, t.earn_multiplier_percent) for t in policy.tiers)


def tier_policy_to_pb(rules: Iterable[m.TierRule], version: int) -> pb.TierPolicy:
    return pb.TierPolicy(tiers=[tier_to_pb(rule) for rule in rules], version=version)
