"""Every Redis key the service uses, in one place.

A customer's keys share one hash tag, the customer's partition, so one Lua script can touch all of them (and
the partition's outbox stream) atomically, also on Redis Cluster. Global counters live in slots of their own.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

# How long a customer's per-category purchase counts live (store/lua/commit_purchase.lua spells it too): a void
# is possible on the sale's business day only.
RECENT_CATEGORY_WINDOW_S = 172_800


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str
    partitions: int

    def partition(self, customer_id: str) -> int:
        return zlib.crc32(customer_id.encode()) % self.partitions

    def _tag(self, partition: int) -> str:
        return f"{self.prefix}:{{p{partition}}}"

    def _customer(self, customer_id: str) -> str:
        return f"{self._tag(self.partition(customer_id))}:c:{customer_id}"

    def profile(self, customer_id: str) -> str:
        """Hash: name, tier, cur, ltv, bal, cnt, last, hlat, hlon, prop (JSON), ver."""
        return self._customer(customer_id)

    def categories(self, customer_id: str) -> str:
        """Set of categories the customer has bought."""
        return self._customer(customer_id) + ":cats"

    def category_purchases(self, customer_id: str) -> str:
        """Hash category -> purchases of the last two days that included it, so a void (same business day only)
        takes a category back off the profile only when no other purchase bought it since. Expires with them."""
        return self._customer(customer_id) + ":catn"

    def offer_uses(self, customer_id: str) -> str:
        """Hash offer_id -> times this customer earned it."""
        return self._customer(customer_id) + ":uses"

    def transaction(self, customer_id: str, transaction_id: str) -> str:
        """Hash {digest, receipt}: the stored receipt of one committed transaction, kept for the retention window."""
        return self._customer(customer_id) + ":txn:" + transaction_id

    def ledger(self, customer_id: str) -> str:
        """List of the newest points entries (JSON {id, k, p, t}); the profile's "lbase" sums the older ones."""
        return self._customer(customer_id) + ":ledger"

    def pending(self, customer_id: str) -> str:
        """Hash epoch ms -> points of ledger entries not spendable before then (the returns window); fields in the
        past are dropped by the next script that touches it, and the hash expires with its newest field."""
        return self._customer(customer_id) + ":pend"

    def spend(self, customer_id: str) -> str:
        """Hash "YYYYMM" -> net spend of that UTC month: the rolling 12-month spend tiers are reached by."""
        return self._customer(customer_id) + ":spend"

    def returned(self, customer_id: str, transaction_id: str) -> str:
        """Hash line_id -> quantity returned so far, of one purchase (kept as long as its receipt)."""
        return self._customer(customer_id) + ":ret:" + transaction_id

    def return_record(self, customer_id: str, return_id: str) -> str:
        """Hash {digest, receipt}: the stored receipt of one return, for replays."""
        return self._customer(customer_id) + ":rtn:" + return_id

    def outbox(self, partition: int) -> str:
        """Stream of write-behind records of one partition, drained into SQL by the writer."""
        return self._tag(partition) + ":outbox"

    def outboxes(self) -> list[str]:
        return [self.outbox(p) for p in range(self.partitions)]

    def transaction_claim(self, transaction_id: str) -> str:
        """String "<customer_id> <digest>": makes a transaction id unique across customers."""
        return f"{self.prefix}:{{t}}:claim:{transaction_id}"

    def return_claim(self, return_id: str) -> str:
        """String "<customer_id>": makes a return id unique across customers, like transaction ids."""
        return f"{self.prefix}:{{t}}:rclaim:{return_id}"

    def offer_redemptions(self, offer_id: str) -> str:
        """Counter of an offer's redemptions across all customers (its total budget)."""
        return f"{self.prefix}:{{o:{offer_id}}}:redemptions"

    def offer_budget_epoch(self, offer_id: str) -> str:
        """String: Redis time (µs) the offer's redemption counter was created at, beside it in its slot."""
        return f"{self.prefix}:{{o:{offer_id}}}:epoch"

    def catalog_version(self) -> str:
        return f"{self.prefix}:catalog:version"
