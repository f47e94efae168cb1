"""The catalog index changes which offers are looked at, never what a customer sees: on random catalogs, members and
baskets, listing and evaluation with the index equal the plain scan of every offer (the oracle)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.basket import evaluate_basket
from domain.catalog_index import build_index, candidate_offers
from domain.model import (
    Basket,
    Catalog,
    Channel,
    Condition,
    CustomerState,
    Daypart,
    Eligibility,
    GeoPoint,
    LineItem,
    Offer,
    OfferContext,
    OfferStatus,
    PointsPolicy,
    Reward,
    RewardType,
    Store,
)
from domain.ranking import list_active_offers
from tests.unit import TIERS, samantha

CATEGORIES = ("dresses", "shoes", "bags", "hats", "toys", "books")
TIER_NAMES = ("silver", "gold", "platinum", "staff")
NOW = datetime(2026, 3, 27, 21, 30, tzinfo=UTC)  # a Friday evening; DST starts in Europe that weekend
ZONES = ("UTC", "America/New_York", "Asia/Tokyo", "Europe/London")
POLICY = PointsPolicy()
SAME = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _point(rng: random.Random) -> GeoPoint:
    return GeoPoint(40.70 + rng.uniform(0, 0.25), -74.05 + rng.uniform(0, 0.25))  # a ~25 km square of New York


def _stores(rng: random.Random) -> dict[str, Store]:
    stores = {}
    for n in range(rng.randint(1, 8)):
        location = _point(rng) if rng.random() < 0.8 else None
        stores[f"s{n}"] = Store(f"s{n}", f"Store {n}", location, rng.choice(ZONES))
    return stores


def _some(rng: random.Random, pool: tuple[str, ...], chance: float) -> frozenset[str]:
    if rng.random() >= chance:
        return frozenset()
    return frozenset(rng.sample(pool, rng.randint(1, 2)))


def _moment(rng: random.Random, boundaries: list[datetime]) -> datetime | None:
    roll = rng.random()
    if roll < 0.4:
        return None
    if roll < 0.55 and boundaries:
        return rng.choice(boundaries)  # exactly at another offer's boundary
    moment = NOW + timedelta(hours=rng.randint(-72, 72), minutes=rng.choice((0, 30)))
    if roll < 0.65:
        return moment.replace(tzinfo=None)  # naive: taken as UTC
    if roll < 0.75:
        return moment.astimezone(timezone(timedelta(hours=rng.randint(-10, 10))))
    return moment


def _eligibility(rng: random.Random, stores: dict[str, Store]) -> Eligibility:
    store_pool = (*stores, "ghost")
    return Eligibility(
        min_lifetime_value_minor=rng.choice((0, 0, 0, 50_000, 1_000_000, 3_000_000)),
        tiers=_some(rng, TIER_NAMES, 0.25),
        store_ids=_some(rng, store_pool, 0.3),
        max_distance_km=rng.choice((0.0, 0.0, 0.0, 1.0, 5.0, 12.5, 40.0)),
        purchased_any_categories=_some(rng, CATEGORIES, 0.25),
        not_purchased_categories=_some(rng, CATEGORIES, 0.2),
        channels=frozenset(rng.sample(list(Channel)[1:], rng.randint(1, 2))) if rng.random() < 0.3 else frozenset(),
    )


def _daypart(rng: random.Random) -> Daypart:
    weekdays = frozenset(rng.sample(range(7), rng.randint(1, 7))) if rng.random() < 0.5 else frozenset()
    return Daypart(weekdays, rng.randrange(0, 1440, 30), rng.randrange(30, 1441, 30))


def _offer(n: int, rng: random.Random, stores: dict[str, Store], boundaries: list[datetime]) -> Offer:
    kind = rng.choice(list(RewardType)[1:])
    starts_at, ends_at = _moment(rng, boundaries), _moment(rng, boundaries)
    boundaries.extend(moment for moment in (starts_at, ends_at) if moment is not None)
    return Offer(
        offer_id=f"o{n:03d}",
        title=f"Offer {n}",
        description="",
        eligibility=_eligibility(rng, stores),
        condition=Condition(rng.choice(("", *CATEGORIES)), rng.choice((0, 1, 2, 3)), rng.choice((0, 0, 5_000, 20_000))),
        reward=Reward(kind, rng.choice(("", *CATEGORIES)), 200, 150, 10, 1_000),
        starts_at=starts_at,
        ends_at=ends_at,
        per_customer_limit=rng.choice((0, 0, 1, 2)),
        total_redemption_limit=rng.choice((0, 0, 0, 5)),
        priority=rng.choice((0, 0, 1, 5)),
        exclusive_group=rng.choice(("", "", "", "g1", "g2")),
        archived=rng.random() < 0.05,
        status=rng.choice((OfferStatus.ACTIVE,) * 6 + (OfferStatus.DRAFT, OfferStatus.PAUSED)),
        dayparts=tuple(_daypart(rng) for _ in range(rng.choice((0, 0, 0, 1, 2)))),
    )


def _catalogs(rng: random.Random, size: int) -> tuple[Catalog, Catalog]:
    """(indexed, plain) snapshots of the same random offers and stores."""
    stores = _stores(rng)
    boundaries: list[datetime] = []
    offers = tuple(_offer(n, rng, stores, boundaries) for n in range(size))
    tiers = TIERS if rng.random() < 0.5 else ()
    plain = Catalog(version=1, offers=offers, stores=stores, tiers=tiers)
    return replace(plain, index=build_index(offers, stores)), plain


def _member(rng: random.Random, catalog: Catalog) -> CustomerState:
    used = {offer.offer_id: rng.randint(0, 2) for offer in rng.sample(catalog.offers, min(10, len(catalog.offers)))}
    return samantha(
        tier=rng.choice(("", *TIER_NAMES)),
        lifetime_value_minor=rng.choice((0, 60_000, 1_000_000, 4_000_000)),
        points_balance=rng.randint(0, 5_000),
        categories=frozenset(rng.sample(CATEGORIES, rng.randint(0, 4))),
        home=_point(rng) if rng.random() < 0.7 else None,
        propensity={category: rng.random() for category in rng.sample(CATEGORIES, 2)},
        offer_uses=used,
        offer_uses_today={offer_id: min(uses, 1) for offer_id, uses in used.items()},
        spend_12m_minor=rng.choice((0, 2_000_000, 6_000_000)),
    )


def _used(rng: random.Random, catalog: Catalog) -> dict[str, int]:
    return {offer.offer_id: rng.randint(0, 6) for offer in catalog.offers if rng.random() < 0.2}


def _now(rng: random.Random, catalog: Catalog) -> datetime:
    edges = [moment for offer in catalog.offers for moment in (offer.starts_at, offer.ends_at) if moment is not None]
    if edges and rng.random() < 0.3:
        return edges[rng.randrange(len(edges))].replace(tzinfo=UTC) if rng.random() < 0.1 else edges[0]
    return NOW + timedelta(hours=rng.randint(-80, 80), minutes=rng.randrange(60))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


worlds = st.tuples(st.integers(0, 2**32), st.integers(0, 400))


@SAME
@given(worlds)
def test_listing_with_the_index_equals_the_scan(world: tuple[int, int]) -> None:
    rng = random.Random(world[0])
    indexed, plain = _catalogs(rng, world[1])
    for _ in range(5):
        member, used = _member(rng, plain), _used(rng, plain)
        ctx = OfferContext(
            now=_aware(_now(rng, plain)),
            channel=rng.choice(list(Channel)),
            store_id=rng.choice(("", *plain.stores)),
            location=_point(rng) if rng.random() < 0.4 else None,
            fixed_reward_uses_per_day=rng.choice((0, 1)),
        )
        size = rng.choice((3, 1_000))
        expected = list_active_offers(plain, member, ctx, page_size=size, policy=POLICY, redemptions_used=used)
        got = list_active_offers(indexed, member, ctx, page_size=size, policy=POLICY, redemptions_used=used)
        assert got == expected


def _basket(rng: random.Random, store_id: str) -> Basket:
    lines = tuple(
        LineItem(f"l{n}", f"sku-{n}", rng.choice(CATEGORIES), rng.randint(1, 4), rng.randint(0, 80_00))
        for n in range(rng.randint(1, 8))
    )
    return Basket("samantha", store_id, "till-1", "USD", lines)


@SAME
@given(worlds)
def test_evaluation_with_the_index_equals_the_scan(world: tuple[int, int]) -> None:
    rng = random.Random(world[0])
    indexed, plain = _catalogs(rng, world[1])
    for _ in range(5):
        member, used = _member(rng, plain), _used(rng, plain)
        basket = _basket(rng, rng.choice(list(plain.stores)))
        ctx = OfferContext(
            now=_aware(_now(rng, plain)),
            channel=Channel.POS,
            store_id=basket.store_id,
            fixed_reward_uses_per_day=rng.choice((0, 1)),
        )
        expected = evaluate_basket(plain, member, basket, ctx, POLICY, redemptions_used=used)
        got = evaluate_basket(indexed, member, basket, ctx, POLICY, redemptions_used=used)
        assert got == expected


def test_the_index_leaves_out_offers_that_cannot_apply() -> None:
    """What the index is for: an offer of another store, one ended and one for another tier are not even looked at;
    the offer that could apply is."""
    rng = random.Random(7)
    stores = {"s0": Store("s0", "Zero"), "s1": Store("s1", "One")}
    base = _offer(0, rng, stores, [])
    open_offer = replace(
        base, offer_id="open", eligibility=Eligibility(), starts_at=None, ends_at=None, archived=False, dayparts=()
    )
    open_offer = replace(open_offer, status=OfferStatus.ACTIVE)
    elsewhere = replace(open_offer, offer_id="elsewhere", eligibility=Eligibility(store_ids=frozenset({"s1"})))
    ended = replace(open_offer, offer_id="ended", ends_at=NOW - timedelta(days=1))
    staff = replace(open_offer, offer_id="staff", eligibility=Eligibility(tiers=frozenset({"staff"})))
    offers = (open_offer, elsewhere, ended, staff)
    catalog = Catalog(version=1, offers=offers, stores=stores, index=build_index(offers, stores))
    ctx = OfferContext(now=NOW, channel=Channel.POS, store_id="s0")
    candidates = candidate_offers(catalog, samantha(tier="gold"), ctx, priority_order=True)
    assert [offer.offer_id for offer in candidates] == ["open"]
    assert len(candidate_offers(replace(catalog, index=None), samantha(), ctx, priority_order=True)) == 4
