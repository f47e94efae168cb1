"""When points expire for lack of activity (pure: the job that takes them lives in usecases/expiry.py)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from domain.pending import spendable_points


def expiring(
    balance: int,
    last_purchase_at: datetime | None,
    now: datetime,
    *,
    after_days: int,
    warn_days: int,
    pending: Iterable[tuple[datetime, int]] = (),
) -> tuple[int, datetime | None]:
    """(points expiring soon, when) for the profile: what will be spendable when the inactivity period ends (the
    job takes exactly that), once that end is within the warning window. Points pending now but spendable by then
    are included: they expire too."""
    if after_days <= 0 or last_purchase_at is None or balance <= 0:
        return 0, None
    at = last_purchase_at + timedelta(days=after_days)
    if at - now > timedelta(days=warn_days):
        return 0, None
    points = spendable_points(balance, [(when, p) for when, p in pending if when > at])
    return (points, at) if points else (0, None)
