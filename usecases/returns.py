"""Returns and voids: correcting entries against a committed purchase, exactly once per return id of the purchase.

A purchase is named by its store and transaction id (as printed on the receipt); a return id is scoped by it.

The purchase's stored receipt (Redis while it keeps it, else SQL) holds the basket, what each line earned and
the applied offers as defined then, so a return is computed from the receipt alone by the pure engine and
applied with one Lua script, like a commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from domain.ids import void_return_id
from domain.model import PurchaseFacts, PurchaseKey, ReturnOutcome, ReturnRequestLine
from domain.returns import evaluate_return, remaining_lines
from domain.validation import validate_id
from telemetry import metrics
from usecases.budgets import Budgets
from usecases.catalog import CatalogCache
from usecases.commit import record_alerts
from usecases.customers import Customers
from usecases.optimistic import Retry, write_optimistically
from usecases.ports import Clock, CustomerHotState, ProfileStore, ReceiptCodec, ReturnRead
from usecases.rules import Rules


@dataclass(frozen=True, slots=True)
class ReturnResult:
    receipt: bytes  # the stored return receipt, as the codec wrote it
    replayed: bool


@dataclass(frozen=True, slots=True)
class _Return:
    """One return or void request, validated: what every attempt needs."""

    return_id: str
    purchase: PurchaseKey
    customer_id: str
    returning_store_id: str  # the store taking the goods back ("" = not said); a void: the purchase's store
    digest: str
    lines: Sequence[ReturnRequestLine] | None  # None: a void (whatever is left of the purchase)
    voided: bool

    @property
    def transaction_id(self) -> str:
        return self.purchase.transaction_id


class ReturnsApp:
    def __init__(
        self,
        rules: Rules,
        hot: CustomerHotState,
        profiles: ProfileStore,
        customers: Customers,
        catalog: CatalogCache,
        budgets: Budgets,
        codec: ReceiptCodec,
        clock: Clock,
    ) -> None:
        self._rules = rules
        self._hot = hot
        self._profiles = profiles
        self._customers = customers
        self._catalog = catalog
        self._budgets = budgets
        self._codec = codec
        self._clock = clock

    async def return_lines(
        self,
        return_id: str,
        purchase: PurchaseKey,
        customer_id: str,
        lines: Sequence[ReturnRequestLine],
        digest: str,
        *,
        returning_store_id: str = "",
    ) -> ReturnResult:
        validate_id(return_id, "return_id")
        if return_id.startswith("void:"):
            raise InvalidArgument("return_id", "ids starting with 'void:' are kept for VoidPurchase")
        if not lines:
            raise InvalidArgument("lines", "must name at least one line")
        if returning_store_id:
            validate_id(returning_store_id, "returning_store_id")
        request = _Return(return_id, purchase, customer_id, returning_store_id, digest, lines, voided=False)
        return await self._apply(request)

    async def void(self, purchase: PurchaseKey, customer_id: str, digest: str) -> ReturnResult:
        validate_id(purchase.transaction_id, "transaction_id")
        return_id = void_return_id(purchase.transaction_id)
        # A void takes the sale back where it was rung up.
        request = _Return(return_id, purchase, customer_id, purchase.store_id, digest, None, voided=True)
        return await self._apply(request)

    async def _purchase(
        self, read: ReturnRead, customer_id: str, purchase: PurchaseKey
    ) -> tuple[bytes, dict[str, int]]:
        """The purchase's receipt and what was returned of it: from Redis, else from SQL (older purchases)."""
        transaction_id = purchase.transaction_id
        if read.purchase is not None:
            return read.purchase.receipt, read.returned
        if read.owner is not None and read.owner != customer_id:
            raise NotFound("purchase", transaction_id)  # another customer's: never revealed
        stored = await self._profiles.get_purchase_receipt(purchase)
        if stored is None and read.owner is None:
            # Never committed within the retention window (no claim) and not in SQL: there is no such purchase.
            raise NotFound("purchase", transaction_id)
        # SQL must have all of her changes before it can answer what was returned of this purchase.
        if await self._hot.has_pending_changes(customer_id):
            raise Unavailable("the purchase is still being written to the profile; retry shortly")
        if stored is None:
            stored = await self._profiles.get_purchase_receipt(purchase)
        if stored is None:
            raise NotFound("purchase", transaction_id)
        returned = await self._profiles.returned_quantities(purchase)
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

    async def _apply(self, request: _Return) -> ReturnResult:
        validate_id(request.transaction_id, "transaction_id")
        validate_id(request.purchase.store_id, "store_id")
        validate_id(request.customer_id, "customer_id")
        claimed = False

        async def attempt() -> ReturnResult | Retry:
            nonlocal claimed
            cid, return_id, purchase = request.customer_id, request.return_id, request.purchase
            read = await self._hot.read_for_return(cid, purchase, return_id, now=self._clock())
            if read.return_owner is not None and read.return_owner != cid:
                # Return ids are scoped by the purchase, which is one customer's: this one is not hers.
                raise NotFound("purchase", request.transaction_id)
            if read.stored is not None:
                if read.stored.digest != request.digest:
                    raise AlreadyExists(f"return_id {return_id!r} was used for a different return")
                return ReturnResult(read.stored.receipt, replayed=True)
            if read.legacy is not None and read.legacy.digest == request.digest:
                return ReturnResult(read.legacy.receipt, replayed=True)  # applied before store-scoped ids
            if read.state is None:
                await self._customers.rehydrate(cid)
                return Retry.REBUILT
            receipt, returned = await self._purchase(read, cid, purchase)
            facts = self._codec.facts(receipt)
            if facts.customer_id != cid or facts.key != purchase:
                raise NotFound("purchase", request.transaction_id)  # never reveal another customer's purchase
            if request.voided:
                self._check_void_window(facts)
            if not claimed:
                # Claimed once the purchase is known to be hers: a call naming the wrong customer claims nothing.
                if await self._hot.claim_return(purchase, return_id, cid) != cid:
                    raise NotFound("purchase", request.transaction_id)  # as above (never seen: she owns it)
                claimed = True
            wanted = remaining_lines(facts, returned) if request.lines is None else request.lines
            outcome = evaluate_return(facts, read.state, returned, wanted)
            return await self._write(read.state.version, facts, outcome, request)

        return await write_optimistically(attempt, attempts=self._rules.write_attempts, what="return")

    async def _write(
        self, version: int, facts: PurchaseFacts, outcome: ReturnOutcome, request: _Return
    ) -> ReturnResult | Retry:
        now = self._clock()
        receipt = self._codec.return_receipt(
            outcome,
            return_id=request.return_id,
            returning_store_id=request.returning_store_id,
            facts=facts,
            voided=request.voided,
            at=now,
        )
        result = await self._hot.apply_return(
            outcome,
            facts,
            return_id=request.return_id,
            returning_store_id=request.returning_store_id,
            digest=request.digest,
            receipt_bytes=receipt,
            voided=request.voided,
            expected_version=version,
            now=now,
        )
        if result.status == "ok":
            metrics.POINTS_REVERSED.inc(outcome.points_reversed)
            record_alerts(result.alerts)
            budgeted = [
                o for o in outcome.offers_lost if (offer := facts.offers.get(o)) and offer.total_redemption_limit
            ]
            await self._budgets.give_back(budgeted, returned_at_ms=result.written_at_ms)
            return ReturnResult(receipt, replayed=False)
        if result.status == "replay":  # the same request raced itself: the script compared the digests
            return ReturnResult(result.receipt, replayed=True)
        if result.status == "digest_mismatch":
            raise AlreadyExists(f"return_id {request.return_id!r} was used for a different return")
        return Retry.CONFLICT  # stale or missing: re-read
