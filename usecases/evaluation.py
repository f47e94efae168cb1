"""What evaluating a basket at the till takes besides the pure engine: validation against the limits and the
catalog's stores, the time a sale is evaluated at, and when the points it earns become spendable."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime

from domain.basket import evaluate_basket
from domain.errors import FailedPrecondition, InvalidArgument, NotFound
from domain.model import Basket, BasketEvaluation, Catalog, Channel, CustomerState, OfferContext
from domain.pending import pending_until
from domain.validation import validate_basket
from telemetry import metrics
from usecases.ports import Clock
from usecases.rules import Rules


class BasketEvaluator:
    def __init__(self, rules: Rules, clock: Clock) -> None:
        self._rules = rules
        self._clock = clock

    def validate(self, basket: Basket, catalog: Catalog, field_prefix: str = "basket") -> None:
        r = self._rules
        validate_basket(
            basket,
            max_lines=r.max_basket_lines,
            max_quantity=r.max_line_quantity,
            max_unit_price_minor=r.max_unit_price_minor,
            field_prefix=field_prefix,
        )
        if basket.store_id not in catalog.stores:
            raise NotFound("store", basket.store_id)

    def evaluation_time(self, occurred_at: datetime | None, field: str = "occurred_at") -> datetime:
        """Offline tills send when the sale happened: honoured within the grace window, refused from the future."""
        now = self._clock()
        if occurred_at is None:
            return now
        if occurred_at > now + self._rules.clock_skew:
            raise InvalidArgument(field, "is in the future")
        if occurred_at < now - self._rules.occurred_at_max_age:
            raise InvalidArgument(field, f"is more than {self._rules.occurred_at_max_age.days} days ago")
        if occurred_at < now - self._rules.occurred_at_grace:
            return now
        return occurred_at

    def evaluate(
        self,
        catalog: Catalog,
        state: CustomerState,
        basket: Basket,
        *,
        at: datetime,
        used: Mapping[str, int],
    ) -> BasketEvaluation:
        """Evaluates at `at`; the points earned become spendable a pending period after now: the returns window
        runs from when the service accepted the sale, whatever time the till gave it (a backdated sale would
        otherwise earn points spendable at once, to be spent before its goods are returned)."""
        ctx = OfferContext(
            now=at,
            channel=Channel.POS,
            store_id=basket.store_id,
            fixed_reward_uses_per_day=self._rules.guards.offer_uses_per_day,
        )
        try:
            evaluation = evaluate_basket(catalog, state, basket, ctx, self._rules.points, redemptions_used=used)
        except FailedPrecondition as exc:
            metrics.REDEMPTIONS_REFUSED.labels(reason=exc.reason).inc()
            raise
        available_at = self.points_available_at()
        if evaluation.points_earned and available_at is not None:
            evaluation = dataclasses.replace(evaluation, points_available_at=available_at)
        return evaluation

    def points_available_at(self) -> datetime | None:
        """When points earned by a sale accepted now become spendable: None without a pending period."""
        if self._rules.points_pending_days <= 0:
            return None
        return pending_until(self._clock(), self._rules.points_pending_days)
