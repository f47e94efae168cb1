"""Manual points adjustments (AdjustPoints): the one way, besides purchases, returns and expiry, that an existing
member's points move. Exactly once per adjustment id, a reason always, bounded, never below zero.

The hot state applies it in one script on her slot (debt repaid first, the spendable balance checked, the ledger
entry and the write-behind record written with it); SQL keeps it for good (points_adjustments), so a retry after
Redis forgot the adjustment still replays the first result.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import AlreadyExists, FailedPrecondition, NotFound
from domain.validation import validate_adjustment
from usecases.customers import Customers
from usecases.optimistic import Retry, write_optimistically
from usecases.ports import Adjustment, AdjustmentOutcome, Clock, CustomerHotState, ProfileStore
from usecases.rules import Rules


@dataclass(frozen=True, slots=True)
class AdjustmentAnswer:
    outcome: AdjustmentOutcome
    replayed: bool


def _reused(adjustment_id: str) -> AlreadyExists:
    return AlreadyExists(f"adjustment_id {adjustment_id!r} was used for another adjustment")


class PointsAdjustments:
    def __init__(
        self, rules: Rules, hot: CustomerHotState, profiles: ProfileStore, customers: Customers, clock: Clock
    ) -> None:
        self._rules = rules
        self._hot = hot
        self._profiles = profiles
        self._customers = customers
        self._clock = clock

    async def adjust(self, adjustment: Adjustment) -> AdjustmentAnswer:
        a = adjustment
        validate_adjustment(a.adjustment_id, a.customer_id, a.points, a.reason)
        # SQL has every adjustment whose record was written: one Redis no longer keeps (the retention window, a
        # lost Redis) is answered from there. One still on its way is in Redis (her hash), checked by the script.
        stored = await self._profiles.get_adjustment(a.adjustment_id)
        if stored is not None:
            if stored.digest != a.digest:
                raise _reused(a.adjustment_id)
            if stored.outcome.customer_id != a.customer_id:
                # She was forgotten since: her adjustments belong to an anonymous id, which must not show.
                raise NotFound("customer", a.customer_id)
            return AdjustmentAnswer(stored.outcome, replayed=True)
        await self._customers.customer(a.customer_id)  # NOT_FOUND, or rebuilt from SQL
        if await self._hot.claim_adjustment(a.adjustment_id, a.customer_id) != a.customer_id:
            raise _reused(a.adjustment_id)  # another member's adjustment (not in SQL yet)

        async def attempt() -> AdjustmentAnswer | Retry:
            result = await self._hot.adjust_points(a, now=self._clock())
            if result.status == "missing":
                await self._customers.rehydrate(a.customer_id)  # Redis dropped her meanwhile
                return Retry.REBUILT
            if result.status == "digest_mismatch":
                raise _reused(a.adjustment_id)
            if result.status == "insufficient":
                raise FailedPrecondition(
                    f"points: taking {-a.points} points would leave the balance below zero "
                    f"({result.available} spendable); an adjustment never creates points debt",
                    reason="insufficient_points",
                )
            if result.outcome is None:
                raise RuntimeError(f"adjustment {result.status} without its outcome")
            return AdjustmentAnswer(result.outcome, replayed=result.status == "replay")

        return await write_optimistically(attempt, attempts=self._rules.write_attempts, what="adjustment")
