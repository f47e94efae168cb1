"""CommitPurchase: applies a basket to a customer exactly once per purchase: the store's transaction id.

Read (one round trip, no writes) -> evaluate with the pure engine -> reserve offer budgets -> one atomic write
that checks the state it was evaluated on; a race re-reads and evaluates again. A replay with the same basket
returns the stored receipt; the same id at the same store with another basket or for another customer is refused.
The same transaction id at another store is another purchase (tills number their own sales).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from domain.basket import new_categories
from domain.errors import AlreadyExists, FailedPrecondition
from domain.model import Basket, BasketEvaluation, Catalog, PurchaseKey, Receipt
from domain.spend import last_12_months, month_key
from domain.validation import validate_id
from telemetry import metrics
from usecases.budgets import Budgets
from usecases.catalog import CatalogCache
from usecases.customers import Customers
from usecases.evaluation import BasketEvaluator
from usecases.optimistic import Retry, write_optimistically
from usecases.ports import Clock, CommitResult, CustomerHotState, CustomerRead, ReceiptCodec
from usecases.rules import Rules


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    receipt: bytes  # the stored receipt, as the codec wrote it
    replayed: bool


@dataclass(frozen=True, slots=True)
class _Sale:
    """One commit request, validated: what every attempt needs."""

    transaction_id: str
    basket: Basket
    at: datetime  # when offers are evaluated (now, or the sale's time within the grace window)
    sold_at: datetime  # when the sale happened, as the profile records it
    digest: str


class CommitPurchase:
    def __init__(
        self,
        rules: Rules,
        hot: CustomerHotState,
        customers: Customers,
        catalog: CatalogCache,
        evaluator: BasketEvaluator,
        budgets: Budgets,
        codec: ReceiptCodec,
        clock: Clock,
    ) -> None:
        self._rules = rules
        self._hot = hot
        self._customers = customers
        self._catalog = catalog
        self._evaluator = evaluator
        self._budgets = budgets
        self._codec = codec
        self._clock = clock

    async def commit(
        self, transaction_id: str, basket: Basket, occurred_at: datetime | None, digest: str
    ) -> CommitOutcome:
        validate_id(transaction_id, "transaction_id", max_len=128)
        self._evaluator.validate(basket, self._catalog.current)
        at = self._evaluator.evaluation_time(occurred_at)
        validate_id(basket.customer_id, "basket.customer_id")
        sale = _Sale(transaction_id, basket, at, occurred_at or at, digest)
        purchase = PurchaseKey(basket.store_id, transaction_id)
        claimed = False

        async def attempt() -> CommitOutcome | Retry:
            nonlocal claimed
            catalog = self._catalog.current
            read = await self._hot.read(
                basket.customer_id,
                purchase=purchase,
                budget_offer_ids=self._budgets.budgeted(catalog),
                now=self._clock(),
            )
            if read.claim_owner is not None and read.claim_owner != basket.customer_id:
                raise AlreadyExists(f"transaction_id {transaction_id!r} was used for another customer at this store")
            if read.stored is not None:
                if read.stored.digest != digest:
                    raise AlreadyExists(f"transaction_id {transaction_id!r} was committed with a different basket")
                return self._replayed(read.stored.receipt)
            if read.legacy is not None and read.legacy.digest == digest:
                return self._replayed(read.legacy.receipt)  # committed before store-scoped ids, same request
            if read.state is None:
                await self._customers.rehydrate(basket.customer_id)
                return Retry.REBUILT
            if not claimed:
                # Claimed once she is known to exist: the id is then hers, also after a refused commit (another
                # call with this id may already have committed for her).
                owner = await self._hot.claim_transaction(purchase, basket.customer_id)
                if owner != basket.customer_id:
                    raise AlreadyExists(
                        f"transaction_id {transaction_id!r} was used for another customer at this store"
                    )
                claimed = True
            return await self._try(catalog, read, sale)

        return await write_optimistically(attempt, attempts=self._rules.write_attempts, what="commit")

    def _replayed(self, receipt: bytes) -> CommitOutcome:
        metrics.PURCHASES_REPLAYED.inc()
        return CommitOutcome(receipt, replayed=True)

    async def _try(self, catalog: Catalog, read: CustomerRead, sale: _Sale) -> CommitOutcome | Retry:
        """One optimistic attempt on the state read."""
        state = read.state
        if state is None:
            return Retry.CONFLICT
        evaluation = self._evaluator.evaluate(catalog, state, sale.basket, at=sale.at, used=read.redemptions_used)
        if month_key(sale.sold_at) not in last_12_months(self._clock()):
            # A sale older than the rolling window does not count towards a tier.
            evaluation = dataclasses.replace(evaluation, tier_after=evaluation.tier_before)
        # Budgets live outside the customer's slot: reserve first, give back if the commit does not happen.
        reserved = await self._budgets.reserve(catalog, evaluation)
        if reserved is None:
            return Retry.CONFLICT  # sold out meanwhile: the re-read sees it and evaluates without that offer
        try:
            receipt = Receipt(
                sale.transaction_id,
                evaluation,
                new_categories(state, sale.basket),
                self._clock(),
                basket=sale.basket,
                offers=tuple(o for a in evaluation.applied_offers if (o := catalog.offer(a.offer_id)) is not None),
                occurred_at=sale.sold_at,
            )
            receipt_bytes = self._codec.purchase_receipt(receipt)
        except BaseException:
            await self._budgets.release(reserved)
            raise
        # Once the write is sent it may have happened, even if this call is cancelled: a reservation is then kept
        # (an offer may undersell by one, never oversell).
        result = await self._hot.commit_purchase(
            receipt,
            digest=sale.digest,
            receipt_bytes=receipt_bytes,
            expected_version=state.version,
            now=self._clock(),
        )
        if result.status == "ok":
            await self._budgets.confirm(reserved)
        else:
            await self._budgets.release(reserved)
        return self._outcome(result, receipt_bytes, evaluation, sale)

    def _outcome(
        self,
        result: CommitResult,
        receipt_bytes: bytes,
        evaluation: BasketEvaluation,
        sale: _Sale,
    ) -> CommitOutcome | Retry:
        if result.status == "replay":  # the same request raced itself: the write compared the digests
            return self._replayed(result.receipt)
        if result.status == "digest_mismatch":
            raise AlreadyExists(f"transaction_id {sale.transaction_id!r} was committed with a different basket")
        if result.status == "insufficient":
            metrics.REDEMPTIONS_REFUSED.labels(reason="insufficient_points").inc()
            raise FailedPrecondition(
                f"insufficient points: {result.available} available, asked to redeem {sale.basket.points_to_redeem}",
                reason="insufficient_points",
            )
        if result.status != "ok":
            return Retry.CONFLICT  # stale or missing: re-read
        record_purchase_metrics(evaluation)
        record_alerts(result.alerts)
        return CommitOutcome(receipt_bytes, replayed=False)


def record_alerts(kinds: tuple[str, ...]) -> None:
    """Velocity thresholds reached (their audit events are already in the outbox, written by the script)."""
    for kind in kinds:
        metrics.VELOCITY_ALERTS.labels(kind=kind).inc()


def record_purchase_metrics(ev: BasketEvaluation) -> None:
    metrics.PURCHASES_COMMITTED.inc()
    metrics.POINTS_EARNED.inc(ev.points_earned)
    metrics.POINTS_REDEEMED.inc(ev.points_redeemed)
    for applied in ev.applied_offers:
        metrics.OFFERS_RECOGNISED.labels(offer_id=applied.offer_id).inc()
