"""An index of one catalog snapshot: for a request, the offers that could pass eligibility, without touching the rest.

Built once per catalog version (usecases.catalog.build_catalog), never per request. Offers are bits of Python ints
(bit i = the i-th offer of `Catalog.offers`), so combining dimensions is a few big-int ANDs.

Only rules whose refusal makes an offer vanish from both listing and evaluation are indexed, and each exactly as
check_eligibility applies it: archived, status, dates, channel, lifetime value, tier, store, distance and the
purchase-history rules. They all come before the WOULD_QUALIFY_BUT rules (daypart, limits), so an offer any of them
refuses is refused with a rule that is not WOULD_QUALIFY_BUT: evaluation drops it (no candidate, no near miss, not
held back) and listing drops it. The index leaves dayparts and limits to check_eligibility, and does not prune by the
basket's categories: an eligible offer whose condition the basket misses is a near miss, whatever its category.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from domain.eligibility import as_aware, member_tier, reference_point
from domain.geo import distance_km
from domain.model import Catalog, Channel, CustomerState, GeoPoint, Offer, OfferContext, OfferStatus, Store

_CHECKPOINT = 64  # a prefix mask is stored every this many events: memory / 64, at most 63 ORs per query


@dataclass(frozen=True, slots=True)
class _Prefix:
    """Events (time, bit) sorted by time; `upto(t)` = OR of the bits of the events at or before t."""

    times: tuple[datetime, ...]
    bits: tuple[int, ...]
    checkpoints: tuple[int, ...]  # checkpoints[k] = OR of bits[: k * _CHECKPOINT]

    @staticmethod
    def of(events: Iterable[tuple[datetime, int]]) -> _Prefix:
        ordered = sorted(events, key=lambda event: event[0])
        bits = tuple(bit for _, bit in ordered)
        checkpoints = [0]
        running = 0
        for i, bit in enumerate(bits, start=1):
            running |= bit
            if i % _CHECKPOINT == 0:
                checkpoints.append(running)
        return _Prefix(tuple(time for time, _ in ordered), bits, tuple(checkpoints))

    def upto(self, moment: datetime) -> int:
        count = bisect_right(self.times, moment)
        block = count // _CHECKPOINT
        mask = self.checkpoints[block]
        for bit in self.bits[block * _CHECKPOINT : count]:
            mask |= bit
        return mask


@dataclass(frozen=True, slots=True)
class _Keyed:
    """Offers restricted to a set of keys: `unrestricted` (empty set) plus, per key, those naming it."""

    unrestricted: int
    by_key: Mapping[Hashable, int]

    def admitting(self, key: Hashable) -> int:
        return self.unrestricted | self.by_key.get(key, 0)

    def naming_any(self, keys: Iterable[Hashable]) -> int:
        mask = 0
        for key in keys:
            mask |= self.by_key.get(key, 0)
        return mask


def _keyed(offers: Sequence[Offer], keys_of: Callable[[Offer], Collection[Hashable]]) -> _Keyed:
    unrestricted = 0
    by_key: dict[Hashable, int] = {}
    for i, offer in enumerate(offers):
        keys = keys_of(offer)
        if not keys:
            unrestricted |= 1 << i
        for key in keys:
            by_key[key] = by_key.get(key, 0) | 1 << i
    return _Keyed(unrestricted, by_key)


@dataclass(frozen=True, slots=True)
class _Reach:
    """Offers with a distance rule, per located store: (limits descending, prefix masks) of the offers valid there."""

    with_rule: int
    stores: tuple[tuple[GeoPoint, tuple[float, ...], tuple[int, ...]], ...]

    def within(self, point: GeoPoint) -> int:
        """Distance offers with an eligible located store at most their limit from `point` (the nearest is then
        within it too): the same distance_km as nearest_eligible_store, so the comparison is the same."""
        mask = 0
        for location, negative_limits, prefixes in self.stores:
            count = bisect_right(negative_limits, -distance_km(point, location))
            if count:
                mask |= prefixes[count - 1]
        return mask


def _reach(offers: Sequence[Offer], stores: Mapping[str, Store]) -> _Reach:
    ruled = [(i, offer.eligibility) for i, offer in enumerate(offers) if offer.eligibility.max_distance_km > 0]
    with_rule = 0
    for i, _ in ruled:
        with_rule |= 1 << i
    per_store: list[tuple[GeoPoint, tuple[float, ...], tuple[int, ...]]] = []
    for store_id, store in stores.items():
        if store.location is None:
            continue
        # The key, as nearest_eligible_store looks stores up: catalog.stores.get(store_id).
        limits = sorted(
            (-rules.max_distance_km, i) for i, rules in ruled if not rules.store_ids or store_id in rules.store_ids
        )
        prefixes: list[int] = []
        running = 0
        for _, i in limits:
            running |= 1 << i
            prefixes.append(running)
        if limits:
            per_store.append((store.location, tuple(limit for limit, _ in limits), tuple(prefixes)))
    return _Reach(with_rule, tuple(per_store))


@dataclass(frozen=True, slots=True)
class Query:
    """What the index needs to know of a request: the facts check_eligibility's indexed rules read."""

    now: datetime
    channel: Channel
    store_id: str
    lifetime_value_minor: int
    tier: str  # eligibility.member_tier
    categories: frozenset[str]
    point: GeoPoint | None  # eligibility.reference_point


