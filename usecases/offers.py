"""The use cases behind the RPCs: read state, run the pure engine, write with one atomic script.

Knows nothing of protobuf; the servicers translate. SQL is touched only off the hot path: to rebuild a
customer Redis lost (rehydrate) and through the write-behind writer.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from domain.basket import evaluate_basket, new_categories
from domain.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from domain.expiry import expiring
from domain.model import (
    ActiveOffer,
    Basket,
    BasketEvaluation,
    Catalog,
    Channel,
    CustomerState,
    GeoPoint,
    OfferContext,
    PointsPolicy,
    Receipt,
)
from domain.pending import pending_until
from domain.ranking import list_active_offers
from domain.tiers import is_tier_offer_id
from domain.validation import validate_basket, validate_customer, validate_id, validate_location
from server.config import Settings
from store.ids import purchase_event_id
from store.records import (
    AppliedOfferRecord,
    CustomerRecord,
    LedgerEntry,
    PurchaseLineRecord,
    PurchaseRecord,
)
from store.redis_state import CustomerRead, CustomerStore, last_12_months, month_key
from store.snapshot import CustomerSnapshot
from telemetry import metrics
from telemetry.observe import sql_call
from usecases.catalog import CatalogCache

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# A lost budget counter is rebuilt this long after a server finds it missing: a commit that reserved before the
# loss has by then reached the outbox (so the rebuild counts it) or given its reservation back (on the missing
# counter: nothing to undo); its reserve-to-commit gap is milliseconds. No new reservation happens meanwhile.
BUDGET_SETTLE_S = 0.5
BUDGET_REBUILD_ATTEMPTS = 3


class ProfileSource(Protocol):
    def load_customer(
        self,
        customer_id: str,
        *,
        receipts_since: datetime,
        spend_since: datetime | None = None,
        now: datetime | None = None,
    ) -> CustomerSnapshot | None: ...

    def offer_redemptions(
        self, offer_id: str, *, pending_purchases: Sequence[str] = (), pending_returns: Sequence[str] = ()
    ) -> int: ...


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    receipt: bytes  # the PurchaseReceipt protobuf, as stored
    replayed: bool


def spend_window_start(now: datetime) -> datetime:
    """Midnight UTC on the first day of the oldest of the 12 months the rolling spend covers."""
    oldest = last_12_months(now)[-1]
    return datetime(int(oldest[:4]), int(oldest[4:]), 1, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


class OffersApp:
    def __init__(
        self,
        settings: Settings,
        customers: CustomerStore,
        profiles: ProfileSource,
        catalog: CatalogCache,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.customers = customers
        self.profiles = profiles
        self.catalog = catalog
        self.clock = clock
        self.policy = PointsPolicy(settings.earn_points_per_unit, settings.redeem_points_per_unit)
        self._retention = timedelta(days=settings.idempotency_retention_days)
        self._budgeted_cache: tuple[int, tuple[str, ...]] = (-2, ())
        # Rebuilds of lost budget counters under way on this server, one per offer (calls wanting it share it).
        self._budget_rebuilds: dict[str, asyncio.Future[None]] = {}
        self.budget_settle_s = BUDGET_SETTLE_S

    # -- reading a customer -------------------------------------------------------------------------------------

    async def rehydrate(self, customer_id: str, *, keep_s: int = 0) -> None:
        """Rebuilds a customer Redis does not hold from the SQL profile; NOT_FOUND if SQL has none either.
        `keep_s` > 0 lets her leave Redis again after that long unless she buys (batch jobs)."""
        # Checked before reading SQL too: a change written (and dropped from the outbox) between the read and
        # the rebuild would otherwise be missing from the snapshot and invisible to the script's own check.
        if await self.customers.has_pending_changes(customer_id):
            raise Unavailable("the customer's profile is being rebuilt; retry shortly")
        now = self.clock()
        with sql_call("load_customer"):
            snapshot = await asyncio.to_thread(
                self.profiles.load_customer,
                customer_id,
                receipts_since=now - self._retention,
                spend_since=spend_window_start(now),
                now=now,
            )
        if snapshot is None:
            raise NotFound("customer", customer_id)
        result = await self.customers.hydrate(snapshot, now=now, keep_s=keep_s)
        if result == "rebuilt":
            metrics.REHYDRATIONS.inc()
            log.info("customer rebuilt from SQL", extra={"receipts": len(snapshot.receipts)})
        elif result == "pending":
            # Her latest changes are still on their way to SQL: rebuilding now would forget them.
            raise Unavailable("the customer's profile is being rebuilt; retry shortly")

    def _budgeted(self, catalog: Catalog) -> tuple[str, ...]:
        """Offers with a total redemption budget: their counters are read beside the customer."""
        cached = self._budgeted_cache
        if cached[0] != catalog.version:
            ids = tuple(o.offer_id for o in catalog.offers if o.total_redemption_limit > 0)
            cached = self._budgeted_cache = (catalog.version, ids)
        return cached[1]

    async def _read(self, customer_id: str, catalog: Catalog, *, transaction_id: str = "") -> CustomerRead:
        budgeted = self._budgeted(catalog)
        now = self.clock()
        read = await self.customers.read(customer_id, transaction_id=transaction_id, budget_offer_ids=budgeted, now=now)
        if read.state is None:
            await self.rehydrate(customer_id)
            read = await self.customers.read(
                customer_id, transaction_id=transaction_id, budget_offer_ids=budgeted, now=now
            )
        for offer_id in read.lost_budgets:
            # Listing and evaluating do not wait for it (a commit does): rebuilt in the background, the counter
            # soon shows a sold-out offer as sold out again.
            self._budget_rebuild(offer_id)
        return read

    async def _state(self, customer_id: str, field: str, catalog: Catalog) -> tuple[CustomerState, CustomerRead]:
        validate_id(customer_id, field)
        read = await self._read(customer_id, catalog)
        if read.state is None:
            raise NotFound("customer", customer_id)
        return read.state, read

    def expiring(self, state: CustomerState) -> tuple[int, datetime | None]:
        """Points about to expire for lack of purchases, and when (for the profile)."""
        s = self.settings
        return expiring(
            state.points_balance,
            state.last_purchase_at,
            self.clock(),
            after_days=s.points_expire_after_days,
            warn_days=s.points_expiring_soon_days,
            pending=state.pending_points,
        )

    async def customer(self, customer_id: str) -> CustomerState:
        return (await self._state(customer_id, "customer_id", self.catalog.current))[0]

    # -- the till and the app -----------------------------------------------------------------------------------

    async def list_active_offers(
        self, customer_id: str, channel: Channel, store_id: str, location: GeoPoint | None, page_size: int
    ) -> tuple[tuple[ActiveOffer, ...], int]:
        if store_id:
            validate_id(store_id, "store_id")
        validate_location(location, "location")
        if page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        catalog = self.catalog.current
        if store_id and store_id not in catalog.stores:
            raise NotFound("store", store_id)
        state, read = await self._state(customer_id, "customer_id", catalog)
        ctx = OfferContext(now=self.clock(), channel=channel, store_id=store_id, location=location)
        size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        offers = list_active_offers(
            catalog, state, ctx, page_size=size, policy=self.policy, redemptions_used=read.redemptions_used
        )
        metrics.OFFERS_LISTED.inc(len(offers))
        return offers, catalog.version

    def _validate_basket(self, basket: Basket, field_prefix: str) -> None:
        s = self.settings
        validate_basket(
            basket,
            max_lines=s.max_basket_lines,
            max_quantity=s.max_line_quantity,
            max_unit_price_minor=s.max_unit_price_minor,
            field_prefix=field_prefix,
        )
        if basket.store_id not in self.catalog.current.stores:
            raise NotFound("store", basket.store_id)

    def _evaluation_time(self, occurred_at: datetime | None, field: str) -> datetime:
        """Offline tills send when the sale happened: honoured within the grace window, refused from the future."""
        now = self.clock()
        if occurred_at is None:
            return now
        if occurred_at > now + timedelta(seconds=self.settings.clock_skew_seconds):
            raise InvalidArgument(field, "is in the future")
        if occurred_at < now - timedelta(hours=self.settings.occurred_at_grace_hours):
            return now
        return occurred_at

    def _evaluate(
        self,
        catalog: Catalog,
        state: CustomerState,
        basket: Basket,
        times: tuple[datetime, datetime],
        used: Mapping[str, int],
    ) -> BasketEvaluation:
        """Evaluates at `times[0]`; the points earned become spendable a pending period after the sale, `times[1]`."""
        at, sold_at = times
        ctx = OfferContext(now=at, channel=Channel.POS, store_id=basket.store_id)
        try:
            evaluation = evaluate_basket(catalog, state, basket, ctx, self.policy, redemptions_used=used)
        except FailedPrecondition as exc:
            metrics.REDEMPTIONS_REFUSED.labels(reason=exc.reason).inc()
            raise
        available_at = self.points_available_at(sold_at)
        if evaluation.points_earned and available_at is not None:
            evaluation = dataclasses.replace(evaluation, points_available_at=available_at)
        return evaluation

    def points_available_at(self, sold_at: datetime) -> datetime | None:
        """When points earned by a sale become spendable: None when that is now (no pending period, or past)."""
        if self.settings.points_pending_days <= 0:
            return None
        at = pending_until(sold_at, self.settings.points_pending_days)
        return at if at > self.clock() else None

    async def evaluate(self, basket: Basket, occurred_at: datetime | None) -> BasketEvaluation:
        self._validate_basket(basket, "basket")
        at = self._evaluation_time(occurred_at, "occurred_at")
        catalog = self.catalog.current
        state, read = await self._state(basket.customer_id, "basket.customer_id", catalog)
        evaluation = self._evaluate(catalog, state, basket, (at, occurred_at or at), read.redemptions_used)
        for miss in evaluation.near_misses:
            metrics.NEAR_MISSES.labels(offer_id=miss.offer_id).inc()
        return evaluation

    async def commit(
        self,
        transaction_id: str,
        basket: Basket,
        occurred_at: datetime | None,
        digest: str,
        render_receipt: Callable[[Receipt], bytes],
    ) -> CommitOutcome:
        validate_id(transaction_id, "transaction_id", max_len=128)
        self._validate_basket(basket, "basket")
        at = self._evaluation_time(occurred_at, "occurred_at")
        sold_at = occurred_at or at  # what SQL records; offers were evaluated `at` (now, past the grace window)
        cid = basket.customer_id
        validate_id(cid, "basket.customer_id")
        claimed = False
        for _ in range(self.settings.commit_max_attempts):
            catalog = self.catalog.current
            budgeted = self._budgeted(catalog)
            read = await self.customers.read(
                cid, transaction_id=transaction_id, budget_offer_ids=budgeted, now=self.clock()
            )
            if read.claim_owner is not None and read.claim_owner != cid:
                raise AlreadyExists(f"transaction_id {transaction_id!r} was used for another customer")
            if read.stored is not None:
                return self._replay(read.stored.digest, read.stored.receipt, digest, transaction_id)
            if read.state is None:
                await self.rehydrate(cid)
                continue
            # A refused commit keeps the claim: another call with this id may already have committed for her.
            if not claimed and await self.customers.claim_transaction(transaction_id, cid) != cid:
                raise AlreadyExists(f"transaction_id {transaction_id!r} was used for another customer")
            claimed = True
            outcome = await self._try_commit(
                catalog, read, transaction_id, basket, (at, sold_at), digest, render_receipt
            )
            if outcome is not None:
                return outcome
            metrics.COMMIT_CONFLICTS.inc()
        raise Conflict("the customer's state kept changing under this commit; retry")

    def _replay(self, stored_digest: str, receipt: bytes, digest: str, transaction_id: str) -> CommitOutcome:
        if stored_digest != digest:
            raise AlreadyExists(f"transaction_id {transaction_id!r} was committed with a different basket")
        metrics.PURCHASES_REPLAYED.inc()
        return CommitOutcome(receipt, replayed=True)

    async def _reserve_budgets(self, catalog: Catalog, evaluation: BasketEvaluation) -> list[tuple[str, str]] | None:
        """Takes one redemption of each applied offer's total budget, as (offer id, counter epoch); None (nothing
        held) if one ran out. A counter Redis lost is rebuilt from SQL first, never restarted from zero (the one
        time this path reads SQL); nothing is held meanwhile, since a rebuild cannot see reservations in flight."""
        budgeted = [
            (offer.offer_id, offer.total_redemption_limit)
            for applied in evaluation.applied_offers
            if (offer := catalog.offer(applied.offer_id)) is not None and offer.total_redemption_limit > 0
        ]
        for _ in range(BUDGET_REBUILD_ATTEMPTS):
            reserved: list[tuple[str, str]] = []
            lost = ""
            try:
                for offer_id, limit in budgeted:
                    status, epoch = await self.customers.reserve_budget(offer_id, limit)
                    if status == "reserved":
                        reserved.append((offer_id, epoch))
                        continue
                    lost = offer_id if status == "lost" else ""
                    break
                else:
                    return reserved
            except BaseException:
                await self._release_budgets(reserved)
                raise
            await self._release_budgets(reserved)
            if not lost:
                return None  # sold out
            await self._rebuild_budget(lost)  # then start over, holding nothing
        raise Unavailable("an offer's budget is being rebuilt; retry shortly")

    async def _release_budgets(self, reserved: list[tuple[str, str]]) -> None:
        # Given back only to the counter they were taken from: one lost or rebuilt since never counted them.
        for offer_id, epoch in reserved:
            await self.customers.release_budget(offer_id, epoch=epoch)

    async def _confirm_budgets(self, reserved: list[tuple[str, str]]) -> None:
        # A counter rebuilt while this commit was under way may have missed it (it read the outbox before the
        # commit landed): counted again (at worst twice: the offer undersells by one, never oversells).
        for offer_id, epoch in reserved:
            if await self.customers.confirm_budget(offer_id, epoch):
                log.warning(
                    "budget counter rebuilt during a commit; redemption counted again", extra={"offer_id": offer_id}
                )

    async def _rebuild_budget(self, offer_id: str) -> None:
        """Waits for this server's rebuild of the offer's budget counter, starting it unless one is under way."""
        await asyncio.shield(self._budget_rebuild(offer_id))  # a caller giving up does not stop it for the others

    def _budget_rebuild(self, offer_id: str) -> asyncio.Future[None]:
        """This server's rebuild of the offer's budget counter, started unless one is under way."""
        rebuild = self._budget_rebuilds.get(offer_id)
        if rebuild is None:
            rebuild = asyncio.ensure_future(self._recount_budget(offer_id))
            self._budget_rebuilds[offer_id] = rebuild

            def done(future: asyncio.Future[None]) -> None:
                if self._budget_rebuilds.get(offer_id) is future:
                    del self._budget_rebuilds[offer_id]
                if not future.cancelled():
                    future.exception()  # its callers were told; a rebuild nobody waits for any more is not news

            rebuild.add_done_callback(done)
        return rebuild

    async def _recount_budget(self, offer_id: str) -> None:
        """Rebuilds a lost budget counter: the offer's redemptions committed and not taken back, from SQL plus the
        records still in the outbox (read first: records only ever move from there to SQL). Set only if no other
        server set it first (SET NX), so servers rebuilding at once all count from one value."""
        # Reservations made before the loss are on their way to the outbox; no new ones happen meanwhile.
        await asyncio.sleep(self.budget_settle_s)
        if await self.customers.budget_counters([offer_id]):
            return  # another server rebuilt it
        pending = await self.customers.offer_in_outbox(offer_id)
        if pending is None:
            raise Unavailable(f"the budget of offer {offer_id!r} is being rebuilt; retry shortly")
        # Every return seen is left out: its own release, landing on the rebuilt counter, is then refused (the
        # counter's epoch is later than the return's record).
        returns = pending.returns
        with sql_call("offer_redemptions"):
            used = await asyncio.to_thread(
                self.profiles.offer_redemptions,
                offer_id,
                pending_purchases=pending.purchases,
                pending_returns=returns,
            )
        if await self.customers.seed_budget(offer_id, used):
            log.warning(
                "offer budget counter was lost; rebuilt from SQL and the outbox",
                extra={
                    "offer_id": offer_id,
                    "used": used,
                    "outbox_purchases": len(pending.purchases),
                    "outbox_returns": len(returns),
                },
            )

    async def _try_commit(
        self,
        catalog: Catalog,
        read: CustomerRead,
        transaction_id: str,
        basket: Basket,
        times: tuple[datetime, datetime],
        digest: str,
        render_receipt: Callable[[Receipt], bytes],
    ) -> CommitOutcome | None:
        """One optimistic attempt; None when another write won a race (re-read and retry)."""
        sold_at = times[1]
        state = read.state
        if state is None:
            return None
        evaluation = self._evaluate(catalog, state, basket, times, read.redemptions_used)
        if month_key(sold_at) not in last_12_months(self.clock()):
            # A sale older than the rolling window does not count towards a tier.
            evaluation = dataclasses.replace(evaluation, tier_after=evaluation.tier_before)
        # Budgets live outside the customer's slot: reserve first, give back if the commit does not happen.
        reserved = await self._reserve_budgets(catalog, evaluation)
        if reserved is None:
            return None  # sold out meanwhile: the re-read sees it and evaluates without that offer
        try:
            applied = tuple(o for a in evaluation.applied_offers if (o := catalog.offer(a.offer_id)) is not None)
            receipt = Receipt(
                transaction_id,
                evaluation,
                new_categories(state, basket),
                self.clock(),
                basket=basket,
                offers=applied,
                occurred_at=sold_at,
            )
            receipt_bytes = render_receipt(receipt)
            record = purchase_record(receipt, basket, sold_at, digest, receipt_bytes, catalog)
        except BaseException:
            await self._release_budgets(reserved)
            raise
        # Once the script is sent it may have run, even if this call is cancelled: a reservation is then kept
        # (an offer may undersell by one, never oversell).
        result = await self.customers.commit(
            record, expected_version=state.version, receipt=receipt_bytes, occurred_at=sold_at, now=self.clock()
        )
        if result.status == "ok":
            await self._confirm_budgets(reserved)
            record_purchase_metrics(evaluation)
            return CommitOutcome(receipt_bytes, replayed=False)
        await self._release_budgets(reserved)
        if result.status == "replay":
            return self._replay(digest, result.receipt, digest, transaction_id)
        if result.status == "digest_mismatch":
            raise AlreadyExists(f"transaction_id {transaction_id!r} was committed with a different basket")
        if result.status == "insufficient":
            metrics.REDEMPTIONS_REFUSED.labels(reason="insufficient_points").inc()
            raise FailedPrecondition(
                f"insufficient points: {result.available} available, asked to redeem {basket.points_to_redeem}",
                reason="insufficient_points",
            )
        return None  # stale or missing: re-read

    # -- admin: customers -----------------------------------------------------------------------------------------

    async def upsert_customer(self, state: CustomerState) -> CustomerState:
        validate_customer(state)
        cid = state.customer_id
        for _ in range(self.settings.commit_max_attempts):
            exists = (await self.customers.read(cid)).state is not None
            if not exists:
                # She may exist only in SQL (Redis lost her): rebuild first so the balance change is a true delta.
                try:
                    await self.rehydrate(cid)
                    exists = True
                except NotFound:  # a new customer: nothing to rebuild
                    pass
            if await self.customers.upsert_customer(state, self._crm_record(state), exists=exists) is not None:
                return await self.customer(cid)
        raise Conflict("the customer kept leaving Redis under this import; retry")

    def _crm_record(self, state: CustomerState) -> CustomerRecord:
        cid = state.customer_id
        return CustomerRecord(
            event_id=f"customer:{uuid.uuid4().hex}",
            customer_id=cid,
            display_name=state.display_name,
            tier=state.tier,
            currency=state.currency,
            categories=sorted(state.categories),
            home_latitude=state.home.latitude if state.home else None,
            home_longitude=state.home.longitude if state.home else None,
            propensity=dict(state.propensity),
            lifetime_value_delta=0,  # the script computes both deltas atomically with the change
            balance_delta=0,
            updated_at=_iso(self.clock()),
        )


def purchase_record(
    receipt: Receipt, basket: Basket, occurred_at: datetime, digest: str, receipt_bytes: bytes, catalog: Catalog
) -> PurchaseRecord:
    ev = receipt.evaluation
    results = {r.line_id: r for r in ev.lines}
    base = sum(r.base_points for r in ev.lines)
    bonus = sum(r.bonus_points for r in ev.lines)
    txn = receipt.transaction_id
    spendable_from = _iso(ev.points_available_at) if ev.points_available_at else ""  # the returns window
    ledger = [
        LedgerEntry(f"{txn}:earn", "earn", base, spendable_from),
        LedgerEntry(f"{txn}:bonus", "bonus", bonus, spendable_from),
        LedgerEntry(f"{txn}:redeem", "redeem", -ev.points_redeemed),
    ]
    return PurchaseRecord(
        event_id=purchase_event_id(basket.customer_id, txn),
        transaction_id=txn,
        customer_id=basket.customer_id,
        store_id=basket.store_id,
        terminal_id=basket.terminal_id,
        currency=basket.currency,
        occurred_at=_iso(occurred_at),
        committed_at=_iso(receipt.committed_at),
        subtotal_minor=ev.subtotal_minor,
        total_discount_minor=ev.total_discount_minor,
        total_due_minor=ev.total_due_minor,
        points_earned=ev.points_earned,
        points_redeemed=ev.points_redeemed,
        redeemed_value_minor=ev.redeemed_value_minor,
        # Lifetime value counts what the merchandise sold for, net of discounts (points are a tender).
        lifetime_value_delta=ev.subtotal_minor - ev.total_discount_minor,
        request_digest=digest,
        receipt_b64=base64.b64encode(receipt_bytes).decode(),
        lines=[
            PurchaseLineRecord(
                line_id=line.line_id,
                sku=line.sku,
                category=line.category,
                quantity=line.quantity,
                unit_price_minor=line.unit_price_minor,
                base_points=results[line.line_id].base_points,
                bonus_points=results[line.line_id].bonus_points,
                discount_minor=results[line.line_id].discount_minor,
                offer_ids=list(results[line.line_id].offer_ids),
            )
            for line in basket.lines
        ],
        applied_offers=[  # offers only: a tier bonus is not an offer use (no limits, no budgets)
            AppliedOfferRecord(a.offer_id, _offer_version(catalog, a.offer_id), a.bonus_points, a.discount_minor)
            for a in ev.applied_offers
            if not is_tier_offer_id(a.offer_id)
        ],
        new_categories=list(receipt.new_categories),
        ledger=[e for e in ledger if e.points != 0],
        debt_repaid=ev.points_debt_repaid,
        tier_after=ev.tier_after if ev.tier_after != ev.tier_before else "",
    )


def _offer_version(catalog: Catalog, offer_id: str) -> int:
    offer = catalog.offer(offer_id)
    return offer.version if offer else 0


def record_purchase_metrics(ev: BasketEvaluation) -> None:
    metrics.PURCHASES_COMMITTED.inc()
    metrics.POINTS_EARNED.inc(ev.points_earned)
    metrics.POINTS_REDEEMED.inc(ev.points_redeemed)
    for applied in ev.applied_offers:
        metrics.OFFERS_RECOGNISED.labels(offer_id=applied.offer_id).inc()
