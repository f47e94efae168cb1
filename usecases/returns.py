"""Returns and voids: correcting entries against a committed purchase, exactly once per return id.

The purchase's stored receipt (Redis while it keeps it, else SQL) holds the basket, what each line earned and
the applied offers as defined then, so a return is computed from the receipt alone by the pure engine and
applied with one Lua script, like a commit.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from domain.errors import AlreadyExists, Conflict, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from domain.model import CustomerState, PurchaseFacts, ReturnOutcome, ReturnRequestLine
from domain.returns import evaluate_return, remaining_lines
from domain.validation import validate_id
from server.config import Settings
from store.ids import return_event_id, void_return_id
from store.records import LedgerEntry, ReturnLineRecord, ReturnRecord
from store.redis_state import CustomerStore, ReturnRead
from store.snapshot import StoredReceipt
from telemetry import metrics
from telemetry.observe import sql_call
from usecases.catalog import CatalogCache


class PurchaseHistory(Protocol):
    """What SQL knows of purchases Redis no longer keeps."""

    def get_purchase_receipt(self, transaction_id: str) -> StoredReceipt | None: ...

    def returned_quantities(self, transaction_id: str) -> dict[str, int]: ...


class ReceiptCodec(Protocol):
    """The wire format of stored receipts (protobuf), kept out of the use case."""

    def facts(self, purchase_receipt: bytes) -> PurchaseFacts: ...

    def return_receipt(
        self, outcome: ReturnOutcome, *, return_id: str, facts: PurchaseFacts, voided: bool, at: datetime
    ) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ReturnResult:
    receipt: bytes  # the ReturnReceipt protobuf, as stored
    replayed: bool


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


class ReturnsApp:
    def __init__(
        self,
        settings: Settings,
        customers: CustomerStore,
        history: PurchaseHistory,
        catalog: CatalogCache,
        codec: ReceiptCodec,
        rehydrate: Callable[[str], Awaitable[None]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._settings = settings
        self._customers = customers
        self._history = history
        self._catalog = catalog
        self._codec = codec
        self._rehydrate = rehydrate
        self._clock = clock

    async def return_lines(
        self,
        return_id: str,
        transaction_id: str,
        customer_id: str,
        lines: Sequence[ReturnRequestLine],
        digest: str,
    ) -> ReturnResult:
        validate_id(return_id, "return_id")
        if return_id.startswith("void:"):
            raise InvalidArgument("return_id", "ids starting with 'void:' are kept for VoidPurchase")
        if not lines:
            raise InvalidArgument("lines", "must name at least one line")
        return await self._apply(return_id, transaction_id, customer_id, digest, lines, voided=False)

    async def void(self, transaction_id: str, customer_id: str, digest: str) -> ReturnResult:
        validate_id(transaction_id, "transaction_id")
        return await self._apply(void_return_id(transaction_id), transaction_id, customer_id, digest, None, voided=True)

    async def _purchase(self, read: ReturnRead, customer_id: str, transaction_id: str) -> tuple[bytes, dict[str, int]]:
        """The purchase's receipt and what was returned of it: from Redis, else from SQL (older purchases)."""
        if read.purchase is not None:
            return read.purchase.receipt, read.returned
        if read.owner is not None and read.owner != customer_id:
            raise NotFound("purchase", transaction_id)  # another customer's: never revealed
        with sql_call("load_purchase"):
            stored = await asyncio.to_thread(self._history.get_purchase_receipt, transaction_id)
        if stored is None and read.owner is None:
            # Never committed within the retention window (no claim) and not in SQL: there is no such purchase.
            raise NotFound("purchase", transaction_id)
        # SQL must have all of her changes before it can answer what was returned of this purchase.
        if await self._customers.has_pending_changes(customer_id):
            raise Unavailable("the purchase is still being written to the profile; retry shortly")
        with sql_call("load_purchase"):
            if stored is None:
                stored = await asyncio.to_thread(self._history.get_purchase_receipt, transaction_id)
            returned = await asyncio.to_thread(self._history.returned_quantities, transaction_id) if stored else {}
        if stored is None:
            raise NotFound("purchase", transaction_id)
        # Redis may still hold returned quantities SQL has already seen, or newer ones: never count less.
        merged = {line: max(qty, read.returned.get(line, 0)) for line, qty in returned.items()}
        merged.update({line: qty for line, qty in read.returned.items() if line not in merged})
        return stored.receipt, merged

    def _check_void_window(self, facts: PurchaseFacts) -> None:
        store = self._catalog.current.stores.get(facts.basket.store_id)
        zone = ZoneInfo(store.timezone if store else "UTC")
        sold_on = facts.occurred_at.astimezone(zone).date()
        if self._clock().astimezone(zone).date() != sold_on:
            raise FailedPrecondition(
                f"a void is only possible on the business day of the sale ({sold_on} in {zone.key}); "
                "use ReturnPurchase",
                reason="void_window",
            )

    async def _apply(
        self,
        return_id: str,
        transaction_id: str,
        customer_id: str,
        digest: str,
        lines: Sequence[ReturnRequestLine] | None,
        *,
        voided: bool,
    ) -> ReturnResult:
        validate_id(transaction_id, "transaction_id")
        validate_id(customer_id, "customer_id")
        claimed = False
        for _ in range(self._settings.commit_max_attempts):
            read = await self._customers.read_for_return(customer_id, transaction_id, return_id, now=self._clock())
            if read.return_owner is not None and read.return_owner != customer_id:
                raise AlreadyExists(f"return_id {return_id!r} was used for another customer")
            if read.stored is not None:
                if read.stored.digest != digest:
                    raise AlreadyExists(f"return_id {return_id!r} was used for a different return")
                return ReturnResult(read.stored.receipt, replayed=True)
            if read.state is None:
                await self._rehydrate(customer_id)
                continue
            if not claimed and await self._customers.claim_return(return_id, customer_id) != customer_id:
                raise AlreadyExists(f"return_id {return_id!r} was used for another customer")
            claimed = True
            purchase, returned = await self._purchase(read, customer_id, transaction_id)
            facts = self._codec.facts(purchase)
            if facts.customer_id != customer_id:
                raise NotFound("purchase", transaction_id)  # never reveal another customer's purchase
            if voided:
                self._check_void_window(facts)
            wanted = remaining_lines(facts, returned) if voided and lines is None else lines or ()
            outcome = evaluate_return(facts, read.state, returned, wanted)
            result = await self._commit(read.state, facts, outcome, return_id, digest, voided=voided)
            if result is not None:
                return result
            metrics.COMMIT_CONFLICTS.inc()
        raise Conflict("the customer's state kept changing under this return; retry")

    async def _commit(
        self,
        state: CustomerState,
        facts: PurchaseFacts,
        outcome: ReturnOutcome,
        return_id: str,
        digest: str,
        *,
        voided: bool,
    ) -> ReturnResult | None:
        now = self._clock()
        receipt = self._codec.return_receipt(outcome, return_id=return_id, facts=facts, voided=voided, at=now)
        record = return_record(outcome, facts, return_id, digest, receipt, voided=voided, at=now)
        result = await self._customers.apply_return(
            record,
            expected_version=state.version,
            receipt=receipt,
            returned_after=outcome.returned_after,
            purchased_at=facts.occurred_at,
            now=now,
            # A void undoes the sale whole: the categories it introduced no longer count as bought.
            void_categories=[line.category for line in facts.basket.lines] if voided else (),
            added_categories=facts.new_categories if voided else (),
        )
        if result.status == "ok":
            metrics.POINTS_REVERSED.inc(outcome.points_reversed)
            await self._release_budgets(outcome.offers_lost, facts, result.written_at_ms)
            return ReturnResult(receipt, replayed=False)
        if result.status == "replay":  # the same request raced itself: the script compared the digests
            return ReturnResult(result.receipt, replayed=True)
        if result.status == "digest_mismatch":
            raise AlreadyExists(f"return_id {return_id!r} was used for a different return")
        return None  # stale or missing: re-read

    async def _release_budgets(self, offers_lost: Sequence[str], facts: PurchaseFacts, written_at_ms: int) -> None:
        """An offer taken back whole gives its redemption back to the offer's total budget (unless the counter was
        rebuilt since the return was written: the rebuild already left it out)."""
        for offer_id in offers_lost:
            offer = facts.offers.get(offer_id)
            if offer is not None and offer.total_redemption_limit > 0:
                await self._customers.release_budget(offer_id, returned_at_ms=written_at_ms)


