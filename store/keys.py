"""Every Redis key the service uses, in one place.

A customer's keys share one hash tag, the customer's partition, so one Lua script can touch all of them (and
the partition's outbox stream) atomically, also on Redis Cluster. Global counters live in slots of their own.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from domain.model import PurchaseKey


def scoped(purchase: PurchaseKey, *more: str) -> str:
    """A purchase (and what follows, a return id) in a key: "<len(store)>:<store>:<transaction>", the transaction
    also length-prefixed when more follows, so store "a:b" with transaction "c" is never store "a" with "b:c"."""
    head = f"{len(purchase.store_id)}:{purchase.store_id}:"
    if not more:
        return head + purchase.transaction_id
    return head + f"{len(purchase.transaction_id)}:{purchase.transaction_id}:" + ":".join(more)


@dataclass(frozen=True, slots=True)
class CustomerKeys:
    """One customer's keys (and her partition's outbox), all under her partition's hash tag."""

    profile: str
    """Hash: her profile; store/redis_profile.py ProfileField names its fields."""
    categories: str
    """Set of categories the customer has bought."""
    category_purchases: str
    """Hash category -> purchases of the last two days that included it, so a void (same business day only)
    takes a category back off the profile only when no other purchase bought it since. Expires with them."""
    offer_uses: str
    """Hash offer_id -> times this customer earned it."""
    ledger: str
    """List of the newest points entries (JSON {id, k, p, t}); the profile's "lbase" sums the older ones."""
    pending: str
    """Hash epoch ms -> points of ledger entries not spendable before then (the returns window); fields in the
    past are dropped by the next script that touches it, and the hash expires with its newest field."""
    spend: str
    """Hash "YYYYMM" -> net spend of that UTC month: the rolling 12-month spend tiers are reached by."""
    outbox: str
    """Her partition's stream of write-behind records, drained into SQL by the writer."""
    unwritten: str
    """Her partition's hash customer id -> her records in the outbox not yet written to SQL (see OutboxKeys)."""

    def transaction(self, purchase: PurchaseKey) -> str:
        """Hash {digest, receipt}: the stored receipt of one committed purchase, kept for the retention window."""
        return f"{self.profile}:p:{scoped(purchase)}"

    def returned(self, purchase: PurchaseKey) -> str:
        """Hash line_id -> quantity returned so far, of one purchase (kept as long as its receipt)."""
        return f"{self.profile}:pret:{scoped(purchase)}"

    def return_record(self, purchase: PurchaseKey, return_id: str) -> str:
        """Hash {digest, receipt}: the stored receipt of one return of the purchase, for replays."""
        return f"{self.profile}:prtn:{scoped(purchase, return_id)}"

    def legacy_transaction(self, transaction_id: str) -> str:
        """The stored receipt as servers before store-scoped ids kept it (by transaction id alone): read, never
        written, so a sale retried across the upgrade still replays. Gone after one retention window."""
        return self.profile + ":txn:" + transaction_id

    def legacy_return_record(self, return_id: str) -> str:
        """A return's stored receipt as servers before store-scoped ids kept it (by return id alone): read only."""
        return self.profile + ":rtn:" + return_id

    def adjustment(self, adjustment_id: str) -> str:
        """Hash {digest, result}: one AdjustPoints of hers and its result (JSON), for replays, kept for the
        retention window (SQL's points_adjustments keeps it after that)."""
        return self.profile + ":adj:" + adjustment_id

    def erasing(self) -> str:
        """String: set while she is being forgotten (ForgetCustomer): a rebuild of her from SQL waits meanwhile."""
        return self.profile + ":erasing"

    def offer_uses_by_day(self) -> str:
        """Hash "<offer_id>@<YYYYMMDD>" -> her uses that day (UTC) of offers limited per day; days before yesterday
        are pruned by the commit that counts a new use, and the hash expires two days after the last one."""
        return self.profile + ":uday"

    def velocity(self, kind: str, bucket: str) -> str:
        """Her velocity counter of one window (kind "commits", "returns": a count; "stores": a set of store ids),
        expiring with the window; `bucket` numbers the window (epoch seconds // window length)."""
        return f"{self.profile}:vel:{kind}:{bucket}"

    def state(self) -> list[str]:
        """Her own keys of every request (not the transactions', not the shared outbox)."""
        return [
            self.profile,
            self.categories,
            self.category_purchases,
            self.offer_uses,
            self.ledger,
            self.pending,
            self.spend,
        ]

    def script_keys(self, *own: str) -> list[str]:
        """KEYS of a script that changes her, in the order store/lua/customer_keys.lua names them: profile,
        categories, category purchases, offer uses, ledger, pending, spend, outbox, unwritten; then the call's
        `own` keys (a transaction's hash ...), from KEYS[OWN_KEYS] on."""
        return [*self.state(), self.outbox, self.unwritten, *own]


