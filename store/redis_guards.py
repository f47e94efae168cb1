"""The loyalty-fraud guards' parameters and keys for the commit and return scripts (store/lua/guards_lib.lua)."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from domain.model import PurchaseKey
from store.keys import CustomerKeys
from usecases.rules import FraudGuards

DAY_USES_TTL_S = 2 * 86_400


def day_key(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d")


class GuardParams:
    """What a script needs of the guards for one call at `now`, and the window keys it touches."""

    def __init__(self, guards: FraudGuards, salt: bytes) -> None:
        self.guards = guards
        # Without a configured salt, one per process: the alert's target still hides the id, but only correlates
        # within one process (set POS_OFFERS_LOG_HASH_SALT, as for the logs, to correlate across servers).
        self._salt = salt or os.urandom(16)

    def customer_hash(self, customer_id: str) -> str:
        """The same salted hash as the access log's customer_hash (with the same salt)."""
        return hashlib.sha256(self._salt + customer_id.encode()).hexdigest()[:16]

    def _bucket(self, now: datetime, window_s: int) -> str:
        return str(int(now.timestamp()) // max(window_s, 1))

    def params(self, customer_id: str, now: datetime, store_id: str = "") -> dict[str, Any]:
        g = self.guards
        return {
            "day": day_key(now),
            "oldest_day": day_key(now - timedelta(days=1)),
            "day_limit": g.offer_uses_per_day,
            "day_ttl_s": DAY_USES_TTL_S,
            "audit_target": self.customer_hash(customer_id),
            "now_iso": now.astimezone(UTC).isoformat(),
            "store_id": store_id,
            "commits": g.velocity_commits,
            "commits_window_s": g.velocity_commits_window_s,
            "commits_bucket": self._bucket(now, g.velocity_commits_window_s),
            "stores": g.velocity_stores,
            "stores_window_s": g.velocity_stores_window_s,
            "stores_bucket": self._bucket(now, g.velocity_stores_window_s),
            "returns": g.velocity_returns,
            "returns_window_s": g.velocity_returns_window_s,
            "returns_bucket": self._bucket(now, g.velocity_returns_window_s),
        }

    def commit_keys(self, ck: CustomerKeys, now: datetime) -> list[str]:
        g = self.guards
        return [
            ck.offer_uses_by_day(),
            ck.velocity("commits", self._bucket(now, g.velocity_commits_window_s)),
            ck.velocity("stores", self._bucket(now, g.velocity_stores_window_s)),
        ]

    def return_keys(self, ck: CustomerKeys, purchase: PurchaseKey, now: datetime) -> list[str]:
        bucket = self._bucket(now, self.guards.velocity_returns_window_s)
        return [ck.transaction(purchase), ck.offer_uses_by_day(), ck.velocity("returns", bucket)]

    def erasure_keys(self, ck: CustomerKeys, now: datetime) -> list[str]:
        """Every guard key of hers that may still exist at `now` (ForgetCustomer drops them): her per-day offer uses
        and each velocity counter of this window and the last (a counter expires a window after its first count)."""
        g = self.guards
        keys = [ck.offer_uses_by_day()]
        for kind, window_s in (
            ("commits", g.velocity_commits_window_s),
            ("stores", g.velocity_stores_window_s),
            ("returns", g.velocity_returns_window_s),
        ):
            bucket = int(self._bucket(now, window_s))
            keys += [ck.velocity(kind, str(bucket)), ck.velocity(kind, str(bucket - 1))]
        return keys
