"""The hot-state ports (usecases.ports) on Redis: turns the domain's values into write-behind records and script
calls of the CustomerStore, which owns the keys and the scripts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from domain.eligibility import limited_per_day
from domain.model import CustomerState, PurchaseFacts, PurchaseKey, Receipt, ReturnOutcome
from store.record_builders import adjustment_record, customer_record, expiry_record, purchase_record, return_record
from store.redis_state import CustomerStore
from usecases.ports import (
    Adjustment,
    AdjustmentOutcome,
    AdjustResult,
    CommitResult,
    CustomerRead,
    ErasedIds,
    HydrateResult,
    ReturnRead,
    UpsertStatus,
)
from usecases.snapshot import CustomerSnapshot


class RedisHotState:
    """Implements CustomerHotState (the CustomerStore itself serves OfferBudgets and CatalogVersions)."""

    def __init__(self, store: CustomerStore) -> None:
        self.store = store

    async def read(
        self,
        customer_id: str,
        *,
        purchase: PurchaseKey | None = None,
        budget_offer_ids: Sequence[str] = (),
        now: datetime,
    ) -> CustomerRead:
        return await self.store.read(customer_id, purchase=purchase, budget_offer_ids=budget_offer_ids, now=now)

    async def claim_transaction(self, purchase: PurchaseKey, customer_id: str) -> str:
        return await self.store.claim_transaction(purchase, customer_id)

    async def read_for_return(
        self, customer_id: str, purchase: PurchaseKey, return_id: str, *, now: datetime
    ) -> ReturnRead:
        return await self.store.read_for_return(customer_id, purchase, return_id, now=now)

    async def claim_return(self, purchase: PurchaseKey, return_id: str, customer_id: str) -> str:
        return await self.store.claim_return(purchase, return_id, customer_id)

    async def commit_purchase(
        self, receipt: Receipt, *, digest: str, receipt_bytes: bytes, expected_version: int, now: datetime
    ) -> CommitResult:
        record = purchase_record(receipt, digest)  # refuses a receipt without its basket or sale time
        return await self.store.commit(
            record,
            expected_version=expected_version,
            receipt=receipt_bytes,
            occurred_at=datetime.fromisoformat(record.occurred_at),
            now=now,
            day_limited=[o.offer_id for o in receipt.offers if limited_per_day(o)],
        )

    async def apply_return(
        self,
        outcome: ReturnOutcome,
        facts: PurchaseFacts,
        *,
        return_id: str,
        returning_store_id: str,
        digest: str,
        receipt_bytes: bytes,
        voided: bool,
        expected_version: int,
        now: datetime,
    ) -> CommitResult:
        record = return_record(
            outcome, facts, return_id, digest, voided=voided, at=now, returning_store_id=returning_store_id
        )
        return await self.store.apply_return(
            record,
            expected_version=expected_version,
            receipt=receipt_bytes,
            returned_after=outcome.returned_after,
            purchased_at=facts.occurred_at,
            now=now,
            # A void undoes the sale whole: the categories it introduced no longer count as bought.
            void_categories=[line.category for line in facts.basket.lines] if voided else (),
            added_categories=facts.new_categories if voided else (),
        )

    async def expire_points(
        self, customer_id: str, *, cutoff: datetime, last_purchase_at: datetime, expected_version: int, now: datetime
    ) -> int:
        record = expiry_record(customer_id, last_purchase_at=last_purchase_at, state_version=expected_version, now=now)
        return await self.store.expire_points(
            record, cutoff=cutoff, last_purchase_at=last_purchase_at, expected_version=expected_version
        )

    async def upsert_customer(self, state: CustomerState, *, exists: bool, now: datetime) -> UpsertStatus:
        reply = await self.store.upsert_customer(state, customer_record(state, now), exists=exists)
        return reply if isinstance(reply, str) else "ok"

    async def claim_adjustment(self, adjustment_id: str, customer_id: str) -> str:
        return await self.store.claim_adjustment(adjustment_id, customer_id)

    async def adjust_points(self, adjustment: Adjustment, *, now: datetime) -> AdjustResult:
        a = adjustment
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as Redis keeps it (ms), so replays match
        record = adjustment_record(a.adjustment_id, a.customer_id, a.points, a.reason, a.digest, now=now)
        status, outcome, available = await self.store.adjust_points(record)
        if status == "ok" or status == "replay":
            return AdjustResult(
                "ok" if status == "ok" else "replay",
                AdjustmentOutcome(
                    adjustment_id=a.adjustment_id,
                    customer_id=a.customer_id,
                    points=a.points,
                    balance_before=outcome["balance_before"],
                    balance_after=outcome["balance_after"],
                    debt_before=outcome["debt_before"],
                    debt_after=outcome["debt_after"],
                    adjusted_at=datetime.fromtimestamp(outcome["at_ms"] / 1000, UTC),
                ),
            )
        if status == "insufficient":
            return AdjustResult("insufficient", available=available)
        return AdjustResult("missing" if status == "missing" else "digest_mismatch")

    async def begin_erasure(self, customer_id: str, *, now: datetime) -> bool:
        return await self.store.begin_erasure(customer_id, now=now)

    async def finish_erasure(self, customer_id: str, *, anonymous_id: str, erased: ErasedIds) -> None:
        await self.store.finish_erasure(
            customer_id,
            anonymous_id=anonymous_id,
            purchases=erased.purchases,
            returns=erased.returns,
            adjustment_ids=erased.adjustment_ids,
        )

    async def has_pending_changes(self, customer_id: str) -> bool:
        return await self.store.has_pending_changes(customer_id)

    async def hydrate(self, snapshot: CustomerSnapshot, *, now: datetime, keep_s: int = 0) -> HydrateResult:
        return await self.store.hydrate(snapshot, now=now, keep_s=keep_s)
