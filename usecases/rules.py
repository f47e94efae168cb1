"""The rules the use cases apply, as one typed value: built from the settings by bootstrap, chosen by tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from domain.model import PointsPolicy


@dataclass(frozen=True, slots=True)
class FraudGuards:
    """Loyalty-fraud guards of the till path (store/lua/guards_lib.lua); a threshold of 0 turns its check off."""

    offer_uses_per_day: int = 1  # per member, of an offer whose reward is fixed per basket (limited_per_day)
    velocity_commits: int = 20  # her commits within the window that raise an alert
    velocity_commits_window_s: int = 600
    velocity_stores: int = 4  # different stores she buys at within the window
    velocity_stores_window_s: int = 3_600
    velocity_returns: int = 10  # her returns and voids within the window
    velocity_returns_window_s: int = 86_400


@dataclass(frozen=True, slots=True)
class Rules:
    points: PointsPolicy = field(default_factory=PointsPolicy)
    max_basket_lines: int = 500
    max_line_quantity: int = 10_000
    max_unit_price_minor: int = 100_000_000_00
    points_pending_days: int = 0  # earned points spendable this long after the sale was accepted; 0 = at once
    points_expire_after_days: int = 0  # 0 = never
    points_expiring_soon_days: int = 30
    receipt_retention: timedelta = timedelta(days=30)  # replays of a transaction id answered from Redis
    occurred_at_grace: timedelta = timedelta(hours=72)  # an offline sale evaluated at its own time within this
    occurred_at_max_age: timedelta = timedelta(days=730)  # a sale dated earlier is refused (INVALID_ARGUMENT)
    clock_skew: timedelta = timedelta(seconds=300)  # how far in the future an occurred_at may be
    write_attempts: int = 8  # optimistic retries of a write that raced another write to the same customer
    guards: FraudGuards = field(default_factory=FraudGuards)