@dataclass(frozen=True, slots=True)
class CatalogIndex:
    offers: tuple[Offer, ...]  # Catalog.offers: bit i is offers[i]
    priority_rank: tuple[int, ...]  # bit i's place in Catalog.in_priority_order
    live: int  # not archived, status ACTIVE
    open_start: int
    starts: _Prefix
    ends: _Prefix
    ltv_floors: tuple[int, ...]  # distinct minimums, ascending
    ltv_masks: tuple[int, ...]  # ltv_masks[k] = offers whose minimum <= ltv_floors[k]
    channels: _Keyed
    tiers: _Keyed
    stores: _Keyed
    bought_any: _Keyed
    not_bought: _Keyed
    reach: _Reach

    def mask(self, query: Query) -> int:
        """Offers no indexed rule refuses for `query`."""
        moment = as_aware(query.now).astimezone(UTC)
        mask = self.live & (self.open_start | self.starts.upto(moment)) & ~self.ends.upto(moment)
        mask &= self.channels.admitting(query.channel)
        floor = bisect_right(self.ltv_floors, query.lifetime_value_minor)
        mask &= self.ltv_masks[floor - 1] if floor else 0
        mask &= self.tiers.admitting(query.tier)
        if query.store_id:
            mask &= self.stores.admitting(query.store_id)
        mask &= self.bought_any.unrestricted | self.bought_any.naming_any(query.categories)
        mask &= ~self.not_bought.naming_any(query.categories)
        if mask & self.reach.with_rule:
            near = self.reach.within(query.point) if query.point is not None else 0
            mask &= ~self.reach.with_rule | near
        return mask

    def in_catalog_order(self, query: Query) -> tuple[Offer, ...]:
        return tuple(self.offers[i] for i in _bits(self.mask(query)))

    def in_priority_order(self, query: Query) -> tuple[Offer, ...]:
        positions = sorted(_bits(self.mask(query)), key=self.priority_rank.__getitem__)
        return tuple(self.offers[i] for i in positions)


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _window_events(offers: Sequence[Offer]) -> tuple[int, list[tuple[datetime, int]], list[tuple[datetime, int]]]:
    open_start = 0
    starts: list[tuple[datetime, int]] = []
    ends: list[tuple[datetime, int]] = []
    for i, offer in enumerate(offers):
        if offer.starts_at is None:
            open_start |= 1 << i
        else:
            starts.append((as_aware(offer.starts_at).astimezone(UTC), 1 << i))
        if offer.ends_at is not None:
            ends.append((as_aware(offer.ends_at).astimezone(UTC), 1 << i))
    return open_start, starts, ends


def _lifetime_value(offers: Sequence[Offer]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    by_floor: dict[int, int] = {}
    for i, offer in enumerate(offers):
        floor = offer.eligibility.min_lifetime_value_minor
        by_floor[floor] = by_floor.get(floor, 0) | 1 << i
    floors = sorted(by_floor)
    masks: list[int] = []
    running = 0
    for floor in floors:
        running |= by_floor[floor]
        masks.append(running)
    return tuple(floors), tuple(masks)


def _priority_ranks(offers: Sequence[Offer]) -> tuple[int, ...]:
    """Each offer's place in Catalog.in_priority_order (the same stable sort on the same key)."""
    order = sorted(range(len(offers)), key=lambda i: (-offers[i].priority, offers[i].offer_id))
    ranks = [0] * len(offers)
    for rank, i in enumerate(order):
        ranks[i] = rank
    return tuple(ranks)


def build_index(offers: Sequence[Offer], stores: Mapping[str, Store]) -> CatalogIndex:
    """The index of a snapshot's offers (in Catalog.offers order) and stores."""
    live = 0
    for i, offer in enumerate(offers):
        if not offer.archived and offer.status == OfferStatus.ACTIVE:
            live |= 1 << i
    open_start, starts, ends = _window_events(offers)
    floors, ltv_masks = _lifetime_value(offers)
    return CatalogIndex(
        offers=tuple(offers),
        priority_rank=_priority_ranks(offers),
        live=live,
        open_start=open_start,
        starts=_Prefix.of(starts),
        ends=_Prefix.of(ends),
        ltv_floors=floors,
        ltv_masks=ltv_masks,
        channels=_keyed(offers, lambda o: o.eligibility.channels),
        tiers=_keyed(offers, lambda o: o.eligibility.tiers),
        stores=_keyed(offers, lambda o: o.eligibility.store_ids),
        bought_any=_keyed(offers, lambda o: o.eligibility.purchased_any_categories),
        not_bought=_keyed(offers, lambda o: o.eligibility.not_purchased_categories),
        reach=_reach(offers, stores),
    )


def query_for(customer: CustomerState, ctx: OfferContext, catalog: Catalog) -> Query:
    return Query(
        now=ctx.now,
        channel=ctx.channel,
        store_id=ctx.store_id,
        lifetime_value_minor=customer.lifetime_value_minor,
        tier=member_tier(customer, catalog),
        categories=customer.categories,
        point=reference_point(customer, ctx, catalog),
    )


def candidate_offers(
    catalog: Catalog, customer: CustomerState, ctx: OfferContext, *, priority_order: bool
) -> Sequence[Offer]:
    """The offers check_eligibility could admit (a superset of those it does), in Catalog.offers order or in
    priority order; without an index, every offer (the plain scan, kept as the oracle)."""
    index = catalog.index
    if index is None:
        return catalog.in_priority_order if priority_order else catalog.offers
    query = query_for(customer, ctx, catalog)
    return index.in_priority_order(query) if priority_order else index.in_catalog_order(query)
