"""The points-expiry job: takes the balance of members who have not bought for POS_OFFERS_POINTS_EXPIRE_AFTER_DAYS.

Safe to run twice (or on two servers at once): each expiry is checked and applied by one Lua script against the
customer's last purchase time, and its write-behind record is keyed by that time, so one period of inactivity
expires once. Candidates come from SQL; Redis has the final word (SQL may lag behind a recent purchase).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from domain.errors import FailedPrecondition, NotFound, Unavailable
from usecases.customers import Customers
from usecases.ports import Clock, CustomerHotState, ProfileStore

# How long a member rebuilt in Redis only for this job stays there: the job and her record's way to SQL.
JOB_KEEP_S = 3600


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    customers_checked: int
    customers_expired: int
    points_expired: int


class PointsExpiry:
    def __init__(
        self,
        hot: CustomerHotState,
        profiles: ProfileStore,
        customers: Customers,
        *,
        expire_after_days: int,
        clock: Clock,
    ) -> None:
        self._hot = hot
        self._profiles = profiles
        self._customers = customers
        self._days = expire_after_days
        self._clock = clock

    async def run(self, *, page_size: int = 500) -> ExpiryReport:
        if self._days <= 0:
            raise FailedPrecondition(
                "points never expire here (POS_OFFERS_POINTS_EXPIRE_AFTER_DAYS is 0)", "expiry_off"
            )
        now = self._clock()
        cutoff = now - timedelta(days=self._days)
        checked = expired = points = 0
        after = ""
        while True:
            page = await self._profiles.inactive_customers(cutoff=cutoff, after_customer_id=after, limit=page_size)
            for customer_id in page:
                checked += 1
                taken = await self._expire_one(customer_id, cutoff, now)
                if taken > 0:
                    expired, points = expired + 1, points + taken
            if len(page) < page_size:
                return ExpiryReport(checked, expired, points)
            after = page[-1]

    async def _expire_one(self, customer_id: str, cutoff: datetime, now: datetime) -> int:
        try:
            state = (await self._hot.read(customer_id, now=now)).state
            if state is None:
                # Lapsed members are mostly not in Redis: rebuilt for the job only, they leave again afterwards
                # (unless they buy meanwhile), so an expiry run does not load every lapsed member for good.
                await self._customers.rehydrate(customer_id, keep_s=JOB_KEEP_S)
                state = (await self._hot.read(customer_id, now=now)).state
        except (NotFound, Unavailable):
            return 0  # gone, or her last changes are still on their way to SQL: the next run sees her
        if state is None:
            return 0
        last = state.last_purchase_at
        if last is None or last >= cutoff or state.points_balance <= 0:
            return 0
        taken = await self._hot.expire_points(
            customer_id, cutoff=cutoff, last_purchase_at=last, expected_version=state.version, now=now
        )
        return max(0, taken)
