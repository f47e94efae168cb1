"""Reading a customer for the till: from the hot state, rebuilt from the profile of record when Redis lost her;
and the CRM import that sets her profile."""

from __future__ import annotations

import logging
from datetime import datetime

from domain.errors import FailedPrecondition, NotFound, Unavailable
from domain.expiry import expiring
from domain.model import Catalog, CustomerState
from domain.spend import spend_window_start
from domain.validation import validate_customer, validate_id
from telemetry import metrics
from usecases.budgets import Budgets
from usecases.catalog import CatalogCache
from usecases.optimistic import Retry, write_optimistically
from usecases.ports import Clock, CustomerHotState, CustomerRead, ProfileStore
from usecases.rules import Rules

log = logging.getLogger(__name__)

REBUILDING = "the customer's profile is being rebuilt; retry shortly"


class Customers:
    def __init__(
        self,
        rules: Rules,
        hot: CustomerHotState,
        profiles: ProfileStore,
        catalog: CatalogCache,
        budgets: Budgets,
        clock: Clock,
    ) -> None:
        self._rules = rules
        self._hot = hot
        self._profiles = profiles
        self._catalog = catalog
        self._budgets = budgets
        self._clock = clock

    async def rehydrate(self, customer_id: str, *, keep_s: int = 0) -> None:
        """Rebuilds a customer Redis does not hold from the SQL profile; NOT_FOUND if SQL has none either.
        `keep_s` > 0 lets her leave Redis again after that long unless she buys (batch jobs)."""
        # Checked before reading SQL too: a change written (and dropped from the outbox) between the read and
        # the rebuild would otherwise be missing from the snapshot and invisible to the script's own check.
        if await self._hot.has_pending_changes(customer_id):
            raise Unavailable(REBUILDING)
        now = self._clock()
        snapshot = await self._profiles.load_customer(
            customer_id,
            receipts_since=now - self._rules.receipt_retention,
            spend_since=spend_window_start(now),
            now=now,
        )
        if snapshot is None:
            raise NotFound("customer", customer_id)
        result = await self._hot.hydrate(snapshot, now=now, keep_s=keep_s)
        if result == "rebuilt":
            metrics.REHYDRATIONS.inc()
            log.info("customer rebuilt from SQL", extra={"receipts": len(snapshot.receipts)})
        elif result == "pending":
            # Her latest changes are still on their way to SQL: rebuilding now would forget them.
            raise Unavailable(REBUILDING)

    async def read(self, customer_id: str, catalog: Catalog) -> CustomerRead:
        """Her state and the budget counters of the catalog's budgeted offers, rebuilding her if Redis lost her."""
        budgeted = self._budgets.budgeted(catalog)
        now = self._clock()
        read = await self._hot.read(customer_id, budget_offer_ids=budgeted, now=now)
        if read.state is None:
            await self.rehydrate(customer_id)
            read = await self._hot.read(customer_id, budget_offer_ids=budgeted, now=now)
        for offer_id in read.lost_budgets:
            # Listing and evaluating do not wait for it (a commit does): rebuilt in the background, the counter
            # soon shows a sold-out offer as sold out again.
            self._budgets.rebuild(offer_id)
        return read

    async def state(self, customer_id: str, field: str, catalog: Catalog) -> tuple[CustomerState, CustomerRead]:
        validate_id(customer_id, field)
        read = await self.read(customer_id, catalog)
        if read.state is None:
            raise NotFound("customer", customer_id)
        return read.state, read

    async def customer(self, customer_id: str) -> CustomerState:
        return (await self.state(customer_id, "customer_id", self._catalog.current))[0]

    def expiring(self, state: CustomerState) -> tuple[int, datetime | None]:
        """Points about to expire for lack of purchases, and when (for the profile)."""
        return expiring(
            state.points_balance,
            state.last_purchase_at,
            self._clock(),
            after_days=self._rules.points_expire_after_days,
            warn_days=self._rules.points_expiring_soon_days,
            pending=state.pending_points,
        )

    async def upsert_customer(self, state: CustomerState) -> CustomerState:
        """A CRM import: sets her profile; the lifetime value changes as a delta the script works out. The balance
        is set only when the import creates her: for an existing member another balance is FAILED_PRECONDITION
        (her points move only by purchases, returns, expiry and AdjustPoints), checked again by the script."""
        validate_customer(state)
        cid = state.customer_id

        async def attempt() -> CustomerState | Retry:
            held = (await self._hot.read(cid, now=self._clock())).state
            if held is None:
                # She may exist only in SQL (Redis lost her): rebuild first so the checks below see her.
                try:
                    await self.rehydrate(cid)
                    held = (await self._hot.read(cid, now=self._clock())).state
                except NotFound:  # a new customer: nothing to rebuild
                    pass
            if held is not None and held.points_balance != state.points_balance:
                raise balance_refused(held.points_balance)
            status = await self._hot.upsert_customer(state, exists=held is not None, now=self._clock())
            if status == "missing":
                return Retry.REBUILT  # she left Redis under this import: rebuild and try again
            if status == "balance":  # her balance moved between the read and the script (a purchase)
                return Retry.CONFLICT
            return await self.customer(cid)

        return await write_optimistically(attempt, attempts=self._rules.write_attempts, what="import")


def balance_refused(current: int) -> FailedPrecondition:
    return FailedPrecondition(
        f"customer.points_balance: an existing member's balance is {current} and changes only by purchases, returns, "
        "expiry and AdjustPoints; send it unchanged (or leave the import to profile fields) and use AdjustPoints",
        "balance_immutable",
    )