@dataclass(frozen=True, slots=True)
class OutboxKeys:
    """One partition's write-behind stream and what goes with it, under the partition's hash tag."""

    stream: str
    """Write-behind records of the partition's customers, drained into SQL by the writer."""
    unwritten: str
    """Hash customer id -> her entries in `stream` not yet written to SQL: every script that appends a record of
    hers adds one, the writer takes it off when it removes the entry (a count reaching 0 is deleted). A rebuild
    of her from SQL waits while she has any."""
    dead_letters: str
    """Entries no writer can read, parked with their id."""


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str
    partitions: int

    def partition(self, customer_id: str) -> int:
        return zlib.crc32(customer_id.encode()) % self.partitions

    def _tag(self, partition: int) -> str:
        return f"{self.prefix}:{{p{partition}}}"

    def customer(self, customer_id: str) -> CustomerKeys:
        partition = self.partition(customer_id)
        base = f"{self._tag(partition)}:c:{customer_id}"
        return CustomerKeys(
            profile=base,
            categories=base + ":cats",
            category_purchases=base + ":catn",
            offer_uses=base + ":uses",
            ledger=base + ":ledger",
            pending=base + ":pend",
            spend=base + ":spend",
            outbox=self.outbox(partition),
            unwritten=self.unwritten(partition),
        )

    def outbox(self, partition: int) -> str:
        """Stream of write-behind records of one partition, drained into SQL by the writer."""
        return self._tag(partition) + ":outbox"

    def unwritten(self, partition: int) -> str:
        return self._tag(partition) + ":unwritten"

    def outboxes(self) -> list[str]:
        return [self.outbox(p) for p in range(self.partitions)]

    def outbox_keys(self) -> list[OutboxKeys]:
        return [OutboxKeys(self.outbox(p), self.unwritten(p), self.outbox(p) + ":dead") for p in range(self.partitions)]

    def audit_outbox(self) -> OutboxKeys:
        """Stream of audit events of the till path (refused calls per key and minute, velocity alerts), in a slot
        of its own, drained into SQL's audit table by the writer like a partition's outbox (its "unwritten" hash
        stays empty: its entries belong to no customer)."""
        tag = f"{self.prefix}:{{audit}}"
        return OutboxKeys(tag + ":outbox", tag + ":unwritten", tag + ":outbox:dead")

    def writer_outboxes(self) -> list[OutboxKeys]:
        """Every stream the writer drains: the partitions' outboxes, then the audit outbox."""
        return [*self.outbox_keys(), self.audit_outbox()]

    def transaction_claim(self, purchase: PurchaseKey) -> str:
        """String "<customer_id>": makes a purchase, a store's transaction id, one customer's. Until store-scoped
        ids it was "{t}:claim:<transaction id>" (unique across stores too); those claims expire unread."""
        return f"{self.prefix}:{{t}}:pclaim:{scoped(purchase)}"

    def return_claim(self, purchase: PurchaseKey, return_id: str) -> str:
        """String "<customer_id>": makes a return id of a purchase one customer's, like the purchase's claim (until
        store-scoped ids "{t}:rclaim:<return id>", unique across purchases)."""
        return f"{self.prefix}:{{t}}:prclaim:{scoped(purchase, return_id)}"

    def legacy_transaction_claim(self, transaction_id: str) -> str:
        """A purchase's claim as servers before store-scoped ids wrote it: never read, only deleted by an erasure
        (it holds the customer id) before it expires."""
        return f"{self.prefix}:{{t}}:claim:{transaction_id}"

    def legacy_return_claim(self, return_id: str) -> str:
        """A return's claim before store-scoped ids: never read, only deleted by an erasure, like the purchase's."""
        return f"{self.prefix}:{{t}}:rclaim:{return_id}"

    def adjustment_claim(self, adjustment_id: str) -> str:
        """String "<customer_id>": makes an adjustment id unique across customers, like transaction ids."""
        return f"{self.prefix}:{{t}}:aclaim:{adjustment_id}"

    def offer_redemptions(self, offer_id: str) -> str:
        """Counter of an offer's redemptions across all customers (its total budget)."""
        return f"{self.prefix}:{{o:{offer_id}}}:redemptions"

    def offer_budget_epoch(self, offer_id: str) -> str:
        """String: Redis time (µs) the offer's redemption counter was created at, beside it in its slot."""
        return f"{self.prefix}:{{o:{offer_id}}}:epoch"

    def catalog_version(self) -> str:
        return f"{self.prefix}:catalog:version"

    def api_keys_version(self) -> str:
        return f"{self.prefix}:apikeys:version"

    def rate_bucket(self, kind: str, owner: str) -> str:
        """Hash {m, t}: one token bucket (store/lua/take_rate_tokens.lua), `kind` "key" (owner: a key id) or
        "customer" (owner: a customer id). Expires when full again. Every bucket shares the one hash tag `{rl}`, so
        one script takes from a key's bucket and a customer's atomically on Redis Cluster too (that slot's node
        then serves every call's limit check: see docs/decisions.md)."""
        return f"{self.prefix}:{{rl}}:{kind}:{owner}"
