"""When points expire for lack of activity (pure: the job that takes them lives in server/expiry.py)."""

from __future__ import annotations

from datetime import datetime, timedelta


def expiring(
    balance: int, last_purchase_at: datetime | None, now: datetime, *, after_days: int, warn_days: int
) -> tuple[int, datetime | None]:
    """(points expiring soon, when) for the profile: the whole balance once the end of the inactivity period is
    within the warning window."""
    if after_days <= 0 or last_purchase_at is None or balance <= 0:
        return 0, None
    at = last_purchase_at + timedelta(days=after_days)
    return (balance, at) if at - now <= timedelta(days=warn_days) else (0, None)
