"""Offers' total redemption budgets: reserved before a commit, given back when it does not happen, rebuilt from
the profile of record when Redis lost a counter (never restarted from zero)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from domain.errors import Unavailable
from domain.model import BasketEvaluation, Catalog
from usecases.ports import OfferBudgets, ProfileStore

log = logging.getLogger(__name__)

# A lost budget counter is rebuilt this long after a server finds it missing: a commit that reserved before the
# loss has by then reached the outbox (so the rebuild counts it) or given its reservation back (on the missing
# counter: nothing to undo); its reserve-to-commit gap is milliseconds. No new reservation happens meanwhile.
BUDGET_SETTLE_S = 0.5
BUDGET_REBUILD_ATTEMPTS = 3

Reservation = tuple[str, str]  # (offer id, epoch of the counter it was taken from)


class Budgets:
    def __init__(self, counters: OfferBudgets, profiles: ProfileStore, *, settle_s: float = BUDGET_SETTLE_S) -> None:
        self._counters = counters
        self._profiles = profiles
        self.settle_s = settle_s
        # Rebuilds of lost budget counters under way on this server, one per offer (calls wanting it share it).
        self._rebuilds: dict[str, asyncio.Future[None]] = {}
        self._budgeted_cache: tuple[int, tuple[str, ...]] = (-2, ())

    def budgeted(self, catalog: Catalog) -> tuple[str, ...]:
        """Offers with a total redemption budget: their counters are read beside the customer."""
        cached = self._budgeted_cache
        if cached[0] != catalog.version:
            ids = tuple(o.offer_id for o in catalog.offers if o.total_redemption_limit > 0)
            cached = self._budgeted_cache = (catalog.version, ids)
        return cached[1]

    async def reserve(self, catalog: Catalog, evaluation: BasketEvaluation) -> list[Reservation] | None:
        """Takes one redemption of each applied offer's total budget; None (nothing held) if one ran out. A counter
        Redis lost is rebuilt from SQL first, never restarted from zero (the one time a commit reads SQL); nothing
        is held meanwhile, since a rebuild cannot see reservations in flight."""
        budgeted = [
            (offer.offer_id, offer.total_redemption_limit)
            for applied in evaluation.applied_offers
            if (offer := catalog.offer(applied.offer_id)) is not None and offer.total_redemption_limit > 0
        ]
        for _ in range(BUDGET_REBUILD_ATTEMPTS):
            reserved, lost = await self._reserve_each(budgeted)
            if reserved is not None:
                return reserved
            if not lost:
                return None  # sold out
            await asyncio.shield(self.rebuild(lost))  # a caller giving up does not stop it for the others
        raise Unavailable("an offer's budget is being rebuilt; retry shortly")

    async def _reserve_each(self, budgeted: Sequence[tuple[str, int]]) -> tuple[list[Reservation] | None, str]:
        """All reserved, or none held and the offer whose counter was lost ("" when one was sold out)."""
        reserved: list[Reservation] = []
        status = "reserved"
        try:
            for offer_id, limit in budgeted:
                status, epoch = await self._counters.reserve_budget(offer_id, limit)
                if status != "reserved":
                    break
                reserved.append((offer_id, epoch))
            else:
                return reserved, ""
        except BaseException:
            await self.release(reserved)
            raise
        await self.release(reserved)
        return None, offer_id if status == "lost" else ""

    async def release(self, reserved: Sequence[Reservation]) -> None:
        # Given back only to the counter they were taken from: one lost or rebuilt since never counted them.
        for offer_id, epoch in reserved:
            await self._counters.release_budget(offer_id, epoch=epoch)

    async def confirm(self, reserved: Sequence[Reservation]) -> None:
        # A counter rebuilt while this commit was under way may have missed it (it read the outbox before the
        # commit landed): counted again (at worst twice: the offer undersells by one, never oversells).
        for offer_id, epoch in reserved:
            if await self._counters.confirm_budget(offer_id, epoch):
                log.warning(
                    "budget counter rebuilt during a commit; redemption counted again", extra={"offer_id": offer_id}
                )

    async def give_back(self, offer_ids: Sequence[str], *, returned_at_ms: int) -> None:
        """Offers a return took back whole give their redemption back (unless the counter was rebuilt since the
        return was written: the rebuild already left it out)."""
        for offer_id in offer_ids:
            await self._counters.release_budget(offer_id, returned_at_ms=returned_at_ms)

    def rebuild(self, offer_id: str) -> asyncio.Future[None]:
        """This server's rebuild of the offer's budget counter, started unless one is under way."""
        rebuild = self._rebuilds.get(offer_id)
        if rebuild is None:
            rebuild = asyncio.ensure_future(self._recount(offer_id))
            self._rebuilds[offer_id] = rebuild

            def done(future: asyncio.Future[None]) -> None:
                if self._rebuilds.get(offer_id) is future:
                    del self._rebuilds[offer_id]
                if not future.cancelled():
                    future.exception()  # its callers were told; a rebuild nobody waits for any more is not news

            rebuild.add_done_callback(done)
        return rebuild

    async def _recount(self, offer_id: str) -> None:
        """Rebuilds a lost budget counter: the offer's redemptions committed and not taken back, from SQL plus the
        records still in the outbox (read first: records only ever move from there to SQL). Set only if no other
        server set it first (SET NX), so servers rebuilding at once all count from one value."""
        # Reservations made before the loss are on their way to the outbox; no new ones happen meanwhile.
        await asyncio.sleep(self.settle_s)
        if await self._counters.budget_counters([offer_id]):
            return  # another server rebuilt it
        pending = await self._counters.offer_in_outbox(offer_id)
        if pending is None:
            raise Unavailable(f"the budget of offer {offer_id!r} is being rebuilt; retry shortly")
        # Every return seen is left out: its own release, landing on the rebuilt counter, is then refused (the
        # counter's epoch is later than the return's record).
        used = await self._profiles.offer_redemptions(
            offer_id, pending_purchases=pending.purchases, pending_returns=pending.returns
        )
        if await self._counters.seed_budget(offer_id, used):
            log.warning(
                "offer budget counter was lost; rebuilt from SQL and the outbox",
                extra={
                    "offer_id": offer_id,
                    "used": used,
                    "outbox_purchases": len(pending.purchases),
                    "outbox_returns": len(pending.returns),
                },
            )