def return_record(
    outcome: ReturnOutcome,
    facts: PurchaseFacts,
    return_id: str,
    digest: str,
    receipt: bytes,
    *,
    voided: bool,
    at: datetime,
) -> ReturnRecord:
    # Points taken back leave the purchase's pending points while they are pending, so the reversal is stamped
    # with when those points become spendable; refunded redeemed points were spendable and are so at once.
    spendable_from = _iso(facts.points_available_at) if facts.points_available_at else ""
    ledger = [
        LedgerEntry(f"{return_id}:reverse", "reverse", -outcome.points_reversed, spendable_from),
        LedgerEntry(f"{return_id}:refund", "refund", outcome.points_refunded),
    ]
    return ReturnRecord(
        event_id=return_event_id(facts.customer_id, return_id),
        return_id=return_id,
        transaction_id=facts.transaction_id,
        customer_id=facts.customer_id,
        occurred_at=_iso(at),
        committed_at=_iso(at),
        voided=voided,
        lines=[ReturnLineRecord(x.line_id, x.quantity, x.points_reversed, x.value_minor) for x in outcome.lines],
        points_reversed=outcome.points_reversed,
        points_refunded=outcome.points_refunded,
        value_minor=outcome.value_minor,
        lifetime_value_delta=-outcome.value_minor,
        balance_delta=outcome.balance_after - outcome.balance_before,
        debt_delta=outcome.debt_after - outcome.debt_before,
        purchase_count_delta=-1 if voided else 0,
        offers_lost=list(outcome.offers_lost),
        request_digest=digest,
        receipt_b64=base64.b64encode(receipt).decode(),
        ledger=[e for e in ledger if e.points != 0],
    )
