"""Pending points: points earned become spendable only once the returns window has passed (pure).

The ledger decides: every entry carries when its points become spendable (earned points when the service
accepted the sale plus the pending period, a return's reversal at the same moment as the points it takes back,
everything else at once). The pending part of the balance is what the entries not yet spendable add up to
(never more than the balance); the rest she can spend. A return within the window thus takes its points out of
the purchase's own pending points and never out of what she already spent, so it leaves no debt behind.

Earnings that repaid a points debt stay counted as pending until their date, although they never reached the
balance: the pending part may be overstated then, never understated (she can never spend points early).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class PointsRelease:
    available_at: datetime
    points: int


def pending_until(sold_at: datetime, days: int) -> datetime:
    """When points earned by a sale become spendable: `days` after it, rounded up to the whole hour, so a member
    holds at most one pending amount per hour of the window however often she buys (and receipts read cleanly)."""
    at = sold_at + timedelta(days=days)
    whole_hour = at.replace(minute=0, second=0, microsecond=0)
    return whole_hour if whole_hour == at else whole_hour + timedelta(hours=1)


def spendable_points(balance: int, pending: Iterable[tuple[datetime, int]]) -> int:
    """Points she can spend now, given the ledger's not-yet-spendable points by when they become spendable."""
    return max(0, balance - max(0, sum(points for _, points in pending)))


def release_schedule(balance: int, pending: Iterable[tuple[datetime, int]]) -> tuple[PointsRelease, ...]:
    """When the pending part of the balance becomes spendable, soonest first; adds up to balance - spendable."""
    steps = sorted(pending)
    waiting = sum(points for _, points in steps)
    released = spendable_points(balance, steps)
    schedule: list[PointsRelease] = []
    for at, points in steps:
        waiting -= points
        now_spendable = max(0, balance - max(0, waiting))
        if now_spendable > released:
            if schedule and schedule[-1].available_at == at:
                schedule[-1] = PointsRelease(at, schedule[-1].points + now_spendable - released)
            else:
                schedule.append(PointsRelease(at, now_spendable - released))
            released = now_spendable
    return tuple(schedule)
