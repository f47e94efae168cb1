"""How much and how long Redis keeps: the one place these numbers are written.

The Lua scripts spell none of them; CustomerStore passes them in with each call that needs one. SQL reads some
of them too (how many ledger entries a rebuild restores, how far back it counts recent category purchases).
"""

from __future__ import annotations

from dataclasses import dataclass

LEDGER_KEEP = 200
"""Newest ledger entries kept per customer; older ones are summed into the profile's "lbase"."""

RECENT_CATEGORY_WINDOW_S = 172_800
"""How long a customer's per-category purchase counts live: two days, since a void is possible on the sale's
business day only."""

SPEND_RETENTION_S = 34_560_000
"""How long a customer's monthly spend hash lives after her last purchase: 400 days, a year of months and some."""

OUTBOX_SCAN_LIMIT = 10_000
"""Outbox entries per partition looked through for one offer when its budget counter is rebuilt; a longer outbox
means the writer is far behind, and the rebuild waits."""


@dataclass(frozen=True, slots=True)
class RedisLimits:
    """The limits one CustomerStore passes to its scripts (tests make them small to reach them)."""

    ledger_keep: int = LEDGER_KEEP
    """Newest ledger entries kept per customer."""
    recent_category_window_s: int = RECENT_CATEGORY_WINDOW_S
    """Lifetime of the per-category purchase counts."""
    spend_retention_s: int = SPEND_RETENTION_S
    """Lifetime of the monthly spend hash."""
    outbox_scan_limit: int = OUTBOX_SCAN_LIMIT
    """Outbox entries per partition looked through for one offer."""
