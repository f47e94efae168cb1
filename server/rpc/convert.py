"""Protobuf <-> engine dataclasses. The only place that knows both shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import IntEnum
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from posoffers.v1 import offer_service_pb2 as svc
from posoffers.v1 import types_pb2 as pb

from server.engine import model as m
from server.engine.errors import InvalidArgument

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


def _categories(values: object) -> frozenset[str]:
    return frozenset(str(v).strip().lower() for v in values)  # type: ignore[attr-defined]


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
    )


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
    )
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
    )
    set_timestamp(out.evaluated_at, ev.evaluated_at)
    return out


def receipt_to_pb(receipt: m.Receipt) -> svc.PurchaseReceipt:
    out = svc.PurchaseReceipt(
        transaction_id=receipt.transaction_id,
        evaluation=evaluation_to_pb(receipt.evaluation),
        new_categories=list(receipt.new_categories),
        replayed=receipt.replayed,
    )
    set_timestamp(out.committed_at, receipt.committed_at)
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
