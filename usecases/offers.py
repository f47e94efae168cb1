"""The till's and the app's reads: which offers a customer can use now, and what a basket would earn or save.

Knows nothing of protobuf or Redis: state comes through the hot-state port, the catalog from its snapshot, and
the pure domain decides.
"""

from __future__ import annotations

from datetime import datetime

from domain.errors import InvalidArgument, NotFound
from domain.model import ActiveOffer, Basket, BasketEvaluation, Channel, GeoPoint, OfferContext
from domain.ranking import list_active_offers
from domain.validation import validate_id, validate_location
from telemetry import metrics
from usecases.catalog import CatalogCache
from usecases.customers import Customers
from usecases.evaluation import BasketEvaluator
from usecases.ports import Clock
from usecases.rules import Rules

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


class OffersApp:
    def __init__(
        self,
        rules: Rules,
        customers: Customers,
        catalog: CatalogCache,
        evaluator: BasketEvaluator,
        clock: Clock,
    ) -> None:
        self._rules = rules
        self._customers = customers
        self._catalog = catalog
        self._evaluator = evaluator
        self._clock = clock

    async def list_active_offers(
        self, customer_id: str, channel: Channel, store_id: str, location: GeoPoint | None, page_size: int
    ) -> tuple[tuple[ActiveOffer, ...], int]:
        if store_id:
            validate_id(store_id, "store_id")
        validate_location(location, "location")
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        catalog = self._catalog.current
        if store_id and store_id not in catalog.stores:
            raise NotFound("store", store_id)
        state, read = await self._customers.state(customer_id, "customer_id", catalog)
        ctx = OfferContext(
            now=self._clock(),
            channel=channel,
            store_id=store_id,
            location=location,
            fixed_reward_uses_per_day=self._rules.guards.offer_uses_per_day,
        )
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        offers = list_active_offers(
            catalog, state, ctx, page_size=size, policy=self._rules.points, redemptions_used=read.redemptions_used
        )
        metrics.OFFERS_LISTED.inc(len(offers))
        return offers, catalog.version

    async def evaluate(self, basket: Basket, occurred_at: datetime | None) -> BasketEvaluation:
        catalog = self._catalog.current
        self._evaluator.validate(basket, catalog)
        at = self._evaluator.evaluation_time(occurred_at)
        state, read = await self._customers.state(basket.customer_id, "basket.customer_id", catalog)
        evaluation = self._evaluator.evaluate(catalog, state, basket, at=at, used=read.redemptions_used)
        for miss in evaluation.near_misses:
            metrics.NEAR_MISSES.labels(offer_id=miss.offer_id).inc()
        return evaluation
