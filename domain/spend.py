"""The rolling 12-month spend tiers are reached by, counted per UTC month."""

from __future__ import annotations

from datetime import UTC, datetime


def month_key(moment: datetime) -> str:
    """The UTC month of a moment ("YYYYMM"), as spend is counted."""
    return moment.astimezone(UTC).strftime("%Y%m")


def last_12_months(now: datetime) -> list[str]:
    """This UTC month and the 12 before it: every sale of the last 12 months counts (and up to a month more),
    where 12 buckets would drop sales only 11 months old at the start of a month."""
    year, month = now.astimezone(UTC).year, now.astimezone(UTC).month
    keys = []
    for _ in range(13):
        keys.append(f"{year:04d}{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return keys


def spend_window_start(now: datetime) -> datetime:
    """Midnight UTC on the first day of the oldest of the months the rolling spend covers."""
    oldest = last_12_months(now)[-1]
    return datetime(int(oldest[:4]), int(oldest[4:]), 1, tzinfo=UTC)
